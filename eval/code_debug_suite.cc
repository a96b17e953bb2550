#include "eval/code_debug_suite.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agents/engine_policy.h"
#include "common/status_macros.h"
#include "common/tokenizer.h"
#include "tasks/task.h"
#include "tasks/trajectory.h"

namespace tapeloop::eval {
namespace {

namespace cd = ::tapeloop::tasks::code_debug;

// Observations kept per step in the stored record (views of big files are long).
constexpr size_t kMaxStoredObservation = 2000;

// A token for a stop reason: a special token's spelling, a printable byte in quotes, any
// other byte as \xNN (stop reasons are plain ASCII).
std::string TokenLabel(const Tokenizer& tokenizer, TokenId id) {
  if (!tokens::IsByte(id)) return tokenizer.TokenText(id);
  if (id >= 0x20 && id < 0x7f) return absl::StrCat("'", std::string(1, static_cast<char>(id)), "'");
  return absl::StrFormat("\\x%02x", id);
}

// True when the agent sent exactly the commands the expert sends for the instance and mode.
bool MatchesExpert(const cd::CodeDebugInstance& instance, const cd::CodeDebugTrajectory& t) {
  auto expert = cd::Oracle(instance, t.mode);
  if (!expert.ok() || expert->steps.size() != t.steps.size()) return false;
  for (size_t i = 0; i < t.steps.size(); ++i) {
    if (expert->steps[i].command != t.steps[i].command) return false;
  }
  return true;
}

EpisodeRow Row(const EpisodeKey& key, const cd::CodeDebugInstance* instance,
               const absl::StatusOr<cd::CodeDebugTrajectory>& t, bool expert, double wall_ms) {
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
  // The oracle is the expert: its trajectory matches by definition; a model's is compared
  // with the oracle's, command by command.
  row.trajectory_match = expert || MatchesExpert(*instance, *t);
  record["passed"] = score.passed;
  if (!t->stop_reason.empty()) record["stop_reason"] = t->stop_reason;
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

absl::StatusOr<cd::CodeDebugTrajectory> PlayCodeDebug(agents::Policy& policy,
                                                      const cd::CodeDebugInstance& instance,
                                                      cd::CodeDebugMode mode, uint64_t seed,
                                                      const ModelDebugLimits& limits) {
  cd::CodeDebugEnv env(instance, limits.max_steps);
  cd::CodeDebugTrajectory t;
  t.mode = mode;
  t.prompt = instance.prompt;
  std::vector<TokenId> prompt = {tokens::kBos};
  for (unsigned char c : instance.prompt) prompt.push_back(c);
  agents::EpisodeContext context;
  context.seed = seed;
  ASSIGN_OR_RETURN(const int slot, policy.Open(context, prompt));
  auto play = [&]() -> absl::Status {
    const Tokenizer tokenizer;
    int64_t written = 0;
    bool in_call = false;
    std::string command;
    const int slots[] = {slot};
    while (true) {
      if (written >= limits.max_tokens) {
        t.stop_reason = "max_tokens";
        return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(std::vector<TokenId> next, policy.Step(slots));
      const TokenId id = next.at(0);
      ++written;
      if (!in_call) {
        if (id == tokens::kEos) {
          t.stop_reason = "eos";
          return absl::OkStatus();
        }
        if (id != tokens::kCall) {
          t.stop_reason = absl::StrCat("bad_token ", TokenLabel(tokenizer, id), " between calls");
          return absl::OkStatus();
        }
        in_call = true;
        command.clear();
        continue;
      }
      if (tokens::IsByte(id)) {
        if (static_cast<int64_t>(command.size()) >= limits.max_command_bytes) {
          t.stop_reason = "long_command";
          return absl::OkStatus();
        }
        command.push_back(static_cast<char>(id));
        continue;
      }
      if (id != tokens::kCallEnd) {
        t.stop_reason = absl::StrCat("bad_token ", TokenLabel(tokenizer, id), " in a command");
        return absl::OkStatus();
      }
      in_call = false;
      env.Step(command);
      if (command == "run") ++t.runs;
      std::vector<TokenId> obs = {tokens::kObs};
      for (unsigned char c : env.steps().back().observation) obs.push_back(c);
      obs.push_back(tokens::kObsEnd);
      RETURN_IF_ERROR(policy.Append(slot, obs));
      if (env.solved()) {
        t.stop_reason = "solved";
        return absl::OkStatus();
      }
      if (env.truncated()) {
        t.stop_reason = "max_steps";
        return absl::OkStatus();
      }
    }
  };
  absl::Status played = play();
  policy.Close(slot);
  RETURN_IF_ERROR(played);
  t.steps = env.steps();
  t.final_files = env.files();
  return t;
}

absl::StatusOr<cd::CodeDebugTrajectory> ModelCodeDebugAgent::Solve(
    const cd::CodeDebugInstance& instance, cd::CodeDebugMode mode) {
  agents::EnginePolicyOptions options;
  options.appends = agents::EnginePolicyOptions::Appends::kPrefill;  // observations are long
  options.threads = 1;
  agents::EnginePolicy policy(model_, engine::SamplingParams{}, options);
  return PlayCodeDebug(policy, instance, mode, instance.seed, limits_);
}

absl::StatusOr<std::unique_ptr<CodeDebugAgent>> MakeCodeDebugAgent(const std::string& name,
                                                                   const engine::Model* model) {
  if (name == "oracle") return std::unique_ptr<CodeDebugAgent>(new OracleCodeDebugAgent());
  if (model == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval: code_debug entry ", name, " is neither `oracle` nor a loaded model"));
  }
  return std::unique_ptr<CodeDebugAgent>(new ModelCodeDebugAgent(model));
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
      rows[i] = Row(k, instance.ok() ? &*instance : nullptr, t, agent.is_expert(), ms);
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
