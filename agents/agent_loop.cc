#include "agents/agent_loop.h"

#include <chrono>
#include <deque>
#include <memory>

#include "absl/strings/str_cat.h"
#include "tools/calculator.h"
#include "tools/pointer_memory.h"
#include "tools/registry.h"

namespace tapeloop::agents {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Calls a calculator episode may make: the mode is single-turn, a few more are answered
// (then refused with an error observation) so a model that repeats itself is visible.
constexpr int64_t kCalculatorCalls = 4;

// The incremental twin of tasks::TrajectoryFromTokens' role rules, for the tokens after the
// prompt (tests/agents/agent_loop_events_test.cc checks that they agree).
struct RoleTracker {
  bool direct = false, after_ans = false, in_call = false, in_obs = false, expect_obs = false;

  tasks::Role Next(TokenId id) {
    if (expect_obs) {
      expect_obs = false;
      return tasks::Role::kObservation;
    }
    if (in_obs) {
      in_obs = id != tokens::kObsEnd;
      return tasks::Role::kObservation;
    }
    if (in_call) {
      in_call = id != tokens::kCallEnd;
      return tasks::Role::kCommand;
    }
    if (id == tokens::kObs) {
      in_obs = true;
      return tasks::Role::kObservation;
    }
    if (id == tokens::kCall) {
      in_call = true;
      return tasks::Role::kCommand;
    }
    if (tokens::IsPointerCommand(id)) {
      expect_obs = tokens::CommandOp(id) == tokens::PointerOp::kRead;
      return tasks::Role::kCommand;
    }
    if (id == tokens::kEos) return tasks::Role::kEos;
    if (direct || after_ans) return tasks::Role::kOutput;
    after_ans = id == tokens::kAns;
    return tasks::Role::kThought;
  }
};

struct Live {
  size_t index = 0;
  int slot = -1;
  EpisodeRecord record;
  tasks::Trajectory expert;
  EpisodeContext context;
  std::unique_ptr<tools::PointerMemory> memory;
  std::unique_ptr<tools::ToolRegistry> registry;
  std::vector<TokenId> tokens;
  size_t prompt_size = 0;
  bool in_call = false;
  size_t call_start = 0;
  int64_t token_budget = 0;
  int64_t step_budget = 0;
  Clock::time_point start;
  bool done = false;
  RoleTracker roles;  // used only when events are reported

