#include "engine/train/mamba2_mixer_grad.h"

// The elementwise loops here are the trainer's hot path beside BLAS: let GCC vectorize them
// (-O2 alone does not for loops of unknown trip count). No -ffast-math: reductions keep their
// order, so results do not depend on the vector width. The SSD (ssd.cc) is contracted into
// fused multiply-adds in its AVX-512 clones (see vec_math.h); the mixer's own loops below are
// compiled with fp-contract=off.
#pragma GCC optimize("O3")
// The helpers below are inlined into those clones; no function in this file contracts either.
#pragma GCC optimize("fp-contract=off")
// The 16-float vector helpers are always inlined: their by-value vector ABI never matters.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/check.h"
#include "engine/train/rms_norm_grad.h"
#include "engine/train/ssd.h"
#include "engine/train/vec16.h"
#include "engine/train/vec_math.h"

namespace tapeloop::engine::train {
namespace {

inline float Softplus(float v) { return v > 20.f ? v : std::log1p(std::exp(v)); }

// The mixer's sizes as plain fields.
struct Dims {
  int64_t T, D, di, C, E, H, P, N, K, Q, nch;
};

Dims Sizes(const Mamba2MixerDims& m) {
  Dims d;
  d.T = m.T;
  d.D = m.D;
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

SsdDims Ssd(const Mamba2MixerDims& m) { return {m.T, m.H, m.P, m.N, m.Q}; }

// [C, K] -> [K, C].
void TransposeConv(const float* cw_raw, int64_t C, int64_t K, float* cwt) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) cwt[k * C + c] = cw_raw[c * K + k];
}

// Row `src` of a row's conv input: in row src for src >= 0, else row src + K - 1 of the state
// before the row (conv_in [K-1, C]); null when that state is zeros (conv_in null).
inline const float* ConvRow(const float* in, int64_t ldi, const float* conv_in, int64_t C,
                            int64_t K, int64_t src) {
  if (src >= 0) return in + src * ldi;
  return conv_in ? conv_in + (src + K - 1) * C : nullptr;
}

// The causal depthwise conv: pre[t, c] = cb[c] + sum_k cwt[k, c] in[t - (K-1) + k, c], k
// ascending (input row t at in + t * ldi; rows before the row from conv_in [K-1, C], null =
// zeros; pre f32 [T, C]). 64 columns at a time in registers, the plain loop's sums in its order.
constexpr int kConvLanes = 16, kConvVecs = 4, kConvBlock = kConvLanes * kConvVecs;

// acc[v] += a[16v .. 16v+15] * b[16v .. 16v+15] for v < NV (the product rounded, then the sum).
template <int NV>
__attribute__((always_inline)) inline void MulAddLanes(V16* acc, const float* a, const float* b) {
  for (int v = 0; v < NV; ++v) {
    V16 x, y;
    std::memcpy(&x, a + kConvLanes * v, sizeof(V16));
    std::memcpy(&y, b + kConvLanes * v, sizeof(V16));
    acc[v] += x * y;
  }
}

template <int NV>
__attribute__((always_inline)) inline void ConvForwardBlock(const float* in, int64_t ldi,
                                                            const float* conv_in, int64_t T,
                                                            int64_t C, int64_t K, const float* cwt,
                                                            const float* cb, float* pre) {
  for (int64_t t = 0; t < T; ++t) {
    V16 acc[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&acc[v], cb + kConvLanes * v, sizeof(V16));
    for (int64_t k = 0; k < K; ++k) {
      const float* x = ConvRow(in, ldi, conv_in, C, K, t - (K - 1) + k);
      if (x != nullptr) MulAddLanes<NV>(acc, cwt + k * C, x);
    }
    for (int v = 0; v < NV; ++v) std::memcpy(pre + t * C + kConvLanes * v, &acc[v], sizeof(V16));
  }
}

__attribute__((always_inline)) inline void ConvForward(const float* in, int64_t ldi,
                                                       const float* conv_in, int64_t T, int64_t C,
                                                       int64_t K, const float* cwt, const float* cb,
                                                       float* pre) {
  int64_t c = 0;
  for (; c + kConvBlock <= C; c += kConvBlock)
    ConvForwardBlock<kConvVecs>(in + c, ldi, conv_in ? conv_in + c : nullptr, T, C, K, cwt + c,
                                cb + c, pre + c);
  for (; c + kConvLanes <= C; c += kConvLanes)
    ConvForwardBlock<1>(in + c, ldi, conv_in ? conv_in + c : nullptr, T, C, K, cwt + c, cb + c,
                        pre + c);
  for (; c < C; ++c)
    for (int64_t t = 0; t < T; ++t) {
      float a = cb[c];
      for (int64_t k = 0; k < K; ++k) {
        if (const float* x = ConvRow(in, ldi, conv_in, C, K, t - (K - 1) + k))
          a += cwt[k * C + c] * x[c];
      }
      pre[t * C + c] = a;
    }
}

// The causal depthwise conv's backward given dp = d loss / d pre (f32 [T, C]), cwt the weight
// transposed [K, C], in the conv's input rows (row t at in + t * ldi; rows before the row from
// conv_in [K-1, C], null = zeros):
//   dcb[c] += sum_t dp[t, c];  dcwt[k, c] = sum_t dp[t, c] in[t - (K-1) + k, c] (OVERWRITTEN);
//   din[s, c] = sum_k cwt[k, c] dp[s + (K-1) - k, c] (OVERWRITTEN; row s at din + s * ldi).
// Every sum is taken in the order of the plain loop over t (the reference in the tests): t
// ascending, i.e. k descending for din, starting from 0 (or dcb). The sums run 64 columns at a
// time in registers instead of read-modify-writing a row of dcwt / din for every t.
template <int NV>
__attribute__((always_inline)) inline void ConvBackwardBlock(const float* dp, int64_t T, int64_t C,
                                                             int64_t K, const float* cwt,
                                                             const float* in, int64_t ldi,
                                                             const float* conv_in, float* dcb,
                                                             float* dcwt, float* din) {
  V16 acc[NV];
  // Bias.
  for (int v = 0; v < NV; ++v) std::memcpy(&acc[v], dcb + kConvLanes * v, sizeof(V16));
  for (int64_t t = 0; t < T; ++t)
    for (int v = 0; v < NV; ++v) {
      V16 x;
      std::memcpy(&x, dp + t * C + kConvLanes * v, sizeof(V16));
      acc[v] += x;
    }
  for (int v = 0; v < NV; ++v) std::memcpy(dcb + kConvLanes * v, &acc[v], sizeof(V16));
  // Weight: tap k sees input row t - (K-1) + k.
  for (int64_t k = 0; k < K; ++k) {
    for (int v = 0; v < NV; ++v) acc[v] = V16{};
    for (int64_t t = 0; t < T; ++t) {
      const float* x = ConvRow(in, ldi, conv_in, C, K, t - (K - 1) + k);
      if (x != nullptr) MulAddLanes<NV>(acc, dp + t * C, x);
    }
    for (int v = 0; v < NV; ++v) std::memcpy(dcwt + k * C + kConvLanes * v, &acc[v], sizeof(V16));
  }
  // Input: row s gets tap k from output row t = s + (K-1) - k, t < T, t ascending.
  for (int64_t s = 0; s < T; ++s) {
    for (int v = 0; v < NV; ++v) acc[v] = V16{};
    for (int64_t k = K - 1; k >= 0; --k) {
      const int64_t t = s + (K - 1) - k;
      if (t >= T) break;
      MulAddLanes<NV>(acc, cwt + k * C, dp + t * C);
    }
    for (int v = 0; v < NV; ++v) std::memcpy(din + s * ldi + kConvLanes * v, &acc[v], sizeof(V16));
  }
}

// The same sums for columns [c0, c1), one column at a time (the ragged tail).
inline void ConvBackwardColumns(const float* dp, int64_t T, int64_t C, int64_t K, const float* cwt,
                                const float* in, int64_t ldi, const float* conv_in, int64_t c0,
                                int64_t c1, float* dcb, float* dcwt, float* din) {
  for (int64_t c = c0; c < c1; ++c) {
    float b = dcb[c];
    for (int64_t t = 0; t < T; ++t) b += dp[t * C + c];
    dcb[c] = b;
    for (int64_t k = 0; k < K; ++k) {
      float a = 0;
      for (int64_t t = 0; t < T; ++t) {
        if (const float* x = ConvRow(in, ldi, conv_in, C, K, t - (K - 1) + k))
          a += dp[t * C + c] * x[c];
      }
      dcwt[k * C + c] = a;
    }
    for (int64_t s = 0; s < T; ++s) {
      float a = 0;
      for (int64_t k = K - 1; k >= 0; --k) {
        const int64_t t = s + (K - 1) - k;
        if (t >= T) break;
        a += cwt[k * C + c] * dp[t * C + c];
      }
      din[s * ldi + c] = a;
    }
  }
}

__attribute__((always_inline)) inline void ConvBackward(const float* dp, int64_t T, int64_t C,
                                                        int64_t K, const float* cwt,
                                                        const float* in, int64_t ldi,
                                                        const float* conv_in, float* dcb,
                                                        float* dcwt, float* din) {
  int64_t c = 0;
  for (; c + kConvBlock <= C; c += kConvBlock)
    ConvBackwardBlock<kConvVecs>(dp + c, T, C, K, cwt + c, in + c, ldi,
                                 conv_in ? conv_in + c : nullptr, dcb + c, dcwt + c, din + c);
  for (; c + kConvLanes <= C; c += kConvLanes)
    ConvBackwardBlock<1>(dp + c, T, C, K, cwt + c, in + c, ldi, conv_in ? conv_in + c : nullptr,
                         dcb + c, dcwt + c, din + c);
  ConvBackwardColumns(dp, T, C, K, cwt, in, ldi, conv_in, c, C, dcb, dcwt, din);
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
  s.den_pre = c.Take(T * d.C());
  s.den_z = c.Take(T * d.di());
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
  s.ssd = c.Take(SsdScratchSize(Ssd(d)));
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
  const Dims d = Sizes(md);
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
  ConvForward(proj + di, E, conv_in, T, C, K, cwt, w.conv_b, pre);
  SiluArray(pre, xbc, T * C, s.den_pre);
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
  SsdForward(Ssd(md), xbc, dt, w.a_log, w.d, S, y, scratch.ssd, ssm_in != nullptr);
  // Gated RMSNorm: g = y * silu(z); yn = g * rg * w.
  for (int64_t t = 0; t < T; ++t) SiluArray(proj + t * E, g + t * di, di, s.den_z + t * di);
  for (int64_t i = 0; i < T * di; ++i) g[i] *= y[i];
  RmsNormForward(g, w.norm, T, di, md.eps, s.rg, s.yn);
  Gemm(false, true, T, D, di, 1.f, s.yn, di, w.out_proj, di, 1.f, out, D);

  if (conv_out) {
    for (int64_t i = 0; i < K - 1; ++i) {
      const float* in = ConvRow(proj + di, E, conv_in, C, K, T - (K - 1) + i);
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
  const Dims d = Sizes(md);
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
    // dz = dg * y * silu'(z), then dg *= silu(z).
    SiluGrad(z, dz, di, y + t * di, dg + t * di, s.den_z + t * di);
  }
  // SSD backward.
  std::fill(dxbc, dxbc + T * C, 0.f);
  std::fill(ddt, ddt + T * H, 0.f);
  SsdBackward(Ssd(md), s.xbc, dt, w.a_log, w.d, s.S, dy, dxbc, ddt, gr.a_log, gr.d, scratch.ssd,
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
  SiluGradInPlace(pre, dxbc, T * C, s.den_pre);
  // Conv: dW, db, d input (into dproj's xBC columns).
  float* cwt = scratch.cwt;   // [K, C]
  float* dcwt = cwt + K * C;  // [K, C]
  TransposeConv(w.conv_w, C, K, cwt);
  ConvBackward(dxbc, T, C, K, cwt, proj + di, E, conv_in, gr.conv_b, dcwt, dproj + di);
  float* dcw_raw = gr.conv_w;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) dcw_raw[c * K + k] += dcwt[k * C + c];
  // in_proj.
  Gemm(true, false, E, D, T, 1.f, dproj, E, u, D, 1.f, gr.in_proj, D);
  Gemm(false, false, T, D, E, 1.f, dproj, E, w.in_proj, D, 0.f, du, D);
}

TAPELOOP_MIXER_CLONES void Mamba2ConvForward(const float* in, int64_t ldi, const float* conv_in,
                                             int64_t T, int64_t C, int64_t K, const float* cwt,
                                             const float* cb, float* pre) {
  ConvForward(in, ldi, conv_in, T, C, K, cwt, cb, pre);
}

TAPELOOP_MIXER_CLONES void Mamba2ConvBackward(const float* dp, int64_t T, int64_t C, int64_t K,
                                              const float* cwt, const float* in, int64_t ldi,
                                              const float* conv_in, float* dcb, float* dcwt,
                                              float* din) {
  ConvBackward(dp, T, C, K, cwt, in, ldi, conv_in, dcb, dcwt, din);
}

// The plain loops (what the mixer ran before the register-blocked versions).
void Mamba2ConvForwardRef(const float* in, int64_t ldi, const float* conv_in, int64_t T, int64_t C,
                          int64_t K, const float* cwt, const float* cb, float* pre) {
  for (int64_t t = 0; t < T; ++t) {
    float* o = pre + t * C;
    for (int64_t c = 0; c < C; ++c) o[c] = cb[c];
    for (int64_t k = 0; k < K; ++k) {
      const float* cw = cwt + k * C;
      const float* x = ConvRow(in, ldi, conv_in, C, K, t - (K - 1) + k);
      if (x == nullptr) continue;
      for (int64_t c = 0; c < C; ++c) o[c] += cw[c] * x[c];
    }
  }
}

void Mamba2ConvBackwardRef(const float* dp_all, int64_t T, int64_t C, int64_t K, const float* cwt,
                           const float* in, int64_t ldi, const float* conv_in, float* dcb,
                           float* dcwt, float* din) {
  std::fill(dcwt, dcwt + K * C, 0.f);
  for (int64_t t = 0; t < T; ++t) std::fill(din + t * ldi, din + t * ldi + C, 0.f);
  for (int64_t t = 0; t < T; ++t) {
    const float* dp = dp_all + t * C;
    for (int64_t c = 0; c < C; ++c) dcb[c] += dp[c];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t src = t - (K - 1) + k;
      const float* cw = cwt + k * C;
      float* dcw = dcwt + k * C;
      const float* x = ConvRow(in, ldi, conv_in, C, K, src);
      if (x == nullptr) continue;
      if (src >= 0) {
        float* d = din + src * ldi;
        for (int64_t c = 0; c < C; ++c) d[c] += cw[c] * dp[c];
      }
      for (int64_t c = 0; c < C; ++c) dcw[c] += dp[c] * x[c];
    }
  }
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
