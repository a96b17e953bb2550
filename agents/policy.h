// The policy interface the agent loop drives: a set of live episode slots, each a session that
// can take appended tokens (the prompt, tool observations) and produce next tokens, one per
// slot per batched step.
//
// Contract (what the loop relies on):
// - Open() prefills the prompt into a fresh session and returns a slot id;
// - Step(slots) picks the next token of every listed slot from its current distribution AND
//   feeds that token into the slot's session, all slots advanced by one batched step;
// - Append() feeds tool observations into the same session (never a re-prefill of the
//   episode);
// - Close() frees the slot. A slot's results must not depend on which other slots are live
//   (batched episodes equal one-at-a-time episodes).
// Policies are used from one thread.
#ifndef TAPELOOP_AGENTS_POLICY_H_
#define TAPELOOP_AGENTS_POLICY_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tokenizer.h"
#include "tasks/task.h"
#include "tasks/trajectory.h"

namespace tapeloop::agents {

// What a policy may know about the episode it plays. Model policies use only `seed`; the
// oracle plays `expert`.
struct EpisodeContext {
  const tasks::Instance* instance = nullptr;
  tasks::Mode mode = tasks::Mode::kPointer;
  const tasks::Trajectory* expert = nullptr;
  uint64_t seed = 0;  // per-episode sampling seed
};

class Policy {
 public:
  Policy() = default;
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;
  virtual ~Policy() = default;

  virtual std::string name() const = 0;
  // The context is valid until Close(slot).
  virtual absl::StatusOr<int> Open(const EpisodeContext& context,
                                   std::span<const TokenId> prompt) = 0;
  virtual absl::Status Append(int slot, std::span<const TokenId> tokens) = 0;
  // tokens[i] is the next token of slots[i]. An error fails every listed slot.
  virtual absl::StatusOr<std::vector<TokenId>> Step(std::span<const int> slots) = 0;
  virtual void Close(int slot) = 0;
  // Bytes of session state behind the slot (0 when there is no model state).
  virtual int64_t SessionBytes(int slot) const { return 0; }
};

}  // namespace tapeloop::agents

#endif  // TAPELOOP_AGENTS_POLICY_H_
