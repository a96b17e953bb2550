#include "engine/layers/mamba2.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/check.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/linear_packed.h"
#include "engine/kernels/vec.h"
#include "engine/layers/rms_norm.h"
#include "engine/parallel.h"
#include "engine/tensor.h"

namespace tapeloop::engine {
namespace {

inline float Silu(float v) { return v / (1.0f + std::exp(-v)); }

// torch.nn.functional.softplus with its default threshold (20): linear above it.
inline float Softplus(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }

inline float Dt(const Mamba2Dims& d, const Mamba2Weights& w, float raw, int h) {
  float dt = Softplus(raw + w.dt_bias[h]);
  return std::min(std::max(dt, d.dt_min), d.dt_max);
}

// Causal depthwise conv + SiLU over T rows of pre-conv xBC (ld = proj row), continuing from the
// conv state; writes xbc [T, conv_dim] and leaves the last K-1 input rows in the state.
void ConvForward(const Mamba2Dims& d, const Mamba2Weights& w, const float* in, int64_t ld,
                 int64_t T, float* conv_state, float* xbc) {
  const int64_t C = d.conv_dim(), K = d.conv_kernel;
  // Rows -(K-1) .. T-1 of the input, the first K-1 from the state.
  auto row = [&](int64_t t) -> const float* {
    return t < 0 ? conv_state + (t + K - 1) * C : in + t * ld;
  };
  std::vector<float> wt(K * C);  // f32 [K, C]: the conv weights transposed for contiguous loops
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t k = 0; k < K; ++k) wt[k * C + c] = w.conv_w[c * K + k];
  }
  for (int64_t t = 0; t < T; ++t) {
    float* o = xbc + t * C;
    for (int64_t c = 0; c < C; ++c) o[c] = w.conv_b ? w.conv_b[c] : 0.0f;
    for (int64_t k = 0; k < K; ++k) VecMulAdd(wt.data() + k * C, row(t - (K - 1) + k), o, C);
    for (int64_t c = 0; c < C; ++c) o[c] = Silu(o[c]);
  }
  // New state: the last K-1 rows of [state; in].
  std::vector<float> next((K - 1) * C);
  for (int64_t i = 0; i < K - 1; ++i) {
    std::memcpy(next.data() + i * C, row(T - (K - 1) + i), sizeof(float) * C);
  }
  if (K > 1) std::memcpy(conv_state, next.data(), sizeof(float) * next.size());
}

