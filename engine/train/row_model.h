// RowModel: what the trainer needs from a model family: a spec table, and the loss and its
// gradient for one token row (optionally from / to a recurrent state). Mamba2Lm, TransformerLm
// and NemotronHLm implement it, from the per-layer files engine/train/*_grad.h.
//
// Thread safety: implementations are immutable after construction; RowForwardBackward is safe
// to call concurrently with distinct workspaces and gradient buffers.
#ifndef TAPELOOP_ENGINE_TRAIN_ROW_MODEL_H_
#define TAPELOOP_ENGINE_TRAIN_ROW_MODEL_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/train/params.h"
#include "engine/train/rng.h"

namespace tapeloop::engine::train {

// Scratch for one row (activations saved for backward); grows to the longest row seen.
struct Mamba2Workspace {
  std::vector<float> buf;
};

struct RowResult {
  double loss_sum = 0;  // sum over masked targets of cross-entropy (not normalized)
  int64_t counted = 0;  // masked targets
  int64_t correct = 0;  // masked targets whose argmax equals the target
};

class RowModel {
 public:
  virtual ~RowModel() = default;
  virtual const ParamTable& table() const = 0;
  // Floats of per-row recurrent state; 0 for a model without one (its rows always start
  // fresh and the state arguments below are ignored).
  virtual int64_t state_size() const = 0;
  // See Mamba2Lm::RowForwardBackward.
  virtual RowResult RowForwardBackward(const float* params, std::span<const int32_t> ids,
                                       std::span<const float> target_mask, double denom,
                                       const float* init_state, float* final_state, float* grads,
                                       Mamba2Workspace* ws,
                                       std::vector<int32_t>* argmax = nullptr) const = 0;
  // Fills state (f32 [state_size]) with a noise-initialized state (std `stddev`).
  virtual void NoiseState(Rng& rng, float stddev, float* state) const = 0;
  // HF config.json.
  virtual std::string HfConfigJson() const = 0;
  // Architecture and sizes, for checkpoint fingerprints.
  virtual std::string Describe() const = 0;
};

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_ROW_MODEL_H_
