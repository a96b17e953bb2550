// AdamW (PyTorch's torch.optim.AdamW semantics), gradient clipping by global norm, and the
// warmup + cosine learning-rate schedule, all over flat buffers laid out by a ParamTable.
//
// Thread safety: none; one optimizer per training run.
#ifndef TAPELOOP_ENGINE_TRAIN_OPTIMIZER_H_
#define TAPELOOP_ENGINE_TRAIN_OPTIMIZER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "engine/train/params.h"

namespace tapeloop::engine::train {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.01f;
  // When true every tensor is decayed (PyTorch's default when all parameters form one group);
  // when false only tensors whose spec says decay (matrices, not norms/biases/embeddings).
  bool decay_all = false;
};

// Decoupled weight decay, bias-corrected moments, exactly as torch.optim.AdamW:
//   p *= 1 - lr * wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
class AdamW {
 public:
  AdamW(const ParamTable& table, AdamWConfig config);

  // One update with learning rate `lr`. REQUIRES params/grads sized table.total(). With
  // threads > 1 the elements are split into that many contiguous ranges updated on their own
  // threads (the caller runs the first); every element's arithmetic is the same, so the result
  // does not depend on `threads`.
  void Step(std::span<float> params, std::span<const float> grads, float lr, int threads = 1);

  int64_t step() const { return step_; }
  // Moments f32 [total]; exposed for checkpoints.
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  const std::vector<float>& m() const { return m_; }
  const std::vector<float>& v() const { return v_; }
  void set_step(int64_t step) { step_ = step; }
  const AdamWConfig& config() const { return config_; }

 private:
  const ParamTable& table_;
  AdamWConfig config_;
  int64_t step_ = 0;
  std::vector<float> m_, v_;  // f32 [total]
};

// Global L2 norm of `grads` (accumulated in double).
double GradNorm(std::span<const float> grads);

// torch.nn.utils.clip_grad_norm_: scales grads by min(1, max_norm / (norm + 1e-6)).
// Returns the norm before clipping.
double ClipGradNorm(std::span<float> grads, double max_norm);

// Learning rate for optimizer step `step` (0-based: the first update uses step 0), matching the
// prototype's LambdaLR: base * min(1, (step+1)/warmup) * 0.5 * (1 + cos(pi * min(step,S)/S)),
// S = total_steps. warmup <= 0 means no warmup.
double WarmupCosineLr(double base_lr, int64_t step, int64_t warmup, int64_t total_steps);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_OPTIMIZER_H_
