#include "engine/train/ssd.h"

// The SSD's loops are the trainer's hot path beside BLAS: let GCC vectorize them (-O2 alone does
// not for loops of unknown trip count). No -ffast-math: reductions keep their order. GCC
// contracts a * b + c into fused multiply-adds in C++ wherever the target has FMA, i.e. in the
// AVX-512 clones only (see vec_math.h): on one machine the results are deterministic.
#pragma GCC optimize("O3")
// The 16-float vector helpers below are always inlined: their by-value vector ABI never matters.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/train/row_math.h"
#include "engine/train/vec16.h"
#include "engine/train/vec_math.h"

#define TAPELOOP_SSD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

namespace tapeloop::engine::train {
namespace {

// Em[i, j] = prod_{j<k<=i} decay_k for j <= i, 0 above the diagonal (row recurrence: one
// multiply per entry, no exp); cum[i] = prod_{k<=i} decay_k.
inline void DecayMatrix(const float* decay, int64_t q, float* Em, float* cum) {
  float run = 1.f;
  for (int64_t i = 0; i < q; ++i) cum[i] = (run *= decay[i]);
  for (int64_t j = 0; j < q; ++j) Em[j] = 0.f;
  Em[0] = 1.f;
  for (int64_t i = 1; i < q; ++i) {
    float* er = Em + i * q;
    const float* prev = er - q;
    const float di = decay[i];
    for (int64_t j = 0; j < q; ++j) er[j] = prev[j] * di;
    er[i] = 1.f;
  }
}

// One row of the backward of W = Em o G o dt (columns scaled by dt) given dw = d loss / d W:
// dg += dw o em o dt; em <- dw o em o G; w <- dw o w. Written on 16-float vectors with a scalar
// tail: the same per-element expressions (and so, per target, the same contraction of
// dg + m dt into one fused multiply-add where the target has one) in every lane and the tail,
// where an auto-vectorized loop's shorter epilogues were not contracted alike.
inline void DecayProductGradRow(const float* dw, const float* g, const float* dt, int64_t q,
                                float* em, float* w, float* dg) {
  int64_t j = 0;
  for (; j + 16 <= q; j += 16) {
    const V16 dwv = Load16(dw + j);
    const V16 m = dwv * Load16(em + j);
    Store16(dg + j, Load16(dg + j) + m * Load16(dt + j));
    Store16(em + j, m * Load16(g + j));
    Store16(w + j, Load16(w + j) * dwv);
  }
  for (; j < q; ++j) {
    const float m = dw[j] * em[j];
    dg[j] += m * dt[j];
    em[j] = m * g[j];
    w[j] *= dw[j];
  }
}

// The same backward row with its sums instead of the two rewritten rows (the batched path): with
// M = dw o em o g and X = dw o w (row i of dW o Em o G and of dW o W), col_m += M, col_x += X.
// The row's sum of X is left in two parts: lanes[0..16) the 16 lane sums of its whole vectors,
// and the returned sum of the scalar tail; RowSums16 finishes it as (lanes[0] + ... + lanes[15])
// + tail, in that order, 16 rows at a time. Only the first n entries are read (the rest of a
// lower-triangular row are zeros, which leave dg and the sums unchanged).
__attribute__((always_inline)) inline float DecayProductGradRowSums(const float* dw, const float* g,
                                                                    const float* dt, int64_t n,
                                                                    const float* em, const float* w,
                                                                    float* dg, float* col_m,
                                                                    float* col_x, float* lanes) {
  V16 acc = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const V16 dwv = Load16(dw + j);
    const V16 m = dwv * Load16(em + j);
    Store16(dg + j, Load16(dg + j) + m * Load16(dt + j));
    const V16 x = Load16(w + j) * dwv;
    Store16(col_m + j, Load16(col_m + j) + m * Load16(g + j));
    Store16(col_x + j, Load16(col_x + j) + x);
    acc += x;
  }
  float tail = 0;
  for (; j < n; ++j) {
    const float m = dw[j] * em[j];
    dg[j] += m * dt[j];
    const float x = w[j] * dw[j];
    col_m[j] += m * g[j];
    col_x[j] += x;
    tail += x;
  }
  Store16(lanes, acc);
  return tail;
}

// sums[i] = (lanes[i][0] + lanes[i][1] + ... + lanes[i][15]) + tails[i] for i < q, each row's
// adds in that order (a row at a time that is a chain of 16 dependent adds; here 16 rows' chains
// run side by side in the lanes of one vector).
__attribute__((always_inline)) inline void RowSums16(const float* lanes, const float* tails,
                                                     int64_t q, float* sums) {
  int64_t i = 0;
  for (; i + 16 <= q; i += 16) {
    V16 r[16];
    for (int k = 0; k < 16; ++k) r[k] = Load16(lanes + (i + k) * 16);
    Transpose16(r);
    V16 sum = {};
    for (int k = 0; k < 16; ++k) sum += r[k];
    Store16(sums + i, sum + Load16(tails + i));
  }
  for (; i < q; ++i) {
    float sum = 0;
    for (int k = 0; k < 16; ++k) sum += lanes[i * 16 + k];
    sums[i] = sum + tails[i];
  }
}

// xT[p, k] = x[k, p] for p < 16, k < ldt (row k of x at x + k * ldx; zeros for k >= q),
// ldt = RoundUp16(q); xT's rows at xT + p * ldt.
__attribute__((always_inline)) inline void TransposeColumns16(const float* x, int64_t ldx,
                                                              int64_t q, int64_t ldt, float* xT) {
  for (int64_t k0 = 0; k0 < ldt; k0 += 16) {
    V16 r[16];
    for (int k = 0; k < 16; ++k) r[k] = k0 + k < q ? Load16(x + (k0 + k) * ldx) : V16{};
    Transpose16(r);
    for (int p = 0; p < 16; ++p) Store16(xT + p * ldt + k0, r[p]);
  }
}

// DecayMatrix's values (the same products in the same order) for the batched path, 16 columns
// at a time in a register (row i's block is row i-1's times decay[i], with the diagonal set to 1;
// DecayMatrix's row loop waits on the previous row's stores), fused with the product that uses
// them: one pass over the q x q block instead of three (the same products, each in the same
// order, so the same bits):
//   forward (kBackward = false): W = Em o (G o dt) (the forward's rounding since the per-head
//     code), and wv[s] = Em[q-1, s] dt_s; Em itself is not stored.
//   backward (kBackward = true): Em, and W = (Em o G) o dt (the backward's rounding).
// Blocks of 16 columns wholly above the diagonal are stored as zeros only when zero_upper (the
// Gemm path reads them; the vector loops read rows only to the end of their diagonal block).
// Em's entries there are exact zeros, so W's are zeros up to their sign.
template <bool kBackward>
__attribute__((always_inline)) inline void DecayWeightsVec(const float* decay, const float* G,
                                                           const float* dt, int64_t q,
                                                           bool zero_upper, float* Em, float* W,
                                                           float* cum, float* wv) {
  float run = 1.f;
  for (int64_t i = 0; i < q; ++i) cum[i] = (run *= decay[i]);
  V16 lane;
  for (int k = 0; k < 16; ++k) lane[k] = static_cast<float>(k);
  const V16 one = V16{} + 1.f;
  for (int64_t jb = 0; jb < q; jb += 16) {
    const int64_t nj = std::min<int64_t>(16, q - jb);
    for (int64_t i = 0; zero_upper && i < jb; ++i) {
      std::fill(W + i * q + jb, W + i * q + jb + nj, 0.f);
      if (kBackward) std::fill(Em + i * q + jb, Em + i * q + jb + nj, 0.f);
    }
    V16 dtv = {};
    if (nj == 16) {
      dtv = Load16(dt + jb);
    } else {
      std::memcpy(&dtv, dt + jb, sizeof(float) * nj);
    }
    V16 v = {};
    for (int64_t i = jb; i < q; ++i) {
      v = v * decay[i];
      if (i < jb + 16) v = lane == static_cast<float>(i - jb) ? one : v;
      V16 g = {};
      if (nj == 16) {
        g = Load16(G + i * q + jb);
      } else {
        std::memcpy(&g, G + i * q + jb, sizeof(float) * nj);
      }
      V16 w;
      if (kBackward) {
        w = v * g * dtv;
      } else {
        w = v * (g * dtv);
      }
      if (nj == 16) {
        Store16(W + i * q + jb, w);
        if (kBackward) Store16(Em + i * q + jb, v);
      } else {
        std::memcpy(W + i * q + jb, &w, sizeof(float) * nj);
        if (kBackward) std::memcpy(Em + i * q + jb, &v, sizeof(float) * nj);
      }
      if (!kBackward && i == q - 1) {
        const V16 l = v * dtv;
        std::memcpy(wv + jb, &l, sizeof(float) * nj);
      }
    }
  }
}

// The per-head intra-chunk products on 16-float vectors, for head dims P that are multiples of
// 16 (else the batched path calls Gemm): they skip W's zero upper triangle, which BLAS
// multiplies through, and the call overhead of ~2,000 tiny sgemms per row. Register blocks of
// eight rows by one vector or four rows by up to four; the sums run in index order per output,
// which is not BLAS's order, so the results agree with the Gemm path to rounding. Terms from W's
// upper triangle that a block reaches are exact zeros times finite values: they leave the sums
// unchanged.
inline int64_t RoundUp16(int64_t n) { return (n + 15) & ~int64_t{15}; }

// out[i, p0 : p0 + 16 NV] = sum_{j <= i} w[i, j] x[j, same columns] for all i < q.
// Rows per register block: eight for a single vector (eight independent chains keep both FMA
// ports busy; four left them waiting on the FMA latency), else four.
template <int NV>
constexpr int kTriRows = NV == 1 ? 8 : 4;

template <int NV>
__attribute__((always_inline)) inline void LowerTriTimesSlice(const float* w, int64_t q,
                                                              const float* x, int64_t ldx,
                                                              float* out, int64_t ldo) {
  constexpr int MR = kTriRows<NV>;
  int64_t i = 0;
  for (; i + MR <= q; i += MR) {
    V16 a[MR][NV] = {};
    for (int64_t j = 0; j <= i + MR - 1; ++j) {
      V16 xv[NV];
      for (int v = 0; v < NV; ++v) xv[v] = Load16(x + j * ldx + 16 * v);
      for (int r = 0; r < MR; ++r) {
        const float wr = w[(i + r) * q + j];
        for (int v = 0; v < NV; ++v) a[r][v] += wr * xv[v];
      }
    }
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) Store16(out + (i + r) * ldo + 16 * v, a[r][v]);
  }
  for (; i < q; ++i) {
    V16 a[NV] = {};
    for (int64_t j = 0; j <= i; ++j) {
      const float wr = w[i * q + j];
      for (int v = 0; v < NV; ++v) a[v] += wr * Load16(x + j * ldx + 16 * v);
    }
    for (int v = 0; v < NV; ++v) Store16(out + i * ldo + 16 * v, a[v]);
  }
}

