#include "tasks/trajectory.h"

#include "absl/strings/str_cat.h"

namespace tapeloop::tasks {

std::string_view ModeName(Mode mode) {
  switch (mode) {
    case Mode::kPointer:
      return "pointer";
    case Mode::kCalculator:
      return "calculator";
    case Mode::kCot:
      return "cot";
    case Mode::kDirect:
      return "direct";
    case Mode::kDirectReversed:
      return "direct-reversed";
  }
  return "unknown";
}

std::vector<Mode> AllModes() {
  return {Mode::kPointer, Mode::kCalculator, Mode::kCot, Mode::kDirect, Mode::kDirectReversed};
}

absl::StatusOr<Mode> ParseMode(std::string_view name) {
  for (Mode m : AllModes()) {
    if (ModeName(m) == name) return m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown mode \"", std::string(name),
                   "\" (pointer, calculator, cot, direct, direct-reversed)"));
}

char RoleLetter(Role role) {
  switch (role) {
    case Role::kPrompt:
      return 'P';
    case Role::kThought:
      return 'T';
    case Role::kCommand:
      return 'C';
    case Role::kObservation:
      return 'O';
    case Role::kOutput:
      return 'A';
    case Role::kEos:
      return 'E';
  }
  return '?';
}

std::vector<uint8_t> Trajectory::LossMask() const {
  std::vector<uint8_t> mask(roles.size());
  for (size_t i = 0; i < roles.size(); ++i) {
    const Role r = roles[i];
    mask[i] = r != Role::kPrompt && (r != Role::kObservation || mode == Mode::kCot);
  }
  return mask;
}

std::vector<TokenId> Trajectory::Output() const {
  std::vector<TokenId> out;
  for (size_t i = 0; i < roles.size(); ++i) {
    if (roles[i] == Role::kOutput) out.push_back(tokens[i]);
  }
  return out;
}

size_t Trajectory::PromptSize() const {
  size_t n = 0;
  while (n < roles.size() && roles[n] == Role::kPrompt) ++n;
  return n;
}

std::string Trajectory::RoleString() const {
  std::string s(roles.size(), ' ');
  for (size_t i = 0; i < roles.size(); ++i) s[i] = RoleLetter(roles[i]);
  return s;
}

absl::StatusOr<Trajectory> TrajectoryFromTokens(std::span<const TokenId> tokens, Mode mode,
                                                size_t prompt_size) {
  if (prompt_size > tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat("trajectory: prompt size ", prompt_size,
                                                   " exceeds ", tokens.size(), " tokens"));
  }
  Trajectory t;
  t.mode = mode;
  t.tokens.assign(tokens.begin(), tokens.end());
  t.roles.reserve(tokens.size());
  const bool direct = mode == Mode::kDirect || mode == Mode::kDirectReversed;
  bool after_ans = false, in_call = false, in_obs = false, expect_obs = false;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const TokenId id = tokens[i];
    if (!tokens::IsValid(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("trajectory: invalid token id ", id, " at position ", i));
    }
    Role role;
    if (i < prompt_size) {
      role = Role::kPrompt;
    } else if (expect_obs) {
      role = Role::kObservation;
      expect_obs = false;
    } else if (in_obs) {
      role = Role::kObservation;
      in_obs = id != tokens::kObsEnd;
    } else if (in_call) {
      role = Role::kCommand;
      in_call = id != tokens::kCallEnd;
    } else if (id == tokens::kObs) {
      role = Role::kObservation;
      in_obs = true;
    } else if (id == tokens::kCall) {
      role = Role::kCommand;
      in_call = true;
    } else if (tokens::IsPointerCommand(id)) {
      role = Role::kCommand;
      expect_obs = tokens::CommandOp(id) == tokens::PointerOp::kRead;
    } else if (id == tokens::kEos) {
      role = Role::kEos;
    } else if (direct || after_ans) {
      role = Role::kOutput;
    } else {
      role = Role::kThought;
      after_ans = id == tokens::kAns;
    }
    t.roles.push_back(role);
  }
  return t;
}

}  // namespace tapeloop::tasks