  void Stop(std::string reason, std::string error = "") {
    done = true;
    record.stop_reason = std::move(reason);
    record.error = std::move(error);
  }
};

// Appends `t` to the episode's tokens and reports it.
void PushToken(Live& e, TokenId t, const LoopOptions& options) {
  e.tokens.push_back(t);
  if (!options.on_event) return;
  LoopEvent event;
  event.kind = LoopEvent::Kind::kToken;
  event.episode = e.index;
  event.position = static_cast<int64_t>(e.tokens.size()) - 1;
  event.token = t;
  event.role = e.roles.Next(t);
  options.on_event(event);
}

void ReportCall(const Live& e, const tools::ToolCall& call, const tools::ToolResult& result,
                std::optional<TokenId> observation, int64_t position, const LoopOptions& options) {
  LoopEvent event;
  event.kind = LoopEvent::Kind::kToolCall;
  event.episode = e.index;
  event.position = position;
  event.call = &call;
  options.on_event(event);
  event.kind = LoopEvent::Kind::kToolResult;
  event.result = &result;
  event.observation = observation;
  options.on_event(event);
}

// Reports pointer command `t` (the last token) and what the memory answered.
void ReportPointerCommand(const Live& e, TokenId t,
                          const absl::StatusOr<std::optional<TokenId>>& observed,
                          const LoopOptions& options) {
  static const Tokenizer* tokenizer = new Tokenizer();
  static constexpr const char* kOps[] = {"new", "left", "right", "read", "write"};
  tools::ToolCall call;
  call.id = absl::StrCat("ptr-", e.record.tool_steps);
  call.name = tools::PointerMemoryTool::kName;
  call.arguments = {{"op", kOps[static_cast<int>(tokens::CommandOp(t))]},
                    {"pointer", tokens::CommandPointer(t)}};
  std::optional<TokenId> observation;
  tools::ToolResult result;
  if (!observed.ok()) {
    result = tools::ToolResult::Error(call.id, std::string(observed.status().message()));
  } else if (observed->has_value()) {
    observation = **observed;
    result = tools::ToolResult::Ok(call.id, tokenizer->TokenText(**observed));
  } else {
    result = tools::ToolResult::Ok(call.id, "ok");
  }
  ReportCall(e, call, result, observation, static_cast<int64_t>(e.tokens.size()) - 1, options);
}

// Handles one generated token; returns the observation tokens to append (maybe none).
std::vector<TokenId> OnToken(Live& e, TokenId t, const LoopOptions& options) {
  static const Tokenizer* tokenizer = new Tokenizer();
  std::vector<TokenId> observation;
  ++e.record.generated_tokens;
  if (!tokens::IsValid(t)) {  // not kept in the trajectory, which holds valid ids only
    e.Stop("invalid_token", absl::StrCat("generated id ", t, " is outside the vocabulary"));
    return observation;
  }
  PushToken(e, t, options);
  if (t == tokens::kEos) {
    e.Stop("eos");
    return observation;
  }
  const auto tool_start = Clock::now();
  if (e.record.mode == tasks::Mode::kPointer) {
    if (tokens::IsPointerCommand(t)) {
      if (++e.record.tool_steps > e.step_budget) {
        e.Stop("step_budget");
        return observation;
      }
      auto observed = e.memory->Command(t);
      if (options.on_event) ReportPointerCommand(e, t, observed, options);
      if (!observed.ok()) {
        e.Stop("tool_error", std::string(observed.status().message()));
      } else if (observed->has_value()) {
        observation.push_back(**observed);
      }
    } else if (auto status = e.memory->Emit(t); !status.ok()) {
      e.Stop("tool_error", std::string(status.message()));
    }
  } else if (e.record.mode == tasks::Mode::kCalculator) {
    if (e.in_call && t == tokens::kCallEnd) {
      e.in_call = false;
      if (++e.record.tool_steps > e.step_budget) {
        e.Stop("step_budget");
        return observation;
      }
      std::vector<TokenId> body(e.tokens.begin() + e.call_start + 1, e.tokens.end() - 1);
      ToolEvent event;
      event.token_index = static_cast<int64_t>(e.tokens.size()) - 1;
      std::string text = *tokenizer->Decode(body);
      const std::string id = absl::StrCat("call-", e.record.calls.size() + 1);
      event.result = e.registry->CallText(text, id);
      if (auto* tool = e.registry->Find(tools::CalculatorTool::kName)) {
        if (auto call = tool->ParseTextCall(text)) event.call = *call;
      }
      event.call.id = id;
      if (event.call.name.empty()) event.call.arguments = {{"text", text}};
      observation.push_back(tokens::kObs);
      for (TokenId id_t : tokenizer->Encode(event.result.is_error ? "error: " + event.result.text
                                                                  : event.result.text)) {
        observation.push_back(id_t);
      }
      observation.push_back(tokens::kObsEnd);
      event.ms = MsSince(tool_start);
      if (options.on_event) {
        ReportCall(e, event.call, event.result, std::nullopt, event.token_index, options);
      }
      e.record.calls.push_back(std::move(event));
    } else if (e.in_call) {
      if (static_cast<int64_t>(e.tokens.size() - e.call_start) > options.max_call_tokens) {
        e.Stop("token_budget", "call text longer than max_call_tokens");
      }
    } else if (t == tokens::kCall) {
      e.in_call = true;
      e.call_start = e.tokens.size() - 1;
    }
  }
  e.record.tool_ms += MsSince(tool_start);
  if (!e.done && e.record.generated_tokens >= e.token_budget) e.Stop("token_budget");
  return observation;
}

void Finish(Live& e) {
  auto trajectory = tasks::TrajectoryFromTokens(e.tokens, e.record.mode, e.prompt_size);
  e.record.trajectory = std::move(*trajectory);  // ids were validated token by token
  e.record.score =
      tasks::ScoreOutput(e.record.instance, e.record.mode, e.record.trajectory.Output(),
                         &e.record.trajectory, &e.expert);
  e.record.wall_ms = MsSince(e.start);
}

}  // namespace

