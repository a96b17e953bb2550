#include "eval/code_debug_suite.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tasks/task.h"
#include "tasks/trajectory.h"

namespace tapeloop::eval {
namespace {

namespace cd = ::tapeloop::tasks::code_debug;

// Observations kept per step in the stored record (views of big files are long).
constexpr size_t kMaxStoredObservation = 2000;

EpisodeRow Row(const EpisodeKey& key, const cd::CodeDebugInstance* instance,
               const absl::StatusOr<cd::CodeDebugTrajectory>& t, double wall_ms) {
  EpisodeRow row;
  row.key = key;
  row.wall_ms = wall_ms;
  nlohmann::json record = {{"task", cd::kTaskName},
                           {"mode", key.mode},
                           {"n", key.length},
                           {"seed", key.seed},
                           {"index", key.index}};
  if (instance != nullptr) record["instance_seed"] = instance->seed;
  if (instance == nullptr || !t.ok()) {
    record["error"] =
        std::string((instance == nullptr ? "instance not generated" : t.status().ToString()));
    record["passed"] = false;
    row.record = std::move(record);
    return row;
  }
  cd::CodeDebugScore score = cd::ScoreCodeDebug(*instance, t->final_files);
  row.correct = score.passed;
  row.digit_accuracy = score.passed ? 1.0 : 0.0;
  row.tool_calls = static_cast<int64_t>(t->steps.size());
  // Tokens the agent wrote: its commands in the tapeloop-tokens-v1 form.
  tasks::Trajectory tokens = t->ToTrajectory();
  for (tasks::Role r : tokens.roles) row.generated_tokens += r == tasks::Role::kCommand;
  // The oracle is the expert: its trajectory matches by definition; a model's would be
  // compared with the oracle's when model policies exist.
  row.trajectory_match = true;
  record["passed"] = score.passed;
  record["score"] = score.ToJson();
  record["runs"] = t->runs;
  record["trajectory_tokens"] = tokens.tokens.size();
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& s : t->steps) {
    std::string obs = s.observation.size() > kMaxStoredObservation
                          ? s.observation.substr(0, kMaxStoredObservation) + "..."
                          : s.observation;
    steps.push_back({{"command", s.command}, {"observation", obs}, {"is_error", s.is_error}});
  }
  record["steps"] = std::move(steps);
  row.record = std::move(record);
  return row;
}

}  // namespace

absl::StatusOr<cd::CodeDebugTrajectory> OracleCodeDebugAgent::Solve(
    const cd::CodeDebugInstance& instance, cd::CodeDebugMode mode) {
  return cd::Oracle(instance, mode);
}

absl::StatusOr<std::unique_ptr<CodeDebugAgent>> MakeCodeDebugAgent(const std::string& model) {
  if (model == "oracle") return std::unique_ptr<CodeDebugAgent>(new OracleCodeDebugAgent());
  return absl::UnimplementedError(
      absl::StrCat("eval: code_debug has no model policy yet (model ", model,
                   "): only `oracle` can play it; see docs/evaluation.md"));
}

absl::Status ValidateCodeDebugCell(const std::string& mode, const std::vector<int64_t>& lengths) {
  if (auto m = cd::ParseCodeDebugMode(mode); !m.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval: mode '", mode, "' is not a code_debug mode (interactive, single-turn)"));
  }
  for (int64_t n : lengths) {
    if (n < cd::kMinFunctions || n > cd::kMaxFunctions + 1) {
      return absl::InvalidArgumentError(absl::StrCat("eval: code_debug length ", n, " is not in ",
                                                     cd::kMinFunctions, "..",
                                                     cd::kMaxFunctions + 1));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<EpisodeRow>> RunCodeDebugEpisodes(CodeDebugAgent& agent,
                                                             const std::vector<EpisodeKey>& keys,
                                                             int threads) {
  for (const EpisodeKey& k : keys) {
    if (k.task != cd::kTaskName) {
      return absl::InvalidArgumentError(
          absl::StrCat("eval: episode of task ", k.task, " given to the code_debug runner"));
    }
    if (auto s = ValidateCodeDebugCell(k.mode, {k.length}); !s.ok()) return s;
  }
  std::vector<EpisodeRow> rows(keys.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < keys.size(); i = next++) {
      const EpisodeKey& k = keys[i];
      auto start = std::chrono::steady_clock::now();
      cd::CodeDebugMode mode = *cd::ParseCodeDebugMode(k.mode);
      auto instance = cd::GenerateCodeDebug(
          static_cast<int>(k.length),
          tasks::MixSeed(static_cast<uint64_t>(k.seed), static_cast<uint64_t>(k.index)));
      absl::StatusOr<cd::CodeDebugTrajectory> t =
          instance.ok() ? agent.Solve(*instance, mode)
                        : absl::StatusOr<cd::CodeDebugTrajectory>(instance.status());
      double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      rows[i] = Row(k, instance.ok() ? &*instance : nullptr, t, ms);
    }
  };
  int n = std::max(1, std::min<int>(threads, static_cast<int>(keys.size())));
  std::vector<std::thread> pool;
  for (int i = 1; i < n; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return rows;
}

}  // namespace tapeloop::eval
