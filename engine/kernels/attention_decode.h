// Attention of a decode step: one query row per session against that session's own keys and
// values (each session has its own KV cache and position), for B sessions at once.
//
//   out[b, h] = sum_j softmax_j(scale * q[b, h] . k_b[j, kvh]) v_b[j, kvh],   kvh = h / (Hq / Hkv)
//
// over every row j < kv[b].rows of the session's cache (the caller passes the live rows; their
// order does not matter). AttentionDecodeRef is the plain reference (one head at a time, libm
// exp, double sum); AttentionDecode is the fast path: per session and KV head, the scores of all
// its query heads in 16-row blocks of register-blocked dot products, a vectorized polynomial
// exp (within 2 ulp of libm), and the weighted sum of values, split over sessions x KV heads
// with ParallelFor when the batch is big enough. A KV head's query heads (GQA) read its rows
// together in blocks of 256, so each key and value row comes from memory once per group; each
// head's result is bit for bit what it would be alone. The two agree to float rounding
// (tests/engine/kernels/attention_decode_test.cc). Thread-safe; neither allocates per call
// beyond a thread-local score buffer.
#ifndef TAPELOOP_ENGINE_KERNELS_ATTENTION_DECODE_H_
#define TAPELOOP_ENGINE_KERNELS_ATTENTION_DECODE_H_

#include <cstdint>

namespace tapeloop::engine {

// One session's cached keys and values for one attention layer.
struct KvRows {
  const float* k = nullptr;  // f32 [rows, Hkv*hd] (head kvh at columns kvh*hd ..)
  const float* v = nullptr;  // f32 [rows, Hkv*hd]
  int64_t rows = 0;          // live rows, >= 1
};

// out: f32 [B, Hq*hd] (must not alias q); q: f32 [B, ldq], the query heads in its first Hq*hd
// columns; kv: [B]. REQUIRES: Hq % Hkv == 0, head_dim >= 1, ldq >= Hq*hd, kv[b].rows >= 1.
void AttentionDecode(float* out, const float* q, int64_t ldq, const KvRows* kv, int64_t B,
                     int num_heads, int num_kv_heads, int head_dim, float scale);
void AttentionDecodeRef(float* out, const float* q, int64_t ldq, const KvRows* kv, int64_t B,
                        int num_heads, int num_kv_heads, int head_dim, float scale);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_KERNELS_ATTENTION_DECODE_H_
