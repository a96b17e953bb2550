#include "engine/layers/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/check.h"
#include "engine/kernels/attention_decode.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/linear_packed.h"
#include "engine/kernels/vec.h"
#include "engine/parallel.h"
#include "engine/tensor.h"

namespace tapeloop::engine {
namespace {

// Grows an unbounded cache so that it holds at least `rows` rows (amortized doubling).
void Reserve(std::vector<float>* buf, int64_t rows, int64_t width) {
  const size_t need = static_cast<size_t>(rows * width);
  if (buf->size() >= need) return;
  buf->resize(std::max(need, buf->size() * 2));
}

}  // namespace

std::vector<ParamSpec> AttentionParamSpecs(const AttentionDims& d) {
  std::vector<ParamSpec> s = {
      {"q_proj.weight", {d.q_dim(), d.dim}, Init::kNormal},
      {"k_proj.weight", {d.kv_dim(), d.dim}, Init::kNormal},
      {"v_proj.weight", {d.kv_dim(), d.dim}, Init::kNormal},
      {"o_proj.weight", {d.dim, d.q_dim()}, Init::kNormal},
  };
  if (d.bias) {
    s.push_back({"q_proj.bias", {d.q_dim()}, Init::kZeros});
    s.push_back({"k_proj.bias", {d.kv_dim()}, Init::kZeros});
    s.push_back({"v_proj.bias", {d.kv_dim()}, Init::kZeros});
    s.push_back({"o_proj.bias", {d.dim}, Init::kZeros});
  }
  return s;
}

AttentionWeights BindAttentionWeights(const AttentionDims& d, const ParamLookup& lookup) {
  AttentionWeights w;
  w.q_w = lookup("q_proj.weight");
  w.k_w = lookup("k_proj.weight");
  w.v_w = lookup("v_proj.weight");
  w.o_w = lookup("o_proj.weight");
  if (d.bias) {
    w.q_b = lookup("q_proj.bias");
    w.k_b = lookup("k_proj.bias");
    w.v_b = lookup("v_proj.bias");
    w.o_b = lookup("o_proj.bias");
  }
  return w;
}

void ApplyRope(float* x, int64_t rows, int64_t ld, int heads, int head_dim, int64_t pos0,
               double theta) {
  const int half = head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    // As HF: computed in f32 from an f32 exponent.
    inv_freq[i] = static_cast<float>(
        1.0 / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim)));
  }
  std::vector<float> cs(half), sn(half);
  for (int64_t r = 0; r < rows; ++r) {
    const float pos = static_cast<float>(pos0 + r);
    for (int i = 0; i < half; ++i) {
      const float f = pos * inv_freq[i];
      cs[i] = std::cos(f);
      sn[i] = std::sin(f);
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x + r * ld + static_cast<int64_t>(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
      }
    }
  }
}

