#include "engine/models/model.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/check.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/linear_packed.h"
#include "engine/layers/embedding.h"
#include "engine/layers/rms_norm.h"

namespace tapeloop::engine {
namespace {

Mamba2Dims MakeMambaDims(const ModelConfig& c) {
  Mamba2Dims d;
  d.dim = c.hidden_size;
  d.heads = c.mamba_num_heads;
  d.head_dim = c.mamba_head_dim;
  d.state = c.ssm_state_size;
  d.groups = c.n_groups;
  d.conv_kernel = c.conv_kernel;
  d.chunk = c.chunk_size;
  d.conv_bias = c.use_conv_bias;
  d.proj_bias = c.use_bias;
  d.eps = c.norm_eps;
  d.norm_group = c.gated_norm_group_size;
  d.dt_min = c.dt_min;
  d.dt_max = c.dt_max;
  d.time_step_min = c.time_step_min;
  d.time_step_max = c.time_step_max;
  d.time_step_floor = c.time_step_floor;
  return d;
}

AttentionDims MakeAttentionDims(const ModelConfig& c) {
  AttentionDims d;
  d.dim = c.hidden_size;
  d.num_heads = c.num_attention_heads;
  d.num_kv_heads = c.num_key_value_heads;
  d.head_dim = c.head_dim;
  d.use_rope = c.use_rope;
  d.rope_theta = c.rope_theta;
  d.window = c.sliding_window;
  d.bias = c.attention_bias;
  return d;
}

MlpDims MakeMlpDims(const ModelConfig& c) {
  MlpDims d;
  d.dim = c.hidden_size;
  d.intermediate = c.intermediate_size;
  d.kind = c.mlp_kind;
  d.bias = c.mlp_bias;
  return d;
}

}  // namespace

Model::Model(ModelConfig config) : config_(std::move(config)) {
  blocks_ = config_.Blocks();
  mamba_dims_ = MakeMambaDims(config_);
  attention_dims_ = MakeAttentionDims(config_);
  mlp_dims_ = MakeMlpDims(config_);
  prefix_ = config_.family == Family::kLlama || config_.family == Family::kMistral ? "model."
                                                                                   : "backbone.";
}

void Model::BuildTable() {
  params_.clear();
  block_norm_name_.clear();
  block_mixer_prefix_.clear();
  int64_t offset = 0;
  auto add = [&](const std::string& prefix, const std::vector<ParamSpec>& specs, int block) {
    for (const ParamSpec& s : specs) {
      params_.push_back({prefix + s.suffix, s.shape, s.init, offset, block});
      offset += NumElements(s.shape);
    }
  };
  const bool llama = config_.family == Family::kLlama || config_.family == Family::kMistral;
  add(prefix_ + (llama ? "embed_tokens." : "embeddings."),
      EmbeddingParamSpecs(config_.vocab_size, config_.hidden_size), -1);
  for (int b = 0; b < static_cast<int>(blocks_.size()); ++b) {
    std::string norm, mixer;
    if (llama) {
      const std::string layer = absl::StrCat(prefix_, "layers.", b / 2, ".");
      norm = layer + (blocks_[b] == BlockKind::kAttention ? "input_layernorm."
                                                          : "post_attention_layernorm.");
      mixer = layer + (blocks_[b] == BlockKind::kAttention ? "self_attn." : "mlp.");
    } else {
      const std::string layer = absl::StrCat(prefix_, "layers.", b, ".");
      norm = layer + "norm.";
      mixer = layer + "mixer.";
    }
    block_norm_name_.push_back(norm + "weight");
    block_mixer_prefix_.push_back(mixer);
    add(norm, RmsNormParamSpecs(config_.hidden_size), b);
    switch (blocks_[b]) {
      case BlockKind::kMamba2:
        add(mixer, Mamba2ParamSpecs(mamba_dims_), b);
        break;
      case BlockKind::kAttention:
        add(mixer, AttentionParamSpecs(attention_dims_), b);
        break;
      case BlockKind::kMlp:
        add(mixer, MlpParamSpecs(mlp_dims_), b);
        break;
    }
  }
  add(prefix_ + (llama ? "norm." : "norm_f."), RmsNormParamSpecs(config_.hidden_size), -1);
  if (!config_.tie_word_embeddings) {
    params_.push_back(
        {"lm_head.weight", {config_.vocab_size, config_.hidden_size}, Init::kNormal, offset, -1});
    offset += config_.vocab_size * config_.hidden_size;
  }
  num_floats_ = offset;

  // State layout.
  layout_ = StateLayout{};
  for (BlockKind kind : blocks_) {
    StateLayout::Block sb;
    if (kind == BlockKind::kMamba2) {
      sb.mamba = true;
      sb.conv_offset = layout_.recurrent_floats;
      sb.conv_size = mamba_dims_.conv_state_size();
      sb.ssm_offset = sb.conv_offset + sb.conv_size;
      sb.ssm_size = mamba_dims_.ssm_state_size();
      layout_.recurrent_floats = sb.ssm_offset + sb.ssm_size;
    } else if (kind == BlockKind::kAttention) {
      sb.kv_index = static_cast<int>(layout_.kv_width.size());
      layout_.kv_width.push_back(attention_dims_.kv_dim());
      layout_.kv_window.push_back(attention_dims_.window);
    }
    layout_.blocks.push_back(sb);
  }
}

const ParamEntry* Model::FindParam(const std::string& name) const {
  for (const ParamEntry& p : params_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

void Model::BindWeights() {
  auto at = [&](const std::string& name) -> float* {
    const ParamEntry* p = FindParam(name);
    TL_CHECK(p != nullptr);
    return data_.data() + p->offset;
  };
  const bool llama = config_.family == Family::kLlama || config_.family == Family::kMistral;
  embed_ = at(prefix_ + (llama ? "embed_tokens.weight" : "embeddings.weight"));
  final_norm_ = at(prefix_ + (llama ? "norm.weight" : "norm_f.weight"));
  lm_head_ = config_.tie_word_embeddings ? embed_ : at("lm_head.weight");
  const int nb = static_cast<int>(blocks_.size());
  block_norm_.assign(nb, nullptr);
  mamba_w_.assign(nb, {});
  attention_w_.assign(nb, {});
  mlp_w_.assign(nb, {});
  for (int b = 0; b < nb; ++b) {
    const std::string norm_name = block_norm_name_[b];
    const std::string mixer_prefix = block_mixer_prefix_[b];
    block_norm_[b] = at(norm_name);
    ParamLookup lookup = [&, mixer_prefix](const std::string& suffix) {
      return at(mixer_prefix + suffix);
    };
    switch (blocks_[b]) {
      case BlockKind::kMamba2:
        mamba_w_[b] = BindMamba2Weights(mamba_dims_, lookup);
        break;
      case BlockKind::kAttention:
        attention_w_[b] = BindAttentionWeights(attention_dims_, lookup);
        break;
      case BlockKind::kMlp:
        mlp_w_[b] = BindMlpWeights(mlp_dims_, lookup);
        break;
    }
  }
  BindPacked();
}

void Model::BindPacked() {
  packed_.clear();
  auto pack = [&](const float* w, int64_t in, int64_t out) -> const PackedLinear* {
    packed_.push_back(std::make_unique<PackedLinear>(w, in, out));
    return packed_.back().get();
  };
  const int64_t D = config_.hidden_size;
  for (size_t b = 0; b < blocks_.size(); ++b) {
    switch (blocks_[b]) {
      case BlockKind::kMamba2: {
        Mamba2Weights& w = mamba_w_[b];
        w.in_proj_packed = pack(w.in_proj_w, D, mamba_dims_.proj_dim());
        w.out_proj_packed = pack(w.out_proj_w, mamba_dims_.inner(), D);
        break;
      }
      case BlockKind::kAttention: {
        AttentionWeights& w = attention_w_[b];
        const AttentionDims& d = attention_dims_;
        const int64_t qd = d.q_dim(), kvd = d.kv_dim();
        // As AttentionStep's test for one fused product.
        const bool fused = w.k_w == w.q_w + qd * D && w.v_w == w.k_w + kvd * D &&
                           (w.q_b == nullptr ? w.k_b == nullptr && w.v_b == nullptr
                                             : w.k_b == w.q_b + qd && w.v_b == w.k_b + kvd);
        w.qkv_packed = fused ? pack(w.q_w, D, qd + 2 * kvd) : nullptr;
        w.o_packed = pack(w.o_w, qd, D);
        break;
      }
      case BlockKind::kMlp: {
        MlpWeights& w = mlp_w_[b];
        const int64_t F = mlp_dims_.intermediate;
        if (mlp_dims_.kind == MlpKind::kSwiGlu) {
          // As MlpStep's test for one fused gate | up product.
          const bool fused = w.up_w == w.gate_w + F * D && w.gate_b == nullptr && w.up_b == nullptr;
          w.gate_up_packed = fused ? pack(w.gate_w, D, 2 * F) : nullptr;
        } else {
          w.gate_up_packed = pack(w.up_w, D, F);
        }
        w.down_packed = pack(w.down_w, F, D);
        break;
      }
    }
  }
  lm_head_packed_ = pack(lm_head_, D, config_.vocab_size);
}

int64_t Model::packed_bytes() const {
  int64_t n = 0;
  for (const auto& p : packed_) n += p->bytes();
  return n;
}

int64_t Model::packed_bytes_built() const {
  int64_t n = 0;
  for (const auto& p : packed_) n += p->built() ? p->bytes() : 0;
  return n;
}

void Model::RecomputeFingerprint() {
  BindPacked();  // the parameters may have changed
  const std::string json = ModelConfigToJson(config_);
  uint64_t h = Fnv1a64(json.data(), json.size());
  h = Fnv1a64(data_.data(), data_.size() * sizeof(float), h);
  layout_.fingerprint = h;
}

void Model::InitRandom(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, config_.initializer_range);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (const ParamEntry& p : params_) {
    float* v = data_.data() + p.offset;
    const int64_t n = NumElements(p.shape);
    switch (p.init) {
      case Init::kZeros:
        std::fill(v, v + n, 0.0f);
        break;
      case Init::kOnes:
        std::fill(v, v + n, 1.0f);
        break;
      case Init::kNormal:
        for (int64_t i = 0; i < n; ++i) v[i] = normal(rng);
        break;
      case Init::kConvUniform: {
        const float bound = 1.0f / std::sqrt(static_cast<float>(p.shape[1] * p.shape[2]));
        for (int64_t i = 0; i < n; ++i) v[i] = (2.0f * unit(rng) - 1.0f) * bound;
        break;
      }
      case Init::kMambaALog:
        for (int64_t i = 0; i < n; ++i) v[i] = std::log(static_cast<float>(i + 1));
        break;
      case Init::kMambaDtBias: {
        const float lo = std::log(config_.time_step_min), hi = std::log(config_.time_step_max);
        for (int64_t i = 0; i < n; ++i) {
          float dt = std::exp(unit(rng) * (hi - lo) + lo);
          dt = std::max(dt, config_.time_step_floor);
          v[i] = dt + std::log(-std::expm1(-dt));
        }
        break;
      }
    }
  }
}

absl::StatusOr<std::unique_ptr<Model>> Model::RandomInit(const ModelConfig& config, uint64_t seed) {
  RETURN_IF_ERROR(ValidateModelConfig(config));
  std::unique_ptr<Model> m(new Model(config));
  m->BuildTable();
  if (m->num_floats_ > kMaxParams) {
    return absl::InvalidArgumentError(absl::StrCat("config: model has ", m->num_floats_,
                                                   " parameters, more than the engine's limit of ",
                                                   kMaxParams));
  }
  m->data_.assign(m->num_floats_, 0.0f);
  m->InitRandom(seed);
  m->BindWeights();
  m->RecomputeFingerprint();
  return m;
}

absl::StatusOr<std::unique_ptr<Model>> Model::FromTensors(const ModelConfig& config,
                                                          std::map<std::string, Tensor> tensors) {
  RETURN_IF_ERROR(ValidateModelConfig(config));
  std::unique_ptr<Model> m(new Model(config));
  if (config.family == Family::kNemotronH) {
    // HF's own NemotronH class names its base model "model"; Hub checkpoints use "backbone".
    const bool has_backbone = tensors.count("backbone.embeddings.weight") > 0;
    const bool has_model = tensors.count("model.embeddings.weight") > 0;
    if (has_model && !has_backbone) m->prefix_ = "model.";
  }
  m->BuildTable();
  // Every tensor present with its shape before anything is allocated (so a corrupt config
  // cannot make us allocate more than the file holds).
  for (const ParamEntry& p : m->params_) {
    auto it = tensors.find(p.name);
    if (it == tensors.end()) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint: missing tensor '", p.name, "'"));
    }
    if (it->second.shape != p.shape) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint: tensor '", p.name, "' has shape ",
                                                     ShapeString(it->second.shape), ", expected ",
                                                     ShapeString(p.shape)));
    }
  }
  m->data_.assign(m->num_floats_, 0.0f);
  std::set<std::string> used;
  for (const ParamEntry& p : m->params_) {
    auto it = tensors.find(p.name);
    std::memcpy(m->data_.data() + p.offset, it->second.data.data(),
                sizeof(float) * it->second.data.size());
    used.insert(p.name);
  }
  for (const auto& [name, t] : tensors) {
    if (used.count(name)) continue;
    if (name == "lm_head.weight" && config.tie_word_embeddings) continue;  // tied copy
    std::cerr << "tapeloop engine: warning: checkpoint tensor '" << name
              << "' is not used; ignored\n";
  }
  m->BindWeights();
  m->RecomputeFingerprint();
  return m;
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string config_text, ReadFileToString(dir + "/config.json"));
  auto config = ParseModelConfig(config_text);
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.status().message(), " (in '", dir, "/config.json')"));
  }
  struct stat st;
  if (stat((dir + "/model.safetensors").c_str(), &st) != 0 &&
      stat((dir + "/model.safetensors.index.json").c_str(), &st) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint: sharded checkpoints are not supported ('", dir,
                     "/model.safetensors.index.json')"));
  }
  ASSIGN_OR_RETURN(SafetensorsFile file, ReadSafetensorsFile(dir + "/model.safetensors"));
  auto model = FromTensors(*config, std::move(file.tensors));
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat(model.status().message(), " (in '", dir,
                                                            "/model.safetensors')"));
  }
  return model;
}

