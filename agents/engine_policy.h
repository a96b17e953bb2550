// EnginePolicy: a model run by the engine plays the episodes. Each slot is one
// engine::Session: Open appends the prompt (prefill), Step samples every listed slot's next
// token from its current logits (with the slot's own seeded generator) and advances all of
// them by one engine::DecodeBatch call, Append feeds observation tokens into the same session.
// So an episode never re-prefills, and for a state-space model the cost of a tool step does not
// grow with the episode.
//
// How observations enter (EnginePolicyOptions::appends):
// - kBatched (default): Append validates the tokens and queues them; the next Step that lists
//   the slot first feeds every listed slot's queued tokens through shared DecodeBatch rounds
//   (round r feeds the r-th queued token of each slot that has one), then samples. A tool step
//   of a pointer episode (one observation token) thus costs one row of a batched decode instead
//   of a batch-1 prefill. Queues longer than kMaxBatchedAppend tokens (long calculator results)
//   are prefilled per session instead.
// - kPrefill: the plain reference: Append prefills at once (engine::Session::Append).
// Both give the same tokens; logits differ by float rounding only (recurrent step vs chunked
// prefill), which tests/agents/engine_policy_test.cc checks.
//
// Threads (EnginePolicyOptions::threads): Step splits its slots into up to `threads` groups of
// at least kMinGroupSlots slots and advances each group (queued observations, sampling, its own
// DecodeBatch) on one engine thread (engine::ParallelFor, so the cores are shared with the
// engine's other parallel work and never oversubscribed). One hand-off per Step instead of one
// per matmul; a slot's tokens do not depend on the grouping.
//
// The model must outlive the policy. Not thread-safe (one caller at a time; Step uses the
// engine's threads internally).
#ifndef TAPELOOP_AGENTS_ENGINE_POLICY_H_
#define TAPELOOP_AGENTS_ENGINE_POLICY_H_

#include <map>
#include <memory>
#include <vector>

#include "agents/policy.h"
#include "engine/models/model.h"
#include "engine/session/sampling.h"
#include "engine/session/session.h"

namespace tapeloop::agents {

struct EnginePolicyOptions {
  enum class Appends { kBatched, kPrefill };
  Appends appends = Appends::kBatched;
  // Groups Step may run concurrently; 0: engine::EngineThreads().
  int threads = 0;
};

class EnginePolicy final : public Policy {
 public:
  // `params`: sampling (default greedy). Each slot's generator is seeded from the episode's
  // seed, so sampled episodes are reproducible and independent of batching.
  EnginePolicy(const engine::Model* model, engine::SamplingParams params = {},
               EnginePolicyOptions options = {});

  std::string name() const override { return "engine"; }
  // INVALID_ARGUMENT if the model's vocabulary is smaller than tapeloop-tokens-v1's, or the
  // prompt is empty.
  absl::StatusOr<int> Open(const EpisodeContext& context, std::span<const TokenId> prompt) override;
  // NOT_FOUND for an unknown slot; INVALID_ARGUMENT for no tokens or an id outside the
  // vocabulary (nothing is queued then). With kBatched, model errors surface at the next Step.
  absl::Status Append(int slot, std::span<const TokenId> tokens) override;
  absl::StatusOr<std::vector<TokenId>> Step(std::span<const int> slots) override;
  void Close(int slot) override { slots_.erase(slot); }
  // Includes queued observation tokens (as if they had been fed).
  int64_t SessionBytes(int slot) const override;

  // The slot's next-token logits f32 [V], after feeding its queued tokens (valid until the
  // next call on the policy). NOT_FOUND for an unknown slot; model errors of the queued tokens.
  absl::StatusOr<std::span<const float>> Logits(int slot);

  // Longest queue fed through batched rounds; longer ones are prefilled.
  static constexpr size_t kMaxBatchedAppend = 16;
  // Fewest slots per Step group.
  static constexpr size_t kMinGroupSlots = 8;

 private:
  struct Slot {
    std::unique_ptr<engine::Session> session;
    std::vector<float> logits;    // f32 [V] after the last token fed
    std::vector<int32_t> queued;  // observation tokens not fed yet (kBatched)
  };
  // Feeds the group's queued tokens (prefill for long queues, shared DecodeBatch rounds for
  // the rest).
  absl::Status FeedQueued(std::span<Slot* const> group) const;
  // Feeds the group's queued tokens, samples its next tokens into `out` and feeds them.
  absl::Status StepGroup(std::span<Slot* const> group, std::span<TokenId> out) const;

  const engine::Model* model_;
  engine::SamplingParams params_;
  EnginePolicyOptions options_;
  std::map<int, Slot> slots_;
  int next_slot_ = 0;
};

}  // namespace tapeloop::agents

#endif  // TAPELOOP_AGENTS_ENGINE_POLICY_H_
