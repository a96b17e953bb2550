// Trajectories: the token sequence of one episode with the role of every token, and its
// training form (token ids + loss mask). docs/trajectory-format.md is the reference.
#ifndef TAPELOOP_TASKS_TRAJECTORY_H_
#define TAPELOOP_TASKS_TRAJECTORY_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer.h"

namespace tapeloop::tasks {

// How the model works a task.
enum class Mode {
  kPointer,         // interactive pointer-memory tool: commands answered by observations
  kCalculator,      // one calculator call right after the input, then the answer
  kCot,             // the pointer trajectory without a tool: the model writes observations
  kDirect,          // the answer right after the input
  kDirectReversed,  // the answer, least significant digit first, right after the input
};

// "pointer", "calculator", "cot", "direct", "direct-reversed".
std::string_view ModeName(Mode mode);
// Inverse of ModeName; INVALID_ARGUMENT listing the modes otherwise.
absl::StatusOr<Mode> ParseMode(std::string_view name);
std::vector<Mode> AllModes();

// The role of one token in a trajectory.
enum class Role : uint8_t {
  kPrompt,       // [BOS] and the input (given, never predicted)
  kThought,      // generated before [ANS], including [ANS] itself; stored in pointer memory
  kCommand,      // a pointer command, or a text-tool call [CALL] ... [/CALL]
  kObservation,  // a tool's answer: one token after [Pk.READ], or [OBS] ... [/OBS]
  kOutput,       // the answer stream (after [ANS]; all of it in the direct modes)
  kEos,          // the final [EOS]
};
char RoleLetter(Role role);  // P T C O A E

struct Trajectory {
  Mode mode = Mode::kPointer;
  std::vector<TokenId> tokens;
  std::vector<Role> roles;  // same length as tokens

  // Tokens predicted by the model: everything but the prompt, and but observations except
  // in kCot mode (there the model must produce them itself).
  std::vector<uint8_t> LossMask() const;
  // The output stream (tokens with role kOutput), in order.
  std::vector<TokenId> Output() const;
  size_t PromptSize() const;
  // "PPPPTCOC..." one letter per token.
  std::string RoleString() const;
};

// The inverse of (tokens, mode): assigns roles from the ids alone, given how many leading
// tokens are the prompt. Rules: after the prompt, a token following [Pk.READ] is an
// observation, [OBS]..[/OBS] are observations, [CALL]..[/CALL] and pointer commands are
// commands, [EOS] ends, tokens up to and including [ANS] are thoughts and tokens after it
// outputs; in the direct modes every generated token before [EOS] is output.
// INVALID_ARGUMENT for an invalid id or prompt_size > tokens.size().
absl::StatusOr<Trajectory> TrajectoryFromTokens(std::span<const TokenId> tokens, Mode mode,
                                                size_t prompt_size);

}  // namespace tapeloop::tasks

#endif  // TAPELOOP_TASKS_TRAJECTORY_H_
