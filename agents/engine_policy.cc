#include "agents/engine_policy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/parallel.h"

namespace tapeloop::agents {

EnginePolicy::EnginePolicy(const engine::Model* model, engine::SamplingParams params,
                           EnginePolicyOptions options)
    : model_(model), params_(std::move(params)), options_(options) {}

absl::StatusOr<int> EnginePolicy::Open(const EpisodeContext& context,
                                       std::span<const TokenId> prompt) {
  RETURN_IF_ERROR(engine::ValidateSamplingParams(params_));
  if (model_->config().vocab_size < tokens::kVocabSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine policy: the model's vocabulary has ", model_->config().vocab_size,
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
  Slot& s = it->second;
  if (options_.appends == EnginePolicyOptions::Appends::kPrefill) {
    ASSIGN_OR_RETURN(s.logits, s.session->Append(tokens));
    return absl::OkStatus();
  }
  if (tokens.empty()) return absl::InvalidArgumentError("engine policy: Append needs a token");
  const int64_t V = model_->config().vocab_size;
  if (int64_t i = engine::FirstIdOutsideVocabulary(tokens, V); i >= 0) {
    return absl::InvalidArgumentError(absl::StrCat("engine policy: token id ", tokens[i],
                                                   " at index ", i,
                                                   " is outside the vocabulary [0, ", V, ")"));
  }
  s.queued.insert(s.queued.end(), tokens.begin(), tokens.end());
  return absl::OkStatus();
}

absl::Status EnginePolicy::FeedQueued(std::span<Slot* const> group) const {
  const int64_t V = model_->config().vocab_size;
  // Long queues: one prefill each.
  for (Slot* s : group) {
    if (s->queued.size() > kMaxBatchedAppend) {
      ASSIGN_OR_RETURN(s->logits, s->session->Append(s->queued));
      s->queued.clear();
    }
  }
  // Short queues: round r feeds the r-th queued token of every slot that has one.
  std::vector<engine::Session*> sessions;
  std::vector<int32_t> feed;
  std::vector<Slot*> fed;
  for (size_t r = 0;; ++r) {
    sessions.clear();
    feed.clear();
    fed.clear();
    for (Slot* s : group) {
      if (r < s->queued.size()) {
        sessions.push_back(s->session.get());
        feed.push_back(s->queued[r]);
        fed.push_back(s);
      }
    }
    if (fed.empty()) break;
    ASSIGN_OR_RETURN(std::vector<float> logits, engine::DecodeBatch(sessions, feed));
    for (size_t b = 0; b < fed.size(); ++b) {
      fed[b]->logits.assign(logits.begin() + b * V, logits.begin() + (b + 1) * V);
    }
  }
  for (Slot* s : group) s->queued.clear();
  return absl::OkStatus();
}

absl::Status EnginePolicy::StepGroup(std::span<Slot* const> group, std::span<TokenId> out) const {
  const int64_t V = model_->config().vocab_size;
  RETURN_IF_ERROR(FeedQueued(group));
  std::vector<engine::Session*> sessions;
  std::vector<int32_t> feed;
  sessions.reserve(group.size());
  feed.reserve(group.size());
  for (size_t b = 0; b < group.size(); ++b) {
    Slot* s = group[b];
    feed.push_back(engine::SampleToken(s->logits, params_, s->session->state()->rng()));
    sessions.push_back(s->session.get());
    out[b] = feed.back();
  }
  ASSIGN_OR_RETURN(std::vector<float> logits, engine::DecodeBatch(sessions, feed));
  for (size_t b = 0; b < group.size(); ++b) {
    group[b]->logits.assign(logits.begin() + b * V, logits.begin() + (b + 1) * V);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TokenId>> EnginePolicy::Step(std::span<const int> slots) {
  std::vector<Slot*> group;
  group.reserve(slots.size());
  for (int id : slots) {
    auto it = slots_.find(id);
    if (it == slots_.end()) {
      return absl::NotFoundError(absl::StrCat("engine policy: no slot ", id));
    }
    group.push_back(&it->second);
  }
  std::vector<int> sorted(slots.begin(), slots.end());
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return absl::InvalidArgumentError("engine policy: a slot is listed twice in one Step");
  }
  std::vector<TokenId> out(slots.size());
  const int64_t threads = options_.threads > 0 ? options_.threads : engine::EngineThreads();
  const int64_t groups =
      std::clamp<int64_t>(static_cast<int64_t>(slots.size() / kMinGroupSlots), 1, threads);
  if (groups == 1) {
    RETURN_IF_ERROR(StepGroup(group, out));
    return out;
  }
  // Group g holds slots [n g / groups, n (g + 1) / groups).
  const size_t n = group.size();
  std::vector<absl::Status> status(groups);
  engine::ParallelFor(groups, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const size_t begin = n * g / groups, end = n * (g + 1) / groups;
      status[g] = StepGroup(std::span<Slot* const>(group).subspan(begin, end - begin),
                            std::span<TokenId>(out).subspan(begin, end - begin));
    }
  });
  for (const absl::Status& s : status) RETURN_IF_ERROR(s);
  return out;
}

absl::StatusOr<std::span<const float>> EnginePolicy::Logits(int slot) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) {
    return absl::NotFoundError(absl::StrCat("engine policy: no slot ", slot));
  }
  Slot* s = &it->second;
  RETURN_IF_ERROR(FeedQueued(std::span<Slot* const>(&s, 1)));
  return std::span<const float>(s->logits);
}

int64_t EnginePolicy::SessionBytes(int slot) const {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return 0;
  const engine::Session& session = *it->second.session;
  if (it->second.queued.empty()) return session.SizeBytes();
  return engine::SessionState::SizeBytesAfter(
      model_->state_layout(), session.position() + static_cast<int64_t>(it->second.queued.size()));
}

}  // namespace tapeloop::agents
