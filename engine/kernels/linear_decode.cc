// LinearForwardDecode: y = x w^T + b for the few rows of a batched decode step, as register-
// blocked dot products read straight from w's [out, in] rows (see linear.h).
#include <algorithm>
#include <cstdint>

#include "engine/kernels/linear.h"
#include "engine/parallel.h"

// The loops below need the vectorizer at full strength (-O2 uses its "very cheap" model).
#pragma GCC optimize("O3")
// The V16 helpers are always inlined into the clones, so the vector-ABI warning about passing
// V16 by value without AVX-512 does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TL_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TL_MULTIVERSION
#endif

namespace tapeloop::engine {
namespace {

// 16 floats as one GCC vector: one zmm register with AVX-512, two ymm with AVX2, four xmm
// otherwise.
typedef float V16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline V16 Load16(const float* p) {
  V16 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

// Pairwise tree sum of the 16 lanes.
__attribute__((always_inline)) inline float Sum16(V16 v) {
  v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
  v += __builtin_shufflevector(v, v, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
  return v[0];
}

// Lane j of the result = the sum of the 16 lanes of a[j] (a transposing tree: 15 adds and 30
// two-source shuffles for 16 sums, against 64 + 64 for sixteen Sum16).
__attribute__((always_inline)) inline V16 Sum16x16(const V16* a) {
  V16 u[8], v[4], w[2];
  for (int k = 0; k < 8; ++k) {  // u[k]: lanes 0-7 partial sums of a[k], 8-15 of a[k + 8]
    u[k] = __builtin_shufflevector(a[k], a[k + 8], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21,
                                   22, 23) +
           __builtin_shufflevector(a[k], a[k + 8], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28,
                                   29, 30, 31);
  }
  for (int k = 0; k < 4; ++k) {  // v[k]: groups of 4 lanes for a[k], a[k + 4], a[k + 8], a[k + 12]
    v[k] = __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25,
                                   26, 27) +
           __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28,
                                   29, 30, 31);
  }
  for (int k = 0; k < 2; ++k) {  // w[k]: pairs of lanes for a[k], a[k + 2], ..., a[k + 14]
    w[k] = __builtin_shufflevector(v[k], v[k + 2], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13,
                                   28, 29) +
           __builtin_shufflevector(v[k], v[k + 2], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14,
                                   15, 30, 31);
  }
  return __builtin_shufflevector(w[0], w[1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14,
                                 30) +
         __builtin_shufflevector(w[0], w[1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15,
                                 31);
}

// y[r, c] = x[r, :] . w[c, :] + b[c] for r < RB, c < RC (x rows ld in, w rows ld in, y rows ld
// ldy); the RB x RC accumulators stay in registers.
template <int RB, int RC>
__attribute__((always_inline)) inline void Block(const float* x, const float* w, const float* b,
                                                 int64_t in, float* y, int64_t ldy) {
  V16 acc[RB * RC] = {};
  int64_t i = 0;
  for (; i + 16 <= in; i += 16) {
    V16 xv[RB], wv[RC];
#pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) xv[r] = Load16(x + r * in + i);
#pragma GCC unroll 4
    for (int c = 0; c < RC; ++c) wv[c] = Load16(w + c * in + i);
#pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) {
#pragma GCC unroll 4
      for (int c = 0; c < RC; ++c) acc[r * RC + c] += xv[r] * wv[c];
    }
  }
  float s[RB * RC];
  if constexpr (RB * RC == 16) {
    const V16 sums = Sum16x16(acc);
    __builtin_memcpy(s, &sums, sizeof(s));
  } else {
    for (int k = 0; k < RB * RC; ++k) s[k] = Sum16(acc[k]);
  }
  for (; i < in; ++i) {  // in % 16 tail
    for (int r = 0; r < RB; ++r) {
      for (int c = 0; c < RC; ++c) s[r * RC + c] += x[r * in + i] * w[c * in + i];
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int c = 0; c < RC; ++c) y[r * ldy + c] = s[r * RC + c] + (b ? b[c] : 0.0f);
  }
}

// Rows [0, rows) x columns [c0, c1) of y, in blocks of 4 x 4.
template <int RC>
__attribute__((always_inline)) inline void Columns(float* y, const float* x, const float* w,
                                                   const float* b, int64_t rows, int64_t in,
                                                   int64_t out, int64_t c) {
  const float* wc = w + c * in;
  const float* bc = b ? b + c : nullptr;
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) Block<4, RC>(x + r * in, wc, bc, in, y + r * out + c, out);
  switch (rows - r) {
    case 3:
      Block<3, RC>(x + r * in, wc, bc, in, y + r * out + c, out);
      break;
    case 2:
      Block<2, RC>(x + r * in, wc, bc, in, y + r * out + c, out);
      break;
    case 1:
      Block<1, RC>(x + r * in, wc, bc, in, y + r * out + c, out);
      break;
    default:
      break;
  }
}

// Columns [c0, c1) of y for every row, in tiles of rows whose x rows fit in 16 KiB (L1), so
// each 4-column block of w is read once per tile and the tile's rows are re-read from L1.
TL_MULTIVERSION void DecodeSlice(float* y, const float* x, const float* w, const float* b,
                                 int64_t rows, int64_t in, int64_t out, int64_t c0, int64_t c1) {
  const int64_t tile = std::max<int64_t>(4, (4096 / std::max<int64_t>(in, 1)) / 4 * 4);
  for (int64_t r0 = 0; r0 < rows; r0 += tile) {
    const int64_t n = std::min(tile, rows - r0);
    const float* xt = x + r0 * in;
    float* yt = y + r0 * out;
    int64_t c = c0;
    for (; c + 4 <= c1; c += 4) Columns<4>(yt, xt, w, b, n, in, out, c);
    switch (c1 - c) {
      case 3:
        Columns<3>(yt, xt, w, b, n, in, out, c);
        break;
      case 2:
        Columns<2>(yt, xt, w, b, n, in, out, c);
        break;
      case 1:
        Columns<1>(yt, xt, w, b, n, in, out, c);
        break;
      default:
        break;
    }
  }
}

}  // namespace

void LinearForwardDecode(float* y, const float* x, const float* w, const float* b, int64_t rows,
                         int64_t in, int64_t out) {
  if (rows <= 0) return;
  // One row: BLAS sgemv packs nothing. Many rows: sgemm's packing is amortized and its kernel
  // is faster than the blocks here (measured on this project's Xeon, 128 x 560: 1.6x faster
  // than sgemm at 16 rows, equal at 50, 0.8x at 100).
  if (rows == 1 || rows > kMaxDecodeRows) {
    LinearForwardRef(y, x, w, b, rows, in, out);
    return;
  }
  // Split the output columns across threads in blocks of 16 when the product is big enough to
  // pay for the hand-off (as LinearForwardRef).
  const int64_t work = rows * in * out;
  if (work >= (int64_t{1} << 17) && out >= 32) {
    const int64_t blocks = (out + 15) / 16;
    const int64_t grain =
        std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, rows * in * 16));
    ParallelFor(blocks, grain, [&](int64_t b0, int64_t b1) {
      DecodeSlice(y, x, w, b, rows, in, out, b0 * 16, std::min(out, b1 * 16));
    });
    return;
  }
  DecodeSlice(y, x, w, b, rows, in, out, 0, out);
}

}  // namespace tapeloop::engine
