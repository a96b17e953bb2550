#include "engine/session/session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tapeloop::engine {

Session::Session(const Model* model, uint64_t seed) : model_(model), state_(model->NewState()) {
  *state_.rng() = seed;
}

absl::StatusOr<std::vector<float>> Session::Append(std::span<const int32_t> tokens, bool all_logits) {
  if (tokens.empty()) return absl::InvalidArgumentError("session: Append needs at least one token");
  const int64_t V = model_->config().vocab_size;
  if (int64_t i = FirstIdOutsideVocabulary(tokens, V); i >= 0) {
    return absl::InvalidArgumentError(absl::StrCat("session: token id ", tokens[i], " at index ", i,
                                                   " is outside the vocabulary [0, ", V, ")"));
  }
  std::vector<float> out, chunk_logits;
  if (all_logits) out.reserve(tokens.size() * V);
  for (size_t start = 0; start < tokens.size(); start += kMaxChunk) {
    const size_t n = std::min<size_t>(kMaxChunk, tokens.size() - start);
    RETURN_IF_ERROR(model_->Forward(tokens.subspan(start, n), &state_, all_logits, &chunk_logits));
    if (all_logits) out.insert(out.end(), chunk_logits.begin(), chunk_logits.end());
  }
  return all_logits ? out : chunk_logits;
}

absl::StatusOr<std::vector<float>> Session::Decode(int32_t token) {
  std::vector<float> logits;
  SessionState* s = &state_;
  RETURN_IF_ERROR(model_->StepBatch(std::span<const int32_t>(&token, 1), std::span<SessionState* const>(&s, 1), &logits));
  return logits;
}

absl::StatusOr<std::vector<int32_t>> Session::Generate(std::span<const float> last_logits, int max_tokens,
                                                       const SamplingParams& params,
                                                       std::vector<float>* next_logits) {
  RETURN_IF_ERROR(ValidateSamplingParams(params));
  if (static_cast<int64_t>(last_logits.size()) != model_->config().vocab_size) {
    return absl::InvalidArgumentError("session: Generate needs the last logits of this model's vocabulary");
  }
  std::vector<int32_t> out;
  std::vector<float> logits(last_logits.begin(), last_logits.end());
  for (int i = 0; i < max_tokens; ++i) {
    const int32_t tok = SampleToken(logits, params, state_.rng());
    out.push_back(tok);
    ASSIGN_OR_RETURN(logits, Decode(tok));
    if (std::find(params.stop_tokens.begin(), params.stop_tokens.end(), tok) != params.stop_tokens.end()) break;
  }
  if (next_logits) *next_logits = std::move(logits);
  return out;
}

std::unique_ptr<Session> Session::Fork() const {
  auto fork = std::make_unique<Session>(model_);
  fork->state_ = state_;
  return fork;
}

absl::StatusOr<std::vector<float>> DecodeBatch(std::span<Session* const> sessions, std::span<const int32_t> tokens) {
  if (sessions.empty()) return std::vector<float>{};
  const Model& model = sessions[0]->model();
  std::vector<SessionState*> states;
  for (Session* s : sessions) {
    if (&s->model() != &model) return absl::InvalidArgumentError("session: DecodeBatch sessions use different models");
    states.push_back(s->state());
  }
  std::vector<float> logits;
  RETURN_IF_ERROR(model.StepBatch(tokens, states, &logits));
  return logits;
}

}  // namespace tapeloop::engine
