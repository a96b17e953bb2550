#include "tasks/trajectory_source.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tapeloop::tasks {
namespace {

class TaskTrajectorySource final : public TrajectorySource {
 public:
  TaskTrajectorySource(TrajectorySourceConfig config, const Task* task)
      : config_(std::move(config)), task_(task) {}

  std::vector<Example> Next(int batch_size) override {
    std::vector<Example> batch;
    batch.reserve(std::max(batch_size, 0));
    // Bounded retries: a max_tokens that rejects everything cannot spin forever.
    int64_t attempts = 0;
    while (static_cast<int>(batch.size()) < batch_size && attempts < 1000LL * batch_size) {
      ++attempts;
      const uint64_t index = position_++;
      Rng rng(MixSeed(config_.seed, index));
      Instance instance = task_->Generate(config_.max_length, config_.training, rng);
      auto trajectory = task_->Expert(instance, config_.mode);
      if (!trajectory.ok()) continue;
      if (config_.max_tokens > 0 &&
          static_cast<int64_t>(trajectory->tokens.size()) > config_.max_tokens) {
        continue;
      }
      Example e;
      e.index = index;
      e.loss_mask = trajectory->LossMask();
      e.tokens = std::move(trajectory->tokens);
      e.instance = std::move(instance);
      batch.push_back(std::move(e));
    }
    return batch;
  }

  uint64_t position() const override { return position_; }
  void Seek(uint64_t position) override { position_ = position; }
  const TrajectorySourceConfig& config() const override { return config_; }

 private:
  TrajectorySourceConfig config_;
  const Task* task_;
  uint64_t position_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TrajectorySource>> MakeTrajectorySource(
    const TrajectorySourceConfig& config) {
  if (config.max_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("trajectory source: max_length must be >= 1, got ", config.max_length));
  }
  ASSIGN_OR_RETURN(const Task* task, FindTask(config.task));
  return std::unique_ptr<TrajectorySource>(new TaskTrajectorySource(config, task));
}

PaddedBatch PadBatch(const std::vector<Example>& examples, int min_time) {
  PaddedBatch b;
  b.batch = static_cast<int>(examples.size());
  b.time = min_time;
  for (const auto& e : examples) b.time = std::max(b.time, static_cast<int>(e.tokens.size()));
  b.tokens.assign(static_cast<size_t>(b.batch) * b.time, tokens::kPad);
  b.loss_mask.assign(static_cast<size_t>(b.batch) * b.time, 0);
  for (int i = 0; i < b.batch; ++i) {
    std::copy(examples[i].tokens.begin(), examples[i].tokens.end(),
              b.tokens.begin() + static_cast<size_t>(i) * b.time);
    std::copy(examples[i].loss_mask.begin(), examples[i].loss_mask.end(),
              b.loss_mask.begin() + static_cast<size_t>(i) * b.time);
  }
  return b;
}

}  // namespace tapeloop::tasks
