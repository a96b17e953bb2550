#include "engine/train/transformer_lm.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/check.h"
#include "engine/train/loss.h"
#include "engine/train/vec_math.h"

namespace tapeloop::engine::train {
namespace {

inline void Gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
              static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

void Rms(const float* x, const float* w, int64_t T, int64_t D, float eps, float* r, float* y) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float s = 0;
    for (int64_t i = 0; i < D; ++i) s += xr[i] * xr[i];
    r[t] = 1.f / std::sqrt(s / D + eps);
    for (int64_t i = 0; i < D; ++i) y[t * D + i] = xr[i] * r[t] * w[i];
  }
}

// dx += d rms(x) w; dw += ...
void RmsBack(const float* x, const float* w, const float* r, const float* dy, int64_t T, int64_t D,
             float* dx, float* dw) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    const float* dyr = dy + t * D;
    float dot = 0;
    for (int64_t i = 0; i < D; ++i) dot += dyr[i] * w[i] * xr[i];
    for (int64_t i = 0; i < D; ++i) dw[i] += dyr[i] * xr[i] * r[t];
    const float k = dot * r[t] * r[t] * r[t] / D;
    for (int64_t i = 0; i < D; ++i) dx[t * D + i] += r[t] * w[i] * dyr[i] - k * xr[i];
  }
}

// In-place RoPE over [T, heads, hd] (row stride ld); sign = -1 applies the inverse rotation
// (the backward pass of the forward one).
void Rope(float* x, int64_t T, int heads, int hd, int64_t ld, double theta, float sign) {
  const int half = hd / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int i = 0; i < half; ++i) {
      const double ang = static_cast<double>(t) * std::pow(theta, -2.0 * i / hd);
      const float c = static_cast<float>(std::cos(ang)), s = sign * static_cast<float>(std::sin(ang));
      for (int h = 0; h < heads; ++h) {
        float* v = x + t * ld + h * hd;
        const float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
}

constexpr int kPerLayer = 9;  // input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down

}  // namespace

std::string TransformerLmConfig::ToHfConfigJson() const {
  const bool mistral = sliding_window > 0;
  return absl::StrCat(
      "{\n  \"architectures\": [\"", mistral ? "MistralForCausalLM" : "LlamaForCausalLM",
      "\"],\n  \"model_type\": \"", mistral ? "mistral" : "llama", "\",\n  \"vocab_size\": ", vocab,
      ",\n  \"hidden_size\": ", d_model, ",\n  \"num_hidden_layers\": ", layers,
      ",\n  \"num_attention_heads\": ", heads, ",\n  \"num_key_value_heads\": ", kv_heads,
      ",\n  \"head_dim\": ", head_dim, ",\n  \"intermediate_size\": ", intermediate,
      ",\n  \"hidden_act\": \"silu\",\n  \"rms_norm_eps\": ", eps, ",\n  \"rope_theta\": ", rope_theta,
      mistral ? absl::StrCat(",\n  \"sliding_window\": ", sliding_window) : std::string(),
      ",\n  \"max_position_embeddings\": 1048576,\n",
      // HF's MistralConfig has no bias keys (its layers have none); LlamaConfig does.
      mistral ? std::string() : "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n",
      "  \"tie_word_embeddings\": false,\n  \"bos_token_id\": 256,\n"
      "  \"eos_token_id\": 257,\n  \"pad_token_id\": 258,\n  \"torch_dtype\": \"float32\"\n}\n");
}

std::vector<ParamSpec> TransformerLmSpecs(const TransformerLmConfig& c) {
  const int64_t D = c.d_model, q = int64_t{c.heads} * c.head_dim, kv = int64_t{c.kv_heads} * c.head_dim,
                F = c.intermediate;
  auto lin = [](int64_t fan_in) { return InitUniform(1.f / std::sqrt(static_cast<float>(fan_in))); };
  std::vector<ParamSpec> s;
  s.push_back({"model.embed_tokens.weight", {c.vocab, D}, InitNormal(1.f), false});
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    s.push_back({p + "input_layernorm.weight", {D}, InitConstant(1.f), false});
    s.push_back({p + "self_attn.q_proj.weight", {q, D}, lin(D), true});
    s.push_back({p + "self_attn.k_proj.weight", {kv, D}, lin(D), true});
    s.push_back({p + "self_attn.v_proj.weight", {kv, D}, lin(D), true});
    s.push_back({p + "self_attn.o_proj.weight", {D, q}, lin(q), true});
    s.push_back({p + "post_attention_layernorm.weight", {D}, InitConstant(1.f), false});
    s.push_back({p + "mlp.gate_proj.weight", {F, D}, lin(D), true});
    s.push_back({p + "mlp.up_proj.weight", {F, D}, lin(D), true});
    s.push_back({p + "mlp.down_proj.weight", {D, F}, lin(F), true});
  }
  s.push_back({"model.norm.weight", {D}, InitConstant(1.f), false});
  s.push_back({"lm_head.weight", {c.vocab, D}, lin(D), true});
  return s;
}

