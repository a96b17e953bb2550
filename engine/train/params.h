// Parameters, gradients and optimizer moments derived from one spec table.
//
// A model lists its tensors once as ParamSpecs (HF checkpoint name, shape, init, whether AdamW
// decays it). ParamTable assigns each a range of one flat f32 buffer; parameters, gradients and
// both AdamW moments are parallel flat buffers of the same layout, so the optimizer, gradient
// clipping and checkpointing walk one array and adding a tensor is one line in a spec table.
//
// Thread safety: ParamTable is immutable after construction.
#ifndef TAPELOOP_ENGINE_TRAIN_PARAMS_H_
#define TAPELOOP_ENGINE_TRAIN_PARAMS_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tensor.h"
#include "engine/train/rng.h"

namespace tapeloop::engine::train {

// Fills a freshly allocated tensor (row-major, its spec's shape) with initial values.
using InitFn = std::function<void(Rng& rng, std::span<float> values)>;

struct ParamSpec {
  std::string name;  // checkpoint (HF) name, e.g. "backbone.layers.0.mixer.in_proj.weight"
  Shape shape;
  InitFn init;
  bool decay = true;  // AdamW weight decay applies (false for norms, biases, embeddings, ...)
};

// Common initializers (PyTorch's defaults where they have one).
InitFn InitZeros();
InitFn InitConstant(float value);
InitFn InitNormal(float stddev);
InitFn InitUniform(float bound);  // U(-bound, bound)

class ParamTable {
 public:
  // REQUIRES: names are unique.
  explicit ParamTable(std::vector<ParamSpec> specs);

  int size() const { return static_cast<int>(specs_.size()); }
  const ParamSpec& spec(int i) const { return specs_[i]; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  int64_t offset(int i) const { return offsets_[i]; }
  int64_t numel(int i) const { return offsets_[i + 1] - offsets_[i]; }
  // Total number of floats (= parameters).
  int64_t total() const { return offsets_.back(); }
  // Index of `name`, or -1.
  int Find(const std::string& name) const;

  // A fresh parameter buffer: every tensor initialized in table order from `rng`.
  std::vector<float> Initialize(Rng& rng) const;

  // Named read-only views into a flat buffer laid out by this table (for checkpoint writers).
  // REQUIRES flat.size() == total().
  std::vector<TensorRef> Views(std::span<const float> flat) const;

  // Copies named tensors into a flat buffer. Fails with INVALID_ARGUMENT naming the first
  // tensor that is missing, unexpected, or of the wrong shape.
  absl::StatusOr<std::vector<float>> FromTensors(
      const std::vector<std::pair<std::string, Tensor>>& tensors) const;

 private:
  std::vector<ParamSpec> specs_;
  std::vector<int64_t> offsets_;  // size() + 1 entries
};

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_PARAMS_H_
