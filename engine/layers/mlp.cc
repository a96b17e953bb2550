#include "engine/layers/mlp.h"

#include <algorithm>
#include <cmath>

#include "engine/kernels/linear.h"
#include "engine/kernels/linear_packed.h"
#include "engine/kernels/vec.h"
#include "engine/tensor.h"

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

void MlpStep(const MlpDims& d, const MlpWeights& w, const float* x, int64_t B, float* out) {
  const int64_t F = d.intermediate;
  float* act = ThreadScratch(Scratch::kMlpAct, B * F);  // f32 [B, F]: the input of down_proj
  if (d.kind == MlpKind::kSwiGlu) {
    float* gu = ThreadScratch(Scratch::kMlpGateUp, B * 2 * F);  // f32 [B, 2F]: gate | up per row
    if (w.up_w == w.gate_w + F * d.dim && w.gate_b == nullptr && w.up_b == nullptr) {
      LinearForwardDecode(gu, x, w.gate_w, w.gate_up_packed, nullptr, B, d.dim, 2 * F);
    } else {
      float* part = ThreadScratch(Scratch::kMlpPart, B * F);  // f32 [B, F]: gate or up
      for (int i = 0; i < 2; ++i) {
        LinearForwardDecode(part, x, i == 0 ? w.gate_w : w.up_w, i == 0 ? w.gate_b : w.up_b, B,
                            d.dim, F);
        for (int64_t b = 0; b < B; ++b) {
          std::copy(part + b * F, part + (b + 1) * F, gu + b * 2 * F + i * F);
        }
      }
    }
    for (int64_t b = 0; b < B; ++b) VecMulSilu(gu + b * 2 * F + F, gu + b * 2 * F, act + b * F, F);
  } else {
    LinearForwardDecode(act, x, w.up_w, w.gate_up_packed, w.up_b, B, d.dim, F);
    for (int64_t i = 0; i < B * F; ++i) {
      const float r = act[i] > 0.0f ? act[i] : 0.0f;
      act[i] = r * r;
    }
  }
  LinearForwardDecode(out, act, w.down_w, w.down_packed, w.down_b, B, F, d.dim);
}

}  // namespace tapeloop::engine