std::string TransformerLm::Describe() const {
  const TransformerLmConfig& c = config_;
  return absl::StrCat(c.sliding_window > 0 ? "mistral" : "llama", " V=", c.vocab, " D=", c.d_model,
                      " L=", c.layers, " Hq=", c.heads, " Hkv=", c.kv_heads, " hd=", c.head_dim,
                      " F=", c.intermediate, " theta=", c.rope_theta, " window=", c.sliding_window,
                      " eps=", c.eps);
}

TransformerLm::TransformerLm(const TransformerLmConfig& config)
    : config_(config), table_(TransformerLmSpecs(config)) {
  TL_CHECK(config.heads % config.kv_heads == 0 && config.head_dim % 2 == 0);
}

RowResult TransformerLm::RowForwardBackward(const float* params, std::span<const int32_t> ids,
                                            std::span<const float> target_mask, double denom,
                                            float* grads, Mamba2Workspace* ws,
                                            std::vector<int32_t>* argmax) const {
  const TransformerLmConfig& c = config_;
  const int64_t T = static_cast<int64_t>(ids.size()) - 1;
  TL_CHECK(T >= 1 && static_cast<int64_t>(target_mask.size()) == T);
  const int64_t D = c.d_model, V = c.vocab, hd = c.head_dim, Hq = c.heads, Hk = c.kv_heads,
                Q = Hq * hd, KV = Hk * hd, F = c.intermediate, L = c.layers, G = Hq / Hk;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  // Per layer saved: h_in [T,D], r1 [T], u [T,D], q [T,Q], k [T,KV], v [T,KV], P [Hq,T,T],
  // o [T,Q], h_mid [T,D], r2 [T], u2 [T,D], g [T,F], up [T,F], a [T,F].
  const int64_t per = T * D + T + T * D + T * Q + 2 * T * KV + Hq * T * T + T * Q + T * D + T +
                      T * D + 3 * T * F;
  const int64_t extra = T * D + T + T * D + T * V +                            // final norm, logits
                        2 * T * D + T * Q + 2 * T * KV + T * Q + 3 * T * F + T * T;  // backward
  ws->buf.resize(L * per + extra);
  float* base = ws->buf.data();
  struct Saved {
    float *h, *r1, *u, *q, *k, *v, *P, *o, *hm, *r2, *u2, *g, *up, *a;
  };
  std::vector<Saved> sv(L);
  for (int l = 0; l < L; ++l) {
    float* p = base + l * per;
    Saved& s = sv[l];
    s.h = p; p += T * D;
    s.r1 = p; p += T;
    s.u = p; p += T * D;
    s.q = p; p += T * Q;
    s.k = p; p += T * KV;
    s.v = p; p += T * KV;
    s.P = p; p += Hq * T * T;
    s.o = p; p += T * Q;
    s.hm = p; p += T * D;
    s.r2 = p; p += T;
    s.u2 = p; p += T * D;
    s.g = p; p += T * F;
    s.up = p; p += T * F;
    s.a = p; p += T * F;
  }
  float* p = base + L * per;
  float* hf = p; p += T * D;
  float* rf = p; p += T;
  float* hn = p; p += T * D;
  float* logits = p; p += T * V;
  float* dh = p; p += T * D;
  float* dtmp = p; p += T * D;
  float* dq = p; p += T * Q;
  float* dk = p; p += T * KV;
  float* dv = p; p += T * KV;
  float* dO = p; p += T * Q;
  float* dg = p; p += T * F;
  float* dup = p; p += T * F;
  float* da = p; p += T * F;
  float* dP = p; p += T * T;

  auto off = [&](int l, int k) { return table_.offset(1 + kPerLayer * l + k); };
  const float* emb = params + table_.offset(0);
  float* h = sv.empty() ? hf : sv[0].h;
  for (int64_t t = 0; t < T; ++t) {
    TL_CHECK(ids[t] >= 0 && ids[t] < V);
    std::memcpy(h + t * D, emb + ids[t] * D, sizeof(float) * D);
  }
  for (int l = 0; l < L; ++l) {
    Saved& s = sv[l];
    Rms(s.h, params + off(l, 0), T, D, c.eps, s.r1, s.u);
    Gemm(false, true, T, Q, D, 1.f, s.u, D, params + off(l, 1), D, 0.f, s.q, Q);
    Gemm(false, true, T, KV, D, 1.f, s.u, D, params + off(l, 2), D, 0.f, s.k, KV);
    Gemm(false, true, T, KV, D, 1.f, s.u, D, params + off(l, 3), D, 0.f, s.v, KV);
    Rope(s.q, T, static_cast<int>(Hq), static_cast<int>(hd), Q, c.rope_theta, 1.f);
    Rope(s.k, T, static_cast<int>(Hk), static_cast<int>(hd), KV, c.rope_theta, 1.f);
    for (int64_t hh = 0; hh < Hq; ++hh) {
      const int64_t kh = hh / G;
      float* P = s.P + hh * T * T;
      Gemm(false, true, T, T, hd, scale, s.q + hh * hd, Q, s.k + kh * hd, KV, 0.f, P, T);
      for (int64_t t = 0; t < T; ++t) {
        float* row = P + t * T;
        const int64_t lo = c.sliding_window > 0 ? std::max<int64_t>(0, t - c.sliding_window + 1) : 0;
        float mx = -INFINITY;
        for (int64_t j = lo; j <= t; ++j) mx = std::max(mx, row[j]);
        float sum = 0;
        for (int64_t j = 0; j < T; ++j) {
          row[j] = (j >= lo && j <= t) ? std::exp(row[j] - mx) : 0.f;
          sum += row[j];
        }
        for (int64_t j = 0; j < T; ++j) row[j] /= sum;
      }
      Gemm(false, false, T, hd, T, 1.f, P, T, s.v + kh * hd, KV, 0.f, s.o + hh * hd, Q);
    }
    std::memcpy(s.hm, s.h, sizeof(float) * T * D);
    Gemm(false, true, T, D, Q, 1.f, s.o, Q, params + off(l, 4), Q, 1.f, s.hm, D);
    Rms(s.hm, params + off(l, 5), T, D, c.eps, s.r2, s.u2);
    Gemm(false, true, T, F, D, 1.f, s.u2, D, params + off(l, 6), D, 0.f, s.g, F);
    Gemm(false, true, T, F, D, 1.f, s.u2, D, params + off(l, 7), D, 0.f, s.up, F);
    SiluArray(s.g, s.a, T * F);
    for (int64_t i = 0; i < T * F; ++i) s.a[i] *= s.up[i];
    float* hnext = l + 1 < L ? sv[l + 1].h : hf;
    std::memcpy(hnext, s.hm, sizeof(float) * T * D);
    Gemm(false, true, T, D, F, 1.f, s.a, F, params + off(l, 8), F, 1.f, hnext, D);
  }
  const int64_t o_nf = table_.offset(1 + kPerLayer * L), o_head = table_.offset(2 + kPerLayer * L);
  Rms(hf, params + o_nf, T, D, c.eps, rf, hn);
  Gemm(false, true, T, V, D, 1.f, hn, D, params + o_head, D, 0.f, logits, V);
  if (argmax) {
    argmax->resize(T);
    for (int64_t t = 0; t < T; ++t)
      (*argmax)[t] = static_cast<int32_t>(std::max_element(logits + t * V, logits + (t + 1) * V) - (logits + t * V));
  }
  CrossEntropyResult ce = MaskedCrossEntropy(
      std::span<const float>(logits, T * V), ids.subspan(1), target_mask, T, V, denom,
      grads ? std::span<float>(logits, T * V) : std::span<float>());
  RowResult res{ce.loss_sum, ce.counted, ce.correct};
  if (!grads) return res;

  float* dlogits = logits;
  Gemm(true, false, V, D, T, 1.f, dlogits, V, hn, D, 1.f, grads + o_head, D);
  Gemm(false, false, T, D, V, 1.f, dlogits, V, params + o_head, D, 0.f, dtmp, D);
  std::fill(dh, dh + T * D, 0.f);
  RmsBack(hf, params + o_nf, rf, dtmp, T, D, dh, grads + o_nf);
  for (int l = L - 1; l >= 0; --l) {
    Saved& s = sv[l];
    // MLP: h_next = hm + a Wd^T.
    Gemm(true, false, D, F, T, 1.f, dh, D, s.a, F, 1.f, grads + off(l, 8), F);
    Gemm(false, false, T, F, D, 1.f, dh, D, params + off(l, 8), F, 0.f, da, F);
    // a = silu(g) * up.
    SiluArray(s.g, dup, T * F);  // dup = silu(g) for now
    for (int64_t i = 0; i < T * F; ++i) {
      const float sg = dup[i];
      dup[i] = da[i] * sg;
      dg[i] = da[i] * s.up[i];
    }
    SiluGradInPlace(s.g, dg, T * F);
    Gemm(true, false, F, D, T, 1.f, dg, F, s.u2, D, 1.f, grads + off(l, 6), D);
    Gemm(true, false, F, D, T, 1.f, dup, F, s.u2, D, 1.f, grads + off(l, 7), D);
    Gemm(false, false, T, D, F, 1.f, dg, F, params + off(l, 6), D, 0.f, dtmp, D);
    Gemm(false, false, T, D, F, 1.f, dup, F, params + off(l, 7), D, 1.f, dtmp, D);
    RmsBack(s.hm, params + off(l, 5), s.r2, dtmp, T, D, dh, grads + off(l, 5));  // dh = d hm
    // Attention: hm = h + o Wo^T.
    Gemm(true, false, D, Q, T, 1.f, dh, D, s.o, Q, 1.f, grads + off(l, 4), Q);
    Gemm(false, false, T, Q, D, 1.f, dh, D, params + off(l, 4), Q, 0.f, dO, Q);
    std::fill(dk, dk + T * KV, 0.f);
    std::fill(dv, dv + T * KV, 0.f);
    for (int64_t hh = 0; hh < Hq; ++hh) {
      const int64_t kh = hh / G;
      const float* P = s.P + hh * T * T;
      Gemm(false, true, T, T, hd, 1.f, dO + hh * hd, Q, s.v + kh * hd, KV, 0.f, dP, T);
      Gemm(true, false, T, hd, T, 1.f, P, T, dO + hh * hd, Q, 1.f, dv + kh * hd, KV);
      for (int64_t t = 0; t < T; ++t) {
        float* dr = dP + t * T;
        const float* pr = P + t * T;
        float dot = 0;
        for (int64_t j = 0; j < T; ++j) dot += dr[j] * pr[j];
        for (int64_t j = 0; j < T; ++j) dr[j] = pr[j] * (dr[j] - dot);
      }
      Gemm(false, false, T, hd, T, scale, dP, T, s.k + kh * hd, KV, 0.f, dq + hh * hd, Q);
      Gemm(true, false, T, hd, T, scale, dP, T, s.q + hh * hd, Q, 1.f, dk + kh * hd, KV);
    }
    Rope(dq, T, static_cast<int>(Hq), static_cast<int>(hd), Q, c.rope_theta, -1.f);
    Rope(dk, T, static_cast<int>(Hk), static_cast<int>(hd), KV, c.rope_theta, -1.f);
    Gemm(true, false, Q, D, T, 1.f, dq, Q, s.u, D, 1.f, grads + off(l, 1), D);
    Gemm(true, false, KV, D, T, 1.f, dk, KV, s.u, D, 1.f, grads + off(l, 2), D);
    Gemm(true, false, KV, D, T, 1.f, dv, KV, s.u, D, 1.f, grads + off(l, 3), D);
    Gemm(false, false, T, D, Q, 1.f, dq, Q, params + off(l, 1), D, 0.f, dtmp, D);
    Gemm(false, false, T, D, KV, 1.f, dk, KV, params + off(l, 2), D, 1.f, dtmp, D);
    Gemm(false, false, T, D, KV, 1.f, dv, KV, params + off(l, 3), D, 1.f, dtmp, D);
    RmsBack(s.h, params + off(l, 0), s.r1, dtmp, T, D, dh, grads + off(l, 0));
  }
  float* demb = grads + table_.offset(0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) demb[ids[t] * D + i] += dh[t * D + i];
  return res;
}

}  // namespace tapeloop::engine::train
