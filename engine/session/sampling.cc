#include "engine/session/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/check.h"

namespace tapeloop::engine {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (std::isnan(p.temperature) || std::isinf(p.temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("sampling: temperature must be finite, got ", p.temperature));
  }
  if (p.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("sampling: top_k must be >= 0, got ", p.top_k));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("sampling: top_p must be in (0, 1], got ", p.top_p));
  }
  return absl::OkStatus();
}

uint64_t NextRandom(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int32_t SampleToken(std::span<const float> logits, const SamplingParams& p, uint64_t* rng) {
  TL_CHECK(!logits.empty());
  const int32_t V = static_cast<int32_t>(logits.size());
  if (p.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  std::vector<int32_t> ids(V);
  std::iota(ids.begin(), ids.end(), 0);
  // Sorted by logit, descending (ties: lower id first) for top-k / top-p.
  int32_t keep = V;
  if (p.top_k > 0 && p.top_k < V) keep = p.top_k;
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; };
  if (keep < V || p.top_p < 1.0f) {
    std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), by_logit);
  }
  std::vector<double> prob(keep);
  const double mx = logits[*std::max_element(ids.begin(), ids.begin() + keep, [&](int32_t a, int32_t b) {
    return logits[a] < logits[b];
  })];
  double sum = 0.0;
  for (int32_t i = 0; i < keep; ++i) {
    prob[i] = std::exp((logits[ids[i]] - mx) / p.temperature);
    sum += prob[i];
  }
  if (p.top_p < 1.0f) {
    double mass = 0.0;
    int32_t n = 0;
    while (n < keep) {
      mass += prob[n] / sum;
      ++n;
      if (mass >= p.top_p) break;
    }
    keep = n;
    sum = 0.0;
    for (int32_t i = 0; i < keep; ++i) sum += prob[i];
  }
  const double u = static_cast<double>(NextRandom(rng) >> 11) * (1.0 / 9007199254740992.0) * sum;
  double acc = 0.0;
  for (int32_t i = 0; i < keep; ++i) {
    acc += prob[i];
    if (u < acc) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace tapeloop::engine
