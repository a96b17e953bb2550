// EnginePolicy: a model run by the engine plays the episodes. Each slot is one
// engine::Session: Open appends the prompt (prefill), Step samples every listed slot's next
// token from its current logits (with the slot's own seeded generator) and advances all of
// them by ONE engine::DecodeBatch call, Append prefills observation tokens into the same
// session. So an episode never re-prefills, and for a state-space model the cost of a tool
// step does not grow with the episode.
//
// The model must outlive the policy. Not thread-safe.
#ifndef TAPELOOP_AGENTS_ENGINE_POLICY_H_
#define TAPELOOP_AGENTS_ENGINE_POLICY_H_

#include <map>
#include <memory>

#include "agents/policy.h"
#include "engine/models/model.h"
#include "engine/session/sampling.h"
#include "engine/session/session.h"

namespace tapeloop::agents {

class EnginePolicy final : public Policy {
 public:
  // `params`: sampling (default greedy). Each slot's generator is seeded from the episode's
  // seed, so sampled episodes are reproducible and independent of batching.
  EnginePolicy(const engine::Model* model, engine::SamplingParams params = {});

  std::string name() const override { return "engine"; }
  // INVALID_ARGUMENT if the model's vocabulary is smaller than tapeloop-tokens-v1's, or the
  // prompt is empty.
  absl::StatusOr<int> Open(const EpisodeContext& context,
                           std::span<const TokenId> prompt) override;
  absl::Status Append(int slot, std::span<const TokenId> tokens) override;
  absl::StatusOr<std::vector<TokenId>> Step(std::span<const int> slots) override;
  void Close(int slot) override { slots_.erase(slot); }
  int64_t SessionBytes(int slot) const override;

 private:
  struct Slot {
    std::unique_ptr<engine::Session> session;
    std::vector<float> logits;  // f32 [V] after the last token fed
  };
  const engine::Model* model_;
  engine::SamplingParams params_;
  std::map<int, Slot> slots_;
  int next_slot_ = 0;
};

}  // namespace tapeloop::agents

#endif  // TAPELOOP_AGENTS_ENGINE_POLICY_H_
