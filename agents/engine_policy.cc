#include "agents/engine_policy.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tapeloop::agents {

EnginePolicy::EnginePolicy(const engine::Model* model, engine::SamplingParams params)
    : model_(model), params_(std::move(params)) {}

absl::StatusOr<int> EnginePolicy::Open(const EpisodeContext& context,
                                       std::span<const TokenId> prompt) {
  RETURN_IF_ERROR(engine::ValidateSamplingParams(params_));
  if (model_->config().vocab_size < tokens::kVocabSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine policy: the model's vocabulary has ", model_->config().vocab_size,
        " tokens, ", tokens::kVersion, " needs ", tokens::kVocabSize));
  }
  if (prompt.empty()) return absl::InvalidArgumentError("engine policy: empty prompt");
  Slot slot;
  slot.session = std::make_unique<engine::Session>(model_, context.seed);
  ASSIGN_OR_RETURN(slot.logits, slot.session->Append(prompt));
  const int id = next_slot_++;
  slots_[id] = std::move(slot);
  return id;
}

absl::Status EnginePolicy::Append(int slot, std::span<const TokenId> tokens) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) {
    return absl::NotFoundError(absl::StrCat("engine policy: no slot ", slot));
  }
  ASSIGN_OR_RETURN(it->second.logits, it->second.session->Append(tokens));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TokenId>> EnginePolicy::Step(std::span<const int> slots) {
  std::vector<engine::Session*> sessions;
  std::vector<int32_t> chosen;
  sessions.reserve(slots.size());
  chosen.reserve(slots.size());
  for (int id : slots) {
    auto it = slots_.find(id);
    if (it == slots_.end()) {
      return absl::NotFoundError(absl::StrCat("engine policy: no slot ", id));
    }
    Slot& s = it->second;
    chosen.push_back(engine::SampleToken(s.logits, params_, s.session->state()->rng()));
    sessions.push_back(s.session.get());
  }
  const int64_t vocab = model_->config().vocab_size;
  ASSIGN_OR_RETURN(std::vector<float> logits, engine::DecodeBatch(sessions, chosen));
  for (size_t b = 0; b < slots.size(); ++b) {
    Slot& s = slots_[slots[b]];
    s.logits.assign(logits.begin() + b * vocab, logits.begin() + (b + 1) * vocab);
  }
  return std::vector<TokenId>(chosen.begin(), chosen.end());
}

int64_t EnginePolicy::SessionBytes(int slot) const {
  auto it = slots_.find(slot);
  return it == slots_.end() ? 0 : it->second.session->SizeBytes();
}

}  // namespace tapeloop::agents
