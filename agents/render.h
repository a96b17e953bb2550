// Readable rendering of a trajectory for terminals and logs: the prompt, then the generated
// part with thoughts, outputs, commands and observations told apart. With `color`, ANSI
// colours (prompt dim, thought plain, command yellow, observation cyan, output bold green,
// [EOS] dim); without, observations are wrapped in {braces} and the output in <angles>, so a
// log stays unambiguous.
#ifndef TAPELOOP_AGENTS_RENDER_H_
#define TAPELOOP_AGENTS_RENDER_H_

#include <string>

#include "tasks/trajectory.h"

namespace tapeloop::agents {

std::string RenderTrajectory(const tasks::Trajectory& trajectory, bool color);

}  // namespace tapeloop::agents

#endif  // TAPELOOP_AGENTS_RENDER_H_