absl::Status Model::Save(const std::string& dir) const {
  mkdir(dir.c_str(), 0755);  // may exist already
  RETURN_IF_ERROR(WriteStringToFile(dir + "/config.json", ModelConfigToJson(config_)));
  std::vector<TensorRef> refs;
  for (const ParamEntry& p : params_) refs.push_back({p.name, p.shape, data_.data() + p.offset});
  return WriteSafetensorsFile(dir + "/model.safetensors", refs, {{"format", "pt"}});
}

absl::Status Model::CheckInputs(std::span<const int32_t> tokens, const SessionState& state) const {
  if (&state.layout() != &layout_) {
    return absl::FailedPreconditionError("engine: session state belongs to another model");
  }
  if (int64_t i = FirstIdOutsideVocabulary(tokens, config_.vocab_size); i >= 0) {
    return absl::InvalidArgumentError(absl::StrCat("engine: token id ", tokens[i], " at index ", i,
                                                   " is outside the vocabulary [0, ",
                                                   config_.vocab_size, ")"));
  }
  return absl::OkStatus();
}

int64_t FirstIdOutsideVocabulary(std::span<const int32_t> ids, int64_t vocab) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) return static_cast<int64_t>(i);
  }
  return -1;
}

void Model::Logits(const float* h, int64_t rows, float* logits) const {
  LinearForwardRef(logits, h, lm_head_, nullptr, rows, config_.hidden_size, config_.vocab_size);
}