// out[j, p0 : p0 + 16 NV] += sum_{i >= j} w[i, j] dy[i, same columns] for all j < q.
template <int NV>
__attribute__((always_inline)) inline void LowerTriTransposedTimesAddSlice(
    const float* w, int64_t q, const float* dy, int64_t ldy, float* out, int64_t ldo) {
  constexpr int MR = kTriRows<NV>;
  int64_t j = 0;
  for (; j + MR <= q; j += MR) {
    V16 a[MR][NV] = {};
    for (int64_t i = j; i < q; ++i) {
      V16 dv[NV];
      for (int v = 0; v < NV; ++v) dv[v] = Load16(dy + i * ldy + 16 * v);
      for (int r = 0; r < MR; ++r) {
        const float wr = w[i * q + j + r];
        for (int v = 0; v < NV; ++v) a[r][v] += wr * dv[v];
      }
    }
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) {
        float* o = out + (j + r) * ldo + 16 * v;
        Store16(o, Load16(o) + a[r][v]);
      }
  }
  for (; j < q; ++j) {
    V16 a[NV] = {};
    for (int64_t i = j; i < q; ++i) {
      const float wr = w[i * q + j];
      for (int v = 0; v < NV; ++v) a[v] += wr * Load16(dy + i * ldy + 16 * v);
    }
    for (int v = 0; v < NV; ++v) {
      float* o = out + j * ldo + 16 * v;
      Store16(o, Load16(o) + a[v]);
    }
  }
}

