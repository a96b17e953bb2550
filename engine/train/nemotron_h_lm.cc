#include "engine/train/nemotron_h_lm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/check.h"
#include "engine/train/attention_grad.h"
#include "engine/train/embedding_grad.h"
#include "engine/train/lm_head_grad.h"
#include "engine/train/loss.h"
#include "engine/train/mamba2_mixer_grad.h"
#include "engine/train/mlp_grad.h"
#include "engine/train/rms_norm_grad.h"
#include "engine/train/row_math.h"

namespace tapeloop::engine::train {
namespace {

Mamba2MixerDims MixerDims(const NemotronHLmConfig& c, int64_t T) {
  Mamba2MixerDims d;
  d.T = T;
  d.D = c.d_model;
  d.H = c.mamba_heads();
  d.P = c.mamba_head_dim;
  d.N = c.state;
  d.K = c.conv_kernel;
  d.Q = c.chunk;
  d.eps = c.eps;
  d.dt_min = c.time_step_min;
  return d;
}

AttentionDims AttnDims(const NemotronHLmConfig& c, int64_t T) {
  AttentionDims d;
  d.T = T;
  d.D = c.d_model;
  d.Hq = c.heads;
  d.Hkv = c.kv_heads;
  d.hd = c.attn_head_dim;
  d.rope = false;  // NemotronHAttention has no positional encoding
  d.window = 0;
  return d;
}

MlpDims FfnDims(const NemotronHLmConfig& c, int64_t T) {
  return MlpDims{T, c.d_model, c.intermediate, /*swiglu=*/false};
}

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("nemotron_h config: ", what));
}

}  // namespace

absl::Status NemotronHLmConfig::Validate() const {
  if (pattern.empty()) return Bad("the layer pattern is empty (expected letters M, * and -)");
  for (char ch : pattern) {
    if (ch != 'M' && ch != '*' && ch != '-')
      return Bad(absl::StrCat("the layer pattern '", pattern, "' has '", std::string(1, ch),
                              "' (expected M Mamba-2, * attention, - MLP)"));
  }
  if (vocab < 1 || d_model < 1) return Bad("vocab and d_model must be >= 1");
  if (state < 1 || mamba_head_dim < 1 || expand < 1 || conv_kernel < 1 || chunk < 1)
    return Bad("state, mamba head dim, expand, conv kernel and chunk must be >= 1");
  if (mamba_inner() % mamba_head_dim != 0)
    return Bad(absl::StrCat("expand * d_model (", mamba_inner(),
                            ") is not divisible by the Mamba head dim (", mamba_head_dim, ")"));
  if (heads < 1 || kv_heads < 1 || attn_head_dim < 1 || heads % kv_heads != 0)
    return Bad(absl::StrCat("attention heads (", heads,
                            ") must be a positive multiple of kv heads (", kv_heads,
                            ") and the head dim >= 1"));
  if (intermediate < 1) return Bad("the MLP intermediate size must be >= 1");
  if (!(time_step_min >= 0.f) || !(eps > 0.f)) return Bad("time_step_min must be >= 0, eps > 0");
  return absl::OkStatus();
}

std::string NemotronHLmConfig::ToHfConfigJson() const {
  return absl::StrCat(
      "{\n  \"architectures\": [\"NemotronHForCausalLM\"],\n  \"model_type\": \"nemotron_h\",\n",
      "  \"vocab_size\": ", vocab, ",\n  \"hidden_size\": ", d_model,
      ",\n  \"num_hidden_layers\": ", pattern.size(), ",\n  \"hybrid_override_pattern\": \"",
      pattern, "\",\n  \"layer_norm_epsilon\": ", eps, ",\n  \"mamba_num_heads\": ", mamba_heads(),
      ",\n  \"mamba_head_dim\": ", mamba_head_dim, ",\n  \"ssm_state_size\": ", state,
      ",\n  \"n_groups\": 1,\n  \"conv_kernel\": ", conv_kernel, ",\n  \"chunk_size\": ", chunk,
      ",\n  \"use_conv_bias\": true,\n  \"use_bias\": false,\n  \"mamba_hidden_act\": \"silu\",\n",
      "  \"time_step_min\": ", time_step_min,
      ",\n  \"time_step_max\": 0.1,\n  \"time_step_floor\": 0.0001,\n",
      "  \"num_attention_heads\": ", heads, ",\n  \"num_key_value_heads\": ", kv_heads,
      ",\n  \"head_dim\": ", attn_head_dim, ",\n  \"attention_bias\": false,\n",
      "  \"intermediate_size\": ", intermediate,
      ",\n  \"mlp_hidden_act\": \"relu2\",\n  \"mlp_bias\": false,\n",
      "  \"residual_in_fp32\": false,\n  \"use_mamba_kernels\": false,\n"
      "  \"max_position_embeddings\": 1048576,\n  \"tie_word_embeddings\": false,\n"
      "  \"bos_token_id\": 256,\n  \"eos_token_id\": 257,\n  \"pad_token_id\": 258,\n"
      "  \"torch_dtype\": \"float32\"\n}\n");
}

