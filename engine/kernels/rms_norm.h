// RMSNorm over the last dimension: y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w.
//
// RmsNormForwardRef is the plain CPU reference (and the CPU backend). RmsNormForwardCuda runs
// the same computation on device pointers; it exists only in CUDA builds
// (TAPELOOP_HAVE_CUDA) and is tested against the reference on a GPU machine.
#ifndef TAPELOOP_ENGINE_KERNELS_RMS_NORM_H_
#define TAPELOOP_ENGINE_KERNELS_RMS_NORM_H_

#include "absl/status/status.h"

namespace tapeloop::engine {

// y: f32 [rows, dim] (may alias x); x: f32 [rows, dim]; w: f32 [dim].
void RmsNormForwardRef(float* y, const float* x, const float* w, int rows, int dim, float eps);

#ifdef TAPELOOP_HAVE_CUDA
// Same contract on device memory. Returns an error naming the CUDA failure.
absl::Status RmsNormForwardCuda(float* y, const float* x, const float* w, int rows, int dim,
                                float eps);
#endif

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_KERNELS_RMS_NORM_H_
