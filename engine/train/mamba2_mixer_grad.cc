#include "engine/train/mamba2_mixer_grad.h"

// The elementwise loops here are the trainer's hot path beside BLAS: let GCC vectorize them
// (-O2 alone does not for loops of unknown trip count). No -ffast-math: reductions keep their
// order, so results do not depend on the vector width. They do depend on FMA: GCC contracts
// a * b + c in C++ wherever the target has it, i.e. in the SSD's AVX-512 clones only (see
// vec_math.h); the mixer's own loops below are compiled with fp-contract=off.
#pragma GCC optimize("O3")
// The 16-float vector helpers below are always inlined: their by-value vector ABI never matters.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/check.h"
#include "engine/train/rms_norm_grad.h"
#include "engine/train/vec_math.h"

namespace tapeloop::engine::train {
namespace {

inline float Softplus(float v) { return v > 20.f ? v : std::log1p(std::exp(v)); }

// The SSD kernels' view of the sizes (V is unused here).
struct Dims {
  int64_t T, D, V, di, C, E, H, P, N, K, Q, nch;
};

// Chunked SSD forward for one layer of one row (see the header). xbc [T, C]; dtT [H, T] (dt
// transposed so each head's values are contiguous); S: [nch + 1][H, P, N] with S[0] the
// incoming state; y [T, di] (includes D x). scratch: SsdScratch(d) floats.
int64_t SsdScratch(const Dims& d) {
  const int64_t Q = d.Q, M = std::max(d.P, d.N);
  return 6 * Q * Q + 4 * Q * M + 8 * Q + 2 * d.H * d.P * d.N;
}

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
typedef float V16 __attribute__((vector_size(16 * sizeof(float))));
inline V16 Load16(const float* p) {
  V16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store16(float* p, V16 v) { std::memcpy(p, &v, sizeof(v)); }

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

__attribute__((target_clones("avx512f", "avx2", "default"))) void SsdForward(
    const Dims& d, const float* xbc, const float* dtT, const float* a_log, const float* dskip,
    float* S, float* y, float* scratch, bool has_init) {
  const int64_t Q = d.Q, C = d.C, P = d.P, N = d.N, H = d.H, di = d.di, HPN = H * P * N, T = d.T;
  float* G = scratch;
  float* W = G + Q * Q;
  float* tmp = W + Q * Q;                   // Q * max(P, N)
  float* decay = tmp + Q * std::max(P, N);  // Q
  float* cum = decay + Q;                   // Q
  float* wv = cum + Q;                      // Q
  for (int64_t c = 0; c < d.nch; ++c) {
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

// Backward of SsdForward. dy [T, di]; adds into dxbc [T, C] (x, B, C parts), ddtT [H, T],
// da_log [H], dD [H].
__attribute__((target_clones("avx512f", "avx2", "default"))) void SsdBackward(
    const Dims& d, const float* xbc, const float* dtT, const float* a_log, const float* dskip,
    const float* S, const float* dy, float* dxbc, float* ddtT, float* da_log, float* dD,
    float* scratch, bool has_init) {
  const int64_t Q = d.Q, C = d.C, P = d.P, N = d.N, H = d.H, di = d.di, HPN = H * P * N, T = d.T;
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
  for (int64_t c = d.nch - 1; c >= 0; --c) {
    const int64_t t0 = c * Q, q = std::min(Q, T - t0);
    const float* Bc = xbc + t0 * C + d.di;
    const float* Cc = Bc + N;
    float* dBc = dxbc + t0 * C + d.di;
    float* dCc = dBc + N;
    Gemm(false, true, q, q, N, 1.f, Cc, C, Bc, C, 0.f, G, q);
    std::fill(dG, dG + q * q, 0.f);
    const bool state_in = has_init || c > 0;
    const bool state_grad = c < d.nch - 1;
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

Dims SsdDims(const Mamba2MixerDims& m) {
  Dims d;
  d.T = m.T;
  d.D = m.D;
  d.V = 0;
  d.di = m.di();
  d.C = m.C();
  d.E = m.E();
  d.H = m.H;
  d.P = m.P;
  d.N = m.N;
  d.K = m.K;
  d.Q = m.Q;
  d.nch = m.nch();
  return d;
}

// [C, K] -> [K, C].
void TransposeConv(const float* cw_raw, int64_t C, int64_t K, float* cwt) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) cwt[k * C + c] = cw_raw[c * K + k];
}

}  // namespace

void AppendMamba2MixerSpecs(const std::string& m, int64_t D, int64_t H, int64_t P, int64_t N,
                            int64_t K, std::vector<ParamSpec>* specs) {
  const int64_t di = H * P, C = di + 2 * N, E = 2 * di + 2 * N + H;
  std::vector<ParamSpec>& s = *specs;
  s.push_back({m + "in_proj.weight", {E, D}, InitUniform(1.f / std::sqrt(float(D))), true});
  s.push_back({m + "conv1d.weight", {C, 1, K}, InitNormal(1.f / std::sqrt(float(K))), true});
  s.push_back({m + "conv1d.bias", {C}, InitZeros(), false});
  // dt ~ log-uniform in [1e-3, 1e-1]; dt_bias = softplus^-1(dt) (the prototype's init).
  s.push_back({m + "dt_bias",
               {H},
               [](Rng& rng, std::span<float> v) {
                 for (float& x : v) {
                   const double dt = std::exp(rng.Uniform() * (std::log(0.1) - std::log(0.001)) +
                                              std::log(0.001));
                   x = static_cast<float>(dt + std::log(-std::expm1(-dt)));
                 }
               },
               false});
  s.push_back({m + "A_log",
               {H},
               [](Rng& rng, std::span<float> v) {
                 for (float& x : v) x = std::log(rng.Uniform() * 15.f + 1.f);
               },
               false});
  s.push_back({m + "D", {H}, InitConstant(1.f), false});
  s.push_back({m + "norm.weight", {di}, InitConstant(1.f), false});
  s.push_back({m + "out_proj.weight", {D, di}, InitUniform(1.f / std::sqrt(float(di))), true});
}

Mamba2MixerSaved Mamba2MixerSaved::Carve(const Mamba2MixerDims& d, Carver& c) {
  const int64_t T = d.T;
  Mamba2MixerSaved s;
  s.proj = c.Take(T * d.E());
  s.pre = c.Take(T * d.C());
  s.xbc = c.Take(T * d.C());
  s.dt = c.Take(T * d.H);
  s.y = c.Take(T * d.di());
  s.g = c.Take(T * d.di());
  s.rg = c.Take(T);
  s.yn = c.Take(T * d.di());
  s.S = c.Take((d.nch() + 1) * d.ssm_state());
  return s;
}

Mamba2MixerScratch Mamba2MixerScratch::Carve(const Mamba2MixerDims& d, bool backward, Carver& c) {
  const int64_t T = d.T;
  Mamba2MixerScratch s{};
  s.ssd = c.Take(SsdScratch(SsdDims(d)));
  s.cwt = c.Take(2 * d.K * d.C());
  if (backward) {
    s.dyn = c.Take(T * d.di());
    s.dy = c.Take(T * d.di());
    s.dproj = c.Take(T * d.E());
    s.dxbc = c.Take(T * d.C());
    s.ddt = c.Take(T * d.H);
  }
  return s;
}

// The mixer's own elementwise loops (conv, gate, dt) also run as AVX2 / AVX-512 clones, without
// fused multiply-adds (fp-contract=off): each version rounds as the baseline x86-64 code does.
#define TAPELOOP_MIXER_CLONES \
  __attribute__((target_clones("avx512f", "avx2", "default"), optimize("O3", "fp-contract=off")))

TAPELOOP_MIXER_CLONES void Mamba2MixerForward(const Mamba2MixerDims& md,
                                              const Mamba2MixerWeights& w, const float* u,
                                              const float* conv_in, const float* ssm_in,
                                              const Mamba2MixerSaved& s,
                                              const Mamba2MixerScratch& scratch, float* out,
                                              float* conv_out, float* ssm_out) {
  const Dims d = SsdDims(md);
  const int64_t T = d.T, D = d.D, di = d.di, C = d.C, E = d.E, H = d.H, K = d.K;
  const int64_t HPN = H * d.P * d.N;
  float* proj = s.proj;
  float* pre = s.pre;
  float* xbc = s.xbc;
  float* dt = s.dt;
  float* y = s.y;
  float* g = s.g;
  float* S = s.S;

  Gemm(false, true, T, E, D, 1.f, u, D, w.in_proj, D, 0.f, proj, E);
  // Causal depthwise conv over xBC (proj columns [di, di + C)).
  float* cwt = scratch.cwt;  // [K, C]
  TransposeConv(w.conv_w, C, K, cwt);
  const float* cb = w.conv_b;
  for (int64_t t = 0; t < T; ++t) {
    float* o = pre + t * C;
    for (int64_t c = 0; c < C; ++c) o[c] = cb[c];
    for (int64_t k = 0; k < K; ++k) {
      const float* cw = cwt + k * C;
      const int64_t src = t - (K - 1) + k;
      const float* in;
      if (src >= 0) {
        in = proj + src * E + di;
      } else if (conv_in) {
        in = conv_in + (src + K - 1) * C;
      } else {
        continue;
      }
      for (int64_t c = 0; c < C; ++c) o[c] += cw[c] * in[c];
    }
  }
  SiluArray(pre, xbc, T * C);
  const float* dtb = w.dt_bias;
  const float dt_min = md.dt_min;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t hh = 0; hh < H; ++hh) {
      const float v = Softplus(proj[t * E + di + C + hh] + dtb[hh]);
      dt[hh * T + t] = dt_min > 0.f ? std::max(v, dt_min) : v;
    }
  if (ssm_in) {
    std::memcpy(S, ssm_in, sizeof(float) * HPN);
  } else {
    std::fill(S, S + HPN, 0.f);
  }
  SsdForward(d, xbc, dt, w.a_log, w.d, S, y, scratch.ssd, ssm_in != nullptr);
  // Gated RMSNorm: g = y * silu(z); yn = g * rg * w.
  for (int64_t t = 0; t < T; ++t) SiluArray(proj + t * E, g + t * di, di);
  for (int64_t i = 0; i < T * di; ++i) g[i] *= y[i];
  RmsNormForward(g, w.norm, T, di, md.eps, s.rg, s.yn);
  Gemm(false, true, T, D, di, 1.f, s.yn, di, w.out_proj, di, 1.f, out, D);

  if (conv_out) {
    for (int64_t i = 0; i < K - 1; ++i) {
      const int64_t src = T - (K - 1) + i;
      const float* in = src >= 0  ? proj + src * E + di
                        : conv_in ? conv_in + (src + K - 1) * C
                                  : nullptr;
      if (in) {
        std::memcpy(conv_out + i * C, in, sizeof(float) * C);
      } else {
        std::fill(conv_out + i * C, conv_out + (i + 1) * C, 0.f);
      }
    }
  }
  if (ssm_out) std::memcpy(ssm_out, S + d.nch * HPN, sizeof(float) * HPN);
}

TAPELOOP_MIXER_CLONES void Mamba2MixerBackward(const Mamba2MixerDims& md,
                                               const Mamba2MixerWeights& w, const float* u,
                                               const float* conv_in, bool has_ssm_in,
                                               const Mamba2MixerSaved& s,
                                               const Mamba2MixerScratch& scratch, const float* dout,
                                               float* du, const Mamba2MixerGrads& gr) {
  const Dims d = SsdDims(md);
  const int64_t T = d.T, D = d.D, di = d.di, C = d.C, E = d.E, H = d.H, K = d.K;
  const float* proj = s.proj;
  const float* pre = s.pre;
  const float* dt = s.dt;
  const float* y = s.y;
  float* dyn = scratch.dyn;
  float* dy = scratch.dy;
  float* dproj = scratch.dproj;
  float* dxbc = scratch.dxbc;
  float* ddt = scratch.ddt;

  // out_proj: out += yn Wout^T.
  Gemm(true, false, D, di, T, 1.f, dout, D, s.yn, di, 1.f, gr.out_proj, di);
  Gemm(false, false, T, di, D, 1.f, dout, D, w.out_proj, di, 0.f, dyn, di);
  // Gated norm: dg into dy's buffer first.
  float* dg = dy;
  std::fill(dg, dg + T * di, 0.f);
  RmsNormBackward(s.g, w.norm, s.rg, dyn, T, di, dg, gr.norm);
  // g = y * silu(z): dz into dproj[:, :di], dy = dg * silu(z).
  for (int64_t t = 0; t < T; ++t) {
    const float* z = proj + t * E;
    float* dz = dproj + t * E;
    SiluGrad(z, dz, di, y + t * di, dg + t * di);  // dz = dg * y * silu'(z), then dg *= silu(z)
  }
  // SSD backward.
  std::fill(dxbc, dxbc + T * C, 0.f);
  std::fill(ddt, ddt + T * H, 0.f);
  SsdBackward(d, s.xbc, dt, w.a_log, w.d, s.S, dy, dxbc, ddt, gr.a_log, gr.d, scratch.ssd,
              has_ssm_in);
  // dt = softplus(v): dv = ddt * sigmoid(v) = ddt * (1 - exp(-dt)); 0 where the clamp held.
  float* ddtb = gr.dt_bias;
  const float dt_min = md.dt_min;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t hh = 0; hh < H; ++hh) {
      float dv;
      if (dt_min > 0.f && Softplus(proj[t * E + di + C + hh] + w.dt_bias[hh]) < dt_min) {
        dv = 0.f;
      } else {
        dv = ddt[hh * T + t] * -std::expm1(-dt[hh * T + t]);
      }
      dproj[t * E + di + C + hh] = dv;
      ddtb[hh] += dv;
    }
  // xbc = silu(pre): dpre in place of dxbc.
  SiluGradInPlace(pre, dxbc, T * C);
  // Conv: dW, db, d input (into dproj's xBC columns).
  float* cwt = scratch.cwt;   // [K, C]
  float* dcwt = cwt + K * C;  // [K, C]
  TransposeConv(w.conv_w, C, K, cwt);
  std::fill(dcwt, dcwt + K * C, 0.f);
  float* dcb = gr.conv_b;
  for (int64_t t = 0; t < T; ++t) {
    float* dst = dproj + t * E + di;
    std::fill(dst, dst + C, 0.f);
  }
  for (int64_t t = 0; t < T; ++t) {
    const float* dp = dxbc + t * C;
    for (int64_t c = 0; c < C; ++c) dcb[c] += dp[c];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t src = t - (K - 1) + k;
      const float* cw = cwt + k * C;
      float* dcw = dcwt + k * C;
      const float* in;
      if (src >= 0) {
        in = proj + src * E + di;
        float* din = dproj + src * E + di;
        for (int64_t c = 0; c < C; ++c) din[c] += cw[c] * dp[c];
      } else if (conv_in) {
        in = conv_in + (src + K - 1) * C;
      } else {
        continue;
      }
      for (int64_t c = 0; c < C; ++c) dcw[c] += dp[c] * in[c];
    }
  }
  float* dcw_raw = gr.conv_w;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) dcw_raw[c * K + k] += dcwt[k * C + c];
  // in_proj.
  Gemm(true, false, E, D, T, 1.f, dproj, E, u, D, 1.f, gr.in_proj, D);
  Gemm(false, false, T, D, E, 1.f, dproj, E, w.in_proj, D, 0.f, du, D);
}

