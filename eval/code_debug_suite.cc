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

}  // namespace

EpisodeRow CodeDebugRow(const EpisodeKey& key, const cd::CodeDebugInstance* instance,
                        const absl::StatusOr<CodeDebugEpisode>& episode, bool expert) {
  EpisodeRow row;
  row.key = key;
  const cd::CodeDebugTrajectory* t = episode.ok() ? &episode->trajectory : nullptr;
  nlohmann::json record = {{"task", cd::kTaskName},
                           {"mode", key.mode},
                           {"n", key.length},
                           {"seed", key.seed},
                           {"index", key.index}};
  if (instance != nullptr) record["instance_seed"] = instance->seed;
  if (instance == nullptr || t == nullptr) {
    record["error"] =
        std::string((instance == nullptr ? "instance not generated" : episode.status().ToString()));
    record["passed"] = false;
    row.record = std::move(record);
    return row;
  }
  row.wall_ms = episode->wall_ms;
  row.peak_state_bytes = episode->peak_session_bytes;
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

absl::StatusOr<cd::CodeDebugTrajectory> OracleCodeDebugAgent::Solve(
    const cd::CodeDebugInstance& instance, cd::CodeDebugMode mode) {
  return cd::Oracle(instance, mode);
}

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// One live episode of PlayCodeDebugGames.
struct LiveGame {
  size_t index = 0;
  std::unique_ptr<cd::CodeDebugEnv> env;
  CodeDebugEpisode episode;
  Clock::time_point start;
  int slot = -1;
  int64_t written = 0;   // tokens the policy wrote
  int64_t position = 0;  // the next token's position in the session ([BOS] is 0)
  bool in_call = false;
  std::string command;
  bool done = false;
  absl::Status error;  // the policy's, if it failed

  void Stop(std::string reason) {
    episode.trajectory.stop_reason = std::move(reason);
    done = true;
  }
  void Fail(absl::Status status) {
    error = std::move(status);
    done = true;
  }
};

// Feeds the policy's next token into the episode: a command's bytes accumulate; a finished
// command goes to the debugger and its answer into the session.
void OnToken(LiveGame& g, TokenId id, agents::Policy& policy, const Tokenizer& tokenizer,
             const ModelDebugLimits& limits, const CodeDebugHooks* hooks) {
  ++g.written;
  const int64_t position = g.position++;
  if (hooks != nullptr && hooks->on_token) hooks->on_token(g.index, position, id, false);
  if (!g.in_call) {
    if (id == tokens::kEos) return g.Stop("eos");
    if (id != tokens::kCall) {
      return g.Stop(absl::StrCat("bad_token ", TokenLabel(tokenizer, id), " between calls"));
    }
    g.in_call = true;
    g.command.clear();
    return;
  }
  if (tokens::IsByte(id)) {
    if (static_cast<int64_t>(g.command.size()) >= limits.max_command_bytes) {
      return g.Stop("long_command");
    }
    g.command.push_back(static_cast<char>(id));
    return;
  }
  if (id != tokens::kCallEnd) {
    return g.Stop(absl::StrCat("bad_token ", TokenLabel(tokenizer, id), " in a command"));
  }
  g.in_call = false;
  g.env->Step(g.command);
  if (g.command == "run") ++g.episode.trajectory.runs;
  if (hooks != nullptr && hooks->on_step) hooks->on_step(g.index, position, g.env->steps().back());
  std::vector<TokenId> obs = {tokens::kObs};
  for (unsigned char c : g.env->steps().back().observation) obs.push_back(c);
  obs.push_back(tokens::kObsEnd);
  if (hooks != nullptr && hooks->on_token) {
    for (TokenId t : obs) hooks->on_token(g.index, g.position++, t, true);
  } else {
    g.position += static_cast<int64_t>(obs.size());
  }
  if (absl::Status s = policy.Append(g.slot, obs); !s.ok()) return g.Fail(std::move(s));
  g.episode.peak_session_bytes =
      std::max(g.episode.peak_session_bytes, policy.SessionBytes(g.slot));
  if (g.env->solved()) return g.Stop("solved");
  if (g.env->truncated()) return g.Stop("max_steps");
}

}  // namespace