// out[i, :P] = sum_{j <= i} w[i, j] x[j, :P] (w lower-triangular [q, q], row stride q).
__attribute__((always_inline)) inline void LowerTriTimes(const float* w, int64_t q, const float* x,
                                                         int64_t ldx, int64_t P, float* out,
                                                         int64_t ldo) {
  int64_t p = 0;
  for (; p + 64 <= P; p += 64) LowerTriTimesSlice<4>(w, q, x + p, ldx, out + p, ldo);
  switch ((P - p) / 16) {
    case 3:
      LowerTriTimesSlice<3>(w, q, x + p, ldx, out + p, ldo);
      break;
    case 2:
      LowerTriTimesSlice<2>(w, q, x + p, ldx, out + p, ldo);
      break;
    case 1:
      LowerTriTimesSlice<1>(w, q, x + p, ldx, out + p, ldo);
      break;
    default:
      break;
  }
}

// out[j, :P] += sum_{i >= j} w[i, j] dy[i, :P] (W^T dy for the same w).
__attribute__((always_inline)) inline void LowerTriTransposedTimesAdd(const float* w, int64_t q,
                                                                      const float* dy, int64_t ldy,
                                                                      int64_t P, float* out,
                                                                      int64_t ldo) {
  int64_t p = 0;
  for (; p + 64 <= P; p += 64) LowerTriTransposedTimesAddSlice<4>(w, q, dy + p, ldy, out + p, ldo);
  switch ((P - p) / 16) {
    case 3:
      LowerTriTransposedTimesAddSlice<3>(w, q, dy + p, ldy, out + p, ldo);
      break;
    case 2:
      LowerTriTransposedTimesAddSlice<2>(w, q, dy + p, ldy, out + p, ldo);
      break;
    case 1:
      LowerTriTransposedTimesAddSlice<1>(w, q, dy + p, ldy, out + p, ldo);
      break;
    default:
      break;
  }
}

// dW[i, j] = dy[i, :P] . x[j, :P] for j < RoundUp16(i + 1) at least (the lower triangle, to
// whole vectors, at most to ldt; dW has row stride ldw >= ldt), from xT = x^T [P, ldt],
// ldt = RoundUp16(q), zero past column q.
__attribute__((always_inline)) inline void LowerTriOuter(const float* dy, int64_t ldy,
                                                         const float* xT, int64_t ldt, int64_t q,
                                                         int64_t P, float* dW, int64_t ldw) {
  constexpr int MR = 8;  // eight independent chains per block (see kTriRows)
  int64_t i = 0;
  for (; i + MR <= q; i += MR) {
    const int64_t n = std::min(ldt, RoundUp16(i + MR));
    for (int64_t j = 0; j < n; j += 16) {
      V16 a[MR] = {};
      for (int64_t p = 0; p < P; ++p) {
        const V16 xv = Load16(xT + p * ldt + j);
        for (int r = 0; r < MR; ++r) a[r] += dy[(i + r) * ldy + p] * xv;
      }
      for (int r = 0; r < MR; ++r) Store16(dW + (i + r) * ldw + j, a[r]);
    }
  }
  for (; i < q; ++i) {
    const int64_t n = std::min(ldt, RoundUp16(i + 1));
    for (int64_t j = 0; j < n; j += 16) {
      V16 a = {};
      for (int64_t p = 0; p < P; ++p) a += dy[i * ldy + p] * Load16(xT + p * ldt + j);
      Store16(dW + i * ldw + j, a);
    }
  }
}

// SsdProduct (ssd.h) on 16-float vectors: tiles of 4 rows x 64 columns or 8 rows x 16 columns
// of accumulators (independent chains side by side); `acc += a * b` is contracted into one
// fused multiply-add in the AVX-512 clone, as OpenBLAS's kernel computes it.
constexpr int64_t kProductMaxK = kSsdProductMaxK;