std::string EpisodeRecord::OutputText() const {
  std::string s;
  const Tokenizer tokenizer;
  for (TokenId t : trajectory.Output()) s += tokenizer.TokenText(t);
  return s;
}

nlohmann::json EpisodeRecord::ToJson() const {
  const Tokenizer tokenizer;
  nlohmann::json calls_json = nlohmann::json::array();
  for (const auto& c : calls) {
    calls_json.push_back({{"token_index", c.token_index},
                          {"call", c.call.ToJson()},
                          {"result", c.result.ToJson()},
                          {"ms", c.ms}});
  }
  std::string text;
  for (TokenId t : trajectory.tokens) text += tokenizer.TokenText(t);
  return {{"task", task},
          {"mode", std::string(tasks::ModeName(mode))},
          {"policy", policy},
          {"seed", seed},
          {"instance", instance.ToJson()},
          {"tokens", trajectory.tokens},
          {"roles", trajectory.RoleString()},
          {"text", text},
          {"calls", calls_json},
          {"generated_tokens", generated_tokens},
          {"tool_steps", tool_steps},
          {"stop_reason", stop_reason},
          {"error", error},
          {"final_answer", OutputText()},
          {"score", score.ToJson()},
          {"timings", {{"wall_ms", wall_ms}, {"policy_ms", policy_ms}, {"tool_ms", tool_ms}}},
          {"peak_session_bytes", peak_session_bytes}};
}

