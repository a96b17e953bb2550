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

std::string Printable(TokenId id) {
  static const Tokenizer* tokenizer = new Tokenizer();
  if (tokens::IsByte(id) && (id < 0x20 || id >= 0x7f)) {
    if (id == '\n') return "\\n";
    static const char* hex = "0123456789abcdef";
    return std::string("\\x") + hex[id >> 4] + hex[id & 15];
  }
  return tokenizer->TokenText(id);
}

std::string RenderTrajectory(const tasks::Trajectory& t, bool color) {
  std::string out;
  out.reserve(t.tokens.size() * 4);
  // Without colour, a run of observation tokens is wrapped in {} and a run of output tokens
  // in <>.
  auto close = [](tasks::Role role) {
    return role == tasks::Role::kObservation ? "}" : role == tasks::Role::kOutput ? ">" : "";
  };
  auto open = [](tasks::Role role) {
    return role == tasks::Role::kObservation ? "{" : role == tasks::Role::kOutput ? "<" : "";
  };
  for (size_t i = 0; i < t.tokens.size(); ++i) {
    const tasks::Role role = t.roles[i];
    const bool run_start = i == 0 || t.roles[i - 1] != role;
    if (run_start && i > 0) {
      if (!color) out += close(t.roles[i - 1]);
      if (t.roles[i - 1] == tasks::Role::kPrompt) out += '\n';
    }
    const std::string text = Printable(t.tokens[i]);
    if (color) {
      out += ColorOf(role);
      out += text;
      out += "\033[0m";
    } else {
      if (run_start) out += open(role);
      out += text;
    }
  }
  if (!color && !t.roles.empty()) out += close(t.roles.back());
  out += '\n';
  return out;
}

}  // namespace tapeloop::agents