template <int MR, int NV>
__attribute__((always_inline)) inline void ProductTile(const float* A, int64_t sai, int64_t sak,
                                                       const float* B, int64_t ldb, int64_t K,
                                                       int64_t ncols, bool accumulate, float* Cm,
                                                       int64_t ldc) {
  V16 acc[MR][NV] = {};
  for (int64_t k = 0; k < K; ++k) {
    V16 b[NV];
    for (int v = 0; v < NV; ++v) b[v] = Load16(B + k * ldb + 16 * v);
    for (int r = 0; r < MR; ++r) {
      const float a = A[r * sai + k * sak];
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      float* c = Cm + r * ldc + 16 * v;
      const int64_t nw = std::min<int64_t>(16, ncols - 16 * v);
      if (nw == 16) {
        Store16(c, accumulate ? Load16(c) + acc[r][v] : acc[r][v]);
      } else if (nw > 0) {
        V16 old = {};
        if (accumulate) std::memcpy(&old, c, sizeof(float) * nw);
        const V16 out = accumulate ? old + acc[r][v] : acc[r][v];
        std::memcpy(c, &out, sizeof(float) * nw);
      }
    }
}

__attribute__((always_inline)) inline void Product(int64_t M, int64_t Nc, int64_t K, const float* A,
                                                   int64_t sai, int64_t sak, const float* B,
                                                   int64_t ldb, bool accumulate, float* Cm,
                                                   int64_t ldc) {
  int64_t j = 0;
  for (; j + 64 <= Nc; j += 64) {
    int64_t i = 0;
    for (; i + 4 <= M; i += 4)
      ProductTile<4, 4>(A + i * sai, sai, sak, B + j, ldb, K, 64, accumulate, Cm + i * ldc + j,
                        ldc);
    for (; i < M; ++i)
      ProductTile<1, 4>(A + i * sai, sai, sak, B + j, ldb, K, 64, accumulate, Cm + i * ldc + j,
                        ldc);
  }
  for (; j < Nc; j += 16) {
    const int64_t nc = std::min<int64_t>(16, Nc - j);
    int64_t i = 0;
    for (; i + 8 <= M; i += 8)
      ProductTile<8, 1>(A + i * sai, sai, sak, B + j, ldb, K, nc, accumulate, Cm + i * ldc + j,
                        ldc);
    for (; i < M; ++i)
      ProductTile<1, 1>(A + i * sai, sai, sak, B + j, ldb, K, nc, accumulate, Cm + i * ldc + j,
                        ldc);
  }
}

// y[p] += a x[p] and y[p] = a x[p] for p < n, 16 at a time and then one at a time, the same
// expression in both (so contracted alike): the head-width loops written on vectors.
__attribute__((always_inline)) inline void Axpy(float a, const float* x, float* y, int64_t n) {
  int64_t p = 0;
  for (; p + 16 <= n; p += 16) Store16(y + p, Load16(y + p) + a * Load16(x + p));
  for (; p < n; ++p) y[p] += a * x[p];
}
__attribute__((always_inline)) inline void Scale(float a, const float* x, float* y, int64_t n) {
  int64_t p = 0;
  for (; p + 16 <= n; p += 16) Store16(y + p, a * Load16(x + p));
  for (; p < n; ++p) y[p] = a * x[p];
}

// dD[h] += sum_{i < q, p < P} dy[i, h P + p] x[i, h P + p], each head's sum taken in (i, p)
// order from 0 as the per-head loop does, but eight heads' chains side by side: one chain of
// q P dependent adds per head was ~3% of a ~1M training step.
__attribute__((always_inline)) inline void SkipGrad(const float* dy, int64_t ldy, const float* x,
                                                    int64_t ldx, int64_t q, int64_t H, int64_t P,
                                                    float* dD) {
  constexpr int kHeads = 8;
  int64_t h0 = 0;
  for (; h0 + kHeads <= H; h0 += kHeads) {
    float acc[kHeads] = {};
    for (int64_t i = 0; i < q; ++i) {
      const float* dyr = dy + i * ldy + h0 * P;
      const float* xr = x + i * ldx + h0 * P;
      for (int64_t p = 0; p < P; ++p)
        for (int r = 0; r < kHeads; ++r) acc[r] += dyr[r * P + p] * xr[r * P + p];
    }
    for (int r = 0; r < kHeads; ++r) dD[h0 + r] += acc[r];
  }
  for (; h0 < H; ++h0) {
    float acc = 0;
    for (int64_t i = 0; i < q; ++i) {
      const float* dyr = dy + i * ldy + h0 * P;
      const float* xr = x + i * ldx + h0 * P;
      for (int64_t p = 0; p < P; ++p) acc += dyr[p] * xr[p];
    }
    dD[h0] += acc;
  }
}

// out [m, n] = A [m, N] (rows lda apart) B [n, N]^T (rows ldb apart): with prod_nt through
// Product on B^T, transposed 16 columns at a time into bt [N, RoundUp16(n)] (the bits of
// OpenBLAS's SkylakeX kernel, ssd.h), else sgemm.
__attribute__((always_inline)) inline void ProductNT(bool prod_nt, int64_t m, int64_t n, int64_t N,
                                                     const float* A, int64_t lda, const float* B,
                                                     int64_t ldb, float* bt, float* out,
                                                     int64_t ldo) {
  if (!prod_nt) {
    Gemm(false, true, m, n, N, 1.f, A, lda, B, ldb, 0.f, out, ldo);
    return;
  }
  const int64_t ldt = RoundUp16(n);
  for (int64_t c = 0; c < N; c += 16) TransposeColumns16(B + c, ldb, n, ldt, bt + c * ldt);
  Product(m, n, N, A, lda, 1, bt, ldt, false, out, ldo);
}

}  // namespace

TAPELOOP_SSD_CLONES void SsdProduct(int64_t M, int64_t Nc, int64_t K, const float* A, int64_t sai,
                                    int64_t sak, const float* B, int64_t ldb, bool accumulate,
                                    float* Cm, int64_t ldc) {
  Product(M, Nc, K, A, sai, sak, B, ldb, accumulate, Cm, ldc);
}

int64_t SsdScratchSize(const SsdDims& d) {
  const int64_t Q = d.Q, M = std::max(d.P, d.N);
  // The per-head versions use the first 6 Q^2 + 4 Q M + 8 Q + 2 H P N floats; the batched ones
  // fewer of those plus four [Q, di] blocks, dW's rows padded to whole vectors (16 Q), x^T
  // [P, RoundUp16(Q)], the row sums' lanes and tails (17 Q), and B^T [N, RoundUp16(Q)], S_in^T
  // and dS^T [N, di] for Product.
  return 6 * Q * Q + 4 * Q * M + 8 * Q + 2 * d.H * d.P * d.N + 4 * Q * d.di() + 16 * Q +
         d.P * RoundUp16(Q) + 17 * Q + d.N * RoundUp16(Q) + 2 * d.N * d.di();
}

// ---- The batched fast path ----