void AttentionForward(const AttentionDims& d, const AttentionWeights& w, const float* x, int64_t T,
                      float* out, KvCache* cache, AttentionSaved* saved) {
  const int64_t qd = d.q_dim(), kvd = d.kv_dim(), hd = d.head_dim;
  const int64_t pos0 = cache->tokens;
  const int64_t W = d.window;
  std::vector<float> q(T * qd), k(T * kvd), v(T * kvd);  // f32 [T, Hq*hd], [T, Hkv*hd] x2
  LinearForwardRef(q.data(), x, w.q_w, w.q_b, T, d.dim, qd);
  LinearForwardRef(k.data(), x, w.k_w, w.k_b, T, d.dim, kvd);
  LinearForwardRef(v.data(), x, w.v_w, w.v_b, T, d.dim, kvd);
  if (d.use_rope) {
    ApplyRope(q.data(), T, qd, d.num_heads, d.head_dim, pos0, d.rope_theta);
    ApplyRope(k.data(), T, kvd, d.num_kv_heads, d.head_dim, pos0, d.rope_theta);
  }

  // Keys and values attended over, in position order: the cached ones a query of this call can
  // see, then the new ones. For a full cache that is the cache itself after appending.
  const float* keys;
  const float* values;
  int64_t n_old;
  std::vector<float> ks, vs;  // f32 [n_old + T, Hkv*hd] (windowed only)
  if (W <= 0) {
    Reserve(&cache->k, pos0 + T, kvd);
    Reserve(&cache->v, pos0 + T, kvd);
    std::memcpy(cache->k.data() + pos0 * kvd, k.data(), sizeof(float) * T * kvd);
    std::memcpy(cache->v.data() + pos0 * kvd, v.data(), sizeof(float) * T * kvd);
    keys = cache->k.data();
    values = cache->v.data();
    n_old = pos0;
  } else {
    n_old = std::min(pos0, W - 1);
    ks.resize((n_old + T) * kvd);
    vs.resize((n_old + T) * kvd);
    for (int64_t i = 0; i < n_old; ++i) {
      const int64_t row = (pos0 - n_old + i) % W;
      std::memcpy(ks.data() + i * kvd, cache->k.data() + row * kvd, sizeof(float) * kvd);
      std::memcpy(vs.data() + i * kvd, cache->v.data() + row * kvd, sizeof(float) * kvd);
    }
    std::memcpy(ks.data() + n_old * kvd, k.data(), sizeof(float) * T * kvd);
    std::memcpy(vs.data() + n_old * kvd, v.data(), sizeof(float) * T * kvd);
    keys = ks.data();
    values = vs.data();
  }
  const int64_t S = n_old + T;
  const int group = d.num_heads / d.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> attn(T * qd);  // f32 [T, Hq*hd]
  // Per head, the queries in blocks of kQueryBlock: their scores against the keys the block can
  // see, keys [k0, n_old + t1) (f32 [t1 - t0, nk]), each row's softmax over its own visible
  // keys (query t sees [max(0, n_old + t + 1 - W), n_old + t] when windowed), then the weighted
  // sum of the values. Blocks keep the scores cache-sized when a long cache meets a long append.
  constexpr int64_t kQueryBlock = 64;
  ParallelFor(d.num_heads, 1, [&](int64_t h0, int64_t h1) {
    float* scores = ThreadScratch(Scratch::kAttentionScores, std::min(T, kQueryBlock) * S);
    for (int64_t h = h0; h < h1; ++h) {
      const int64_t kvh = h / group;
      for (int64_t t0 = 0; t0 < T; t0 += kQueryBlock) {
        const int64_t t1 = std::min(T, t0 + kQueryBlock);
        const int64_t k0 = W > 0 ? std::max<int64_t>(0, n_old + t0 + 1 - W) : 0;
        const int64_t nk = n_old + t1 - k0;
        Gemm(false, true, t1 - t0, nk, hd, scale, q.data() + t0 * qd + h * hd, qd,
             keys + k0 * kvd + kvh * hd, kvd, 0.0f, scores, nk);
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t hi = n_old + t + 1;
          const int64_t lo = W > 0 ? std::max<int64_t>(0, hi - W) : 0;
          VecMaskedSoftmax(scores + (t - t0) * nk, lo - k0, hi - k0, nk);
        }
        Gemm(false, false, t1 - t0, hd, nk, 1.0f, scores, nk, values + k0 * kvd + kvh * hd, kvd,
             0.0f, attn.data() + t0 * qd + h * hd, qd);
      }
    }
  });
  if (W > 0) {
    if (static_cast<int64_t>(cache->k.size()) < W * kvd) {
      cache->k.resize(W * kvd);
      cache->v.resize(W * kvd);
    }
    for (int64_t t = std::max<int64_t>(0, T - W); t < T; ++t) {
      const int64_t row = (pos0 + t) % W;
      std::memcpy(cache->k.data() + row * kvd, k.data() + t * kvd, sizeof(float) * kvd);
      std::memcpy(cache->v.data() + row * kvd, v.data() + t * kvd, sizeof(float) * kvd);
    }
  }
  cache->tokens = pos0 + T;
  if (saved) {
    saved->q = q;
    saved->k.assign(keys, keys + S * kvd);
    saved->v.assign(values, values + S * kvd);
    saved->attn = attn;
    saved->first_key_position = pos0 - n_old;
  }
  LinearForwardRef(out, attn.data(), w.o_w, w.o_b, T, qd, d.dim);
}

namespace {

// Appends one token's key and value rows to a session's cache (a ring of `window` rows when
// windowed) and advances it.
void AppendKv(KvCache* c, const float* k, const float* v, int64_t kvd, int64_t window) {
  const int64_t pos = c->tokens;
  int64_t row;
  if (window > 0) {
    if (static_cast<int64_t>(c->k.size()) < window * kvd) {
      c->k.resize(window * kvd);
      c->v.resize(window * kvd);
    }
    row = pos % window;
  } else {
    Reserve(&c->k, pos + 1, kvd);
    Reserve(&c->v, pos + 1, kvd);
    row = pos;
  }
  std::memcpy(c->k.data() + row * kvd, k, sizeof(float) * kvd);
  std::memcpy(c->v.data() + row * kvd, v, sizeof(float) * kvd);
  c->tokens = pos + 1;
}

}  // namespace

