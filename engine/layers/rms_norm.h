// RMSNorm (HF LlamaRMSNorm / Mamba2RMSNorm / NemotronHRMSNorm) and the gated RMSNorm of the
// Mamba-2 mixer (HF MambaRMSNormGated, and Zamba2RMSNormGated with groups as NemotronH uses):
//   h = x * silu(z); per group of group_size channels: h / sqrt(mean(h^2) + eps); times weight.
// mamba2 uses one group (the whole width), nemotron_h groups of inner / n_groups.
#ifndef TAPELOOP_ENGINE_LAYERS_RMS_NORM_H_
#define TAPELOOP_ENGINE_LAYERS_RMS_NORM_H_

#include <cstdint>
#include <vector>

#include "engine/layers/param_spec.h"

namespace tapeloop::engine {

// "weight" f32 [D], ones.
std::vector<ParamSpec> RmsNormParamSpecs(int64_t dim);

// y: f32 [rows, D] (may alias x); x: f32 [rows, D]; w: f32 [D].
void RmsNormForward(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps);

// y: f32 [rows, W] (may alias x); x, z: f32 [rows, W] with row strides ldx, ldz; w: f32 [W];
// group_size divides W.
void GatedRmsNormForward(float* y, const float* x, int64_t ldx, const float* z, int64_t ldz,
                         const float* w, int64_t rows, int64_t width, int64_t group_size, float eps);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_LAYERS_RMS_NORM_H_