TAPELOOP_SSD_CLONES void SsdForward(const SsdDims& d, const float* xbc, const float* dtT,
                                    const float* a_log, const float* dskip, float* S, float* y,
                                    float* scratch, bool has_init) {
  const int64_t Q = d.Q, C = d.C(), P = d.P, N = d.N, H = d.H, di = d.di(), HPN = di * N, T = d.T;
  float* G = scratch;        // [Q, Q]   C B^T, shared by all heads
  float* W = G + Q * Q;      // [Q, Q]   the head's Em, then Em o G o dt
  float* decay = W + Q * Q;  // [Q]
  float* cum = decay + Q;    // [Q]
  float* wv = cum + Q;       // [Q]      Em[q-1, s] dt_s
  float* cs = wv + Q;        // [Q, di]  C S_in^T, all heads
  float* xw = cs + Q * di;   // [Q, di]  x o wv, all heads
  const bool vec = P % 16 == 0;
  // Product in place of Gemm (N, Q <= kProductMaxK: di is not a K here); for the products of
  // depth N (C B^T, C S_in^T) only with N = 16 (ssd.h).
  const bool prod = vec && N % 16 == 0 && N <= kProductMaxK && Q <= kProductMaxK;
  const bool prod_nt = prod && N == 16;
  float* BT = xw + Q * di;              // [N, RoundUp16(Q)]  B^T (prod)
  float* SinT = BT + N * RoundUp16(Q);  // [N, di]  S_in^T (prod)
  for (int64_t c = 0; c < d.nch(); ++c) {
    const int64_t t0 = c * Q, q = std::min(Q, T - t0);
    const float* Bc = xbc + t0 * C + di;
    const float* Cc = Bc + N;
    const float* Sin = S + c * HPN;  // [di, N]
    float* Sout = S + (c + 1) * HPN;
    const bool state_in = has_init || c > 0;
    ProductNT(prod_nt, q, q, N, Cc, C, Bc, C, BT, G, q);
    if (state_in) ProductNT(prod_nt, q, di, N, Cc, C, Sin, N, SinT, cs, di);
    for (int64_t h = 0; h < H; ++h) {
      const float a = -std::exp(a_log[h]);
      const float* dtc = dtT + h * T + t0;
      for (int64_t i = 0; i < q; ++i) decay[i] = dtc[i] * a;
      ExpInPlace(decay, q);
      // W = Em o G o dt (upper triangle 0) and wv = Em[q-1, :] o dt.
      DecayWeightsVec<false>(decay, G, dtc, q, !vec, nullptr, W, cum, wv);
      const float* xh = xbc + t0 * C + h * P;
      for (int64_t s = 0; s < q; ++s) {
        const float w = wv[s];
        const float* xr = xh + s * C;
        float* o = xw + s * di + h * P;
        Scale(w, xr, o, P);
      }
      // S_out = cum_L S_in here, + (x o wv)^T B for all heads after the loop.
      const float eL = cum[q - 1];
      const float* sin_h = Sin + h * P * N;
      float* sout_h = Sout + h * P * N;
      for (int64_t k = 0; k < P * N; ++k) sout_h[k] = state_in ? eL * sin_h[k] : 0.f;
      float* yh = y + t0 * di + h * P;
      if (vec) {
        LowerTriTimes(W, q, xh, C, P, yh, di);
      } else {
        Gemm(false, false, q, P, q, 1.f, W, q, xh, C, 0.f, yh, di);
      }
      if (state_in) {
        for (int64_t i = 0; i < q; ++i) {
          const float e = cum[i];
          float* yr = yh + i * di;
          const float* tr = cs + i * di + h * P;
          Axpy(e, tr, yr, P);
        }
      }
      const float Dh = dskip[h];
      for (int64_t i = 0; i < q; ++i) {
        float* yr = yh + i * di;
        const float* xr = xh + i * C;
        Axpy(Dh, xr, yr, P);
      }
    }
    if (prod) {
      Product(di, N, q, xw, 1, di, Bc, C, true, Sout, N);
    } else {
      Gemm(true, false, di, N, q, 1.f, xw, di, Bc, C, 1.f, Sout, N);
    }
  }
}

