// The Mamba-2 mixer for training, forward and backward side by side (CPU f32, one row of T
// tokens). Semantics of HF Mamba2Mixer / NemotronHMamba2Mixer with n_groups = 1, no in/out
// projection bias, a conv bias, and the gated RMSNorm over the whole inner width with the gate
// applied before normalization (glossary: D model width, H heads, P head dim, N state, K conv
// kernel, di = H*P, C = di + 2N, E = 2 di + 2N + H):
//   [z | xBC | dt] = in_proj(u)                 z [T, di], xBC [T, C], dt [T, H]
//   xBC = silu(causal depthwise conv(xBC) + b)  starting from the row's conv state [K-1, C]
//   [x | B | C] = xBC                           x [T, H, P], B, C [T, N]
//   dt = max(softplus(dt + dt_bias), dt_min);  a = -exp(A_log)
//   S_t = exp(dt_t a) S_{t-1} + dt_t x_t B_t^T;  y_t = S_t C_t + D x_t       S [H, P, N]
//   out += out_proj(rms(y * silu(z)) * norm.weight)
// dt_min is 0 for HF Mamba2 (no clamp: softplus > 0) and time_step_min for NemotronH, which
// clamps dt to [time_step_min, inf); the clamp passes no gradient where it is active (torch.clamp).
// The SSM runs in the chunked SSD form (quadratic inside chunks of Q tokens, states passed
// between chunks; engine/train/ssd.h, with the heads' products batched per chunk); the backward
// pass walks the same chunks in reverse. Q = 1 is the plain recurrence. Used by Mamba2Lm and
// NemotronHLm.
//
// Thread safety: pure functions of their arguments; distinct rows may run concurrently with
// distinct saved / scratch buffers and gradient buffers.
#ifndef TAPELOOP_ENGINE_TRAIN_MAMBA2_MIXER_GRAD_H_
#define TAPELOOP_ENGINE_TRAIN_MAMBA2_MIXER_GRAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/train/params.h"
#include "engine/train/row_math.h"

namespace tapeloop::engine::train {

// Sizes of one mixer applied to one row of T tokens.
struct Mamba2MixerDims {
  int64_t T = 0, D = 0, H = 0, P = 0, N = 0, K = 4, Q = 64;
  float eps = 1e-5f;   // gated norm
  float dt_min = 0.f;  // clamp of dt after softplus; 0 = none

  int64_t di() const { return H * P; }
  int64_t C() const { return di() + 2 * N; }
  int64_t E() const { return 2 * di() + 2 * N + H; }
  int64_t nch() const { return (T + Q - 1) / Q; }  // SSD chunks
  int64_t conv_state() const { return (K - 1) * C(); }
  int64_t ssm_state() const { return H * P * N; }
};

// The mixer's tensors, consecutive in a ParamTable in this order (HF names under a prefix
// such as "backbone.layers.3.mixer."):
//   in_proj.weight [E, D], conv1d.weight [C, 1, K], conv1d.bias [C], dt_bias [H], A_log [H],
//   D [H], norm.weight [di], out_proj.weight [D, di].
template <typename F>
struct Mamba2MixerTensors {
  F *in_proj, *conv_w, *conv_b, *dt_bias, *a_log, *d, *norm, *out_proj;
};
using Mamba2MixerWeights = Mamba2MixerTensors<const float>;
using Mamba2MixerGrads = Mamba2MixerTensors<float>;
constexpr int kMamba2MixerTensors = 8;

// Views of the mixer whose first tensor is table index `first` in a flat buffer.
template <typename F>
Mamba2MixerTensors<F> BindMamba2Mixer(F* flat, const ParamTable& table, int first) {
  auto at = [&](int k) { return flat + table.offset(first + k); };
  return {at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(7)};
}

// Appends the mixer's specs under `prefix` (PyTorch-default / the prototype's initializers:
// in/out_proj U(+-1/sqrt(fan_in)), conv N(0, 1/K), dt ~ log-uniform [1e-3, 1e-1] through
// softplus^-1, A = U[1, 16], D = 1, norm 1; decay on in_proj, conv1d.weight, out_proj only).
void AppendMamba2MixerSpecs(const std::string& prefix, int64_t D, int64_t H, int64_t P, int64_t N,
                            int64_t K, std::vector<ParamSpec>* specs);

// What the forward pass keeps for the backward pass (views into the row's workspace).
struct Mamba2MixerSaved {
  float* proj;     // f32 [T, E]   in_proj output
  float* pre;      // f32 [T, C]   conv output before SiLU
  float* xbc;      // f32 [T, C]   after SiLU
  float* den_pre;  // f32 [T, C]  SiLU's 1 + exp(-pre), kept for the backward
  float* den_z;    // f32 [T, di] SiLU's 1 + exp(-z)
  float* dt;       // f32 [H, T]   after softplus (and clamp), transposed
  float* y;        // f32 [T, di]  SSM output incl. D x
  float* g;        // f32 [T, di]  y * silu(z)
  float* rg;       // f32 [T]      gated norm's reciprocal RMS
  float* yn;       // f32 [T, di]  gated norm output (out_proj input)
  float* S;        // f32 [nch + 1, H, P, N] states at chunk boundaries, S[0] the incoming one

