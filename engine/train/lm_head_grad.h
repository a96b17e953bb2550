// The language-model head of every trainer model (Mamba2Lm, TransformerLm, NemotronHLm):
// final RMSNorm, LM head and masked cross-entropy of one row, forward and backward side by side
// (CPU f32, T tokens):
//   u = rms(h) * norm_f.weight                      f32 [T, D]
//   logits = u lm_head.weight^T                     f32 [T, V]
//   loss_sum = sum_t mask[t] * ce(logits[t], target[t])
//
// Thread safety: pure functions of their arguments.
#ifndef TAPELOOP_ENGINE_TRAIN_LM_HEAD_GRAD_H_
#define TAPELOOP_ENGINE_TRAIN_LM_HEAD_GRAD_H_

#include <cstdint>
#include <span>
#include <vector>

#include "engine/train/row_model.h"

namespace tapeloop::engine::train {

struct LmHeadParams {
  const float* norm;  // f32 [D]
  const float* head;  // f32 [V, D]
};

// h f32 [T, D] (the last block's output); targets int32 [T]; mask f32 [T]. Saves rf f32 [T] and
// hn f32 [T, D] for the backward pass and writes logits f32 [T, V]; with `backward` the logits
// are then overwritten by d(loss_sum / denom) / d logits. argmax (may be null) receives each
// position's predicted token.
RowResult LmHeadForward(const float* h, LmHeadParams p, int64_t T, int64_t D, int64_t V, float eps,
                        std::span<const int32_t> targets, std::span<const float> mask, double denom,
                        bool backward, float* rf, float* hn, float* logits,
                        std::vector<int32_t>* argmax);

// dlogits: the logits buffer after LmHeadForward(backward = true). ADDS d loss / d lm_head to
// d_head (f32 [V, D]) and d loss / d norm_f to d_norm (f32 [D]); WRITES dh (f32 [T, D]) =
// d loss / d h. du: scratch f32 [T, D].
void LmHeadBackward(const float* h, LmHeadParams p, const float* rf, const float* hn,
                    const float* dlogits, int64_t T, int64_t D, int64_t V, float* du, float* dh,
                    float* d_norm, float* d_head);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_LM_HEAD_GRAD_H_
