// Shared helpers for the engine tests: tiny configs per family, random tokens, error metrics.
#ifndef TAPELOOP_TESTS_ENGINE_TEST_UTIL_H_
#define TAPELOOP_TESTS_ENGINE_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/models/config.h"

namespace tapeloop::engine::testing {

// Tiny models of each family; chunk sizes small so SSD chunk boundaries are crossed often.
inline ModelConfig TinyConfig(Family family) {
  ModelConfig c;
  c.family = family;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.initializer_range = 0.15f;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  switch (family) {
    case Family::kMamba2:
      c.num_hidden_layers = 2;
      c.mamba_num_heads = 4;
      c.mamba_head_dim = 16;
      c.ssm_state_size = 8;
      c.n_groups = 2;
      c.conv_kernel = 4;
      c.chunk_size = 16;
      c.norm_eps = 1e-5f;
      c.gated_norm_group_size = 64;
      c.dt_min = 0.0f;
      c.dt_max = INFINITY;
      c.tie_word_embeddings = true;
      break;
    case Family::kLlama:
    case Family::kMistral:
      c.num_hidden_layers = 2;
      c.num_attention_heads = 4;
      c.num_key_value_heads = 2;
      c.head_dim = 8;
      c.intermediate_size = 48;
      c.use_rope = true;
      c.rope_theta = 10000.0;
      c.norm_eps = 1e-6f;
      c.attention_bias = family == Family::kLlama;
      c.tie_word_embeddings = family == Family::kLlama;
      if (family == Family::kMistral) c.sliding_window = 7;
      break;
    case Family::kNemotronH:
      c.pattern = "M*M-";
      c.num_hidden_layers = 4;
      c.mamba_num_heads = 4;
      c.mamba_head_dim = 8;
      c.ssm_state_size = 8;
      c.n_groups = 2;
      c.conv_kernel = 4;
      c.chunk_size = 16;
      c.gated_norm_group_size = 16;
      c.dt_min = 0.001f;
      c.dt_max = INFINITY;
      c.num_attention_heads = 4;
      c.num_key_value_heads = 2;
      c.head_dim = 8;
      c.use_rope = false;
      c.intermediate_size = 48;
      c.mlp_kind = MlpKind::kRelu2;
      c.norm_eps = 1e-5f;
      break;
  }
  return c;
}

inline std::vector<Family> AllFamilies() {
  return {Family::kMamba2, Family::kLlama, Family::kMistral, Family::kNemotronH};
}

inline std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, vocab - 1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = dist(rng);
  return t;
}

// max |a - b| / max |b| (relative to the scale of the reference).
inline double MaxRelErr(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return INFINITY;
  double scale = 1e-12, err = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
    err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
  }
  return err / scale;
}

inline double MaxAbsErr(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return INFINITY;
  double err = 0.0;
  for (size_t i = 0; i < b.size(); ++i) err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
  return err;
}

}  // namespace tapeloop::engine::testing

#endif  // TAPELOOP_TESTS_ENGINE_TEST_UTIL_H_