std::vector<ParamSpec> NemotronHLmSpecs(const NemotronHLmConfig& c) {
  const int64_t D = c.d_model;
  std::vector<ParamSpec> s;
  s.push_back({"backbone.embeddings.weight", {c.vocab, D}, InitNormal(1.f), false});
  for (size_t l = 0; l < c.pattern.size(); ++l) {
    const std::string p = absl::StrCat("backbone.layers.", l, ".");
    s.push_back({p + "norm.weight", {D}, InitConstant(1.f), false});
    switch (c.pattern[l]) {
      case 'M':
        AppendMamba2MixerSpecs(p + "mixer.", D, c.mamba_heads(), c.mamba_head_dim, c.state,
                               c.conv_kernel, &s);
        break;
      case '*':
        AppendAttentionSpecs(p + "mixer.", AttnDims(c, 0), &s);
        break;
      default:
        AppendMlpSpecs(p + "mixer.", FfnDims(c, 0), &s);
        break;
    }
  }
  s.push_back({"backbone.norm_f.weight", {D}, InitConstant(1.f), false});
  s.push_back({"lm_head.weight", {c.vocab, D}, InitUniform(1.f / std::sqrt(float(D))), true});
  return s;
}

NemotronHLm::NemotronHLm(const NemotronHLmConfig& config)
    : config_(config), table_(NemotronHLmSpecs(config)) {
  TL_CHECK(config.Validate().ok());
  int at = 1;
  for (char ch : config.pattern) {
    first_.push_back(at);
    at += 1 + (ch == 'M'   ? kMamba2MixerTensors
               : ch == '*' ? kAttentionTensors
                           : MlpTensorCount(FfnDims(config, 0)));
  }
  TL_CHECK(at + 2 == table_.size());
}

std::string NemotronHLm::Describe() const {
  const NemotronHLmConfig& c = config_;
  return absl::StrCat("nemotron_h V=", c.vocab, " D=", c.d_model, " pattern=", c.pattern,
                      " N=", c.state, " P=", c.mamba_head_dim, " expand=", c.expand,
                      " K=", c.conv_kernel, " chunk=", c.chunk, " dt_min=", c.time_step_min,
                      " Hq=", c.heads, " Hkv=", c.kv_heads, " hd=", c.attn_head_dim,
                      " F=", c.intermediate, " eps=", c.eps);
}

