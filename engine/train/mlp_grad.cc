#include "engine/train/mlp_grad.h"

// As mamba2_mixer_grad.cc: let GCC vectorize the elementwise loops (-O2 alone does not).
#pragma GCC optimize("O3")

#include <cmath>

#include "engine/train/vec_math.h"

namespace tapeloop::engine::train {

void AppendMlpSpecs(const std::string& p, const MlpDims& d, std::vector<ParamSpec>* specs) {
  auto lin = [](int64_t fan_in) {
    return InitUniform(1.f / std::sqrt(static_cast<float>(fan_in)));
  };
  if (d.swiglu) specs->push_back({p + "gate_proj.weight", {d.F, d.D}, lin(d.D), true});
  specs->push_back({p + "up_proj.weight", {d.F, d.D}, lin(d.D), true});
  specs->push_back({p + "down_proj.weight", {d.D, d.F}, lin(d.F), true});
}

MlpSaved MlpSaved::Carve(const MlpDims& d, Carver& c) {
  MlpSaved s;
  s.g = d.swiglu ? c.Take(d.T * d.F) : nullptr;
  s.up = c.Take(d.T * d.F);
  s.a = c.Take(d.T * d.F);
  s.den = d.swiglu ? c.Take(d.T * d.F) : nullptr;
  return s;
}

MlpScratch MlpScratch::Carve(const MlpDims& d, Carver& c) {
  MlpScratch s;
  s.da = c.Take(d.T * d.F);
  s.dg = d.swiglu ? c.Take(d.T * d.F) : nullptr;
  s.dup = c.Take(d.T * d.F);
  return s;
}

void MlpForward(const MlpDims& d, const MlpWeights& w, const float* u, const MlpSaved& s,
                float* out) {
  const int64_t T = d.T, D = d.D, F = d.F;
  if (d.swiglu) {
    Gemm(false, true, T, F, D, 1.f, u, D, w.gate, D, 0.f, s.g, F);
    Gemm(false, true, T, F, D, 1.f, u, D, w.up, D, 0.f, s.up, F);
    SiluArray(s.g, s.a, T * F, s.den);
    const float* __restrict up = s.up;
    float* __restrict a = s.a;
    for (int64_t i = 0; i < T * F; ++i) a[i] *= up[i];
  } else {
    Gemm(false, true, T, F, D, 1.f, u, D, w.up, D, 0.f, s.up, F);
    Relu2Array(s.up, s.a, T * F);
  }
  Gemm(false, true, T, D, F, 1.f, s.a, F, w.down, F, 1.f, out, D);
}

void MlpBackward(const MlpDims& d, const MlpWeights& w, const float* u, const MlpSaved& s,
                 const MlpScratch& sc, const float* dout, float* du, const MlpGrads& g) {
  const int64_t T = d.T, D = d.D, F = d.F;
  float *da = sc.da, *dg = sc.dg, *dup = sc.dup;
  // out += a Wd^T.
  Gemm(true, false, D, F, T, 1.f, dout, D, s.a, F, 1.f, g.down, F);
  Gemm(false, false, T, F, D, 1.f, dout, D, w.down, F, 0.f, da, F);
  if (d.swiglu) {
    // a = silu(g) * up.
    // silu(g) = g / den, as the forward's SiluArray computed it.
    for (int64_t i = 0; i < T * F; ++i) {
      const float sg = s.g[i] / s.den[i];
      dup[i] = da[i] * sg;
      dg[i] = da[i] * s.up[i];
    }
    SiluGradInPlace(s.g, dg, T * F, s.den);
    Gemm(true, false, F, D, T, 1.f, dg, F, u, D, 1.f, g.gate, D);
    Gemm(true, false, F, D, T, 1.f, dup, F, u, D, 1.f, g.up, D);
    Gemm(false, false, T, D, F, 1.f, dg, F, w.gate, D, 0.f, du, D);
    Gemm(false, false, T, D, F, 1.f, dup, F, w.up, D, 1.f, du, D);
  } else {
    // a = relu(up)^2: d up = da * 2 relu(up).
    Relu2Grad(s.up, da, dup, T * F);
    Gemm(true, false, F, D, T, 1.f, dup, F, u, D, 1.f, g.up, D);
    Gemm(false, false, T, D, F, 1.f, dup, F, w.up, D, 0.f, du, D);
  }
}

}  // namespace tapeloop::engine::train