std::vector<absl::StatusOr<CodeDebugEpisode>> PlayCodeDebugGames(
    agents::Policy& policy, std::span<const CodeDebugGame> games, const ModelDebugLimits& limits,
    int parallel, const CodeDebugHooks* hooks) {
  std::vector<absl::StatusOr<CodeDebugEpisode>> results(
      games.size(), absl::InternalError("code_debug: episode not played"));
  const Tokenizer tokenizer;
  parallel = std::max(1, parallel);
  size_t next = 0;
  std::vector<std::unique_ptr<LiveGame>> live;
  auto retire = [&](LiveGame& g) {
    if (g.slot >= 0) {
      g.episode.peak_session_bytes =
          std::max(g.episode.peak_session_bytes, policy.SessionBytes(g.slot));
      policy.Close(g.slot);
    }
    if (!g.error.ok()) {
      results[g.index] = std::move(g.error);
      return;
    }
    g.episode.trajectory.steps = g.env->steps();
    g.episode.trajectory.final_files = g.env->files();
    g.episode.wall_ms = MsSince(g.start);
    results[g.index] = std::move(g.episode);
  };
  while (next < games.size() || !live.empty()) {
    // Fill the batch.
    while (static_cast<int>(live.size()) < parallel && next < games.size()) {
      const CodeDebugGame& game = games[next];
      auto g = std::make_unique<LiveGame>();
      g->index = next++;
      g->start = Clock::now();
      g->env = std::make_unique<cd::CodeDebugEnv>(*game.instance, limits.max_steps);
      g->episode.trajectory.mode = game.mode;
      g->episode.trajectory.prompt = game.instance->prompt;
      std::vector<TokenId> prompt = {tokens::kBos};
      for (unsigned char c : game.instance->prompt) prompt.push_back(c);
      agents::EpisodeContext context;
      context.seed = game.seed;
      absl::StatusOr<int> slot = policy.Open(context, prompt);
      if (!slot.ok()) {
        g->Fail(slot.status());
        retire(*g);
        continue;
      }
      g->slot = *slot;
      g->position = static_cast<int64_t>(prompt.size());
      g->episode.peak_session_bytes = policy.SessionBytes(g->slot);
      live.push_back(std::move(g));
    }
    // The token budget (and a cancel) is checked before each token is asked for.
    const bool cancelled = hooks != nullptr && hooks->cancel != nullptr &&
                           hooks->cancel->load(std::memory_order_acquire);
    for (auto& g : live) {
      if (g->done) continue;
      if (cancelled) {
        g->Stop("cancelled");
      } else if (g->written >= limits.max_tokens) {
        g->Stop("max_tokens");
      }
    }
    std::vector<int> slots;
    for (const auto& g : live) {
      if (!g->done) slots.push_back(g->slot);
    }
    if (!slots.empty()) {
      absl::StatusOr<std::vector<TokenId>> step = policy.Step(slots);
      if (step.ok() && step->size() != slots.size()) {
        step = absl::InternalError(absl::StrCat("code_debug: the policy answered ", step->size(),
                                                " tokens for ", slots.size(), " episodes"));
      }
      size_t k = 0;
      for (auto& g : live) {
        if (g->done) continue;
        if (!step.ok()) {
          g->Fail(step.status());
        } else {
          OnToken(*g, (*step)[k++], policy, tokenizer, limits, hooks);
        }
      }
    }
    // Retire finished episodes.
    std::vector<std::unique_ptr<LiveGame>> still;
    for (auto& g : live) {
      if (g->done) {
        retire(*g);
      } else {
        still.push_back(std::move(g));
      }
    }
    live = std::move(still);
  }
  return results;
}

absl::StatusOr<cd::CodeDebugTrajectory> PlayCodeDebug(agents::Policy& policy,
                                                      const cd::CodeDebugInstance& instance,
                                                      cd::CodeDebugMode mode, uint64_t seed,
                                                      const ModelDebugLimits& limits) {
  const CodeDebugGame game{&instance, mode, seed};
  auto played = PlayCodeDebugGames(policy, {&game, 1}, limits, 1);
  if (!played[0].ok()) return played[0].status();
  return std::move(played[0]->trajectory);
}