absl::StatusOr<std::vector<EpisodeRecord>> RunEpisodes(Policy& policy,
                                                       std::span<const EpisodeSpec> specs,
                                                       const LoopOptions& options) {
  if (options.parallel < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent loop: parallel must be >= 1, got ", options.parallel));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].task == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("agent loop: episode ", i, " has no task"));
    }
  }
  std::vector<EpisodeRecord> records(specs.size());
  std::deque<size_t> pending;
  for (size_t i = 0; i < specs.size(); ++i) pending.push_back(i);
  std::vector<std::unique_ptr<Live>> live;

  auto close = [&](Live& e) {
    if (e.slot >= 0) {
      e.record.peak_session_bytes =
          std::max(e.record.peak_session_bytes, policy.SessionBytes(e.slot));
      policy.Close(e.slot);
    }
    Finish(e);
    records[e.index] = std::move(e.record);
  };

  auto cancelled = [&] {
    return options.cancel != nullptr && options.cancel->load(std::memory_order_acquire);
  };
  while (!pending.empty() || !live.empty()) {
    if (cancelled()) {
      for (auto& e : live) {
        e->Stop("cancelled");
        close(*e);
      }
      live.clear();
    }
    // Fill the batch.
    while (static_cast<int>(live.size()) < options.parallel && !pending.empty()) {
      const size_t i = pending.front();
      pending.pop_front();
      const EpisodeSpec& spec = specs[i];
      auto e = std::make_unique<Live>();
      e->index = i;
      e->start = Clock::now();
      e->record.task = std::string(spec.task->name());
      e->record.mode = spec.mode;
      e->record.policy = policy.name();
      e->record.seed = spec.seed;
      e->record.instance = spec.instance;
      auto expert = spec.task->Expert(spec.instance, spec.mode);
      e->tokens = tasks::PromptTokens(spec.instance);
      e->prompt_size = e->tokens.size();
      if (!expert.ok()) {
        e->Stop("policy_error", absl::StrCat("no expert: ", expert.status().message()));
        close(*e);
        continue;
      }
      e->expert = std::move(*expert);
      int64_t expert_generated = 0, expert_steps = 0;
      for (size_t k = e->prompt_size; k < e->expert.tokens.size(); ++k) {
        const tasks::Role r = e->expert.roles[k];
        if (r != tasks::Role::kObservation || spec.mode == tasks::Mode::kCot) ++expert_generated;
        if (tokens::IsPointerCommand(e->expert.tokens[k]) ||
            e->expert.tokens[k] == tokens::kCallEnd) {
          ++expert_steps;
        }
      }
      e->token_budget = options.max_generated_tokens > 0 ? options.max_generated_tokens
                                                         : 2 * expert_generated + 64;
      e->step_budget = options.max_tool_steps > 0 ? options.max_tool_steps : 2 * expert_steps + 64;
      if (spec.mode == tasks::Mode::kPointer) {
        e->memory = std::make_unique<tools::PointerMemory>(
            std::vector<TokenId>(e->tokens.begin() + 1, e->tokens.end()));
      } else if (spec.mode == tasks::Mode::kCalculator) {
        e->registry = std::make_unique<tools::ToolRegistry>(kCalculatorCalls);
        (void)e->registry->Register(std::make_unique<tools::CalculatorTool>());
      }
      e->roles.direct =
          spec.mode == tasks::Mode::kDirect || spec.mode == tasks::Mode::kDirectReversed;
      if (cancelled()) {
        e->Stop("cancelled");
        close(*e);
        continue;
      }
      e->context = EpisodeContext{&e->record.instance, spec.mode, &e->expert, spec.seed};
      const auto open_start = Clock::now();
      auto slot = policy.Open(e->context, e->tokens);
      e->record.policy_ms += MsSince(open_start);
      if (!slot.ok()) {
        e->Stop("policy_error", std::string(slot.status().message()));
        close(*e);
        continue;
      }
      e->slot = *slot;
      e->record.peak_session_bytes = policy.SessionBytes(e->slot);
      live.push_back(std::move(e));
    }
    if (live.empty()) break;

    // One batched step.
    std::vector<int> slots;
    slots.reserve(live.size());
    for (const auto& e : live) slots.push_back(e->slot);
    const auto step_start = Clock::now();
    auto next = policy.Step(slots);
    const double share = MsSince(step_start) / static_cast<double>(live.size());
    for (size_t k = 0; k < live.size(); ++k) {
      Live& e = *live[k];
      e.record.policy_ms += share;
      if (!next.ok()) {
        e.Stop("policy_error", std::string(next.status().message()));
        continue;
      }
      std::vector<TokenId> observation = OnToken(e, (*next)[k], options);
      if (!observation.empty() && !e.done) {
        const auto append_start = Clock::now();
        auto status = policy.Append(e.slot, observation);
        e.record.policy_ms += MsSince(append_start);
        for (TokenId o : observation) PushToken(e, o, options);
        if (!status.ok()) e.Stop("policy_error", std::string(status.message()));
      }
    }
    // Retire finished episodes.
    std::vector<std::unique_ptr<Live>> still;
    still.reserve(live.size());
    for (auto& e : live) {
      if (e->done) {
        close(*e);
      } else {
        still.push_back(std::move(e));
      }
    }
    live = std::move(still);
  }
  return records;
}

EpisodeSpec MakeEpisodeSpec(const tasks::Task* task, tasks::Mode mode, int64_t length, int64_t seed,
                            int64_t index, bool training) {
  tasks::Rng rng(tasks::MixSeed(static_cast<uint64_t>(seed), static_cast<uint64_t>(index)));
  return {task, task->Generate(static_cast<int>(length), training, rng), mode,
          tasks::MixSeed(static_cast<uint64_t>(seed) + 1, static_cast<uint64_t>(index))};
}

}  // namespace tapeloop::agents
