#include "engine/train/loss.h"

#include <cmath>

#include "engine/check.h"

namespace tapeloop::engine::train {

CrossEntropyResult MaskedCrossEntropy(std::span<const float> logits, std::span<const int32_t> targets,
                                      std::span<const float> mask, int64_t rows, int64_t vocab,
                                      double denom, std::span<float> dlogits) {
  TL_CHECK(static_cast<int64_t>(logits.size()) == rows * vocab);
  TL_CHECK(static_cast<int64_t>(targets.size()) == rows && static_cast<int64_t>(mask.size()) == rows);
  const bool grad = !dlogits.empty();
  if (grad) TL_CHECK(static_cast<int64_t>(dlogits.size()) == rows * vocab);
  CrossEntropyResult res;
  for (int64_t r = 0; r < rows; ++r) {
    const float* z = logits.data() + r * vocab;
    float* dz = grad ? dlogits.data() + r * vocab : nullptr;
    const float w = mask[r];
    if (w == 0.f) {
      if (grad)
        for (int64_t v = 0; v < vocab; ++v) dz[v] = 0.f;
      continue;
    }
    const int32_t t = targets[r];
    TL_CHECK(t >= 0 && t < vocab);
    float mx = z[0];
    int64_t arg = 0;
    for (int64_t v = 1; v < vocab; ++v)
      if (z[v] > mx) mx = z[v], arg = v;
    double se = 0;
    for (int64_t v = 0; v < vocab; ++v) se += std::exp(static_cast<double>(z[v] - mx));
    const double lse = mx + std::log(se);
    res.loss_sum += w * (lse - z[t]);
    res.counted += 1;
    res.correct += (arg == t);
    if (grad) {
      const double scale = w / denom;
      for (int64_t v = 0; v < vocab; ++v)
        dz[v] = static_cast<float>(std::exp(z[v] - lse) * scale);
      dz[t] -= static_cast<float>(scale);
    }
  }
  return res;
}

}  // namespace tapeloop::engine::train