// Chunked SSD scan for one head over T tokens, continuing from h [P, N]; writes y (ld inner).
void SsdHead(const Mamba2Dims& d, const Mamba2Weights& w, int h, const float* xbc, const float* dt,
             int64_t T, float* ssm, float* y) {
  const int64_t C = d.conv_dim(), P = d.head_dim, N = d.state, inner = d.inner();
  const int64_t L = d.chunk, H = d.heads;
  const int g = h / (d.heads / d.groups);
  const float A = -std::exp(w.A_log[h]);
  const float Dh = w.D[h];
  const float* xh = xbc + h * P;                       // rows of x for this head, ld C
  const float* Bg = xbc + inner + g * N;               // ld C
  const float* Cg = xbc + inner + (d.groups + g) * N;  // ld C
  float* st = ssm + static_cast<int64_t>(h) * P * N;   // f32 [P, N]
  std::vector<float> cum(L), G(L * L), Y(L * P), Xw(L * P);
  for (int64_t c0 = 0; c0 < T; c0 += L) {
    const int64_t n = std::min(L, T - c0);
    double acc = 0.0;
    for (int64_t t = 0; t < n; ++t) {
      acc += static_cast<double>(dt[(c0 + t) * H + h]) * A;
      cum[t] = static_cast<float>(acc);
    }
    // Intra-chunk: G = C B^T masked by decay and dt, applied to x.
    Gemm(false, true, n, n, N, 1.0f, Cg + c0 * C, C, Bg + c0 * C, C, 0.0f, G.data(), n);
    for (int64_t t = 0; t < n; ++t) {
      float* gr = G.data() + t * n;
      for (int64_t s = 0; s <= t; ++s) gr[s] *= std::exp(cum[t] - cum[s]) * dt[(c0 + s) * H + h];
      for (int64_t s = t + 1; s < n; ++s) gr[s] = 0.0f;
    }
    Gemm(false, false, n, P, n, 1.0f, G.data(), n, xh + c0 * C, C, 0.0f, Y.data(), P);
    // Inter-chunk: contribution of the incoming state, C_t h^T scaled by exp(cum_t).
    std::vector<float> Yoff(n * P);
    Gemm(false, true, n, P, N, 1.0f, Cg + c0 * C, C, st, N, 0.0f, Yoff.data(), P);
    for (int64_t t = 0; t < n; ++t) {
      const float e = std::exp(cum[t]);
      const float* xr = xh + (c0 + t) * C;
      float* yr = y + (c0 + t) * inner + h * P;
      for (int64_t p = 0; p < P; ++p) yr[p] = Y[t * P + p] + e * Yoff[t * P + p] + Dh * xr[p];
    }
    // State update: h = exp(cum_last) h + sum_s exp(cum_last - cum_s) dt_s x_s B_s^T.
    const float last = cum[n - 1];
    for (int64_t s = 0; s < n; ++s) {
      const float ws = std::exp(last - cum[s]) * dt[(c0 + s) * H + h];
      const float* xr = xh + (c0 + s) * C;
      for (int64_t p = 0; p < P; ++p) Xw[s * P + p] = ws * xr[p];
    }
    Gemm(true, false, P, N, n, 1.0f, Xw.data(), P, Bg + c0 * C, C, std::exp(last), st, N);
  }
}

}  // namespace

std::vector<ParamSpec> Mamba2ParamSpecs(const Mamba2Dims& d) {
  std::vector<ParamSpec> s = {{"in_proj.weight", {d.proj_dim(), d.dim}, Init::kNormal}};
  if (d.proj_bias) s.push_back({"in_proj.bias", {d.proj_dim()}, Init::kZeros});
  s.push_back({"conv1d.weight", {d.conv_dim(), 1, d.conv_kernel}, Init::kConvUniform});
  if (d.conv_bias) s.push_back({"conv1d.bias", {d.conv_dim()}, Init::kZeros});
  s.push_back({"dt_bias", {d.heads}, Init::kMambaDtBias});
  s.push_back({"A_log", {d.heads}, Init::kMambaALog});
  s.push_back({"D", {d.heads}, Init::kOnes});
  s.push_back({"norm.weight", {d.inner()}, Init::kOnes});
  s.push_back({"out_proj.weight", {d.dim, d.inner()}, Init::kNormal});
  if (d.proj_bias) s.push_back({"out_proj.bias", {d.dim}, Init::kZeros});
  return s;
}

Mamba2Weights BindMamba2Weights(const Mamba2Dims& d, const ParamLookup& lookup) {
  Mamba2Weights w;
  w.in_proj_w = lookup("in_proj.weight");
  w.conv_w = lookup("conv1d.weight");
  if (d.conv_bias) w.conv_b = lookup("conv1d.bias");
  w.dt_bias = lookup("dt_bias");
  w.A_log = lookup("A_log");
  w.D = lookup("D");
  w.norm_w = lookup("norm.weight");
  w.out_proj_w = lookup("out_proj.weight");
  if (d.proj_bias) {
    w.in_proj_b = lookup("in_proj.bias");
    w.out_proj_b = lookup("out_proj.bias");
  }
  return w;
}

