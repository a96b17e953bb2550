// Causal multi-head attention with grouped KV heads (HF LlamaAttention / MistralAttention /
// NemotronHAttention, eager semantics):
//   q = q_proj(x), k = k_proj(x), v = v_proj(x)          heads Hq, Hkv (Hq % Hkv == 0), dim hd
//   RoPE on q, k (rotate-half form, theta) when use_rope; none for nemotron_h
//   o_t = softmax(q_t . k_s / sqrt(hd), s <= t [and t - s < window]) v_s;   out = o_proj(o)
//
// Per-session state is a KV cache (KvCache); with a window it is a ring buffer of `window` rows
// (row p % window holds position p), otherwise it grows with every token.
#ifndef TAPELOOP_ENGINE_LAYERS_ATTENTION_H_
#define TAPELOOP_ENGINE_LAYERS_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "engine/kernels/linear_packed.h"
#include "engine/layers/param_spec.h"

namespace tapeloop::engine {

struct AttentionDims {
  int64_t dim = 0;       // D
  int num_heads = 0;     // Hq
  int num_kv_heads = 0;  // Hkv
  int head_dim = 0;      // hd
  bool use_rope = true;
  double rope_theta = 10000.0;
  int64_t window = 0;  // 0: full causal
  bool bias = false;   // q/k/v/o biases (llama attention_bias)

  int64_t q_dim() const { return int64_t{num_heads} * head_dim; }
  int64_t kv_dim() const { return int64_t{num_kv_heads} * head_dim; }
};

// q_proj.weight [Hq*hd, D], k_proj.weight [Hkv*hd, D], v_proj.weight [Hkv*hd, D],
// o_proj.weight [D, Hq*hd] (+ .bias when bias), N(0, init range) / zeros.
std::vector<ParamSpec> AttentionParamSpecs(const AttentionDims& dims);

struct AttentionWeights {
  const float *q_w = nullptr, *k_w = nullptr, *v_w = nullptr, *o_w = nullptr;
  const float *q_b = nullptr, *k_b = nullptr, *v_b = nullptr, *o_b = nullptr;  // null: no bias
  // Optional packed copies for AttentionStep's products (kernels/linear_packed.h; owned by the
  // model): q, k and v as one f32 [Hq*hd + 2*Hkv*hd, D] (only when their weights lie back to
  // back, source() == q_w), and o_proj.
  const PackedLinear* qkv_packed = nullptr;
  const PackedLinear* o_packed = nullptr;
};
AttentionWeights BindAttentionWeights(const AttentionDims& dims, const ParamLookup& lookup);

// One session's cache for one attention layer.
struct KvCache {
  std::vector<float> k;  // f32 [rows, Hkv*hd] (post-RoPE keys)
  std::vector<float> v;  // f32 [rows, Hkv*hd]
  int64_t tokens = 0;    // positions seen; the next token has position `tokens`

  // Rows holding live entries: min(tokens, window) or tokens.
  int64_t live_rows(int64_t window) const {
    return window > 0 && tokens > window ? window : tokens;
  }
};

// What a backward pass needs (filled when Forward gets a non-null pointer).
struct AttentionSaved {
  std::vector<float> q;            // f32 [T, Hq*hd] after RoPE
  std::vector<float> k, v;         // f32 [S, Hkv*hd] keys/values attended over (old + new)
  std::vector<float> attn;         // f32 [T, Hq*hd] input of o_proj
  int64_t first_key_position = 0;  // absolute position of k[0]
};

// Runs T tokens at positions cache->tokens .. +T-1, appends their keys/values to the cache.
// out: f32 [T, D]; x: f32 [T, D]. Thread-safe for distinct caches.
void AttentionForward(const AttentionDims& dims, const AttentionWeights& w, const float* x,
                      int64_t T, float* out, KvCache* cache, AttentionSaved* saved = nullptr);

// One token for each of B sessions (each at its own position): x, out f32 [B, D]; appends each
// session's key and value rows to its cache. The fast path: q, k and v in one product when their
// weights lie back to back (as the spec table puts them), the decode products of
// kernels/linear.h (LinearForwardDecode), RoPE with one cos / sin per session, and the fused
// kernels/attention_decode.h. Equal to AttentionStepRef to float rounding
// (tests/engine/layers/attention_test.cc). Thread-safe for distinct caches.
void AttentionStep(const AttentionDims& dims, const AttentionWeights& w, const float* x, int64_t B,
                   float* out, KvCache* const* caches);

// The plain reference of AttentionStep (same contract): three BLAS products, ApplyRope per
// session, AttentionDecodeRef, a BLAS product.
void AttentionStepRef(const AttentionDims& dims, const AttentionWeights& w, const float* x,
                      int64_t B, float* out, KvCache* const* caches);

// Applies RoPE in place to `rows` vectors of `heads` heads at positions pos0, pos0+1, ...
// (stride between rows: ld floats). Exposed for tests and the trainer.
void ApplyRope(float* x, int64_t rows, int64_t ld, int heads, int head_dim, int64_t pos0,
               double theta);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_LAYERS_ATTENTION_H_
