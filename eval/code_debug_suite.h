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
// Thread safety: an agent's Solve and SolveAll may be called from several threads at once (the
// oracle's and the model's may); RunCodeDebugEpisodes runs episodes on `threads` threads.
#ifndef TAPELOOP_EVAL_CODE_DEBUG_SUITE_H_
#define TAPELOOP_EVAL_CODE_DEBUG_SUITE_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agents/policy.h"
#include "engine/models/model.h"
#include "eval/results.h"
#include "tasks/code_debug/code_debug.h"

namespace tapeloop::eval {

// One episode to play: an instance in a mode; `seed` seeds a model's sampling.
struct CodeDebugGame {
  const tasks::code_debug::CodeDebugInstance* instance = nullptr;
  tasks::code_debug::CodeDebugMode mode = tasks::code_debug::CodeDebugMode::kInteractive;
  uint64_t seed = 0;
};

// A played episode: the commands sent, the debugger's answers and the files left
// (`trajectory`), the largest the player's session state grew (0 without model state) and the
// episode's wall time from its start to its end.
struct CodeDebugEpisode {
  tasks::code_debug::CodeDebugTrajectory trajectory;
  int64_t peak_session_bytes = 0;
  double wall_ms = 0;
};

class CodeDebugAgent {
 public:
  virtual ~CodeDebugAgent() = default;
  // Plays one episode of `instance` in `mode`: the commands it sent, the debugger's answers
  // and the files it left. An error is recorded as a failed episode, not a failed run.
  virtual absl::StatusOr<tasks::code_debug::CodeDebugTrajectory> Solve(
      const tasks::code_debug::CodeDebugInstance& instance,
      tasks::code_debug::CodeDebugMode mode) = 0;
  // Plays several episodes; result i is game i's and equals what Solve gives for it. The
  // default plays them one after the other; a model plays them together (batched decode).
  virtual std::vector<absl::StatusOr<CodeDebugEpisode>> SolveAll(
      std::span<const CodeDebugGame> games);
  // Episodes SolveAll plays at once (RunCodeDebugEpisodes hands a thread up to this many).
  virtual int batch() const { return 1; }
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

// Optional hooks into PlayCodeDebugGames, for a client that streams an episode as it is played
// (the gRPC Agent service). Called on the playing thread, in trajectory order per game:
//   on_token(game, position, token, observation): every token after the prompt, written by the
//     policy (observation = false) or appended from the debugger's answer ([OBS] ... [/OBS],
//     true), at its position in the session ([BOS] is 0);
//   on_step(game, position, step): a command once the debugger has answered it (`position` is
//     its [/CALL]'s), before the answer's tokens.
// `cancel`, when set, stops every live episode before its next token with stop_reason
// "cancelled".
struct CodeDebugHooks {
  std::function<void(size_t game, int64_t position, TokenId token, bool observation)> on_token;
  std::function<void(size_t game, int64_t position, const tasks::code_debug::DebugStep& step)>
      on_step;
  const std::atomic<bool>* cancel = nullptr;
};

// PlayCodeDebug for many games with one policy: up to `parallel` (>= 1) episodes live at once,
// each decode step one Policy::Step over all of them, a finished episode's place taken by the
// next game. Result i is game i's, the same as PlayCodeDebug gives it alone (a slot's tokens do
// not depend on the other slots: the Policy contract). A policy error fails the episodes it
// touched (a Step error: every live one) and the others go on. `hooks` may be null.
std::vector<absl::StatusOr<CodeDebugEpisode>> PlayCodeDebugGames(
    agents::Policy& policy, std::span<const CodeDebugGame> games, const ModelDebugLimits& limits,
    int parallel, const CodeDebugHooks* hooks = nullptr);

// Calls `hooks` (game 0) with the events PlayCodeDebugGames reports for a policy that writes
// exactly `t`'s commands and then [EOS]: the tokens of t.ToTrajectory() after its prompt, and
// each step at its [/CALL]. For episodes played without a policy (the oracles).
void ReplayCodeDebugEvents(const tasks::code_debug::CodeDebugTrajectory& t,
                           const CodeDebugHooks& hooks);

// A model (any family the engine runs) plays through PlayCodeDebugGames with greedy decoding:
// SolveAll plays up to `batch` episodes with one agents::EnginePolicy (its own sessions, so
// SolveAll and Solve may run on several threads at once). The model plays what it was trained
// on whatever the mode (the mode labels the result); the model must outlive the agent.
class ModelCodeDebugAgent final : public CodeDebugAgent {
 public:
  explicit ModelCodeDebugAgent(const engine::Model* model, ModelDebugLimits limits = {},
                               int batch = 16)
      : model_(model), limits_(limits), batch_(std::max(1, batch)) {}
  absl::StatusOr<tasks::code_debug::CodeDebugTrajectory> Solve(
      const tasks::code_debug::CodeDebugInstance& instance,
      tasks::code_debug::CodeDebugMode mode) override;
  std::vector<absl::StatusOr<CodeDebugEpisode>> SolveAll(
      std::span<const CodeDebugGame> games) override;
  int batch() const override { return batch_; }

 private:
  const engine::Model* model_;
  ModelDebugLimits limits_;
  int batch_;
};

// The agent for an evaluation entry: "oracle" -> OracleCodeDebugAgent; a loaded checkpoint
// (`model` not null) -> ModelCodeDebugAgent. INVALID_ARGUMENT for a checkpoint name without
// its model.
absl::StatusOr<std::unique_ptr<CodeDebugAgent>> MakeCodeDebugAgent(const std::string& name,
                                                                   const engine::Model* model);

// INVALID_ARGUMENT unless `mode` is "interactive" or "single-turn" and every length is a valid
// n (2..1001).
absl::Status ValidateCodeDebugCell(const std::string& mode, const std::vector<int64_t>& lengths);

// The evaluation row of one played episode (`episode` for `key`'s `instance`, null when it was
// not generated): the score on the files the agent left, the trajectory compared with the
// expert's (true without comparing when `expert`), and the record `tapeloop run --task
// code_debug --json` prints and the evaluator stores.
EpisodeRow CodeDebugRow(const EpisodeKey& key, const tasks::code_debug::CodeDebugInstance* instance,
                        const absl::StatusOr<CodeDebugEpisode>& episode, bool expert);

// Plays the episodes `keys` (task code_debug; key.mode, key.length = n, key.seed, key.index)
// with `agent` on `threads` threads (>= 1), each handing the agent's SolveAll up to
// agent.batch() episodes at a time (fewer when that would leave a thread idle), and returns one
// row per key, in order. An episode's seed is its instance's.
// INVALID_ARGUMENT for a key of another task or a bad mode / n.
absl::StatusOr<std::vector<EpisodeRow>> RunCodeDebugEpisodes(CodeDebugAgent& agent,
                                                             const std::vector<EpisodeKey>& keys,
                                                             int threads);

}  // namespace tapeloop::eval

#endif  // TAPELOOP_EVAL_CODE_DEBUG_SUITE_H_