void Mamba2Forward(const Mamba2Dims& d, const Mamba2Weights& w, const float* x, int64_t T,
                   float* out, Mamba2State state, Mamba2Saved* saved) {
  const int64_t inner = d.inner(), C = d.conv_dim(), PD = d.proj_dim(), H = d.heads;
  if (saved) {
    saved->conv_in.assign(state.conv, state.conv + d.conv_state_size());
    saved->ssm_in.assign(state.ssm, state.ssm + d.ssm_state_size());
  }
  std::vector<float> proj(T * PD);  // f32 [T, inner + conv_dim + H]
  LinearForwardRef(proj.data(), x, w.in_proj_w, w.in_proj_b, T, d.dim, PD);
  std::vector<float> xbc(T * C);  // f32 [T, conv_dim]
  ConvForward(d, w, proj.data() + inner, PD, T, state.conv, xbc.data());
  std::vector<float> dt(T * H);  // f32 [T, H]
  for (int64_t t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) dt[t * H + h] = Dt(d, w, proj[t * PD + inner + C + h], h);
  }
  std::vector<float> y(T * inner);  // f32 [T, inner]
  ParallelFor(H, 1, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h)
      SsdHead(d, w, static_cast<int>(h), xbc.data(), dt.data(), T, state.ssm, y.data());
  });
  if (saved) {
    saved->proj = proj;
    saved->xbc = xbc;
    saved->dt = dt;
    saved->y = y;
  }
  GatedRmsNormForward(y.data(), y.data(), inner, proj.data(), PD, w.norm_w, T, inner, d.norm_group,
                      d.eps);
  LinearForwardRef(out, y.data(), w.out_proj_w, w.out_proj_b, T, inner, d.dim);
}

void Mamba2StepRef(const Mamba2Dims& d, const Mamba2Weights& w, const float* x, int64_t B,
                   float* out, const Mamba2State* states) {
  const int64_t inner = d.inner(), C = d.conv_dim(), PD = d.proj_dim(), H = d.heads;
  const int64_t P = d.head_dim, N = d.state, K = d.conv_kernel;
  std::vector<float> proj(B * PD);  // f32 [B, inner + conv_dim + H]
  LinearForwardRef(proj.data(), x, w.in_proj_w, w.in_proj_b, B, d.dim, PD);
  std::vector<float> xbc(B * C);    // f32 [B, conv_dim]
  std::vector<float> y(B * inner);  // f32 [B, inner]
  const int heads_per_group = d.heads / d.groups;
  ParallelFor(B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const float* in = proj.data() + b * PD + inner;
      float* cs = states[b].conv;
      float* o = xbc.data() + b * C;
      for (int64_t c = 0; c < C; ++c) {
        float acc = w.conv_b ? w.conv_b[c] : 0.0f;
        const float* wc = w.conv_w + c * K;
        for (int64_t k = 0; k < K - 1; ++k) acc += wc[k] * cs[k * C + c];
        acc += wc[K - 1] * in[c];
        o[c] = Silu(acc);
      }
      if (K > 1) {
        std::memmove(cs, cs + C, sizeof(float) * (K - 2) * C);
        std::memcpy(cs + (K - 2) * C, in, sizeof(float) * C);
      }
      for (int h = 0; h < H; ++h) {
        const int g = h / heads_per_group;
        const float dt = Dt(d, w, proj[b * PD + inner + C + h], h);
        const float dA = std::exp(dt * -std::exp(w.A_log[h]));
        const float* xh = o + h * P;
        const float* Bg = o + inner + g * N;
        const float* Cg = o + inner + (d.groups + g) * N;
        float* st = states[b].ssm + static_cast<int64_t>(h) * P * N;
        float* yh = y.data() + b * inner + h * P;
        for (int64_t p = 0; p < P; ++p) {
          yh[p] = SsmRowUpdate(st + p * N, dA, dt * xh[p], Bg, Cg, N) + w.D[h] * xh[p];
        }
      }
    }
  });
  GatedRmsNormForward(y.data(), y.data(), inner, proj.data(), PD, w.norm_w, B, inner, d.norm_group,
                      d.eps);
  LinearForwardRef(out, y.data(), w.out_proj_w, w.out_proj_b, B, inner, d.dim);
}

