// The training loop for the Mamba-2 LM (engine/train/mamba2_lm.h): batches of expert
// trajectories from an ExampleSource, masked cross-entropy, global-norm clipping, AdamW with
// warmup + cosine, rows split over threads, checkpoints that resume bit-exactly.
//
// Rows: by default one trajectory per row (no padding, no state carried between rows: nothing
// leaks). Options for training from non-zero initial states (Buitrago Ruiz and Gu, 2025):
//   InitState::kPassFinal  each row starts from the final state of a random row of the
//                          previous step (zeros at the first step);
//   InitState::kNoise      each row starts from an SSM state ~ N(0, noise_std^2) (conv state 0);
//   tbptt_concat > 1       rows are `tbptt_concat` trajectories back to back WITHOUT state
//                          reset, processed in windows of tbptt_window tokens; each window
//                          starts from the previous window's final state and no gradient
//                          flows across windows (truncated backpropagation through time).
//
// Checkpoint directory (SaveCheckpoint):
//   config.json, model.safetensors   the model, HF format, written by engine::Model::Save
//                                    (loads in the engine and in HF transformers)
//   trainer_state.safetensors        AdamW moments (+ the state pool of kPassFinal); metadata:
//                                    step, data position, RNG state, the options fingerprint
//                                    and a checksum of every parameter and moment
// LoadCheckpoint refuses (FailedPrecondition / InvalidArgument / DataLoss, naming what was
// wrong) a checkpoint of another model or other options, a missing or truncated file, or one
// whose checksum does not match.
//
// Thread safety: a Trainer is used from one thread; it runs its own worker threads inside
// Step and Evaluate.
#ifndef TAPELOOP_ENGINE_TRAIN_TRAINER_H_
#define TAPELOOP_ENGINE_TRAIN_TRAINER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/train/mamba2_lm.h"
#include "engine/train/optimizer.h"
#include "engine/train/rng.h"
#include "engine/train/row_model.h"

namespace tapeloop::engine::train {

// One expert trajectory: tokens[0] is [BOS]; loss_mask[i] = 1 where tokens[i] is predicted
// from tokens[0..i-1] (the tasks' convention).
struct TrainExample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> loss_mask;
};

// The trainer's view of a data stream (tasks::TrajectorySource is adapted to it by the CLI; the
// engine does not depend on tasks). Deterministic: Seek(p) makes the stream repeat from p.
class ExampleSource {
 public:
  virtual ~ExampleSource() = default;
  virtual std::vector<TrainExample> Next(int count) = 0;
  virtual uint64_t position() const = 0;
  virtual void Seek(uint64_t position) = 0;
};

enum class InitState { kZero, kPassFinal, kNoise };

struct TrainOptions {
  int64_t steps = 400;
  int batch = 128;  // rows per step
  double lr = 2e-3;
  int64_t warmup = 100;
  double clip = 1.0;  // <= 0: no clipping
  AdamWConfig adam;
  int threads = 2;
  uint64_t seed = 0;  // parameter init and the trainer's RNG
  InitState init_state = InitState::kZero;
  float noise_std = 0.1f;
  int tbptt_concat = 1;      // trajectories per row
  int64_t tbptt_window = 0;  // tokens per window; 0 = the whole row

  // Everything that must match for a checkpoint to be resumed (the model's Describe()
  // included).
  std::string Fingerprint(const RowModel& model) const;
};

struct StepStats {
  int64_t step = 0;  // 1-based index of the update just made
  double loss = 0;   // masked mean cross-entropy of the batch
  double lr = 0;
  double grad_norm = 0;  // before clipping
  int64_t tokens = 0;    // input tokens processed
  int64_t targets = 0;   // masked targets
  double token_acc = 0;  // fraction of masked targets predicted (argmax) right
};

struct EvalStats {
  int64_t examples = 0;
  int64_t exact = 0;  // examples whose every masked target is predicted right (teacher
                      // forcing; a greedy agent loop then reproduces the expert exactly)
  double token_acc = 0;
  double loss = 0;
  double exact_rate() const { return examples ? double(exact) / examples : 0; }
};

class Trainer {
 public:
  // `data` must outlive the trainer. Parameters are initialized from options.seed.
  Trainer(std::unique_ptr<RowModel> model, const TrainOptions& options, ExampleSource* data);
  // A Mamba-2 model.
  Trainer(const Mamba2LmConfig& model, const TrainOptions& options, ExampleSource* data)
      : Trainer(std::make_unique<Mamba2Lm>(model), options, data) {}
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One optimizer update on the next batch.
  StepStats Step();

  // Teacher-forced evaluation (no parameter change; zero initial states).
  EvalStats Evaluate(const std::vector<TrainExample>& examples) const;

  absl::Status SaveCheckpoint(const std::string& dir) const;
  absl::Status LoadCheckpoint(const std::string& dir);
  // Only the parameters, from dir/model.safetensors (for evaluating a model without its
  // trainer state); InvalidArgument if the tensors do not fit this model's table.
  absl::Status LoadParams(const std::string& dir);

  const RowModel& model() const { return *model_; }
  const TrainOptions& options() const { return options_; }
  int64_t step() const { return step_; }
  const std::vector<float>& params() const { return params_; }
  std::vector<float>& mutable_params() { return params_; }

  // The initial / final states of the rows of the last step, f32 [rows, state_size] (rows =
  // batch; all zeros for kZero); for tests and diagnostics.
  const std::vector<float>& last_initial_states() const { return last_init_; }
  const std::vector<float>& last_final_states() const { return last_final_; }

 private:
  std::unique_ptr<RowModel> model_;
  TrainOptions options_;
  ExampleSource* data_;
  std::vector<float> params_, grads_;
  AdamW adam_;
  Rng rng_;
  int64_t step_ = 0;
  std::vector<float> pool_;  // kPassFinal: final states of the previous step [batch, S]
  std::vector<float> last_init_, last_final_;
  mutable std::vector<Mamba2Workspace> workspaces_;
  std::vector<std::vector<float>> thread_grads_;
};

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_TRAINER_H_