void Mamba2MixerStep(const Mamba2MixerDims& md, const Mamba2MixerWeights& w, const float* u,
                     int64_t R, float* conv, float* ssm, int64_t state_stride, float* out) {
  const int64_t D = md.D, di = md.di(), C = md.C(), E = md.E(), H = md.H, P = md.P, N = md.N,
                K = md.K;
  std::vector<float> proj(R * E), xbc(C), g(di), rg(1), yn(R * di), y(di);
  Gemm(false, true, R, E, D, 1.f, u, D, w.in_proj, D, 0.f, proj.data(), E);
  const float* cw = w.conv_w;
  const float* cb = w.conv_b;
  for (int64_t b = 0; b < R; ++b) {
    float* st = conv + b * state_stride;
    float* sm = ssm + b * state_stride;
    const float* in = &proj[b * E + di];
    for (int64_t c = 0; c < C; ++c) {
      float acc = cb[c] + cw[c * K + K - 1] * in[c];
      for (int64_t k = 0; k < K - 1; ++k) acc += cw[c * K + k] * st[k * C + c];
      xbc[c] = acc / (1.f + std::exp(-acc));
    }
    // Shift the conv state.
    if (K > 1) {
      std::memmove(st, st + C, sizeof(float) * (K - 2) * C);
      std::memcpy(st + (K - 2) * C, in, sizeof(float) * C);
    }
    const float* xb = xbc.data();
    const float* Bv = xb + di;
    const float* Cv = Bv + N;
    for (int64_t hh = 0; hh < H; ++hh) {
      float dtv = Softplus(proj[b * E + di + C + hh] + w.dt_bias[hh]);
      if (md.dt_min > 0.f) dtv = std::max(dtv, md.dt_min);
      const float dA = std::exp(dtv * -std::exp(w.a_log[hh]));
      for (int64_t p = 0; p < P; ++p) {
        float* sr = sm + (hh * P + p) * N;
        const float xv = xb[hh * P + p];
        float acc = 0;
        for (int64_t n = 0; n < N; ++n) {
          sr[n] = sr[n] * dA + dtv * xv * Bv[n];
          acc += sr[n] * Cv[n];
        }
        y[hh * P + p] = acc + w.d[hh] * xv;
      }
    }
    const float* z = &proj[b * E];
    for (int64_t i = 0; i < di; ++i) g[i] = y[i] * z[i] / (1.f + std::exp(-z[i]));
    RmsNormForward(g.data(), w.norm, 1, di, md.eps, rg.data(), &yn[b * di]);
  }
  Gemm(false, true, R, D, di, 1.f, yn.data(), di, w.out_proj, di, 1.f, out, D);
}

}  // namespace tapeloop::engine::train
