// Code-debugging episodes for the evaluator (task "code_debug", tasks/code_debug/code_debug.h).
//
// Episode i of (n, seed) is the instance GenerateCodeDebug(n, MixSeed(seed, i)), played by a
// CodeDebugAgent in one mode ("interactive" or "single-turn") and scored by ScoreCodeDebug on
// the files the agent left: it passes when the program runs without error and prints exactly
// the expected output. Rows go to the same eval tables as the arithmetic tasks (task
// "code_debug", mode "interactive" / "single-turn", length n), so resume, aggregates and
// reports work unchanged; `correct` is the pass.
//
// Agents: the oracle policies (InteractiveOracle / SingleTurnOracle) and a model run by the
// engine (ModelCodeDebugAgent: it writes the commands of the trajectories it was trained on,
// `tapeloop train --task code_debug`; docs/evaluation.md).
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
#include "agents/policy.h"
#include "engine/models/model.h"
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
  // True for the expert itself: its episodes match the expert's trajectory by definition (a
  // model's are compared with the oracle's, command by command).
  virtual bool is_expert() const { return false; }
};

// The expert policies of tasks/code_debug.
class OracleCodeDebugAgent final : public CodeDebugAgent {
 public:
  absl::StatusOr<tasks::code_debug::CodeDebugTrajectory> Solve(
      const tasks::code_debug::CodeDebugInstance& instance,
      tasks::code_debug::CodeDebugMode mode) override;
  bool is_expert() const override { return true; }
};

// Bounds of one model-played episode.
struct ModelDebugLimits {
  int max_steps = 50;                // debugger commands (CodeDebugEnv's truncation)
  int64_t max_command_bytes = 4096;  // bytes of one command line
  int64_t max_tokens = 100000;       // tokens the model writes in the whole episode
};

// Plays one code_debug episode with `policy` in the token form of the trainer's trajectories
// (CodeDebugTrajectory::ToTrajectory): the session opens with [BOS] and the prompt's bytes;
// the policy writes [CALL] command bytes [/CALL]; the command goes to a CodeDebugEnv and
// [OBS] observation bytes [/OBS] are appended to the same session (never a re-prefill); again,
// until the policy writes [EOS], the program is fixed (a `run` printed the expected output),
// max_steps commands were sent, the policy wrote max_tokens tokens or a command longer than
// max_command_bytes, or it wrote a token that cannot come next (anything but [CALL] / [EOS]
// between calls, a special token inside one). The trajectory's stop_reason says which; its
// final_files are the files as the agent left them. `seed` seeds the policy's sampling.
// Errors: the policy's (a model failure), not the model's choices.
absl::StatusOr<tasks::code_debug::CodeDebugTrajectory> PlayCodeDebug(
    agents::Policy& policy, const tasks::code_debug::CodeDebugInstance& instance,
    tasks::code_debug::CodeDebugMode mode, uint64_t seed, const ModelDebugLimits& limits = {});

// A model (any family the engine runs) plays through PlayCodeDebug with greedy decoding, one
// agents::EnginePolicy per episode, so Solve may run on several threads at once. The model
// plays what it was trained on whatever the mode (the mode labels the result); the model must
// outlive the agent.
class ModelCodeDebugAgent final : public CodeDebugAgent {
 public:
  explicit ModelCodeDebugAgent(const engine::Model* model, ModelDebugLimits limits = {})
      : model_(model), limits_(limits) {}
  absl::StatusOr<tasks::code_debug::CodeDebugTrajectory> Solve(
      const tasks::code_debug::CodeDebugInstance& instance,
      tasks::code_debug::CodeDebugMode mode) override;

 private:
  const engine::Model* model_;
  ModelDebugLimits limits_;
};

// The agent for an evaluation entry: "oracle" -> OracleCodeDebugAgent; a loaded checkpoint
// (`model` not null) -> ModelCodeDebugAgent. INVALID_ARGUMENT for a checkpoint name without
// its model.
absl::StatusOr<std::unique_ptr<CodeDebugAgent>> MakeCodeDebugAgent(const std::string& name,
                                                                   const engine::Model* model);

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
