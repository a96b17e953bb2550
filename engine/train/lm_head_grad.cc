#include "engine/train/lm_head_grad.h"

#include <algorithm>

#include "engine/train/loss.h"
#include "engine/train/rms_norm_grad.h"
#include "engine/train/row_math.h"

namespace tapeloop::engine::train {

RowResult LmHeadForward(const float* h, LmHeadParams p, int64_t T, int64_t D, int64_t V, float eps,
                        std::span<const int32_t> targets, std::span<const float> mask, double denom,
                        bool backward, float* rf, float* hn, float* logits,
                        std::vector<int32_t>* argmax) {
  RmsNormForward(h, p.norm, T, D, eps, rf, hn);
  Gemm(false, true, T, V, D, 1.f, hn, D, p.head, D, 0.f, logits, V);
  if (argmax) {
    argmax->resize(T);
    for (int64_t t = 0; t < T; ++t) {
      const float* z = logits + t * V;
      (*argmax)[t] = static_cast<int32_t>(std::max_element(z, z + V) - z);
    }
  }
  // dlogits are written in place of the logits, which are not needed afterwards.
  CrossEntropyResult ce =
      MaskedCrossEntropy(std::span<const float>(logits, T * V), targets, mask, T, V, denom,
                         backward ? std::span<float>(logits, T * V) : std::span<float>());
  return RowResult{ce.loss_sum, ce.counted, ce.correct};
}

void LmHeadBackward(const float* h, LmHeadParams p, const float* rf, const float* hn,
                    const float* dlogits, int64_t T, int64_t D, int64_t V, float* du, float* dh,
                    float* d_norm, float* d_head) {
  Gemm(true, false, V, D, T, 1.f, dlogits, V, hn, D, 1.f, d_head, D);
  Gemm(false, false, T, D, V, 1.f, dlogits, V, p.head, D, 0.f, du, D);
  std::fill(dh, dh + T * D, 0.f);
  RmsNormBackward(h, p.norm, rf, du, T, D, dh, d_norm);
}

}  // namespace tapeloop::engine::train
