// Masked cross-entropy: the loss counts only tokens the model must produce.
//
//   loss = sum_r mask[r] * (logsumexp(logits[r]) - logits[r, target[r]]) / denom
//
// where denom is normally sum(mask) over the whole batch (the prototype's definition); rows of a
// batch can be processed separately and summed because the caller passes the batch's denom.
#ifndef TAPELOOP_ENGINE_TRAIN_LOSS_H_
#define TAPELOOP_ENGINE_TRAIN_LOSS_H_

#include <cstdint>
#include <span>

namespace tapeloop::engine::train {

struct CrossEntropyResult {
  double loss_sum = 0;   // sum of mask * ce (not divided by denom)
  int64_t correct = 0;   // masked rows whose argmax equals the target
  int64_t counted = 0;   // masked rows (mask != 0)
};

// logits f32 [R, V], targets [R] in [0, V), mask f32 [R] (0 or a weight).
// If dlogits is non-empty (f32 [R, V]) it receives d(loss_sum / denom) / d logits, i.e.
// mask[r] * (softmax(logits[r]) - onehot(target[r])) / denom (overwritten, not accumulated).
CrossEntropyResult MaskedCrossEntropy(std::span<const float> logits, std::span<const int32_t> targets,
                                      std::span<const float> mask, int64_t rows, int64_t vocab,
                                      double denom, std::span<float> dlogits);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_LOSS_H_
