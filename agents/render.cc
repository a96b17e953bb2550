#include "agents/render.h"

#include "common/tokenizer.h"

namespace tapeloop::agents {
namespace {

const char* ColorOf(tasks::Role role) {
  switch (role) {
    case tasks::Role::kPrompt:
      return "\033[2m";
    case tasks::Role::kThought:
      return "";
    case tasks::Role::kCommand:
      return "\033[33m";
    case tasks::Role::kObservation:
      return "\033[36m";
    case tasks::Role::kOutput:
      return "\033[1;32m";
    case tasks::Role::kEos:
      return "\033[2m";
  }
  return "";
}

}  // namespace

std::string RenderTrajectory(const tasks::Trajectory& t, bool color) {
  const Tokenizer tokenizer;
  std::string out;
  out.reserve(t.tokens.size() * 4);
  bool in_output = false;
  for (size_t i = 0; i < t.tokens.size(); ++i) {
    const tasks::Role role = t.roles[i];
    const std::string text = tokenizer.TokenText(t.tokens[i]);
    if (i > 0 && t.roles[i - 1] == tasks::Role::kPrompt && role != tasks::Role::kPrompt) {
      out += '\n';
    }
    if (color) {
      out += ColorOf(role);
      out += text;
      out += "\033[0m";
      continue;
    }
    if (in_output && role != tasks::Role::kOutput) {
      out += '>';
      in_output = false;
    }
    if (role == tasks::Role::kObservation) {
      out += '{';
      out += text;
      out += '}';
    } else if (role == tasks::Role::kOutput) {
      if (!in_output) out += '<';
      in_output = true;
      out += text;
    } else {
      out += text;
    }
  }
  if (in_output) out += '>';
  out += '\n';
  return out;
}

}  // namespace tapeloop::agents