RowResult NemotronHLm::RowForwardBackward(const float* params, std::span<const int32_t> ids,
                                          std::span<const float> target_mask, double denom,
                                          float* grads, Mamba2Workspace* ws,
                                          std::vector<int32_t>* argmax) const {
  const NemotronHLmConfig& c = config_;
  const int64_t T = static_cast<int64_t>(ids.size()) - 1;
  TL_CHECK(T >= 1 && static_cast<int64_t>(target_mask.size()) == T);
  const int64_t D = c.d_model, V = c.vocab;
  const int L = static_cast<int>(c.pattern.size());
  const bool backward = grads != nullptr;
  const Mamba2MixerDims md = MixerDims(c, T);
  const AttentionDims ad = AttnDims(c, T);
  const MlpDims fd = FfnDims(c, T);
  bool has_m = false, has_a = false, has_f = false;
  for (char ch : c.pattern) {
    has_m |= ch == 'M';
    has_a |= ch == '*';
    has_f |= ch == '-';
  }

  // Workspace: per layer the block input h [T, D], its norm's r [T] and output u [T, D], and
  // the mixer's saved activations; then the head; then per-kind backward scratch.
  struct LayerSaved {
    float *h, *r, *u;
    Mamba2MixerSaved mamba;
    AttentionSaved attn;
    MlpSaved mlp;
  };
  std::vector<LayerSaved> sv(L);
  float *hL = nullptr, *rf = nullptr, *hn = nullptr, *logits = nullptr, *dh = nullptr,
        *du = nullptr;
  Mamba2MixerScratch mamba_scratch{};
  AttentionScratch attn_scratch{};
  MlpScratch mlp_scratch{};
  auto layout = [&](Carver& cv) {
    for (int l = 0; l < L; ++l) {
      LayerSaved& s = sv[l];
      s.h = cv.Take(T * D);
      s.r = cv.Take(T);
      s.u = cv.Take(T * D);
      switch (c.pattern[l]) {
        case 'M':
          s.mamba = Mamba2MixerSaved::Carve(md, cv);
          break;
        case '*':
          s.attn = AttentionSaved::Carve(ad, cv);
          break;
        default:
          s.mlp = MlpSaved::Carve(fd, cv);
          break;
      }
    }
    hL = cv.Take(T * D);
    rf = cv.Take(T);
    hn = cv.Take(T * D);
    logits = cv.Take(T * V);
    if (has_m) mamba_scratch = Mamba2MixerScratch::Carve(md, backward, cv);
    if (backward) {
      dh = cv.Take(T * D);
      du = cv.Take(T * D);
      if (has_a) attn_scratch = AttentionScratch::Carve(ad, cv);
      if (has_f) mlp_scratch = MlpScratch::Carve(fd, cv);
    }
  };
  CarveWorkspace(ws->buf, layout);

  // Embedding.
  EmbeddingForward(params + table_.offset(0), ids, T, D, V, L > 0 ? sv[0].h : hL);

  for (int l = 0; l < L; ++l) {
    const LayerSaved& s = sv[l];
    float* hnext = l + 1 < L ? sv[l + 1].h : hL;
    const int first = first_[l];
    RmsNormForward(s.h, params + table_.offset(first), T, D, c.eps, s.r, s.u);
    std::memcpy(hnext, s.h, sizeof(float) * T * D);
    switch (c.pattern[l]) {
      case 'M':
        Mamba2MixerForward(md, BindMamba2Mixer(params, table_, first + 1), s.u, nullptr, nullptr,
                           s.mamba, mamba_scratch, hnext, nullptr, nullptr);
        break;
      case '*':
        AttentionForward(ad, BindAttention(params, table_, first + 1), s.u, s.attn, hnext);
        break;
      default:
        MlpForward(fd, BindMlp(params, table_, first + 1, fd), s.u, s.mlp, hnext);
        break;
    }
  }

  // Head and loss.
  const int64_t off_nf = table_.offset(table_.size() - 2);
  const int64_t off_head = table_.offset(table_.size() - 1);
  const LmHeadParams head{params + off_nf, params + off_head};
  RowResult res = LmHeadForward(hL, head, T, D, V, c.eps, ids.subspan(1), target_mask, denom,
                                backward, rf, hn, logits, argmax);
  if (!backward) return res;

  // ---- Backward ----
  LmHeadBackward(hL, head, rf, hn, logits, T, D, V, du, dh, grads + off_nf, grads + off_head);
  for (int l = L - 1; l >= 0; --l) {
    const LayerSaved& s = sv[l];
    const int first = first_[l];
    // dh holds d loss / d h_{l+1}; the residual passes it through unchanged, the mixer's
    // input gradient goes into du and then through the norm into dh.
    switch (c.pattern[l]) {
      case 'M':
        Mamba2MixerBackward(md, BindMamba2Mixer(params, table_, first + 1), s.u, nullptr, false,
                            s.mamba, mamba_scratch, dh, du,
                            BindMamba2Mixer(grads, table_, first + 1));
        break;
      case '*':
        AttentionBackward(ad, BindAttention(params, table_, first + 1), s.u, s.attn, attn_scratch,
                          dh, du, BindAttention(grads, table_, first + 1));
        break;
      default:
        MlpBackward(fd, BindMlp(params, table_, first + 1, fd), s.u, s.mlp, mlp_scratch, dh, du,
                    BindMlp(grads, table_, first + 1, fd));
        break;
    }
    const int64_t off_norm = table_.offset(first);
    RmsNormBackward(s.h, params + off_norm, s.r, du, T, D, dh, grads + off_norm);
  }
  EmbeddingBackward(dh, ids, T, D, grads + table_.offset(0));
  return res;
}

}  // namespace tapeloop::engine::train
