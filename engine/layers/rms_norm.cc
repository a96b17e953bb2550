#include "engine/layers/rms_norm.h"

#include <cmath>

#include "engine/check.h"
#include "engine/kernels/rms_norm.h"

namespace tapeloop::engine {

std::vector<ParamSpec> RmsNormParamSpecs(int64_t dim) { return {{"weight", {dim}, Init::kOnes}}; }

void RmsNormForward(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps) {
  RmsNormForwardRef(y, x, w, static_cast<int>(rows), static_cast<int>(dim), eps);
}

void GatedRmsNormForward(float* y, const float* x, int64_t ldx, const float* z, int64_t ldz,
                         const float* w, int64_t rows, int64_t width, int64_t group_size, float eps) {
  TL_CHECK(group_size > 0 && width % group_size == 0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    const float* zr = z + r * ldz;
    float* yr = y + r * width;
    for (int64_t i = 0; i < width; ++i) {
      const float g = zr[i];
      yr[i] = xr[i] * (g / (1.0f + std::exp(-g)));
    }
    for (int64_t g0 = 0; g0 < width; g0 += group_size) {
      double ss = 0.0;
      for (int64_t i = g0; i < g0 + group_size; ++i) ss += static_cast<double>(yr[i]) * yr[i];
      const float inv = 1.0f / std::sqrt(static_cast<float>(ss / group_size) + eps);
      for (int64_t i = g0; i < g0 + group_size; ++i) yr[i] = w[i] * (yr[i] * inv);
    }
  }
}

}  // namespace tapeloop::engine
