// The MLP block mixers for training, forward and backward side by side (CPU f32, one row of T
// tokens; no biases):
//   SwiGLU (HF LlamaMLP / MistralMLP):   out += down_proj(silu(gate_proj(u)) * up_proj(u))
//   relu^2 (HF NemotronHMLP, relu2):     out += down_proj(relu(up_proj(u))^2)
// Used by TransformerLm (SwiGLU) and NemotronHLm (relu^2).
//
// Thread safety: pure functions of their arguments; distinct rows may run concurrently with
// distinct saved / scratch buffers and gradient buffers.
#ifndef TAPELOOP_ENGINE_TRAIN_MLP_GRAD_H_
#define TAPELOOP_ENGINE_TRAIN_MLP_GRAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/train/params.h"
#include "engine/train/row_math.h"

namespace tapeloop::engine::train {

struct MlpDims {
  int64_t T = 0, D = 0, F = 0;  // F: intermediate width
  bool swiglu = true;           // false: relu^2
};

// The layer's tensors, consecutive in a ParamTable in this order (HF names under a prefix such
// as "model.layers.0.mlp." or "backbone.layers.1.mixer."): SwiGLU gate_proj.weight [F, D],
// up_proj.weight [F, D], down_proj.weight [D, F]; relu^2 up_proj.weight [F, D],
// down_proj.weight [D, F] (gate is null).
template <typename F>
struct MlpTensors {
  F *gate, *up, *down;
};
using MlpWeights = MlpTensors<const float>;
using MlpGrads = MlpTensors<float>;

inline int MlpTensorCount(const MlpDims& d) { return d.swiglu ? 3 : 2; }

template <typename F>
MlpTensors<F> BindMlp(F* flat, const ParamTable& table, int first, const MlpDims& d) {
  auto at = [&](int k) { return flat + table.offset(first + k); };
  if (d.swiglu) return {at(0), at(1), at(2)};
  return {nullptr, at(0), at(1)};
}

// Appends the layer's specs under `prefix`: U(+-1/sqrt(fan_in)), all decayed.
void AppendMlpSpecs(const std::string& prefix, const MlpDims& d, std::vector<ParamSpec>* specs);

struct MlpSaved {
  float* g;    // f32 [T, F]  gate_proj output (SwiGLU only; null for relu^2)
  float* up;   // f32 [T, F]  up_proj output
  float* a;    // f32 [T, F]  down_proj input
  float* den;  // f32 [T, F]  SiLU's 1 + exp(-g), kept for the backward (SwiGLU only)

  static MlpSaved Carve(const MlpDims& d, Carver& c);
};

// Per-row scratch of the backward pass, shared by every MLP layer of a model.
struct MlpScratch {
  float *da, *dg, *dup;  // f32 [T, F] each (dg: SwiGLU only)

  static MlpScratch Carve(const MlpDims& d, Carver& c);
};

// u f32 [T, D] (the normed block input); out f32 [T, D]: out += mlp(u). Fills `s`.
void MlpForward(const MlpDims& d, const MlpWeights& w, const float* u, const MlpSaved& s,
                float* out);

// Given dout = d loss / d out (f32 [T, D]): du (f32 [T, D]) is OVERWRITTEN with d loss / d u and
// the parameter gradients are ADDED to `g`.
void MlpBackward(const MlpDims& d, const MlpWeights& w, const float* u, const MlpSaved& s,
                 const MlpScratch& scratch, const float* dout, float* du, const MlpGrads& g);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_MLP_GRAD_H_
