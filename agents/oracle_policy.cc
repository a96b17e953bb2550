#include "agents/oracle_policy.h"

#include "absl/strings/str_cat.h"

namespace tapeloop::agents {

absl::StatusOr<int> OraclePolicy::Open(const EpisodeContext& context,
                                       std::span<const TokenId> prompt) {
  if (context.expert == nullptr) {
    return absl::InvalidArgumentError("oracle: the episode has no expert trajectory");
  }
  const auto& tokens = context.expert->tokens;
  if (prompt.size() > tokens.size() ||
      !std::equal(prompt.begin(), prompt.end(), tokens.begin())) {
    return absl::InvalidArgumentError("oracle: the prompt is not the expert's prefix");
  }
  const int slot = next_slot_++;
  slots_[slot] = Slot{context.expert, prompt.size()};
  return slot;
}

absl::Status OraclePolicy::Append(int slot, std::span<const TokenId> appended) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return absl::NotFoundError(absl::StrCat("oracle: no slot ", slot));
  Slot& s = it->second;
  const Tokenizer tokenizer;
  for (TokenId t : appended) {
    if (s.cursor >= s.expert->tokens.size() || s.expert->tokens[s.cursor] != t) {
      return absl::FailedPreconditionError(absl::StrCat(
          "oracle: at position ", s.cursor, " the loop appended ", tokenizer.TokenText(t),
          " where the expert has ",
          s.cursor < s.expert->tokens.size() ? tokenizer.TokenText(s.expert->tokens[s.cursor])
                                             : std::string("nothing")));
    }
    ++s.cursor;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TokenId>> OraclePolicy::Step(std::span<const int> slots) {
  std::vector<TokenId> out;
  out.reserve(slots.size());
  for (int slot : slots) {
    auto it = slots_.find(slot);
    if (it == slots_.end()) return absl::NotFoundError(absl::StrCat("oracle: no slot ", slot));
    Slot& s = it->second;
    if (s.cursor < s.expert->tokens.size()) {
      out.push_back(s.expert->tokens[s.cursor++]);
    } else {
      out.push_back(tokens::kEos);
    }
  }
  return out;
}

}  // namespace tapeloop::agents
