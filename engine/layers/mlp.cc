#include "engine/layers/mlp.h"

#include <cmath>

#include "engine/kernels/linear.h"

namespace tapeloop::engine {

std::vector<ParamSpec> MlpParamSpecs(const MlpDims& d) {
  std::vector<ParamSpec> specs;
  if (d.kind == MlpKind::kSwiGlu) {
    specs.push_back({"gate_proj.weight", {d.intermediate, d.dim}, Init::kNormal});
    if (d.bias) specs.push_back({"gate_proj.bias", {d.intermediate}, Init::kZeros});
  }
  specs.push_back({"up_proj.weight", {d.intermediate, d.dim}, Init::kNormal});
  if (d.bias) specs.push_back({"up_proj.bias", {d.intermediate}, Init::kZeros});
  specs.push_back({"down_proj.weight", {d.dim, d.intermediate}, Init::kNormal});
  if (d.bias) specs.push_back({"down_proj.bias", {d.dim}, Init::kZeros});
  return specs;
}

MlpWeights BindMlpWeights(const MlpDims& d, const ParamLookup& lookup) {
  MlpWeights w;
  if (d.kind == MlpKind::kSwiGlu) {
    w.gate_w = lookup("gate_proj.weight");
    if (d.bias) w.gate_b = lookup("gate_proj.bias");
  }
  w.up_w = lookup("up_proj.weight");
  w.down_w = lookup("down_proj.weight");
  if (d.bias) {
    w.up_b = lookup("up_proj.bias");
    w.down_b = lookup("down_proj.bias");
  }
  return w;
}

void MlpForward(const MlpDims& d, const MlpWeights& w, const float* x, int64_t T, float* out,
                MlpSaved* saved) {
  const int64_t F = d.intermediate;
  std::vector<float> up(T * F);  // f32 [T, F]
  LinearForwardRef(up.data(), x, w.up_w, w.up_b, T, d.dim, F);
  if (saved) saved->up = up;
  if (d.kind == MlpKind::kSwiGlu) {
    std::vector<float> gate(T * F);  // f32 [T, F]
    LinearForwardRef(gate.data(), x, w.gate_w, w.gate_b, T, d.dim, F);
    if (saved) saved->gate = gate;
    for (int64_t i = 0; i < T * F; ++i) {
      const float g = gate[i];
      up[i] = (g / (1.0f + std::exp(-g))) * up[i];
    }
  } else {
    for (int64_t i = 0; i < T * F; ++i) {
      const float r = up[i] > 0.0f ? up[i] : 0.0f;
      up[i] = r * r;
    }
  }
  if (saved) saved->act = up;
  LinearForwardRef(out, up.data(), w.down_w, w.down_b, T, F, d.dim);
}

}  // namespace tapeloop::engine