TAPELOOP_SSD_CLONES void SsdBackward(const SsdDims& d, const float* xbc, const float* dtT,
                                     const float* a_log, const float* dskip, const float* S,
                                     const float* dy, float* dxbc, float* ddtT, float* da_log,
                                     float* dD, float* scratch, bool has_init) {
  const int64_t Q = d.Q, C = d.C(), P = d.P, N = d.N, H = d.H, di = d.di(), HPN = di * N, T = d.T;
  float* G = scratch;                // [Q, Q]
  float* Em = G + Q * Q;             // decay products, later dW * Em * G
  float* W = Em + Q * Q;             // W, later dW * W
  const int64_t ldw = RoundUp16(Q);  // dW's row stride
  float* dW = W + Q * Q;             // [Q, ldw]
  float* dG = dW + Q * ldw;          // summed over heads
  float* decay = dG + Q * Q;
  float* cum = decay + Q;
  float* dlc = cum + Q;
  float* wv = dlc + Q;
  float* bds = wv + Q;                   // [Q, di]  B dS^T, all heads
  float* cs = bds + Q * di;              // [Q, di]  C S_in^T, all heads
  float* xw = cs + Q * di;               // [Q, di]  x o wv, all heads
  float* dye = xw + Q * di;              // [Q, di]  dy o cum, all heads
  float* dS = dye + Q * di;              // [H, P, N]: d loss / d state leaving the current chunk
  float* dSprev = dS + HPN;              // [H, P, N]: d loss / d state entering it
  float* col_m = dSprev + HPN;           // [Q] column sums of dW o Em o G
  float* col_x = col_m + Q;              // [Q] column sums of dW o W
  float* row_x = col_x + Q;              // [Q] row sums of dW o W
  float* xT = row_x + Q;                 // [P, ldt]: the head's x transposed (vector path)
  float* lanes = xT + P * RoundUp16(Q);  // [Q, 16] row sums of dW o W by lane
  float* tails = lanes + 16 * Q;         // [Q] and of their scalar tails
  float* BT = tails + Q;                 // [N, RoundUp16(Q)]  B^T (prod)
  float* SinT = BT + N * RoundUp16(Q);   // [N, di]  S_in^T (prod)
  float* dST = SinT + N * di;            // [N, di]  dS^T (prod)
  const bool vec = P % 16 == 0;
  // Product in place of Gemm (di is a K in the products after the head loop; the products of
  // depth N only with N = 16, ssd.h).
  const bool prod = vec && N % 16 == 0 && N <= kProductMaxK && Q <= kProductMaxK;
  const bool prod_nt = prod && N == 16;
  const bool prod_di = prod && di <= kProductMaxK;
  std::fill(dS, dS + HPN, 0.f);
  for (int64_t c = d.nch() - 1; c >= 0; --c) {
    const int64_t t0 = c * Q, q = std::min(Q, T - t0);
    const float* Bc = xbc + t0 * C + di;
    const float* Cc = Bc + N;
    float* dBc = dxbc + t0 * C + di;
    float* dCc = dBc + N;
    const float* Sin = S + c * HPN;
    std::fill(dG, dG + q * q, 0.f);
    const bool state_in = has_init || c > 0;
    const bool state_grad = c < d.nch() - 1;
    ProductNT(prod_nt, q, q, N, Cc, C, Bc, C, BT, G, q);
    if (state_grad) ProductNT(prod_nt, q, di, N, Bc, C, dS, N, dST, bds, di);
    if (state_in) ProductNT(prod_nt, q, di, N, Cc, C, Sin, N, SinT, cs, di);
    SkipGrad(dy + t0 * di, di, xbc + t0 * C, C, q, H, P, dD);
    for (int64_t h = 0; h < H; ++h) {
      const float a = -std::exp(a_log[h]);
      const float* dtc = dtT + h * T + t0;
      float* ddtc = ddtT + h * T + t0;
      for (int64_t i = 0; i < q; ++i) decay[i] = dtc[i] * a;
      ExpInPlace(decay, q);
      DecayWeightsVec<true>(decay, G, dtc, q, !vec, Em, W, cum, nullptr);  // Em; W = Em o G o dt
      const float* xh = xbc + t0 * C + h * P;
      float* dxh = dxbc + t0 * C + h * P;
      const float* dyh = dy + t0 * di + h * P;
      // D skip (dD for all heads before the loop).
      const float Dh = dskip[h];
      for (int64_t i = 0; i < q; ++i) {
        const float* dyr = dyh + i * di;
        float* dxr = dxh + i * C;
        Axpy(Dh, dyr, dxr, P);
      }
      // Intra-chunk: y = W x.
      if (vec) {
        const int64_t ldt = RoundUp16(q);
        for (int64_t p = 0; p < P; p += 16) TransposeColumns16(xh + p, C, q, ldt, xT + p * ldt);
        LowerTriOuter(dyh, di, xT, ldt, q, P, dW, ldw);
        LowerTriTransposedTimesAdd(W, q, dyh, di, P, dxh, C);
      } else {
        Gemm(false, true, q, q, P, 1.f, dyh, di, xh, C, 0.f, dW, ldw);
        Gemm(true, false, q, P, q, 1.f, W, q, dyh, di, 1.f, dxh, C);
      }
      std::fill(dlc, dlc + q, 0.f);
      float dlcL = 0;
      const float* sin_h = Sin + h * P * N;
      const float* dSh = dS + h * P * N;
      float* dSin = dSprev + h * P * N;
      const float eL = cum[q - 1];
      const float* last = Em + (q - 1) * q;
      if (state_grad) {
        // S_out = eL S_in + sum_s last_s dt_s x_s B_s^T; dB += (x o wv) dS after the loop.
        for (int64_t s = 0; s < q; ++s) wv[s] = last[s] * dtc[s];
        for (int64_t s = 0; s < q; ++s) {
          const float ws = last[s], w = wv[s];
          const float* tr = bds + s * di + h * P;
          const float* xr = xh + s * C;
          float* dxr = dxh + s * C;
          float* o = xw + s * di + h * P;
          float dw = 0;
          for (int64_t p = 0; p < P; ++p) dw += xr[p] * tr[p];
          Axpy(w, tr, dxr, P);
          Scale(w, xr, o, P);
          dlcL += dw * w;
          dlc[s] -= dw * w;
          ddtc[s] += dw * ws;
        }
        if (state_in) {
          float dot = 0;
          for (int64_t k = 0; k < P * N; ++k) dot += dSh[k] * sin_h[k];
          for (int64_t k = 0; k < P * N; ++k) dSin[k] = eL * dSh[k];
          dlcL += eL * dot;
        }
      } else if (state_in) {
        std::fill(dSin, dSin + P * N, 0.f);
      }
      if (state_in) {
        // y_i += cum_i (C S_in^T)_i: d cum_i = dy_i . (C S_in^T)_i; dC and dS_in through
        // dy o cum after the loop.
        for (int64_t i = 0; i < q; ++i) {
          const float e = cum[i];
          const float* dyr = dyh + i * di;
          const float* csr = cs + i * di + h * P;
          float* o = dye + i * di + h * P;
          float de = 0;
          for (int64_t p = 0; p < P; ++p) de += dyr[p] * csr[p];
          Scale(e, dyr, o, P);
          dlc[i] += de * e;
        }
      }
      // W[i, j] = Em[i, j] G[i, j] dt_j: dG += dW Em dt_j; ddt_j += colsum(dW Em G);
      // d lc_i += rowsum(dW W) and d lc_j -= colsum(dW W).
      // Rows only up to the diagonal, rounded up to the vector width.
      std::fill(col_m, col_m + q, 0.f);
      std::fill(col_x, col_x + q, 0.f);
      for (int64_t i = 0; i < q; ++i) {
        const int64_t n = std::min(q, (i + 16) & ~int64_t{15});
        tails[i] = DecayProductGradRowSums(dW + i * ldw, G + i * q, dtc, n, Em + i * q, W + i * q,
                                           dG + i * q, col_m, col_x, lanes + 16 * i);
      }
      RowSums16(lanes, tails, q, row_x);
      for (int64_t j = 0; j < q; ++j) {
        ddtc[j] += col_m[j];
        dlc[j] += row_x[j];
        dlc[j] -= col_x[j];
      }
      dlc[q - 1] += dlcL;
      // lc_i = sum_{k<=i} dt_k a.
      float rc = 0, da = 0;
      for (int64_t i = q - 1; i >= 0; --i) {
        rc += dlc[i];
        ddtc[i] += a * rc;
        da += dtc[i] * rc;
      }
      da_log[h] += da * a;
    }
    // The products over all heads' columns.
    if (state_grad) {
      if (prod_di) {
        Product(q, N, di, xw, di, 1, dS, N, true, dBc, C);
      } else {
        Gemm(false, false, q, N, di, 1.f, xw, di, dS, N, 1.f, dBc, C);
      }
    }
    if (state_in) {
      if (prod_di) {
        Product(q, N, di, dye, di, 1, Sin, N, true, dCc, C);
      } else {
        Gemm(false, false, q, N, di, 1.f, dye, di, Sin, N, 1.f, dCc, C);
      }
      if (prod) {
        Product(di, N, q, dye, 1, di, Cc, C, true, dSprev, N);
      } else {
        Gemm(true, false, di, N, q, 1.f, dye, di, Cc, C, 1.f, dSprev, N);
      }
    }
    if (prod) {
      Product(q, N, q, dG, q, 1, Bc, C, true, dCc, C);
      Product(q, N, q, dG, 1, q, Cc, C, true, dBc, C);
    } else {
      Gemm(false, false, q, N, q, 1.f, dG, q, Bc, C, 1.f, dCc, C);
      Gemm(true, false, q, N, q, 1.f, dG, q, Cc, C, 1.f, dBc, C);
    }
    std::swap(dS, dSprev);
  }
}

