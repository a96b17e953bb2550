#include "engine/train/mamba2_lm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/check.h"
#include "engine/train/embedding_grad.h"
#include "engine/train/lm_head_grad.h"
#include "engine/train/loss.h"
#include "engine/train/mamba2_mixer_grad.h"
#include "engine/train/rms_norm_grad.h"
#include "engine/train/row_math.h"

namespace tapeloop::engine::train {
namespace {

// Table layout (Mamba2LmSpecs): embeddings, per layer norm + the mixer's tensors, norm_f,
// lm_head.
constexpr int kTensorsPerLayer = 1 + kMamba2MixerTensors;
int LayerFirst(int l) { return 1 + kTensorsPerLayer * l; }

Mamba2MixerDims MixerDims(const Mamba2LmConfig& c, int64_t T) {
  Mamba2MixerDims d;
  d.T = T;
  d.D = c.d_model;
  d.H = c.heads();
  d.P = c.head_dim;
  d.N = c.state;
  d.K = c.conv_kernel;
  d.Q = c.chunk;
  d.eps = c.eps;
  return d;
}

}  // namespace

std::string Mamba2LmConfig::ToHfConfigJson() const {
  return absl::StrCat(
      "{\n  \"architectures\": [\"Mamba2ForCausalLM\"],\n  \"model_type\": \"mamba2\",\n",
      "  \"vocab_size\": ", vocab, ",\n  \"hidden_size\": ", d_model,
      ",\n  \"num_hidden_layers\": ", layers, ",\n  \"state_size\": ", state,
      ",\n  \"expand\": ", expand, ",\n  \"head_dim\": ", head_dim, ",\n  \"num_heads\": ", heads(),
      ",\n  \"n_groups\": 1,\n  \"conv_kernel\": ", conv_kernel, ",\n  \"chunk_size\": ", chunk,
      ",\n  \"layer_norm_epsilon\": ", eps,
      ",\n  \"use_bias\": false,\n  \"use_conv_bias\": true,\n  \"hidden_act\": \"silu\",\n"
      "  \"rms_norm\": true,\n  \"residual_in_fp32\": true,\n  \"norm_before_gate\": false,\n"
      "  \"tie_word_embeddings\": false,\n"
      "  \"time_step_min\": 0.001,\n  \"time_step_max\": 0.1,\n  \"time_step_floor\": 0.0001,\n"
      "  \"bos_token_id\": 256,\n  \"eos_token_id\": 257,\n  \"pad_token_id\": 258,\n"
      "  \"torch_dtype\": \"float32\"\n}\n");
}

std::vector<ParamSpec> Mamba2LmSpecs(const Mamba2LmConfig& c) {
  const int64_t D = c.d_model;
  std::vector<ParamSpec> s;
  s.push_back({"backbone.embeddings.weight", {c.vocab, D}, InitNormal(1.f), false});
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("backbone.layers.", l, ".");
    s.push_back({p + "norm.weight", {D}, InitConstant(1.f), false});
    AppendMamba2MixerSpecs(p + "mixer.", D, c.heads(), c.head_dim, c.state, c.conv_kernel, &s);
  }
  s.push_back({"backbone.norm_f.weight", {D}, InitConstant(1.f), false});
  s.push_back({"lm_head.weight", {c.vocab, D}, InitUniform(1.f / std::sqrt(float(D))), true});
  return s;
}

void Mamba2Lm::NoiseState(Rng& rng, float stddev, float* state) const {
  const int64_t conv = (config_.conv_kernel - 1) * config_.conv_dim();
  for (int l = 0; l < config_.layers; ++l) {
    float* st = state + l * config_.layer_state_size();
    std::fill(st, st + conv, 0.f);
    rng.FillNormal(std::span<float>(st + conv, config_.layer_state_size() - conv), stddev);
  }
}

std::string Mamba2Lm::Describe() const {
  const Mamba2LmConfig& m = config_;
  return absl::StrCat("mamba2 V=", m.vocab, " D=", m.d_model, " L=", m.layers, " N=", m.state,
                      " P=", m.head_dim, " expand=", m.expand, " K=", m.conv_kernel, " chunk=",
                      m.chunk, " eps=", m.eps);
}

Mamba2Lm::Mamba2Lm(const Mamba2LmConfig& config)
    : config_(config), table_(Mamba2LmSpecs(config)) {
  TL_CHECK(config.inner() % config.head_dim == 0);
  TL_CHECK(config.chunk >= 1 && config.conv_kernel >= 1);
}