void ReplayCodeDebugEvents(const cd::CodeDebugTrajectory& t, const CodeDebugHooks& hooks) {
  const tasks::Trajectory played = t.ToTrajectory();
  size_t step = 0;
  for (size_t i = played.PromptSize(); i < played.tokens.size(); ++i) {
    const TokenId id = played.tokens[i];
    const bool observation = played.roles[i] == tasks::Role::kObservation;
    if (hooks.on_token) hooks.on_token(0, static_cast<int64_t>(i), id, observation);
    if (id != tokens::kCallEnd) continue;
    if (step < t.steps.size() && hooks.on_step) {
      hooks.on_step(0, static_cast<int64_t>(i), t.steps[step]);
    }
    ++step;
  }
}

std::vector<absl::StatusOr<CodeDebugEpisode>> CodeDebugAgent::SolveAll(
    std::span<const CodeDebugGame> games) {
  std::vector<absl::StatusOr<CodeDebugEpisode>> out;
  out.reserve(games.size());
  for (const CodeDebugGame& game : games) {
    const Clock::time_point start = Clock::now();
    absl::StatusOr<cd::CodeDebugTrajectory> t = Solve(*game.instance, game.mode);
    if (!t.ok()) {
      out.push_back(t.status());
      continue;
    }
    CodeDebugEpisode e;
    e.trajectory = std::move(*t);
    e.wall_ms = MsSince(start);
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<cd::CodeDebugTrajectory> ModelCodeDebugAgent::Solve(
    const cd::CodeDebugInstance& instance, cd::CodeDebugMode mode) {
  const CodeDebugGame game{&instance, mode, instance.seed};
  auto played = SolveAll({&game, 1});
  if (!played[0].ok()) return played[0].status();
  return std::move(played[0]->trajectory);
}

std::vector<absl::StatusOr<CodeDebugEpisode>> ModelCodeDebugAgent::SolveAll(
    std::span<const CodeDebugGame> games) {
  agents::EnginePolicyOptions options;
  options.appends = agents::EnginePolicyOptions::Appends::kPrefill;  // observations are long
  options.threads = 1;  // RunCodeDebugEpisodes gives each thread its own batch
  agents::EnginePolicy policy(model_, engine::SamplingParams{}, options);
  return PlayCodeDebugGames(policy, games, limits_, batch_);
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
        "code_debug: mode '", mode, "' is not a code_debug mode (interactive, single-turn)"));
  }
  for (int64_t n : lengths) {
    if (n < cd::kMinFunctions || n > cd::kMaxFunctions + 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "code_debug: length ", n, " is not in ", cd::kMinFunctions, "..", cd::kMaxFunctions + 1));
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
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(keys.size())));
  // Up to agent.batch() episodes per SolveAll, fewer when that would leave a thread idle.
  const size_t chunk = std::max<size_t>(
      1, std::min<size_t>(agent.batch(), (keys.size() + n - 1) / static_cast<size_t>(n)));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t begin = next.fetch_add(chunk); begin < keys.size(); begin = next.fetch_add(chunk)) {
      const size_t end = std::min(keys.size(), begin + chunk);
      std::vector<absl::StatusOr<cd::CodeDebugInstance>> instances;
      std::vector<CodeDebugGame> games;
      std::vector<size_t> played;  // key index of games[j]
      for (size_t i = begin; i < end; ++i) {
        const EpisodeKey& k = keys[i];
        instances.push_back(cd::GenerateCodeDebug(
            static_cast<int>(k.length),
            tasks::MixSeed(static_cast<uint64_t>(k.seed), static_cast<uint64_t>(k.index))));
      }
      for (size_t i = begin; i < end; ++i) {
        const auto& instance = instances[i - begin];
        if (!instance.ok()) {
          rows[i] = CodeDebugRow(keys[i], nullptr, instance.status(), agent.is_expert());
          continue;
        }
        games.push_back({&*instance, *cd::ParseCodeDebugMode(keys[i].mode), instance->seed});
        played.push_back(i);
      }
      std::vector<absl::StatusOr<CodeDebugEpisode>> results = agent.SolveAll(games);
      for (size_t j = 0; j < played.size(); ++j) {
        const size_t i = played[j];
        rows[i] = CodeDebugRow(keys[i], &*instances[i - begin], results[j], agent.is_expert());
      }
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < n; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return rows;
}

}  // namespace tapeloop::eval
