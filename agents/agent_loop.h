// The agent loop: episodes of a task played by a Policy against the tools, many at once.
//
// Per episode: open a session with the prompt; then per step generate one token; a pointer
// command runs on the episode's pointer memory and a read's observation token is appended to
// the SAME session; a [CALL] ... [/CALL] text call runs on the episode's tool registry (the
// calculator) and "[OBS] result [/OBS]" is appended; thoughts and outputs go into pointer
// memory; [EOS] ends the episode. Budgets bound generated tokens and tool steps. All live
// episodes are advanced together by one batched Policy::Step per loop iteration, and finished
// episodes are replaced by pending ones (continuous batching). Results do not depend on the
// batch size.
//
// Modes: pointer (pointer tool), calculator (text tool), cot / direct / direct-reversed (no
// tool: every token is the model's).
//
// Streaming and cancellation (optional, for servers): LoopOptions::on_event is told, on the
// loop's thread and in order, every token after the prompt as it enters an episode (generated
// or appended by a tool, with its role), every tool call and every tool result; it may block
// (that pauses the whole loop: back-pressure). LoopOptions::cancel is checked once per step: once
// it is true every live and pending episode stops with stop_reason "cancelled". Neither changes
// what an episode does: records are identical with and without a callback.
#ifndef TAPELOOP_AGENTS_AGENT_LOOP_H_
#define TAPELOOP_AGENTS_AGENT_LOOP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agents/policy.h"
#include "nlohmann/json.hpp"
#include "tasks/task.h"
#include "tasks/trajectory.h"
#include "tools/tool.h"

namespace tapeloop::agents {

struct EpisodeSpec {
  const tasks::Task* task = nullptr;
  tasks::Instance instance;
  tasks::Mode mode = tasks::Mode::kPointer;
  uint64_t seed = 0;  // sampling seed of the episode
};

// What LoopOptions::on_event sees. Pointers are valid during the callback only.
struct LoopEvent {
  enum class Kind {
    kToken,       // a token entered the trajectory: `token`, `role`, `position`
    kToolCall,    // a tool call was made: `call`; `position` of its command token
    kToolResult,  // the call's result: `call`, `result`, `observation` (a pointer read's token)
  };
  Kind kind = Kind::kToken;
  size_t episode = 0;    // index into the specs
  int64_t position = 0;  // position in the trajectory ([BOS] is 0)
  TokenId token = 0;
  tasks::Role role = tasks::Role::kPrompt;
  // Pointer commands are reported as calls of "pointer_memory" with arguments
  // {"op": "new"|"left"|"right"|"read"|"write", "pointer": k} and ids "ptr-<step>"; text calls
  // as the calculator's JSON call with ids "call-<n>".
  const tools::ToolCall* call = nullptr;
  const tools::ToolResult* result = nullptr;
  std::optional<TokenId> observation;
};
using LoopEventCallback = std::function<void(const LoopEvent&)>;

struct LoopOptions {
  int parallel = 8;  // episodes live at once (the decode batch)
  // Per-episode budgets; <= 0 means "derived from the expert": 2x its generated tokens / tool
  // steps plus a margin of 64.
  int64_t max_generated_tokens = 0;
  int64_t max_tool_steps = 0;
  int64_t max_call_tokens = 1 << 20;  // longest [CALL] text
  // Optional observer (see the top of this file). Called on the loop's thread.
  LoopEventCallback on_event = nullptr;
  // Optional cancellation flag, read once per step; must outlive RunEpisodes.
  const std::atomic<bool>* cancel = nullptr;
};

// One text-tool call of an episode.
struct ToolEvent {
  int64_t token_index = 0;  // position of its [/CALL] in the trajectory
  tools::ToolCall call;
  tools::ToolResult result;
  double ms = 0;
};

struct EpisodeRecord {
  std::string task;
  tasks::Mode mode = tasks::Mode::kPointer;
  std::string policy;
  uint64_t seed = 0;
  tasks::Instance instance;
  tasks::Trajectory trajectory;  // every token, prompt included, with roles
  std::vector<ToolEvent> calls;  // text-tool calls (pointer commands are tokens)
  int64_t generated_tokens = 0;
  int64_t tool_steps = 0;  // pointer commands + text calls
  // "eos", "token_budget", "step_budget", "tool_error" (a pointer command the memory
  // refused), "invalid_token", "policy_error", "cancelled" (LoopOptions::cancel was set).
  std::string stop_reason;
  std::string error;
  tasks::Score score;
  double wall_ms = 0, policy_ms = 0, tool_ms = 0;
  int64_t peak_session_bytes = 0;

  std::string OutputText() const;
  // One JSONL line's object: task, mode, policy, seed, instance, tokens (ids), roles (one
  // letter per token: P prompt, T thought, C command, O observation, A output, E eos), text,
  // calls, counts, stop_reason, error, final_answer, score, timings, peak_session_bytes.
  nlohmann::json ToJson() const;
};

// Episode `index` of (task, mode, length, seed), the one `tapeloop run --seed S` plays as its
// i-th episode and `tapeloop eval` stores under that key: the instance from
// Rng(MixSeed(seed, index)) (training draws lengths from U{1..length}), the sampling seed
// MixSeed(seed + 1, index).
EpisodeSpec MakeEpisodeSpec(const tasks::Task* task, tasks::Mode mode, int64_t length, int64_t seed,
                            int64_t index, bool training = false);

// Runs every spec through `policy`. Errors of one episode are recorded in its record; the
// returned status fails only for invalid arguments (null task, parallel < 1).
absl::StatusOr<std::vector<EpisodeRecord>> RunEpisodes(Policy& policy,
                                                       std::span<const EpisodeSpec> specs,
                                                       const LoopOptions& options = {});

}  // namespace tapeloop::agents

#endif  // TAPELOOP_AGENTS_AGENT_LOOP_H_
