// Readable rendering of a trajectory for terminals and logs: the prompt, then the generated
// part with thoughts, outputs, commands and observations told apart. With `color`, ANSI
// colours (prompt dim, thought plain, command yellow, observation cyan, output bold green,
// [EOS] dim); without, observations are wrapped in {braces} and the output in <angles>, so a
// log stays unambiguous.
#ifndef TAPELOOP_AGENTS_RENDER_H_
#define TAPELOOP_AGENTS_RENDER_H_

#include <string>

#include "common/tokenizer.h"
#include "tasks/trajectory.h"

namespace tapeloop::agents {

std::string RenderTrajectory(const tasks::Trajectory& trajectory, bool color);

// One token for display: special tokens by name, printable ASCII as itself, other bytes
// (control characters, UTF-8 pieces a model may emit) as \xNN and newline as \n.
std::string Printable(TokenId id);

}  // namespace tapeloop::agents

#endif  // TAPELOOP_AGENTS_RENDER_H_