// ---- The per-head reference ----

TAPELOOP_SSD_CLONES void SsdForwardPerHead(const SsdDims& d, const float* xbc, const float* dtT,
                                           const float* a_log, const float* dskip, float* S,
                                           float* y, float* scratch, bool has_init) {
  const int64_t Q = d.Q, C = d.C(), P = d.P, N = d.N, H = d.H, di = d.di(), HPN = H * P * N,
                T = d.T;
  float* G = scratch;
  float* W = G + Q * Q;
  float* tmp = W + Q * Q;                   // Q * max(P, N)
  float* decay = tmp + Q * std::max(P, N);  // Q
  float* cum = decay + Q;                   // Q
  float* wv = cum + Q;                      // Q
  for (int64_t c = 0; c < d.nch(); ++c) {
    const int64_t t0 = c * Q, q = std::min(Q, T - t0);
    const float* Bc = xbc + t0 * C + di;
    const float* Cc = Bc + N;
    Gemm(false, true, q, q, N, 1.f, Cc, C, Bc, C, 0.f, G, q);
    const bool state_in = has_init || c > 0;
    for (int64_t h = 0; h < H; ++h) {
      const float a = -std::exp(a_log[h]);
      const float* dtc = dtT + h * T + t0;
      for (int64_t i = 0; i < q; ++i) decay[i] = dtc[i] * a;
      ExpInPlace(decay, q);
      DecayMatrix(decay, q, W, cum);
      // State update: S_out = cum_L S_in + sum_s Em[L, s] dt_s x_s B_s^T.
      const float* last = W + (q - 1) * q;
      for (int64_t s = 0; s < q; ++s) wv[s] = last[s] * dtc[s];
      const float* xh = xbc + t0 * C + h * P;
      float* xh_w = tmp;  // [q, P]
      for (int64_t s = 0; s < q; ++s) {
        const float w = wv[s];
        const float* xr = xh + s * C;
        float* o = xh_w + s * P;
        for (int64_t p = 0; p < P; ++p) o[p] = w * xr[p];
      }
      float* Sin = S + c * HPN + h * P * N;
      float* Sout = S + (c + 1) * HPN + h * P * N;
      const float eL = cum[q - 1];
      for (int64_t k = 0; k < P * N; ++k) Sout[k] = state_in ? eL * Sin[k] : 0.f;
      Gemm(true, false, P, N, q, 1.f, xh_w, P, Bc, C, 1.f, Sout, N);
      // W = Em * G * dt_j (upper triangle stays 0).
      for (int64_t i = 0; i < q; ++i) {
        float* __restrict wr = W + i * q;
        const float* __restrict gr = G + i * q;
        for (int64_t j = 0; j < q; ++j) wr[j] *= gr[j] * dtc[j];
      }
      float* yh = y + t0 * di + h * P;
      Gemm(false, false, q, P, q, 1.f, W, q, xh, C, 0.f, yh, di);
      if (state_in) {
        Gemm(false, true, q, P, N, 1.f, Cc, C, Sin, N, 0.f, tmp, P);
        for (int64_t i = 0; i < q; ++i) {
          const float e = cum[i];
          float* yr = yh + i * di;
          const float* tr = tmp + i * P;
          for (int64_t p = 0; p < P; ++p) yr[p] += e * tr[p];
        }
      }
      const float Dh = dskip[h];
      for (int64_t i = 0; i < q; ++i) {
        float* yr = yh + i * di;
        const float* xr = xh + i * C;
        for (int64_t p = 0; p < P; ++p) yr[p] += Dh * xr[p];
      }
    }
  }
}

