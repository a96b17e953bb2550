#include "engine/train/transformer_lm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/check.h"
#include "engine/train/attention_grad.h"
#include "engine/train/embedding_grad.h"
#include "engine/train/lm_head_grad.h"
#include "engine/train/loss.h"
#include "engine/train/mlp_grad.h"
#include "engine/train/rms_norm_grad.h"
#include "engine/train/row_math.h"

namespace tapeloop::engine::train {
namespace {

// Table layout (TransformerLmSpecs): embed_tokens; per layer input_layernorm, q, k, v, o,
// post_attention_layernorm, gate, up, down; norm; lm_head.
constexpr int kPerLayer = 2 + kAttentionTensors + 3;

AttentionDims AttnDims(const TransformerLmConfig& c, int64_t T) {
  AttentionDims d;
  d.T = T;
  d.D = c.d_model;
  d.Hq = c.heads;
  d.Hkv = c.kv_heads;
  d.hd = c.head_dim;
  d.rope = true;
  d.theta = c.rope_theta;
  d.window = c.sliding_window;
  return d;
}

MlpDims FfnDims(const TransformerLmConfig& c, int64_t T) {
  return MlpDims{T, c.d_model, c.intermediate, /*swiglu=*/true};
}

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
  const int64_t D = c.d_model;
  auto lin = [](int64_t fan_in) { return InitUniform(1.f / std::sqrt(static_cast<float>(fan_in))); };
  std::vector<ParamSpec> s;
  s.push_back({"model.embed_tokens.weight", {c.vocab, D}, InitNormal(1.f), false});
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    s.push_back({p + "input_layernorm.weight", {D}, InitConstant(1.f), false});
    AppendAttentionSpecs(p + "self_attn.", AttnDims(c, 0), &s);
    s.push_back({p + "post_attention_layernorm.weight", {D}, InitConstant(1.f), false});
    AppendMlpSpecs(p + "mlp.", FfnDims(c, 0), &s);
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
  const int64_t D = c.d_model, V = c.vocab;
  const int L = c.layers;
  const AttentionDims ad = AttnDims(c, T);
  const MlpDims fd = FfnDims(c, T);
  // Per layer saved: h_in [T,D], r1 [T], u [T,D], attention, h_mid [T,D], r2 [T], u2 [T,D], MLP.
  struct Saved {
    float *h, *r1, *u, *hm, *r2, *u2;
    AttentionSaved attn;
    MlpSaved mlp;
  };
  std::vector<Saved> sv(L);
  float *hf = nullptr, *rf = nullptr, *hn = nullptr, *logits = nullptr, *dh = nullptr,
        *dtmp = nullptr;
  AttentionScratch attn_scratch{};
  MlpScratch mlp_scratch{};
  auto layout = [&](Carver& cv) {
    for (int l = 0; l < L; ++l) {
      Saved& s = sv[l];
      s.h = cv.Take(T * D);
      s.r1 = cv.Take(T);
      s.u = cv.Take(T * D);
      s.attn = AttentionSaved::Carve(ad, cv);
      s.hm = cv.Take(T * D);
      s.r2 = cv.Take(T);
      s.u2 = cv.Take(T * D);
      s.mlp = MlpSaved::Carve(fd, cv);
    }
    hf = cv.Take(T * D);
    rf = cv.Take(T);
    hn = cv.Take(T * D);
    logits = cv.Take(T * V);
    if (grads) {
      dh = cv.Take(T * D);
      dtmp = cv.Take(T * D);
      attn_scratch = AttentionScratch::Carve(ad, cv);
      mlp_scratch = MlpScratch::Carve(fd, cv);
    }
  };
  CarveWorkspace(ws->buf, layout);

  auto first = [&](int l) { return 1 + kPerLayer * l; };
  auto off = [&](int l, int k) { return table_.offset(first(l) + k); };
  EmbeddingForward(params + table_.offset(0), ids, T, D, V, sv.empty() ? hf : sv[0].h);
  for (int l = 0; l < L; ++l) {
    Saved& s = sv[l];
    RmsNormForward(s.h, params + off(l, 0), T, D, c.eps, s.r1, s.u);
    std::memcpy(s.hm, s.h, sizeof(float) * T * D);
    AttentionForward(ad, BindAttention(params, table_, first(l) + 1), s.u, s.attn, s.hm);
    RmsNormForward(s.hm, params + off(l, 5), T, D, c.eps, s.r2, s.u2);
    float* hnext = l + 1 < L ? sv[l + 1].h : hf;
    std::memcpy(hnext, s.hm, sizeof(float) * T * D);
    MlpForward(fd, BindMlp(params, table_, first(l) + 6, fd), s.u2, s.mlp, hnext);
  }
  const int64_t o_nf = table_.offset(1 + kPerLayer * L), o_head = table_.offset(2 + kPerLayer * L);
  const LmHeadParams head{params + o_nf, params + o_head};
  RowResult res = LmHeadForward(hf, head, T, D, V, c.eps, ids.subspan(1), target_mask, denom,
                                grads != nullptr, rf, hn, logits, argmax);
  if (!grads) return res;

  LmHeadBackward(hf, head, rf, hn, logits, T, D, V, dtmp, dh, grads + o_nf, grads + o_head);
  for (int l = L - 1; l >= 0; --l) {
    Saved& s = sv[l];
    MlpBackward(fd, BindMlp(params, table_, first(l) + 6, fd), s.u2, s.mlp, mlp_scratch, dh, dtmp,
                BindMlp(grads, table_, first(l) + 6, fd));
    RmsNormBackward(s.hm, params + off(l, 5), s.r2, dtmp, T, D, dh, grads + off(l, 5));  // d hm
    AttentionBackward(ad, BindAttention(params, table_, first(l) + 1), s.u, s.attn, attn_scratch,
                      dh, dtmp, BindAttention(grads, table_, first(l) + 1));
    RmsNormBackward(s.h, params + off(l, 0), s.r1, dtmp, T, D, dh, grads + off(l, 0));
  }
  EmbeddingBackward(dh, ids, T, D, grads + table_.offset(0));
  return res;
}

}  // namespace tapeloop::engine::train