void AttentionStepRef(const AttentionDims& d, const AttentionWeights& w, const float* x, int64_t B,
                      float* out, KvCache* const* caches) {
  const int64_t qd = d.q_dim(), kvd = d.kv_dim();
  std::vector<float> q(B * qd), k(B * kvd), v(B * kvd);  // f32 [B, Hq*hd], [B, Hkv*hd] x2
  LinearForwardRef(q.data(), x, w.q_w, w.q_b, B, d.dim, qd);
  LinearForwardRef(k.data(), x, w.k_w, w.k_b, B, d.dim, kvd);
  LinearForwardRef(v.data(), x, w.v_w, w.v_b, B, d.dim, kvd);
  std::vector<KvRows> rows(B);
  for (int64_t b = 0; b < B; ++b) {
    KvCache* c = caches[b];
    if (d.use_rope) {
      ApplyRope(q.data() + b * qd, 1, qd, d.num_heads, d.head_dim, c->tokens, d.rope_theta);
      ApplyRope(k.data() + b * kvd, 1, kvd, d.num_kv_heads, d.head_dim, c->tokens, d.rope_theta);
    }
    AppendKv(c, k.data() + b * kvd, v.data() + b * kvd, kvd, d.window);
    rows[b] = {c->k.data(), c->v.data(), c->live_rows(d.window)};
  }
  std::vector<float> attn(B * qd);  // f32 [B, Hq*hd]
  AttentionDecodeRef(attn.data(), q.data(), qd, rows.data(), B, d.num_heads, d.num_kv_heads,
                     d.head_dim, 1.0f / std::sqrt(static_cast<float>(d.head_dim)));
  LinearForwardRef(out, attn.data(), w.o_w, w.o_b, B, qd, d.dim);
}

void AttentionStep(const AttentionDims& d, const AttentionWeights& w, const float* x, int64_t B,
                   float* out, KvCache* const* caches) {
  const int64_t qd = d.q_dim(), kvd = d.kv_dim(), hd = d.head_dim;
  // q, k, v of every session in one product when their weights (and biases) lie back to back in
  // the parameter buffer, as the spec table puts them: f32 [B, Hq*hd + 2*Hkv*hd].
  const int64_t ld = qd + 2 * kvd;
  float* qkv = ThreadScratch(Scratch::kAttentionQkv, B * ld);
  const bool fused = w.k_w == w.q_w + qd * d.dim && w.v_w == w.k_w + kvd * d.dim &&
                     (w.q_b == nullptr ? w.k_b == nullptr && w.v_b == nullptr
                                       : w.k_b == w.q_b + qd && w.v_b == w.k_b + kvd);
  if (fused) {
    LinearForwardDecode(qkv, x, w.q_w, w.qkv_packed, w.q_b, B, d.dim, ld);
  } else {
    float* part = ThreadScratch(Scratch::kAttentionPart, B * qd);  // f32 [B, out]: q, k or v
    const float* ws[3] = {w.q_w, w.k_w, w.v_w};
    const float* bs[3] = {w.q_b, w.k_b, w.v_b};
    const int64_t width[3] = {qd, kvd, kvd}, col[3] = {0, qd, qd + kvd};
    for (int i = 0; i < 3; ++i) {
      LinearForwardDecode(part, x, ws[i], bs[i], B, d.dim, width[i]);
      for (int64_t b = 0; b < B; ++b) {
        std::memcpy(qkv + b * ld + col[i], part + b * width[i], sizeof(float) * width[i]);
      }
    }
  }
  // RoPE (cos / sin of each session's position computed once for its q and k heads), then the
  // new key and value rows into each cache.
  const int half = d.head_dim / 2;
  std::vector<float> inv_freq(half), cs(half), sn(half);
  for (int i = 0; i < half; ++i) {
    // As ApplyRope (and HF): computed in f32 from an f32 exponent.
    inv_freq[i] = static_cast<float>(
        1.0 / std::pow(d.rope_theta, static_cast<float>(2 * i) / static_cast<float>(d.head_dim)));
  }
  std::vector<KvRows> rows(B);
  for (int64_t b = 0; b < B; ++b) {
    KvCache* c = caches[b];
    float* q = qkv + b * ld;
    float* k = q + qd;
    if (d.use_rope) {
      const float pos = static_cast<float>(c->tokens);
      for (int i = 0; i < half; ++i) {
        const float f = pos * inv_freq[i];
        cs[i] = std::cos(f);
        sn[i] = std::sin(f);
      }
      for (int h = 0; h < d.num_heads + d.num_kv_heads; ++h) {
        float* r = q + static_cast<int64_t>(h) * hd;  // the q heads, then (contiguous) the k heads
        for (int i = 0; i < half; ++i) {
          const float a = r[i], b2 = r[i + half];
          r[i] = a * cs[i] - b2 * sn[i];
          r[i + half] = b2 * cs[i] + a * sn[i];
        }
      }
    }
    AppendKv(c, k, k + kvd, kvd, d.window);
    rows[b] = {c->k.data(), c->v.data(), c->live_rows(d.window)};
  }
  float* attn = ThreadScratch(Scratch::kAttentionOut, B * qd);  // f32 [B, Hq*hd]
  AttentionDecode(attn, qkv, ld, rows.data(), B, d.num_heads, d.num_kv_heads, d.head_dim,
                  1.0f / std::sqrt(static_cast<float>(hd)));
  LinearForwardDecode(out, attn, w.o_w, w.o_packed, w.o_b, B, qd, d.dim);
}

}  // namespace tapeloop::engine
