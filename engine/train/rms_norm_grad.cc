#include "engine/train/rms_norm_grad.h"

// As mamba2_mixer_grad.cc: let GCC vectorize the elementwise loops (no -ffast-math, so the
// reductions keep their order and results do not depend on the vector width).
#pragma GCC optimize("O3")

#include <cmath>

namespace tapeloop::engine::train {

void RmsNormForward(const float* x, const float* w, int64_t T, int64_t D, float eps, float* r,
                    float* y) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float s = 0;
    for (int64_t i = 0; i < D; ++i) s += xr[i] * xr[i];
    const float rr = 1.f / std::sqrt(s / D + eps);
    r[t] = rr;
    float* yr = y + t * D;
    for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * rr * w[i];
  }
}

void RmsNormBackward(const float* x, const float* w, const float* r, const float* dy, int64_t T,
                     int64_t D, float* dx, float* dw) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    const float* dyr = dy + t * D;
    const float rr = r[t];
    float dot = 0;
    for (int64_t i = 0; i < D; ++i) dot += dyr[i] * w[i] * xr[i];
    for (int64_t i = 0; i < D; ++i) dw[i] += dyr[i] * xr[i] * rr;
    const float k = dot * rr * rr * rr / D;
    float* dxr = dx + t * D;
    for (int64_t i = 0; i < D; ++i) dxr[i] += rr * w[i] * dyr[i] - k * xr[i];
  }
}

}  // namespace tapeloop::engine::train