  static Mamba2MixerSaved Carve(const Mamba2MixerDims& d, Carver& c);
};

// Per-row scratch shared by every mixer of a model (not kept between layers).
struct Mamba2MixerScratch {
  float* ssd;    // SSD forward / backward scratch
  float* cwt;    // f32 [2, K, C]: conv weight and its gradient transposed
  float* dyn;    // f32 [T, di]
  float* dy;     // f32 [T, di]
  float* dproj;  // f32 [T, E]
  float* dxbc;   // f32 [T, C]
  float* ddt;    // f32 [H, T]

  // backward = false: only what the forward pass needs.
  static Mamba2MixerScratch Carve(const Mamba2MixerDims& d, bool backward, Carver& c);
};

// u f32 [T, D] (the normed block input); out f32 [T, D]: out += mixer(u). conv_in f32 [K-1, C]
// and ssm_in f32 [H, P, N] are the state before the row (null = zeros); conv_out / ssm_out
// (same shapes, null = not wanted) receive the state after it. Fills `s`.
void Mamba2MixerForward(const Mamba2MixerDims& d, const Mamba2MixerWeights& w, const float* u,
                        const float* conv_in, const float* ssm_in, const Mamba2MixerSaved& s,
                        const Mamba2MixerScratch& scratch, float* out, float* conv_out,
                        float* ssm_out);

// Given dout = d loss / d out (f32 [T, D]): du (f32 [T, D]) is OVERWRITTEN with d loss / d u and
// the parameter gradients are ADDED to `g`. u, conv_in and whether an ssm state came in
// (has_ssm_in) as in the forward call that filled `s`. No gradient flows into the states.
void Mamba2MixerBackward(const Mamba2MixerDims& d, const Mamba2MixerWeights& w, const float* u,
                         const float* conv_in, bool has_ssm_in, const Mamba2MixerSaved& s,
                         const Mamba2MixerScratch& scratch, const float* dout, float* du,
                         const Mamba2MixerGrads& g);

// The mixer's causal depthwise conv over one row, forward and backward (Mamba2MixerForward /
// Backward run the same code inlined). Input row t at in + t * ldi (t < T); the K-1 rows before
// the row from conv_in f32 [K-1, C] (null = zeros); cwt f32 [K, C] the weight transposed, cb f32
// [C] the bias:
//   pre[t, c] = cb[c] + sum_k cwt[k, c] in[t - (K-1) + k, c]                pre f32 [T, C]
// Backward given dp = d loss / d pre f32 [T, C]: ADDS sum_t dp[t, c] to dcb f32 [C]; OVERWRITES
// dcwt f32 [K, C] with d loss / d cwt and din (row s at din + s * ldi) with d loss / d in.
// 64 columns at a time in registers; every sum is taken in the order of the plain loops
// (Mamba2ConvForwardRef / Mamba2ConvBackwardRef, which fill and then add row by row), so the
// results are theirs bit for bit (up to the sign of zero).
void Mamba2ConvForward(const float* in, int64_t ldi, const float* conv_in, int64_t T, int64_t C,
                       int64_t K, const float* cwt, const float* cb, float* pre);
void Mamba2ConvForwardRef(const float* in, int64_t ldi, const float* conv_in, int64_t T, int64_t C,
                          int64_t K, const float* cwt, const float* cb, float* pre);
void Mamba2ConvBackward(const float* dp, int64_t T, int64_t C, int64_t K, const float* cwt,
                        const float* in, int64_t ldi, const float* conv_in, float* dcb, float* dcwt,
                        float* din);
void Mamba2ConvBackwardRef(const float* dp, int64_t T, int64_t C, int64_t K, const float* cwt,
                           const float* in, int64_t ldi, const float* conv_in, float* dcb,
                           float* dcwt, float* din);

// The recurrent form for one token of each of R independent rows (decoding): u f32 [R, D];
// conv f32 [K-1, C] and ssm f32 [H, P, N] of row b at conv + b * state_stride and
// ssm + b * state_stride, advanced in place; out f32 [R, D]: out += mixer(u).
void Mamba2MixerStep(const Mamba2MixerDims& d, const Mamba2MixerWeights& w, const float* u,
                     int64_t R, float* conv, float* ssm, int64_t state_stride, float* out);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_MAMBA2_MIXER_GRAD_H_