absl::Status Model::Forward(std::span<const int32_t> tokens, SessionState* state, bool all_logits,
                            std::vector<float>* logits, ForwardSaved* saved) const {
  if (tokens.empty()) return absl::InvalidArgumentError("engine: no tokens to run");
  RETURN_IF_ERROR(CheckInputs(tokens, *state));
  const int64_t T = static_cast<int64_t>(tokens.size()), D = config_.hidden_size;
  std::vector<float> h(T * D), normed(T * D), mixed(T * D);  // f32 [T, D] each
  EmbeddingForward(h.data(), embed_, tokens.data(), T, config_.vocab_size, D);
  if (saved) saved->blocks.assign(blocks_.size(), {});
  for (size_t b = 0; b < blocks_.size(); ++b) {
    RmsNormForward(normed.data(), h.data(), block_norm_[b], T, D, config_.norm_eps);
    BlockSaved* bs = saved ? &saved->blocks[b] : nullptr;
    if (bs) {
      bs->input = h;
      bs->normed = normed;
    }
    switch (blocks_[b]) {
      case BlockKind::kMamba2:
        Mamba2Forward(mamba_dims_, mamba_w_[b], normed.data(), T, mixed.data(),
                      state->MambaView(static_cast<int>(b)), bs ? &bs->mamba : nullptr);
        break;
      case BlockKind::kAttention:
        AttentionForward(attention_dims_, attention_w_[b], normed.data(), T, mixed.data(),
                         state->Kv(static_cast<int>(b)), bs ? &bs->attention : nullptr);
        break;
      case BlockKind::kMlp:
        MlpForward(mlp_dims_, mlp_w_[b], normed.data(), T, mixed.data(), bs ? &bs->mlp : nullptr);
        break;
    }
    for (int64_t i = 0; i < T * D; ++i) h[i] += mixed[i];
  }
  if (saved) saved->final_input = h;
  RmsNormForward(normed.data(), h.data(), final_norm_, T, D, config_.norm_eps);
  if (saved) saved->final_normed = normed;
  state->set_position(state->position() + T);
  if (all_logits) {
    logits->resize(T * config_.vocab_size);
    Logits(normed.data(), T, logits->data());
  } else {
    logits->resize(config_.vocab_size);
    Logits(normed.data() + (T - 1) * D, 1, logits->data());
  }
  return absl::OkStatus();
}

