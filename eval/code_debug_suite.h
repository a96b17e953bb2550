// Code-debugging episodes for the evaluator (task "code_debug", tasks/code_debug/code_debug.h).
//
// Episode i of (n, seed) is the instance GenerateCodeDebug(n, MixSeed(seed, i)), played by a
// CodeDebugAgent in one mode ("interactive" or "single-turn") and scored by ScoreCodeDebug on
// the files the agent left: it passes when the program runs without error and prints exactly
// the expected output. Rows go to the same eval tables as the arithmetic tasks (task
// "code_debug", mode "interactive" / "single-turn", length n), so resume, aggregates and
// reports work unchanged; `correct` is the pass.
//
// Agents: only the oracle policies exist now (InteractiveOracle / SingleTurnOracle). A model
// policy plugs in as another CodeDebugAgent (see docs/evaluation.md for what is missing).
//
// Thread safety: an agent's Solve may be called from several threads at once (the oracle's
// is); RunCodeDebugEpisodes runs episodes on `threads` threads.
#ifndef TAPELOOP_EVAL_CODE_DEBUG_SUITE_H_
#define TAPELOOP_EVAL_CODE_DEBUG_SUITE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "eval/results.h"
#include "tasks/code_debug/code_debug.h"

namespace tapeloop::eval {

class CodeDebugAgent {
 public:
  virtual ~CodeDebugAgent() = default;
  // Plays one episode of `instance` in `mode`: the commands it sent, the debugger's answers
  // and the files it left. An error is recorded as a failed episode, not a failed run.
  virtual absl::StatusOr<tasks::code_debug::CodeDebugTrajectory> Solve(
      const tasks::code_debug::CodeDebugInstance& instance,
      tasks::code_debug::CodeDebugMode mode) = 0;
};

// The expert policies of tasks/code_debug.
class OracleCodeDebugAgent final : public CodeDebugAgent {
 public:
  absl::StatusOr<tasks::code_debug::CodeDebugTrajectory> Solve(
      const tasks::code_debug::CodeDebugInstance& instance,
      tasks::code_debug::CodeDebugMode mode) override;
};

// The agent for an evaluation entry: "oracle" -> OracleCodeDebugAgent. A checkpoint is
// UNIMPLEMENTED for now (no model policy drives the debugger yet; docs/evaluation.md).
absl::StatusOr<std::unique_ptr<CodeDebugAgent>> MakeCodeDebugAgent(const std::string& model);

// INVALID_ARGUMENT unless `mode` is "interactive" or "single-turn" and every length is a valid
// n (2..1001).
absl::Status ValidateCodeDebugCell(const std::string& mode, const std::vector<int64_t>& lengths);

// Plays the episodes `keys` (task code_debug; key.mode, key.length = n, key.seed, key.index)
// with `agent` on `threads` threads (>= 1) and returns one row per key, in order.
// INVALID_ARGUMENT for a key of another task or a bad mode / n.
absl::StatusOr<std::vector<EpisodeRow>> RunCodeDebugEpisodes(CodeDebugAgent& agent,
                                                             const std::vector<EpisodeKey>& keys,
                                                             int threads);

}  // namespace tapeloop::eval

#endif  // TAPELOOP_EVAL_CODE_DEBUG_SUITE_H_
