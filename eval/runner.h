// Batch evaluation: models x tasks x modes x lengths x seeds x episodes, resumable, stored in
// SQLite, reported as tables and plots.
//
// Episode i of (task, length, seed) is exactly what `tapeloop run --task T --length L
// --seed S` plays as its episode i: instance from Rng(MixSeed(S, i)), sampling seed
// MixSeed(S + 1, i). A run's id is a hash of its configuration (entries, tasks, lengths,
// seeds, episodes, model fingerprints), so rerunning the same command resumes it: finished
// episodes are read from the database and not redone; new ones are written in batches, each
// batch in one transaction.
#ifndef TAPELOOP_EVAL_RUNNER_H_
#define TAPELOOP_EVAL_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agents/agent_loop.h"
#include "eval/results.h"
#include "nlohmann/json.hpp"

namespace tapeloop::eval {

// One model evaluated in some modes. `model` is a checkpoint directory, or "oracle" for the
// expert policy (tests and sanity checks).
struct EvalEntry {
  std::string model;
  std::vector<std::string> modes;
  // Lengths above this are not evaluated for this entry (0: no cap). The short suites use it
  // to keep Transformer baselines, whose cost per token grows with the episode, off the
  // longest lengths.
  int64_t max_length = 0;
};

struct EvalOptions {
  std::vector<EvalEntry> entries;
  std::vector<std::string> tasks;  // e.g. {"addition"}
  std::vector<int64_t> lengths;
  int64_t episodes = 10;  // per (entry, mode, task, length, seed)
  std::vector<int64_t> seeds = {1};
  int parallel = 32;          // sessions advanced together by one batched decode step
  int64_t commit_every = 64;  // episodes per transaction
  // Longest training length per model, when the checkpoint has no training.json.
  int64_t default_train_length = 5;
  std::string db_path = "results.db";
  std::string report_dir;  // empty: no report files
  // Early stop: once this many consecutive lengths (in increasing order) of one (model, mode,
  // task) scored 0 exact episodes over all their seeds, its longer lengths are not run (the
  // report marks them "stopped"). 0: every length runs. Part of the run's configuration.
  int64_t stop_after_zero = 0;
  // Who the run belongs to (the gRPC principal; empty for the CLI). Part of the run's
  // configuration, so two owners' runs of the same settings are distinct runs.
  std::string owner;
  // Optional: read between batches and every step of an episode batch; once true the run stops
  // with CANCELLED, storing nothing of the batch in flight. Must outlive RunEvaluation.
  const std::atomic<bool>* cancel = nullptr;
  // Checkpoints a suite names that were not found (left out of the run).
  std::vector<std::string> missing;
};

// A named suite ("paper-addition", "paper-addition-short", "addition-ablations",
// "multiplication", "multiplication-short") resolved against a models directory.
// Checkpoints that are absent are left out and listed in `missing`. NOT_FOUND listing the
// suites for an unknown name, or when none of the suite's checkpoints exists.
absl::StatusOr<EvalOptions> SuiteOptions(const std::string& name, const std::string& models_dir);
std::vector<std::string> SuiteNames();

struct Progress {
  int64_t done = 0, total = 0, skipped = 0;  // skipped: already in the database
  double elapsed_s = 0;
  std::string current;  // "model/mode/task@length"
};

struct RunResult {
  std::string run_id;
  int64_t ran = 0, resumed = 0;  // episodes run now / found finished in the database
  std::string markdown;          // the report's tables
};

// Runs (or resumes) the evaluation and writes the report. `progress` is called after every
// batch (and once with the totals before the first). Errors: INVALID_ARGUMENT naming a bad
// option, NOT_FOUND for a missing model or task, CANCELLED when options.cancel was set, the
// store's errors for the database.
absl::StatusOr<RunResult> RunEvaluation(const EvalOptions& options,
                                        const std::function<void(const Progress&)>& progress = {});

// A run whose checkpoints are loaded and whose identifying configuration is known, not yet run:
// for callers that need the run id before running (a server answering "started"), so the models
// are loaded once. Move-only; RunEvaluation(PreparedRun) consumes it.
class PreparedRun {
 public:
  PreparedRun(PreparedRun&&) noexcept;
  PreparedRun& operator=(PreparedRun&&) noexcept;
  ~PreparedRun();

  // The configuration that identifies the run (RunConfig's): its run id is a hash of it.
  const nlohmann::json& config() const;

  struct State;  // runner.cc

 private:
  explicit PreparedRun(std::unique_ptr<State> state);
  friend absl::StatusOr<PreparedRun> PrepareRun(const EvalOptions& options);
  friend absl::StatusOr<RunResult> RunEvaluation(
      PreparedRun prepared, const std::function<void(const Progress&)>& progress);

  std::unique_ptr<State> state_;
};

// Validates `options` and loads its checkpoints (a copy of `options` is kept, cancel pointer
// included). Errors as RunEvaluation's before it runs anything.
absl::StatusOr<PreparedRun> PrepareRun(const EvalOptions& options);

// Runs a prepared run: the same as RunEvaluation(options) with the options it was prepared from.
// FAILED_PRECONDITION for a moved-from PreparedRun.
absl::StatusOr<RunResult> RunEvaluation(PreparedRun prepared,
                                        const std::function<void(const Progress&)>& progress = {});

// The configuration that identifies a run of `options` (its run id is a hash of it); model
// fingerprints come from the loaded checkpoints, so this loads them (PrepareRun(options)
// ->config() without keeping them).
absl::StatusOr<nlohmann::json> RunConfig(const EvalOptions& options);

// Episodes a run of `config` (as RunConfig returns it) holds at most: every cell of every entry
// within its length cap (early stopping can only lower it).
int64_t PlannedEpisodes(const nlohmann::json& config);

// Recomputes the report of the latest run in options.db_path (or of `run_id`) from the
// database alone.
absl::StatusOr<RunResult> ReportOnly(const EvalOptions& options, const std::string& run_id = "");

}  // namespace tapeloop::eval

#endif  // TAPELOOP_EVAL_RUNNER_H_
