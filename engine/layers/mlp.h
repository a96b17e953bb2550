// MLP block mixers.
//   SwiGLU (llama, mistral):   down_proj(silu(gate_proj(x)) * up_proj(x))
//   relu^2 (nemotron_h):       down_proj(relu(up_proj(x))^2)
// Rows are independent, so Forward serves a whole sequence and a batched decode step alike.
#ifndef TAPELOOP_ENGINE_LAYERS_MLP_H_
#define TAPELOOP_ENGINE_LAYERS_MLP_H_

#include <cstdint>
#include <vector>

#include "engine/kernels/linear_packed.h"
#include "engine/layers/param_spec.h"
#include "engine/models/config.h"

namespace tapeloop::engine {

struct MlpDims {
  int64_t dim = 0;           // D
  int64_t intermediate = 0;  // F
  MlpKind kind = MlpKind::kSwiGlu;
  bool bias = false;
};

// SwiGLU: gate_proj.weight [F, D], up_proj.weight [F, D], down_proj.weight [D, F] (+ .bias
// [F], [F], [D] when bias). relu^2: up_proj and down_proj only. Weights N(0, init range).
std::vector<ParamSpec> MlpParamSpecs(const MlpDims& dims);

struct MlpWeights {
  const float* gate_w = nullptr;  // f32 [F, D] (SwiGLU only)
  const float* gate_b = nullptr;  // f32 [F] or null
  const float* up_w = nullptr;    // f32 [F, D]
  const float* up_b = nullptr;    // f32 [F] or null
  const float* down_w = nullptr;  // f32 [D, F]
  const float* down_b = nullptr;  // f32 [D] or null
  // Optional packed copies for MlpStep's products (kernels/linear_packed.h; owned by the model):
  // SwiGLU's gate and up as one f32 [2F, D] (only when up_w follows gate_w, source() == gate_w)
  // or ReLU^2's up f32 [F, D]; and down_proj.
  const PackedLinear* gate_up_packed = nullptr;
  const PackedLinear* down_packed = nullptr;
};
MlpWeights BindMlpWeights(const MlpDims& dims, const ParamLookup& lookup);

// What a backward pass needs (filled when Forward gets a non-null pointer).
struct MlpSaved {
  std::vector<float> gate;  // f32 [T, F] pre-activation (SwiGLU only)
  std::vector<float> up;    // f32 [T, F] pre-activation
  std::vector<float> act;   // f32 [T, F] input of down_proj
};

// out: f32 [T, D]; x: f32 [T, D]. Thread-safe for distinct outputs. The plain reference (BLAS
// products, libm exp) and the sequence path.
void MlpForward(const MlpDims& dims, const MlpWeights& w, const float* x, int64_t T, float* out,
                MlpSaved* saved = nullptr);

// The decode step's MLP for B sessions (same contract as MlpForward without `saved`): gate and
// up in one product when their weights lie back to back (as the spec table puts them, without
// biases), the decode products of kernels/linear.h (LinearForwardDecode) and the vectorized SiLU
// of kernels/vec.h. Equal to MlpForward to float rounding (tests/engine/layers/mlp_test.cc).
void MlpStep(const MlpDims& dims, const MlpWeights& w, const float* x, int64_t B, float* out);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_LAYERS_MLP_H_
