// Model: a loaded (or randomly initialized) mamba2 / llama / mistral / nemotron_h network.
//
// All parameters live in ONE flat f32 buffer; params() is the table of named views into it
// (HF checkpoint name, shape, init, offset), built from the layers' spec tables. The network is
// a plain loop over blocks, each   h += mixer(rms_norm(h))   with the mixer chosen per block
// (Mamba-2, attention, MLP), then a final RMSNorm and the LM head (tied to the embedding or not).
//
// Batched decode (StepBatch with many sessions) reads each weight matrix of the blocks and the
// LM head from a second, packed copy (kernels/linear_packed.h), built on first use of each
// matrix: up to packed_bytes() beside the parameters (about the size of the matrices).
//
// Thread safety: a Model is immutable after construction (except mutable_param_data(), which a
// trainer may write while no forward pass runs); Forward / StepBatch may run concurrently on
// distinct SessionStates. Not copyable.
#ifndef TAPELOOP_ENGINE_MODELS_MODEL_H_
#define TAPELOOP_ENGINE_MODELS_MODEL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/kernels/linear_packed.h"
#include "engine/layers/attention.h"
#include "engine/layers/mamba2.h"
#include "engine/layers/mlp.h"
#include "engine/layers/param_spec.h"
#include "engine/models/config.h"
#include "engine/session/state.h"
#include "engine/tensor.h"

namespace tapeloop::engine {

// One parameter of the flat buffer.
struct ParamEntry {
  std::string name;  // HF checkpoint name, e.g. "backbone.layers.0.mixer.in_proj.weight"
  Shape shape;
  Init init;
  int64_t offset = 0;  // in floats
  int block = -1;      // block index, -1 for embedding / final norm / lm_head
};

// Intermediate values of Forward for a backward pass (filled when requested).
struct BlockSaved {
  std::vector<float> input;   // f32 [T, D] residual stream entering the block
  std::vector<float> normed;  // f32 [T, D] rms_norm(input)
  Mamba2Saved mamba;
  AttentionSaved attention;
  MlpSaved mlp;
};
struct ForwardSaved {
  std::vector<BlockSaved> blocks;
  std::vector<float> final_input;   // f32 [T, D]
  std::vector<float> final_normed;  // f32 [T, D]
};

class Model {
 public:
  // Loads DIR/config.json and DIR/model.safetensors (HF format, F32 or BF16 tensors).
  // Errors: NotFound (missing file), InvalidArgument naming the key or tensor (bad config,
  // missing tensor, wrong shape or dtype, corrupt file). Unexpected tensors warn on stderr.
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& dir);

  // Builds a model from a parsed config and checkpoint tensors (name -> f32 tensor).
  static absl::StatusOr<std::unique_ptr<Model>> FromTensors(const ModelConfig& config,
                                                            std::map<std::string, Tensor> tensors);

  // Random initialization as HF's _init_weights (normal(0, initializer_range) for linear and
  // embedding weights, ones for norms and D, log(1..H) for A_log, inverse-softplus dt for
  // dt_bias, torch's Conv1d default for conv weights, zero biases), deterministic in `seed`.
  // InvalidArgument if the config is invalid.
  static absl::StatusOr<std::unique_ptr<Model>> RandomInit(const ModelConfig& config,
                                                           uint64_t seed);

  // Largest parameter count RandomInit accepts (16 GiB of f32).
  static constexpr int64_t kMaxParams = int64_t{1} << 32;

  // Writes DIR/config.json and DIR/model.safetensors (F32, HF names; creates DIR). Loading
  // what was saved gives bit-identical parameters and the same fingerprint.
  absl::Status Save(const std::string& dir) const;

  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  const std::vector<BlockKind>& blocks() const { return blocks_; }
  const std::vector<ParamEntry>& params() const { return params_; }
  const float* param_data() const { return data_.data(); }
  // Writable parameters; also drops the packed copies (rebuilt from the parameters on the next
  // batched step). Writing through a pointer kept from an earlier call needs
  // RecomputeFingerprint() afterwards, which drops them too.
  float* mutable_param_data() {
    BindPacked();
    return data_.data();
  }
  int64_t num_params() const { return static_cast<int64_t>(data_.size()); }
  const ParamEntry* FindParam(const std::string& name) const;

