// Session: one conversation with a model, owning its SessionState (recurrent state, KV caches,
// position, sampling generator). Observations enter with Append (a chunked prefill), tokens
// come out with Decode / Generate; Snapshot / Restore / Fork / Reset / SizeBytes act on the
// whole state.
//
// The Model must outlive the session. A Session is not thread-safe; distinct sessions of one
// model may run concurrently. Not copyable (use Fork).
#ifndef TAPELOOP_ENGINE_SESSION_SESSION_H_
#define TAPELOOP_ENGINE_SESSION_SESSION_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/models/model.h"
#include "engine/session/sampling.h"
#include "engine/session/state.h"

namespace tapeloop::engine {

class Session {
 public:
  // A fresh session at position 0 whose generator is seeded with `seed`.
  Session(const Model* model, uint64_t seed = 0);

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Prefill: runs `tokens` in chunks of at most max_chunk tokens. Returns the logits of the
  // last token f32 [V], or of every token f32 [T, V] when all_logits. InvalidArgument for an
  // empty input or a token id outside the vocabulary (the state is unchanged then).
  absl::StatusOr<std::vector<float>> Append(std::span<const int32_t> tokens, bool all_logits = false);

  // One token; returns its logits f32 [V].
  absl::StatusOr<std::vector<float>> Decode(int32_t token);

  // Samples up to max_tokens tokens after `last_logits` (the logits of the last appended
  // token), appending each to the state; stops after a stop token (which is appended and
  // returned). Returns the generated ids; next_logits (optional) gets the logits after the
  // last one. InvalidArgument for bad params or logits of the wrong size.
  absl::StatusOr<std::vector<int32_t>> Generate(std::span<const float> last_logits, int max_tokens,
                                                const SamplingParams& params,
                                                std::vector<float>* next_logits = nullptr);

  std::string Snapshot() const { return state_.Snapshot(); }
  // See SessionState::Restore for the errors; the session is unchanged on error.
  absl::Status Restore(absl::string_view bytes) { return state_.Restore(bytes); }
  // An independent copy (same model, state and generator); the two diverge independently.
  std::unique_ptr<Session> Fork() const;
  void Reset() { state_.Reset(); }
  int64_t SizeBytes() const { return state_.SizeBytes(); }
  int64_t position() const { return state_.position(); }
  void Reseed(uint64_t seed) { *state_.rng() = seed; }

  const Model& model() const { return *model_; }
  SessionState* state() { return &state_; }

  static constexpr int64_t kMaxChunk = 256;

 private:
  const Model* model_;
  SessionState state_;
};

// Batched decode: advances every session by one token (tokens[b] into sessions[b]; sessions
// may be at different positions and must be distinct and of the same model) with batched
// matmuls. logits: f32 [B, V]. Errors as Session::Decode; on error no session moved.
absl::StatusOr<std::vector<float>> DecodeBatch(std::span<Session* const> sessions,
                                               std::span<const int32_t> tokens);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_SESSION_SESSION_H_