void Mamba2Step(const Mamba2Dims& d, const Mamba2Weights& w, const float* x, int64_t B, float* out,
                const Mamba2State* states) {
  const int64_t inner = d.inner(), C = d.conv_dim(), PD = d.proj_dim(), H = d.heads;
  const int64_t P = d.head_dim, N = d.state, K = d.conv_kernel, G = d.groups;
  const int64_t heads_per_group = H / G;
  TL_CHECK(d.norm_group > 0 && inner % d.norm_group == 0);
  float* proj = ThreadScratch(Scratch::kMambaProj, B * PD);  // f32 [B, inner + conv_dim + H]
  LinearForwardDecode(proj, x, w.in_proj_w, w.in_proj_packed, w.in_proj_b, B, d.dim, PD);
  // Per call (shared by the batch): the conv weights transposed f32 [K, C], A = -exp(A_log).
  std::vector<float> wt(K * C), A(H);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t k = 0; k < K; ++k) wt[k * C + c] = w.conv_w[c * K + k];
  }
  for (int64_t h = 0; h < H; ++h) A[h] = -std::exp(w.A_log[h]);
  float* y = ThreadScratch(Scratch::kMambaY, B * inner);  // f32 [B, inner]: gated, normed output
  ParallelFor(B, 4, [&](int64_t b0, int64_t b1) {
    std::vector<float> o(C), dA(H), dt(H), dx(P);  // xBC f32 [C]; per head f32 [H]; f32 [P]
    for (int64_t b = b0; b < b1; ++b) {
      const float* pr = proj + b * PD;  // [z | xBC | dt]
      const float* in = pr + inner;
      float* cs = states[b].conv;
      // Conv over [state rows; in] + SiLU, then shift the state.
      if (w.conv_b) {
        std::memcpy(o.data(), w.conv_b, sizeof(float) * C);
      } else {
        std::fill(o.begin(), o.end(), 0.0f);
      }
      for (int64_t k = 0; k < K - 1; ++k) VecMulAdd(wt.data() + k * C, cs + k * C, o.data(), C);
      VecMulAdd(wt.data() + (K - 1) * C, in, o.data(), C);
      VecSilu(o.data(), o.data(), C);
      if (K > 1) {
        std::memmove(cs, cs + C, sizeof(float) * (K - 2) * C);
        std::memcpy(cs + (K - 2) * C, in, sizeof(float) * C);
      }
      // dt = clamp(softplus(raw + dt_bias)), decay = exp(dt A).
      for (int64_t h = 0; h < H; ++h) {
        dt[h] = Dt(d, w, pr[inner + C + h], static_cast<int>(h));
        dA[h] = dt[h] * A[h];
      }
      VecExp(dA.data(), dA.data(), H);
      float* yb = y + b * inner;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / heads_per_group;
        const float* xh = o.data() + h * P;
        for (int64_t p = 0; p < P; ++p) dx[p] = dt[h] * xh[p];
        float* yh = yb + h * P;
        SsmHeadUpdate(states[b].ssm + h * P * N, P, N, dA[h], dx.data(), o.data() + inner + g * N,
                      o.data() + inner + (G + g) * N, yh);
        VecAxpy(w.D[h], xh, yh, P);
      }
      // Gated RMSNorm: y * silu(z), normalized per group, times the weight.
      VecMulSilu(yb, pr, yb, inner);
      for (int64_t g0 = 0; g0 < inner; g0 += d.norm_group) {
        const double ss = VecSumSquares(yb + g0, d.norm_group);
        const float inv = 1.0f / std::sqrt(static_cast<float>(ss / d.norm_group) + d.eps);
        VecScaleMul(w.norm_w + g0, inv, yb + g0, d.norm_group);
      }
    }
  });
  LinearForwardDecode(out, y, w.out_proj_w, w.out_proj_packed, w.out_proj_b, B, inner, d.dim);
}

}  // namespace tapeloop::engine
