// TrajectorySource: the trainer's supply of expert trajectories.
//
//   TrajectorySourceConfig config{.task = "addition", .mode = Mode::kPointer,
//                                 .max_length = 5, .seed = 1};
//   auto source = *MakeTrajectorySource(config);
//   std::vector<Example> batch = source->Next(128);   // token ids + loss mask per row
//   uint64_t pos = source->position();               // save with the checkpoint
//   ...
//   source->Seek(pos);                               // resume exactly where it stopped
//
// Determinism: example i of a source is a pure function of (config, i): its instance is drawn
// from Rng(MixSeed(seed, i)). So the stream does not depend on batch sizes, and Seek(p) makes
// the next example example p.
#ifndef TAPELOOP_TASKS_TRAJECTORY_SOURCE_H_
#define TAPELOOP_TASKS_TRAJECTORY_SOURCE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer.h"
#include "tasks/task.h"
#include "tasks/trajectory.h"

namespace tapeloop::tasks {

struct TrajectorySourceConfig {
  std::string task = "addition";  // a FindTask name
  Mode mode = Mode::kPointer;
  int max_length = 5;     // n: training operands have U{1..n} digits
  bool training = true;   // false: every instance has exactly max_length digits
  uint64_t seed = 0;
  // Examples longer than this many tokens are skipped (drawn again at the next index);
  // 0: no limit.
  int64_t max_tokens = 0;
};

struct Example {
  uint64_t index = 0;               // position in the stream
  std::vector<TokenId> tokens;      // [BOS] ... [EOS]
  std::vector<uint8_t> loss_mask;   // 1 where tokens[i] is a prediction target (predicted
                                    // from tokens[0..i-1]); 0 for prompt and observations
                                    // (observations are targets in cot mode)
  Instance instance;
};

class TrajectorySource {
 public:
  TrajectorySource() = default;
  TrajectorySource(const TrajectorySource&) = delete;
  TrajectorySource& operator=(const TrajectorySource&) = delete;
  virtual ~TrajectorySource() = default;

  // The next `batch_size` examples; advances position() past every example it drew (skipped
  // ones included).
  virtual std::vector<Example> Next(int batch_size) = 0;
  // Index of the next example to be drawn.
  virtual uint64_t position() const = 0;
  virtual void Seek(uint64_t position) = 0;
  virtual const TrajectorySourceConfig& config() const = 0;
};

// INVALID_ARGUMENT for max_length < 1; NOT_FOUND for an unknown task.
absl::StatusOr<std::unique_ptr<TrajectorySource>> MakeTrajectorySource(
    const TrajectorySourceConfig& config);

// Pads examples into a row-major [B, T] batch with [PAD] (mask 0); T = the longest example,
// or `min_time` if larger.
struct PaddedBatch {
  int batch = 0;
  int time = 0;
  std::vector<TokenId> tokens;   // [B * T]
  std::vector<uint8_t> loss_mask;  // [B * T]
};
PaddedBatch PadBatch(const std::vector<Example>& examples, int min_time = 0);

}  // namespace tapeloop::tasks

#endif  // TAPELOOP_TASKS_TRAJECTORY_SOURCE_H_
