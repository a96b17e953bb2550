#include "tasks/pointer_trace.h"

#include "absl/strings/str_cat.h"

namespace tapeloop::tasks {

PointerTrace::PointerTrace(const std::vector<TokenId>& prompt, int max_pointers)
    : memory_(std::vector<TokenId>(prompt.begin() + 1, prompt.end()),
              tools::PointerMemoryOptions{.max_pointers = max_pointers}) {
  trajectory_.mode = Mode::kPointer;
  trajectory_.tokens = prompt;
  trajectory_.roles.assign(prompt.size(), Role::kPrompt);
}

std::optional<TokenId> PointerTrace::Command(int k, tokens::PointerOp op) {
  const TokenId cmd = tokens::PointerCommand(k, op);
  trajectory_.tokens.push_back(cmd);
  trajectory_.roles.push_back(Role::kCommand);
  auto observed = memory_.Command(cmd);
  if (!observed.ok()) {
    if (status_.ok()) status_ = observed.status();
    return std::nullopt;
  }
  if (observed->has_value()) {
    trajectory_.tokens.push_back(**observed);
    trajectory_.roles.push_back(Role::kObservation);
  }
  return *observed;
}

TokenId PointerTrace::Read(int k) {
  auto t = Command(k, tokens::PointerOp::kRead);
  return t.value_or(tokens::kEnd);
}

void PointerTrace::Emit(TokenId t, Role role) {
  trajectory_.tokens.push_back(t);
  trajectory_.roles.push_back(role);
  if (auto s = memory_.Emit(t); !s.ok() && status_.ok()) status_ = s;
}

void PointerTrace::Think(TokenId t) { Emit(t, Role::kThought); }
void PointerTrace::Answer() { Emit(tokens::kAns, Role::kThought); }
void PointerTrace::Output(TokenId t) { Emit(t, Role::kOutput); }

void PointerTrace::Eos() {
  trajectory_.tokens.push_back(tokens::kEos);
  trajectory_.roles.push_back(Role::kEos);
}

absl::StatusOr<Trajectory> PointerTrace::Finish() {
  if (!status_.ok()) {
    return absl::InternalError(absl::StrCat("expert trajectory: ", status_.message()));
  }
  return std::move(trajectory_);
}

}  // namespace tapeloop::tasks