absl::Status Model::StepBatch(std::span<const int32_t> tokens,
                              std::span<SessionState* const> states,
                              std::vector<float>* logits) const {
  if (tokens.size() != states.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine: ", tokens.size(), " tokens for ", states.size(), " sessions"));
  }
  const int64_t B = static_cast<int64_t>(tokens.size()), D = config_.hidden_size;
  if (B == 0) {
    logits->clear();
    return absl::OkStatus();
  }
  for (int64_t b = 0; b < B; ++b) {
    RETURN_IF_ERROR(CheckInputs(tokens.subspan(b, 1), *states[b]));
    for (int64_t c = 0; c < b; ++c) {
      if (states[c] == states[b])
        return absl::InvalidArgumentError("engine: the same session appears twice in a batch");
    }
  }
  float* h = ThreadScratch(Scratch::kStepHidden, B * D);       // f32 [B, D]
  float* normed = ThreadScratch(Scratch::kStepNormed, B * D);  // f32 [B, D]
  float* mixed = ThreadScratch(Scratch::kStepMixed, B * D);    // f32 [B, D]
  EmbeddingForward(h, embed_, tokens.data(), B, config_.vocab_size, D);
  std::vector<Mamba2State> mviews(B);
  std::vector<KvCache*> caches(B);
  for (size_t blk = 0; blk < blocks_.size(); ++blk) {
    RmsNormForward(normed, h, block_norm_[blk], B, D, config_.norm_eps);
    switch (blocks_[blk]) {
      case BlockKind::kMamba2:
        for (int64_t b = 0; b < B; ++b) mviews[b] = states[b]->MambaView(static_cast<int>(blk));
        Mamba2Step(mamba_dims_, mamba_w_[blk], normed, B, mixed, mviews.data());
        break;
      case BlockKind::kAttention:
        for (int64_t b = 0; b < B; ++b) caches[b] = states[b]->Kv(static_cast<int>(blk));
        AttentionStep(attention_dims_, attention_w_[blk], normed, B, mixed, caches.data());
        break;
      case BlockKind::kMlp:
        MlpStep(mlp_dims_, mlp_w_[blk], normed, B, mixed);
        break;
    }
    for (int64_t i = 0; i < B * D; ++i) h[i] += mixed[i];
  }
  RmsNormForward(normed, h, final_norm_, B, D, config_.norm_eps);
  for (int64_t b = 0; b < B; ++b) states[b]->set_position(states[b]->position() + 1);
  logits->resize(B * config_.vocab_size);
  LinearForwardDecode(logits->data(), normed, lm_head_, lm_head_packed_, nullptr, B, D,
                      config_.vocab_size);
  return absl::OkStatus();
}

}  // namespace tapeloop::engine
