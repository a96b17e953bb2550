// The Mamba-2 mixer (HF Mamba2Mixer / NemotronHMamba2Mixer, torch path semantics):
//   [z | xBC | dt] = in_proj(x)                  widths inner = H*P, conv_dim = inner + 2*G*N, H
//   xBC = silu(causal depthwise conv1d(xBC))      kernel K, per channel, optional bias
//   [x | B | C] = xBC                             x: [H, P], B, C: [G, N] (head h uses group h /
//   (H/G)) dt = clamp(softplus(dt + dt_bias), dt_min, dt_max);  A = -exp(A_log)        per head h_t
//   = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T;  y_t = h_t C_t + D x_t          h: [H, P, N] out =
//   out_proj(gated_rms_norm(y, z))          (rms_norm.h: groups of gated_norm_group_size)
// Forward runs a whole sequence in the chunked SSD form (chunks of chunk_size, starting from the
// given state); Step runs the recurrent form for one token of each of B sessions. Both advance
// the per-session state (Mamba2State). The two agree to float rounding.
#ifndef TAPELOOP_ENGINE_LAYERS_MAMBA2_H_
#define TAPELOOP_ENGINE_LAYERS_MAMBA2_H_

#include <cstdint>
#include <vector>

#include "engine/kernels/linear_packed.h"
#include "engine/layers/param_spec.h"

namespace tapeloop::engine {

struct Mamba2Dims {
  int64_t dim = 0;      // D
  int heads = 0;        // H
  int head_dim = 0;     // P
  int state = 0;        // N
  int groups = 1;       // G
  int conv_kernel = 4;  // K
  int chunk = 256;
  bool conv_bias = true;
  bool proj_bias = false;
  float eps = 1e-5f;       // gated norm
  int64_t norm_group = 0;  // gated norm group size (inner for mamba2, inner / G for nemotron_h)
  float dt_min = 0.0f, dt_max = 0.0f;  // clamp after softplus
  float time_step_min = 0.001f, time_step_max = 0.1f, time_step_floor = 1e-4f;  // dt_bias init

  int64_t inner() const { return int64_t{heads} * head_dim; }
  int64_t conv_dim() const { return inner() + 2 * int64_t{groups} * state; }
  int64_t proj_dim() const { return inner() + conv_dim() + heads; }
  int64_t conv_state_size() const { return int64_t{conv_kernel - 1} * conv_dim(); }
  int64_t ssm_state_size() const { return int64_t{heads} * head_dim * state; }
};

// in_proj.weight [inner+conv_dim+H, D], conv1d.weight [conv_dim, 1, K], conv1d.bias [conv_dim],
// dt_bias [H], A_log [H], D [H], norm.weight [inner], out_proj.weight [D, inner]
// (+ in_proj.bias, out_proj.bias when proj_bias).
std::vector<ParamSpec> Mamba2ParamSpecs(const Mamba2Dims& dims);

struct Mamba2Weights {
  const float* in_proj_w = nullptr;   // f32 [inner+conv_dim+H, D]
  const float* in_proj_b = nullptr;   // f32 [inner+conv_dim+H] or null
  const float* conv_w = nullptr;      // f32 [conv_dim, K]
  const float* conv_b = nullptr;      // f32 [conv_dim] or null
  const float* dt_bias = nullptr;     // f32 [H]
  const float* A_log = nullptr;       // f32 [H]
  const float* D = nullptr;           // f32 [H]
  const float* norm_w = nullptr;      // f32 [inner]
  const float* out_proj_w = nullptr;  // f32 [D, inner]
  const float* out_proj_b = nullptr;  // f32 [D] or null
  // Optional packed copies for Mamba2Step's products (kernels/linear_packed.h; owned by the
  // model).
  const PackedLinear* in_proj_packed = nullptr;
  const PackedLinear* out_proj_packed = nullptr;
};
Mamba2Weights BindMamba2Weights(const Mamba2Dims& dims, const ParamLookup& lookup);

// One session's state for one Mamba-2 layer (views into the session's storage).
struct Mamba2State {
  float* conv;  // f32 [K-1, conv_dim]: the last K-1 pre-conv xBC rows, oldest first
  float* ssm;   // f32 [H, P, N]
};

// What a backward pass needs (filled when Forward gets a non-null pointer).
struct Mamba2Saved {
  std::vector<float> conv_in;  // f32 [K-1, conv_dim] conv state before the call
  std::vector<float> ssm_in;   // f32 [H, P, N] SSM state before the call
  std::vector<float> proj;     // f32 [T, inner+conv_dim+H] in_proj output
  std::vector<float> xbc;      // f32 [T, conv_dim] after conv + SiLU
  std::vector<float> dt;       // f32 [T, H] after softplus and clamp
  std::vector<float> y;        // f32 [T, inner] SSM output incl. D skip, before the gated norm
};

// x, out: f32 [T, D]. Advances `state` by T tokens. Thread-safe for distinct states.
void Mamba2Forward(const Mamba2Dims& dims, const Mamba2Weights& w, const float* x, int64_t T,
                   float* out, Mamba2State state, Mamba2Saved* saved = nullptr);

// x, out: f32 [B, D], one token per session; states[b] advanced by one token. The fast path:
// per session, the conv, SiLU, the state update of each head and the gated norm run fused
// through the vectorized loops of kernels/vec.h (a polynomial exp). Equal to Mamba2StepRef to
// float rounding (tests/engine/layers/mamba2_step_test.cc). Thread-safe for distinct states.
void Mamba2Step(const Mamba2Dims& dims, const Mamba2Weights& w, const float* x, int64_t B,
                float* out, const Mamba2State* states);

// The plain reference of Mamba2Step (same contract): libm exp / log1p, one state row at a time,
// then GatedRmsNormForward over the batch.
void Mamba2StepRef(const Mamba2Dims& dims, const Mamba2Weights& w, const float* x, int64_t B,
                   float* out, const Mamba2State* states);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_LAYERS_MAMBA2_H_