  // Hash of the config JSON and all parameter bytes (computed at construction; call
  // RecomputeFingerprint() after changing parameters: it also drops the packed copies).
  uint64_t fingerprint() const { return layout_.fingerprint; }
  void RecomputeFingerprint();

  // The state layout sessions of this model use.
  const StateLayout& state_layout() const { return layout_; }
  // A fresh state for this model.
  SessionState NewState() const { return SessionState(&layout_); }

  // Runs `tokens` from `state` (advancing it). logits: f32 [T, V] when all_logits, else the
  // last position's f32 [V]. InvalidArgument if a token id is outside [0, V) or tokens is
  // empty; FailedPrecondition if the state belongs to another model.
  absl::Status Forward(std::span<const int32_t> tokens, SessionState* state, bool all_logits,
                       std::vector<float>* logits, ForwardSaved* saved = nullptr) const;

  // One token for each of B states (positions may differ), batched through every matmul.
  // logits: f32 [B, V]. Same errors as Forward; states must be distinct.
  absl::Status StepBatch(std::span<const int32_t> tokens, std::span<SessionState* const> states,
                         std::vector<float>* logits) const;

  // Bytes of the packed copies of the decode step's weight matrices once all are built (each is
  // built on the first batched step that uses it; see kernels/linear_packed.h), and the bytes
  // built so far.
  int64_t packed_bytes() const;
  int64_t packed_bytes_built() const;

  // Per-kind dimensions (the same for every block of that kind).
  const Mamba2Dims& mamba_dims() const { return mamba_dims_; }
  const AttentionDims& attention_dims() const { return attention_dims_; }
  const MlpDims& mlp_dims() const { return mlp_dims_; }

 private:
  explicit Model(ModelConfig config);
  void BuildTable();
  void BindWeights();
  // (Re)creates the packed copies (unbuilt) and points the weight views at them.
  void BindPacked();
  void InitRandom(uint64_t seed);
  absl::Status CheckInputs(std::span<const int32_t> tokens, const SessionState& state) const;
  void Logits(const float* h, int64_t rows, float* logits) const;

  ModelConfig config_;
  std::vector<BlockKind> blocks_;
  Mamba2Dims mamba_dims_;
  AttentionDims attention_dims_;
  MlpDims mlp_dims_;
  std::string prefix_;  // "backbone." or "model." (nemotron_h may use either)

  std::vector<ParamEntry> params_;
  std::vector<std::string> block_norm_name_;     // per block: its RMSNorm weight's name
  std::vector<std::string> block_mixer_prefix_;  // per block: its mixer's name prefix
  std::vector<float> data_;                      // the flat parameter buffer
  int64_t num_floats_ = 0;                       // its size per the table

  // Bound views (pointers into data_).
  const float* embed_ = nullptr;          // f32 [V, D]
  const float* final_norm_ = nullptr;     // f32 [D]
  const float* lm_head_ = nullptr;        // f32 [V, D] (== embed_ when tied)
  std::vector<const float*> block_norm_;  // f32 [D] per block
  std::vector<Mamba2Weights> mamba_w_;
  std::vector<AttentionWeights> attention_w_;
  std::vector<MlpWeights> mlp_w_;
  std::vector<std::unique_ptr<PackedLinear>> packed_;  // the weight views point at these
  const PackedLinear* lm_head_packed_ = nullptr;

  StateLayout layout_;
};

// Index of the first id outside the vocabulary [0, vocab), or -1 when every id is inside. The
// one range check of token ids from callers (each words its own error message).
int64_t FirstIdOutsideVocabulary(std::span<const int32_t> ids, int64_t vocab);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_MODELS_MODEL_H_