RowResult Mamba2Lm::RowForwardBackward(const float* params, std::span<const int32_t> ids,
                                       std::span<const float> target_mask, double denom,
                                       const float* init_state, float* final_state, float* grads,
                                       Mamba2Workspace* ws, std::vector<int32_t>* argmax) const {
  const Mamba2LmConfig& cf = config_;
  const int64_t T = static_cast<int64_t>(ids.size()) - 1;
  TL_CHECK(T >= 1 && static_cast<int64_t>(target_mask.size()) == T);
  const Mamba2MixerDims md = MixerDims(cf, T);
  const int64_t D = cf.d_model, V = cf.vocab, K = cf.conv_kernel, C = md.C();
  const int L = cf.layers;
  const bool backward = grads != nullptr;

  // Workspace layout: per layer the block input h [T, D], its norm's r [T] and output un
  // [T, D], and the mixer's saved activations; then the head and the backward scratch.
  struct LayerSaved {
    float *h, *r, *un;
    Mamba2MixerSaved mixer;
  };
  std::vector<LayerSaved> sv(L);
  float *hL = nullptr, *rf = nullptr, *hn = nullptr, *logits = nullptr, *dh = nullptr,
        *dun = nullptr;
  Mamba2MixerScratch scratch;
  auto layout = [&](Carver& c) {
    for (int l = 0; l < L; ++l) {
      sv[l].h = c.Take(T * D);
      sv[l].r = c.Take(T);
      sv[l].un = c.Take(T * D);
      sv[l].mixer = Mamba2MixerSaved::Carve(md, c);
    }
    hL = c.Take(T * D);
    rf = c.Take(T);
    hn = c.Take(T * D);
    logits = c.Take(T * V);
    scratch = Mamba2MixerScratch::Carve(md, backward, c);
    if (backward) {
      dh = c.Take(T * D);
      dun = c.Take(T * D);
    }
  };
  CarveWorkspace(ws->buf, layout);

  // Embedding.
  EmbeddingForward(params + table_.offset(0), ids, T, D, V, L > 0 ? sv[0].h : hL);

  for (int l = 0; l < L; ++l) {
    const LayerSaved& s = sv[l];
    float* hnext = l + 1 < L ? sv[l + 1].h : hL;
    const float* st_conv = init_state ? init_state + l * cf.layer_state_size() : nullptr;
    const float* st_ssm = st_conv ? st_conv + (K - 1) * C : nullptr;
    float* fc = final_state ? final_state + l * cf.layer_state_size() : nullptr;
    RmsNormForward(s.h, params + table_.offset(LayerFirst(l)), T, D, cf.eps, s.r, s.un);
    std::memcpy(hnext, s.h, sizeof(float) * T * D);
    Mamba2MixerForward(md, BindMamba2Mixer(params, table_, LayerFirst(l) + 1), s.un, st_conv,
                       st_ssm, s.mixer, scratch, hnext, fc, fc ? fc + (K - 1) * C : nullptr);
  }

  // Head and loss.
  const int64_t off_nf = table_.offset(1 + kTensorsPerLayer * L);
  const int64_t off_head = table_.offset(2 + kTensorsPerLayer * L);
  const LmHeadParams head{params + off_nf, params + off_head};
  RowResult res = LmHeadForward(hL, head, T, D, V, cf.eps, ids.subspan(1), target_mask, denom,
                                backward, rf, hn, logits, argmax);
  if (!backward) return res;

  // ---- Backward ----
  LmHeadBackward(hL, head, rf, hn, logits, T, D, V, dun, dh, grads + off_nf, grads + off_head);
  for (int l = L - 1; l >= 0; --l) {
    const LayerSaved& s = sv[l];
    const float* st_conv = init_state ? init_state + l * cf.layer_state_size() : nullptr;
    const int64_t off_norm = table_.offset(LayerFirst(l));
    Mamba2MixerBackward(md, BindMamba2Mixer(params, table_, LayerFirst(l) + 1), s.un, st_conv,
                        init_state != nullptr, s.mixer, scratch, dh, dun,
                        BindMamba2Mixer(grads, table_, LayerFirst(l) + 1));
    RmsNormBackward(s.h, params + off_norm, s.r, dun, T, D, dh, grads + off_norm);
  }
  EmbeddingBackward(dh, ids, T, D, grads + table_.offset(0));
  return res;
}

void Mamba2Lm::Step(const float* params, std::span<const int32_t> tokens, float* states,
                    float* logits) const {
  const Mamba2LmConfig& cf = config_;
  const int64_t R = static_cast<int64_t>(tokens.size());
  const Mamba2MixerDims md = MixerDims(cf, 1);
  const int64_t D = cf.d_model, V = cf.vocab, K = cf.conv_kernel;
  std::vector<float> h(R * D), un(R * D), r(R);
  const float* emb = params + table_.offset(0);
  for (int64_t b = 0; b < R; ++b) std::memcpy(&h[b * D], emb + tokens[b] * D, sizeof(float) * D);
  for (int l = 0; l < cf.layers; ++l) {
    RmsNormForward(h.data(), params + table_.offset(LayerFirst(l)), R, D, cf.eps, r.data(),
                   un.data());
    float* st = states + l * cf.layer_state_size();
    Mamba2MixerStep(md, BindMamba2Mixer(params, table_, LayerFirst(l) + 1), un.data(), R, st,
                    st + (K - 1) * md.C(), cf.state_size(), h.data());
  }
  const int L = cf.layers;
  RmsNormForward(h.data(), params + table_.offset(1 + kTensorsPerLayer * L), R, D, cf.eps, r.data(),
                 un.data());
  Gemm(false, true, R, V, D, 1.f, un.data(), D, params + table_.offset(2 + kTensorsPerLayer * L), D,
       0.f, logits, V);
}

}  // namespace tapeloop::engine::train