TAPELOOP_SSD_CLONES void SsdBackwardPerHead(const SsdDims& d, const float* xbc, const float* dtT,
                                            const float* a_log, const float* dskip, const float* S,
                                            const float* dy, float* dxbc, float* ddtT,
                                            float* da_log, float* dD, float* scratch,
                                            bool has_init) {
  const int64_t Q = d.Q, C = d.C(), P = d.P, N = d.N, H = d.H, di = d.di(), HPN = H * P * N,
                T = d.T;
  const int64_t M = std::max(P, N);
  float* G = scratch;
  float* Em = G + Q * Q;  // decay products, later dW * Em * G
  float* W = Em + Q * Q;  // W, later dW * W
  float* dW = W + Q * Q;
  float* dG = dW + Q * Q;
  float* tmp = dG + Q * Q;
  float* tmp2 = tmp + Q * M;
  float* tmp3 = tmp2 + Q * M;
  float* dye = tmp3 + Q * M;
  float* decay = dye + Q * M;
  float* cum = decay + Q;
  float* dlc = cum + Q;
  float* ones = dlc + Q;
  float* wv = ones + Q;
  float* dS = wv + Q;        // [H, P, N]: d loss / d state leaving the current chunk
  float* dSprev = dS + HPN;  // [H, P, N]: d loss / d state entering it
  for (int64_t i = 0; i < Q; ++i) ones[i] = 1.f;
  std::fill(dS, dS + HPN, 0.f);
  for (int64_t c = d.nch() - 1; c >= 0; --c) {
    const int64_t t0 = c * Q, q = std::min(Q, T - t0);
    const float* Bc = xbc + t0 * C + di;
    const float* Cc = Bc + N;
    float* dBc = dxbc + t0 * C + di;
    float* dCc = dBc + N;
    Gemm(false, true, q, q, N, 1.f, Cc, C, Bc, C, 0.f, G, q);
    std::fill(dG, dG + q * q, 0.f);
    const bool state_in = has_init || c > 0;
    const bool state_grad = c < d.nch() - 1;
    for (int64_t h = 0; h < H; ++h) {
      const float a = -std::exp(a_log[h]);
      const float* dtc = dtT + h * T + t0;
      float* ddtc = ddtT + h * T + t0;
      for (int64_t i = 0; i < q; ++i) decay[i] = dtc[i] * a;
      ExpInPlace(decay, q);
      DecayMatrix(decay, q, Em, cum);
      for (int64_t i = 0; i < q; ++i) {
        float* __restrict wr = W + i * q;
        const float* __restrict er = Em + i * q;
        const float* __restrict gr = G + i * q;
        for (int64_t j = 0; j < q; ++j) wr[j] = er[j] * gr[j] * dtc[j];
      }
      const float* xh = xbc + t0 * C + h * P;
      float* dxh = dxbc + t0 * C + h * P;
      const float* dyh = dy + t0 * di + h * P;
      // D skip.
      const float Dh = dskip[h];
      float dDh = 0;
      for (int64_t i = 0; i < q; ++i) {
        const float* dyr = dyh + i * di;
        const float* xr = xh + i * C;
        float* dxr = dxh + i * C;
        for (int64_t p = 0; p < P; ++p) dDh += dyr[p] * xr[p];
        for (int64_t p = 0; p < P; ++p) dxr[p] += Dh * dyr[p];
      }
      dD[h] += dDh;
      // Intra-chunk: y = W x.
      Gemm(false, true, q, q, P, 1.f, dyh, di, xh, C, 0.f, dW, q);
      Gemm(true, false, q, P, q, 1.f, W, q, dyh, di, 1.f, dxh, C);
      std::fill(dlc, dlc + q, 0.f);
      float dlcL = 0;
      const float* Sin = S + c * HPN + h * P * N;
      const float* dSh = dS + h * P * N;
      float* dSin = dSprev + h * P * N;
      const float eL = cum[q - 1];
      const float* last = Em + (q - 1) * q;
      if (state_grad) {
        // S_out = eL S_in + sum_s last_s dt_s x_s B_s^T.
        Gemm(false, true, q, P, N, 1.f, Bc, C, dSh, N, 0.f, tmp, P);    // [q, P]
        Gemm(false, false, q, N, P, 1.f, xh, C, dSh, N, 0.f, tmp2, N);  // [q, N]
        for (int64_t s = 0; s < q; ++s) wv[s] = last[s] * dtc[s];
        for (int64_t s = 0; s < q; ++s) {
          const float ws = last[s], w = wv[s];
          const float* tr = tmp + s * P;
          const float* xr = xh + s * C;
          float* dxr = dxh + s * C;
          float dw = 0;
          for (int64_t p = 0; p < P; ++p) dw += xr[p] * tr[p];
          for (int64_t p = 0; p < P; ++p) dxr[p] += w * tr[p];
          const float* t2 = tmp2 + s * N;
          float* dbr = dBc + s * C;
          for (int64_t n = 0; n < N; ++n) dbr[n] += w * t2[n];
          dlcL += dw * w;
          dlc[s] -= dw * w;
          ddtc[s] += dw * ws;
        }
        if (state_in) {
          float dot = 0;
          for (int64_t k = 0; k < P * N; ++k) dot += dSh[k] * Sin[k];
          for (int64_t k = 0; k < P * N; ++k) dSin[k] = eL * dSh[k];
          dlcL += eL * dot;
        }
      } else if (state_in) {
        std::fill(dSin, dSin + P * N, 0.f);
      }
      if (state_in) {
        // y_i += cum_i C_i S_in^T.
        Gemm(false, false, q, N, P, 1.f, dyh, di, Sin, N, 0.f, tmp3, N);  // [q, N]
        for (int64_t i = 0; i < q; ++i) {
          const float e = cum[i];
          const float* t3 = tmp3 + i * N;
          const float* cr = Cc + i * C;
          float* dcr = dCc + i * C;
          float de = 0;
          for (int64_t n = 0; n < N; ++n) de += t3[n] * cr[n];
          for (int64_t n = 0; n < N; ++n) dcr[n] += e * t3[n];
          dlc[i] += de * e;
          const float* dyr = dyh + i * di;
          float* o = dye + i * P;
          for (int64_t p = 0; p < P; ++p) o[p] = e * dyr[p];
        }
        Gemm(true, false, P, N, q, 1.f, dye, P, Cc, C, 1.f, dSin, N);
      }
      // W[i, j] = Em[i, j] G[i, j] dt_j: dG += dW Em dt_j; ddt_j += colsum(dW Em G);
      // d lc_i += rowsum(dW W) and d lc_j -= colsum(dW W).
      for (int64_t i = 0; i < q; ++i)
        DecayProductGradRow(dW + i * q, G + i * q, dtc, q, Em + i * q, W + i * q, dG + i * q);
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(q), static_cast<int>(q), 1.f, Em,
                  static_cast<int>(q), ones, 1, 1.f, ddtc, 1);
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(q), static_cast<int>(q), 1.f, W,
                  static_cast<int>(q), ones, 1, 1.f, dlc, 1);
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(q), static_cast<int>(q), -1.f, W,
                  static_cast<int>(q), ones, 1, 1.f, dlc, 1);
      dlc[q - 1] += dlcL;
      // lc_i = sum_{k<=i} dt_k a.
      float rc = 0, da = 0;
      for (int64_t i = q - 1; i >= 0; --i) {
        rc += dlc[i];
        ddtc[i] += a * rc;
        da += dtc[i] * rc;
      }
      da_log[h] += da * a;
    }
    Gemm(false, false, q, N, q, 1.f, dG, q, Bc, C, 1.f, dCc, C);
    Gemm(true, false, q, N, q, 1.f, dG, q, Cc, C, 1.f, dBc, C);
    std::swap(dS, dSprev);
  }
}

}  // namespace tapeloop::engine::train
