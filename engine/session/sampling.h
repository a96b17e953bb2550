// Token sampling from logits: greedy, temperature, top-k, top-p, with a seeded generator whose
// whole state is one uint64 (kept in the session's state, so snapshots and forks carry it).
#ifndef TAPELOOP_ENGINE_SESSION_SAMPLING_H_
#define TAPELOOP_ENGINE_SESSION_SAMPLING_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace tapeloop::engine {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax, lowest id on ties)
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // nucleus: smallest set of most likely tokens with mass >= top_p
  std::vector<int32_t> stop_tokens;  // generation stops after emitting one of these
};

// InvalidArgument naming the field when temperature is NaN/negative-infinite, top_k < 0 or
// top_p is outside (0, 1].
absl::Status ValidateSamplingParams(const SamplingParams& params);

// Next value of the splitmix64 generator at *state (advances it).
uint64_t NextRandom(uint64_t* state);

// Picks a token id from logits f32 [V]. Advances *rng only when sampling (temperature > 0).
// REQUIRES: logits non-empty, params valid.
int32_t SampleToken(std::span<const float> logits, const SamplingParams& params, uint64_t* rng);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_SESSION_SAMPLING_H_
