#include "engine/models/config.h"

#include <cmath>
#include <iostream>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace tapeloop::engine {
namespace {

using nlohmann::json;

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("config: ", what));
}

// Keys every HF config may carry that do not change the computation.
const std::set<std::string>& GenericKeys() {
  static const auto* keys = new std::set<std::string>{
      "architectures", "model_type", "transformers_version", "dtype", "torch_dtype", "use_cache",
      "output_attentions", "output_hidden_states", "return_dict", "is_encoder_decoder",
      "chunk_size_feed_forward", "id2label", "label2id", "problem_type", "tokenizer_class",
      "_name_or_path", "pad_token_id", "bos_token_id", "eos_token_id", "initializer_range",
      "tie_word_embeddings", "add_cross_attention", "tf_legacy_loss", "pruned_heads", "torchscript",
      "use_bfloat16", "attention_dropout", "hidden_dropout", "pretraining_tp", "max_position_embeddings",
      "num_logits_to_keep", "rescale_prenorm_residual", "use_mamba_kernels", "mamba_ssm_cache_dtype",
      "decoder_start_token_id", "sep_token_id", "finetuning_task", "task_specific_params",
      "cross_attention_hidden_size", "is_decoder", "prefix", "output_scores",
      "return_dict_in_generate", "_attn_implementation_autoset", "vocab_size", "hidden_size",
      "num_hidden_layers", "tie_encoder_decoder", "time_step_rank"};
  return *keys;
}

class Reader {
 public:
  explicit Reader(const json& j) : j_(j) {}

  bool Has(const std::string& key) const {
    used_.insert(key);
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }
  absl::StatusOr<int64_t> Int(const std::string& key) const {
    used_.insert(key);
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return Bad(absl::StrCat("key '", key, "' is missing"));
    if (!it->is_number_integer()) return Bad(absl::StrCat("key '", key, "' must be an integer"));
    return it->get<int64_t>();
  }
  absl::StatusOr<int64_t> Int(const std::string& key, int64_t fallback) const {
    if (!Has(key)) return fallback;
    return Int(key);
  }
  absl::StatusOr<int64_t> Positive(const std::string& key) const {
    ASSIGN_OR_RETURN(int64_t v, Int(key));
    if (v <= 0 || v > (int64_t{1} << 31)) return Bad(absl::StrCat("key '", key, "' must be a positive integer, got ", v));
    return v;
  }
  absl::StatusOr<int64_t> Positive(const std::string& key, int64_t fallback) const {
    if (!Has(key)) return fallback;
    return Positive(key);
  }
  absl::StatusOr<double> Number(const std::string& key, double fallback) const {
    if (!Has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number()) return Bad(absl::StrCat("key '", key, "' must be a number"));
    return v.get<double>();
  }
  absl::StatusOr<bool> Bool(const std::string& key, bool fallback) const {
    if (!Has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_boolean()) return Bad(absl::StrCat("key '", key, "' must be true or false"));
    return v.get<bool>();
  }
  absl::StatusOr<std::string> String(const std::string& key, const std::string& fallback) const {
    if (!Has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_string()) return Bad(absl::StrCat("key '", key, "' must be a string"));
    return v.get<std::string>();
  }
  // A token id: integer, or a list whose first element is used; -1 when absent.
  absl::StatusOr<int64_t> TokenId(const std::string& key) const {
    if (!Has(key)) return -1;
    const json& v = j_.at(key);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();
    return Bad(absl::StrCat("key '", key, "' must be an integer token id"));
  }
  const json& raw() const { return j_; }
  void MarkUsed(const std::string& key) const { used_.insert(key); }
  void WarnUnknown(const std::string& model_type) const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (!used_.count(it.key()) && !GenericKeys().count(it.key())) {
        std::cerr << "tapeloop engine: warning: config key '" << it.key() << "' is not used by "
                  << model_type << "; ignored\n";
      }
    }
  }

 private:
  const json& j_;
  mutable std::set<std::string> used_;
};

// Returns the first key present among `keys` (HF's renamed aliases), or keys[0].
std::string Alias(const Reader& r, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    if (r.Has(k)) return k;
  }
  return *keys.begin();
}

absl::Status ParseCommon(const Reader& r, ModelConfig* c) {
  ASSIGN_OR_RETURN(c->vocab_size, r.Positive("vocab_size"));
  ASSIGN_OR_RETURN(c->hidden_size, r.Positive("hidden_size"));
  ASSIGN_OR_RETURN(c->tie_word_embeddings, r.Bool("tie_word_embeddings", false));
  ASSIGN_OR_RETURN(double init, r.Number("initializer_range", c->initializer_range));
  c->initializer_range = static_cast<float>(init);
  ASSIGN_OR_RETURN(c->bos_token_id, r.TokenId("bos_token_id"));
  ASSIGN_OR_RETURN(c->eos_token_id, r.TokenId("eos_token_id"));
  ASSIGN_OR_RETURN(c->pad_token_id, r.TokenId("pad_token_id"));
  return absl::OkStatus();
}

absl::Status ParseAttention(const Reader& r, ModelConfig* c, bool head_dim_required) {
  ASSIGN_OR_RETURN(int64_t heads, r.Positive("num_attention_heads"));
  ASSIGN_OR_RETURN(int64_t kv, r.Positive("num_key_value_heads", heads));
  c->num_attention_heads = static_cast<int>(heads);
  c->num_key_value_heads = static_cast<int>(kv);
  if (head_dim_required) {
    ASSIGN_OR_RETURN(int64_t hd, r.Positive("head_dim"));
    c->head_dim = static_cast<int>(hd);
  } else {
    ASSIGN_OR_RETURN(int64_t hd, r.Positive("head_dim", c->hidden_size / heads));
    c->head_dim = static_cast<int>(hd);
  }
  return absl::OkStatus();
}

absl::Status ParseRope(const Reader& r, ModelConfig* c) {
  c->use_rope = true;
  ASSIGN_OR_RETURN(c->rope_theta, r.Number("rope_theta", 10000.0));
  if (r.Has("rope_parameters")) {
    const json& p = r.raw().at("rope_parameters");
    if (!p.is_object()) return Bad("key 'rope_parameters' must be an object");
    for (auto it = p.begin(); it != p.end(); ++it) {
      if (it.key() == "rope_theta") {
        if (!it->is_number()) return Bad("key 'rope_parameters.rope_theta' must be a number");
        c->rope_theta = it->get<double>();
      } else if (it.key() == "rope_type") {
        if (!it->is_string() || it->get<std::string>() != "default") {
          return Bad(absl::StrCat("key 'rope_parameters.rope_type' = ", it->dump(),
                                  " is not supported (only \"default\")"));
        }
      } else if (it.key() != "partial_rotary_factor" || !it->is_number() || it->get<double>() != 1.0) {
        return Bad(absl::StrCat("key 'rope_parameters.", it.key(), "' is not supported"));
      }
    }
  }
  if (r.Has("rope_scaling")) {
    const json& s = r.raw().at("rope_scaling");
    if (!(s.is_object() && s.value("rope_type", s.value("type", "")) == "default")) {
      return Bad("key 'rope_scaling' is not supported (only null or rope_type \"default\")");
    }
  }
  if (!(c->rope_theta > 0)) return Bad("key 'rope_theta' must be positive");
  return absl::OkStatus();
}

absl::Status RequireAct(const Reader& r, const std::string& key, const std::string& want) {
  ASSIGN_OR_RETURN(std::string act, r.String(key, want));
  if (act != want && !(want == "silu" && act == "swish")) {
    return Bad(absl::StrCat("key '", key, "' = \"", act, "\" is not supported (expected \"", want, "\")"));
  }
  return absl::OkStatus();
}

// A float in HF's JSON: a number, the string "inf"/"Infinity", or (transformers 5)
// {"__float__": "Infinity"}; +-1e38 and beyond count as infinite.
bool JsonFloat(const json& v, float* out) {
  std::string text;
  if (v.is_number()) {
    const double d = v.get<double>();
    *out = d >= 1e37 ? INFINITY : d <= -1e37 ? -INFINITY : static_cast<float>(d);
    return true;
  }
  if (v.is_string()) text = v.get<std::string>();
  else if (v.is_object() && v.size() == 1 && v.contains("__float__") && v["__float__"].is_string()) text = v["__float__"].get<std::string>();
  else return false;
  if (text == "Infinity" || text == "inf") *out = INFINITY;
  else if (text == "-Infinity" || text == "-inf") *out = -INFINITY;
  else return false;
  return true;
}

absl::Status ParseDtLimit(const Reader& r, ModelConfig* c) {
  c->dt_min = 0.0f;
  c->dt_max = std::numeric_limits<float>::infinity();
  if (r.Has("time_step_limit")) {
    const json& v = r.raw().at("time_step_limit");
    if (!v.is_array() || v.size() != 2 || !JsonFloat(v[0], &c->dt_min) || !JsonFloat(v[1], &c->dt_max)) {
      return Bad("key 'time_step_limit' must be a pair of numbers");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseMamba2(const Reader& r) {
  ModelConfig c;
  c.family = Family::kMamba2;
  RETURN_IF_ERROR(ParseCommon(r, &c));
  ASSIGN_OR_RETURN(int64_t layers, r.Positive("num_hidden_layers"));
  c.num_hidden_layers = static_cast<int>(layers);
  ASSIGN_OR_RETURN(int64_t n, r.Positive("state_size"));
  ASSIGN_OR_RETURN(int64_t heads, r.Positive("num_heads"));
  ASSIGN_OR_RETURN(int64_t hd, r.Positive("head_dim"));
  ASSIGN_OR_RETURN(int64_t groups, r.Positive("n_groups"));
  ASSIGN_OR_RETURN(int64_t kernel, r.Positive("conv_kernel", 4));
  ASSIGN_OR_RETURN(double expand, r.Number("expand", 2));
  ASSIGN_OR_RETURN(int64_t chunk, r.Positive("chunk_size", 256));
  ASSIGN_OR_RETURN(double eps, r.Number("layer_norm_epsilon", 1e-5));
  ASSIGN_OR_RETURN(c.use_conv_bias, r.Bool("use_conv_bias", true));
  ASSIGN_OR_RETURN(c.use_bias, r.Bool("use_bias", false));
  ASSIGN_OR_RETURN(bool rms_norm, r.Bool("rms_norm", true));
  if (!rms_norm) return Bad("key 'rms_norm' = false is not supported");
  // HF's Mamba2Config key (default false: y * silu(z) is normalized, the engine's gated norm).
  ASSIGN_OR_RETURN(bool norm_before_gate, r.Bool("norm_before_gate", false));
  if (norm_before_gate) return Bad("key 'norm_before_gate' = true is not supported");
  ASSIGN_OR_RETURN(bool residual_fp32, r.Bool("residual_in_fp32", true));
  (void)residual_fp32;  // the engine's residual stream is always f32
  RETURN_IF_ERROR(RequireAct(r, "hidden_act", "silu"));
  ASSIGN_OR_RETURN(double tmin, r.Number("time_step_min", 0.001));
  ASSIGN_OR_RETURN(double tmax, r.Number("time_step_max", 0.1));
  ASSIGN_OR_RETURN(double tfloor, r.Number("time_step_floor", 1e-4));
  RETURN_IF_ERROR(ParseDtLimit(r, &c));
  c.ssm_state_size = static_cast<int>(n);
  c.mamba_num_heads = static_cast<int>(heads);
  c.mamba_head_dim = static_cast<int>(hd);
  c.n_groups = static_cast<int>(groups);
  c.conv_kernel = static_cast<int>(kernel);
  c.chunk_size = static_cast<int>(chunk);
  c.norm_eps = static_cast<float>(eps);
  c.time_step_min = static_cast<float>(tmin);
  c.time_step_max = static_cast<float>(tmax);
  c.time_step_floor = static_cast<float>(tfloor);
  const double inner = expand * static_cast<double>(c.hidden_size);
  if (std::floor(inner) != heads * hd) {
    return Bad(absl::StrCat("inconsistent keys: hidden_size * expand (", inner,
                            ") != num_heads * head_dim (", heads * hd, ")"));
  }
  c.gated_norm_group_size = static_cast<int>(heads * hd);  // HF Mamba2: one group (whole width)
  return c;
}

absl::StatusOr<ModelConfig> ParseLlama(const Reader& r, Family family) {
  ModelConfig c;
  c.family = family;
  RETURN_IF_ERROR(ParseCommon(r, &c));
  ASSIGN_OR_RETURN(int64_t layers, r.Positive("num_hidden_layers"));
  c.num_hidden_layers = static_cast<int>(layers);
  ASSIGN_OR_RETURN(c.intermediate_size, r.Positive("intermediate_size"));
  RETURN_IF_ERROR(ParseAttention(r, &c, /*head_dim_required=*/false));
  RETURN_IF_ERROR(ParseRope(r, &c));
  ASSIGN_OR_RETURN(double eps, r.Number("rms_norm_eps", 1e-6));
  c.norm_eps = static_cast<float>(eps);
  RETURN_IF_ERROR(RequireAct(r, "hidden_act", "silu"));
  c.mlp_kind = MlpKind::kSwiGlu;
  if (family == Family::kLlama) {
    ASSIGN_OR_RETURN(c.attention_bias, r.Bool("attention_bias", false));
    ASSIGN_OR_RETURN(c.mlp_bias, r.Bool("mlp_bias", false));
  } else {
    if (r.Has("sliding_window")) {
      ASSIGN_OR_RETURN(c.sliding_window, r.Positive("sliding_window"));
    } else {
      r.MarkUsed("sliding_window");
    }
  }
  return c;
}

absl::StatusOr<ModelConfig> ParseNemotronH(const Reader& r) {
  ModelConfig c;
  c.family = Family::kNemotronH;
  RETURN_IF_ERROR(ParseCommon(r, &c));
  if (r.Has("layers_block_type")) {
    const json& list = r.raw().at("layers_block_type");
    if (!list.is_array()) return Bad("key 'layers_block_type' must be a list of strings");
    for (const json& t : list) {
      std::string s = t.is_string() ? t.get<std::string>() : "";
      if (s == "mamba" || s == "linear_attention") c.pattern += 'M';
      else if (s == "attention" || s == "full_attention") c.pattern += '*';
      else if (s == "mlp") c.pattern += '-';
      else return Bad(absl::StrCat("key 'layers_block_type' has unsupported entry ", t.dump()));
    }
    if (r.Has("hybrid_override_pattern")) r.MarkUsed("hybrid_override_pattern");
  } else {
    ASSIGN_OR_RETURN(c.pattern, r.String("hybrid_override_pattern", ""));
    if (c.pattern.empty()) return Bad("key 'hybrid_override_pattern' (or 'layers_block_type') is missing");
    for (char ch : c.pattern) {
      if (ch != 'M' && ch != '*' && ch != '-') {
        return Bad(absl::StrCat("key 'hybrid_override_pattern' has unsupported layer '",
                                std::string(1, ch), "' (M, * and - are supported)"));
      }
    }
  }
  if (c.pattern.empty()) return Bad("key 'layers_block_type' is empty");
  c.num_hidden_layers = static_cast<int>(c.pattern.size());
  if (r.Has("num_hidden_layers")) {
    ASSIGN_OR_RETURN(int64_t layers, r.Int("num_hidden_layers"));
    if (layers != c.num_hidden_layers) {
      return Bad(absl::StrCat("inconsistent keys: num_hidden_layers (", layers,
                              ") != length of the layer pattern (", c.num_hidden_layers, ")"));
    }
  }
  ASSIGN_OR_RETURN(double eps, r.Number("layer_norm_epsilon", 1e-5));
  c.norm_eps = static_cast<float>(eps);
  const bool has_m = c.pattern.find('M') != std::string::npos;
  const bool has_a = c.pattern.find('*') != std::string::npos;
  const bool has_f = c.pattern.find('-') != std::string::npos;
  // Mamba keys (HF renamed some; both spellings are read).
  if (has_m) {
    ASSIGN_OR_RETURN(int64_t heads, r.Positive("mamba_num_heads"));
    ASSIGN_OR_RETURN(int64_t hd, r.Positive("mamba_head_dim"));
    ASSIGN_OR_RETURN(int64_t n, r.Positive("ssm_state_size"));
    ASSIGN_OR_RETURN(int64_t groups, r.Positive(Alias(r, {"n_groups", "mamba_n_groups"})));
    ASSIGN_OR_RETURN(int64_t kernel, r.Positive(Alias(r, {"conv_kernel", "mamba_d_conv"}), 4));
    ASSIGN_OR_RETURN(int64_t chunk, r.Positive(Alias(r, {"chunk_size", "mamba_chunk_size"}), 128));
    c.mamba_num_heads = static_cast<int>(heads);
    c.mamba_head_dim = static_cast<int>(hd);
    c.ssm_state_size = static_cast<int>(n);
    c.n_groups = static_cast<int>(groups);
    c.conv_kernel = static_cast<int>(kernel);
    c.chunk_size = static_cast<int>(chunk);
    c.gated_norm_group_size = static_cast<int>(heads * hd / groups);
  }
  ASSIGN_OR_RETURN(c.use_conv_bias, r.Bool(Alias(r, {"use_conv_bias", "mamba_conv_bias"}), true));
  ASSIGN_OR_RETURN(c.use_bias, r.Bool("use_bias", false));
  ASSIGN_OR_RETURN(double tmin, r.Number(Alias(r, {"time_step_min", "mamba_dt_min"}), 0.001));
  ASSIGN_OR_RETURN(double tmax, r.Number(Alias(r, {"time_step_max", "mamba_dt_max"}), 0.1));
  ASSIGN_OR_RETURN(double tfloor, r.Number(Alias(r, {"time_step_floor", "mamba_dt_init_floor"}), 1e-4));
  c.time_step_min = static_cast<float>(tmin);
  c.time_step_max = static_cast<float>(tmax);
  c.time_step_floor = static_cast<float>(tfloor);
  // HF NemotronH clamps dt to [time_step_min, inf) and does not read time_step_limit.
  c.dt_min = c.time_step_min;
  c.dt_max = std::numeric_limits<float>::infinity();
  for (const char* k : {"time_step_limit", "mamba_dt_limit", "expand", "mamba_expand", "mamba_proj_bias",
                        "residual_in_fp32", "n_routed_experts", "n_shared_experts", "moe_intermediate_size",
                        "moe_shared_expert_intermediate_size", "moe_latent_size", "moe_shared_expert_overlap",
                        "num_experts_per_tok", "routed_scaling_factor", "n_group", "topk_group",
                        "norm_topk_prob", "num_nextn_predict_layers", "mtp_layers_block_type",
                        "mtp_hybrid_override_pattern", "attention_bias", "head_dim", "num_attention_heads",
                        "num_key_value_heads", "intermediate_size", "mlp_bias", "sliding_window"}) {
    r.MarkUsed(k);
  }
  RETURN_IF_ERROR(RequireAct(r, Alias(r, {"mamba_hidden_act"}), "silu"));
  if (has_a) {
    RETURN_IF_ERROR(ParseAttention(r, &c, /*head_dim_required=*/false));
    c.use_rope = false;  // NemotronH attention has no positional encoding
    if (r.Has("sliding_window")) return Bad("key 'sliding_window' is not supported for nemotron_h");
  }
  if (has_f) {
    ASSIGN_OR_RETURN(c.intermediate_size, r.Positive("intermediate_size"));
    ASSIGN_OR_RETURN(c.mlp_bias, r.Bool("mlp_bias", false));
    RETURN_IF_ERROR(RequireAct(r, "mlp_hidden_act", "relu2"));
  } else {
    r.MarkUsed("mlp_hidden_act");
  }
  c.mlp_kind = MlpKind::kRelu2;
  return c;
}

}  // namespace

std::string FamilyName(Family family) {
  switch (family) {
    case Family::kMamba2: return "mamba2";
    case Family::kLlama: return "llama";
    case Family::kMistral: return "mistral";
    case Family::kNemotronH: return "nemotron_h";
  }
  return "?";
}

std::vector<BlockKind> ModelConfig::Blocks() const {
  std::vector<BlockKind> blocks;
  for (int i = 0; i < num_hidden_layers; ++i) {
    switch (family) {
      case Family::kMamba2:
        blocks.push_back(BlockKind::kMamba2);
        break;
      case Family::kLlama:
      case Family::kMistral:
        blocks.push_back(BlockKind::kAttention);
        blocks.push_back(BlockKind::kMlp);
        break;
      case Family::kNemotronH:
        blocks.push_back(pattern[i] == 'M' ? BlockKind::kMamba2
                         : pattern[i] == '*' ? BlockKind::kAttention
                                             : BlockKind::kMlp);
        break;
    }
  }
  return blocks;
}

absl::Status ValidateModelConfig(const ModelConfig& c) {
  auto positive = [](const char* key, int64_t v) -> absl::Status {
    if (v <= 0) return Bad(absl::StrCat("key '", key, "' must be positive, got ", v));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(positive("vocab_size", c.vocab_size));
  RETURN_IF_ERROR(positive("hidden_size", c.hidden_size));
  RETURN_IF_ERROR(positive("num_hidden_layers", c.num_hidden_layers));
  if (c.family == Family::kNemotronH && static_cast<int>(c.pattern.size()) != c.num_hidden_layers) {
    return Bad("inconsistent keys: hybrid_override_pattern length != num_hidden_layers");
  }
  bool has_m = false, has_a = false, has_f = false;
  for (BlockKind b : c.Blocks()) {
    has_m |= b == BlockKind::kMamba2;
    has_a |= b == BlockKind::kAttention;
    has_f |= b == BlockKind::kMlp;
  }
  if (has_m) {
    RETURN_IF_ERROR(positive("num_heads", c.mamba_num_heads));
    RETURN_IF_ERROR(positive("head_dim", c.mamba_head_dim));
    RETURN_IF_ERROR(positive("state_size", c.ssm_state_size));
    RETURN_IF_ERROR(positive("n_groups", c.n_groups));
    RETURN_IF_ERROR(positive("conv_kernel", c.conv_kernel));
    RETURN_IF_ERROR(positive("chunk_size", c.chunk_size));
    if (c.mamba_num_heads % c.n_groups != 0) {
      return Bad(absl::StrCat("inconsistent keys: num_heads (", c.mamba_num_heads,
                              ") is not a multiple of n_groups (", c.n_groups, ")"));
    }
    if (c.gated_norm_group_size <= 0 || c.mamba_inner() % c.gated_norm_group_size != 0) {
      return Bad("inconsistent keys: gated norm group size does not divide the inner width");
    }
    if (!(c.dt_min <= c.dt_max)) return Bad("key 'time_step_limit' must have min <= max");
  }
  if (has_a) {
    RETURN_IF_ERROR(positive("num_attention_heads", c.num_attention_heads));
    RETURN_IF_ERROR(positive("num_key_value_heads", c.num_key_value_heads));
    RETURN_IF_ERROR(positive("head_dim", c.head_dim));
    if (c.num_attention_heads % c.num_key_value_heads != 0) {
      return Bad(absl::StrCat("inconsistent keys: num_attention_heads (", c.num_attention_heads,
                              ") is not a multiple of num_key_value_heads (", c.num_key_value_heads, ")"));
    }
    if (c.use_rope && c.head_dim % 2 != 0) return Bad("key 'head_dim' must be even for RoPE");
    if (c.sliding_window < 0) return Bad("key 'sliding_window' must be positive");
  }
  if (has_f) RETURN_IF_ERROR(positive("intermediate_size", c.intermediate_size));
  // Sizes beyond these are certainly corrupt (and would overflow shape arithmetic).
  const std::pair<const char*, int64_t> limits[] = {
      {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size}, {"intermediate_size", c.intermediate_size},
      {"num_heads * head_dim", c.mamba_inner()}, {"state_size", c.ssm_state_size},
      {"num_attention_heads * head_dim", int64_t{c.num_attention_heads} * c.head_dim},
      {"conv_kernel", c.conv_kernel}, {"num_hidden_layers", c.num_hidden_layers}};
  for (const auto& [key, v] : limits) {
    if (v > (int64_t{1} << 24)) return Bad(absl::StrCat("key '", key, "' = ", v, " is implausibly large"));
  }
  if (!(c.norm_eps > 0)) return Bad("key 'layer_norm_epsilon' / 'rms_norm_eps' must be positive");
  return absl::OkStatus();
}

namespace {

// Python's json module writes Infinity / -Infinity for float("inf") (HF's time_step_limit);
// standard JSON has no such literal, so they are mapped to +-1e38 outside strings.
std::string SanitizeNonFinite(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char ch = text[i];
    if (in_string) {
      out.push_back(ch);
      if (ch == '\\' && i + 1 < text.size()) out.push_back(text[++i]);
      else if (ch == '"') in_string = false;
      continue;
    }
    if (ch == '"') in_string = true;
    if (text.substr(i, 8) == "Infinity") {
      out += "1e38";
      i += 7;
      continue;
    }
    out.push_back(ch);
  }
  return out;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text) {
  const std::string text = SanitizeNonFinite(json_text);
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("config.json is not valid JSON");
  if (!j.is_object()) return Bad("config.json is not a JSON object");
  Reader r(j);
  ASSIGN_OR_RETURN(std::string type, r.String("model_type", ""));
  if (type.empty()) return Bad("key 'model_type' is missing");
  absl::StatusOr<ModelConfig> c;
  if (type == "mamba2") c = ParseMamba2(r);
  else if (type == "llama") c = ParseLlama(r, Family::kLlama);
  else if (type == "mistral") c = ParseLlama(r, Family::kMistral);
  else if (type == "nemotron_h") c = ParseNemotronH(r);
  else return Bad(absl::StrCat("key 'model_type' = \"", type, "\" is not supported (mamba2, llama, mistral, nemotron_h)"));
  if (!c.ok()) return c.status();
  RETURN_IF_ERROR(ValidateModelConfig(*c));
  r.WarnUnknown(type);
  c->source_json = std::string(json_text);
  return c;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  if (!c.source_json.empty()) return c.source_json;
  json j;
  j["model_type"] = FamilyName(c.family);
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["initializer_range"] = c.initializer_range;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_id >= 0) j["eos_token_id"] = c.eos_token_id;
  if (c.pad_token_id >= 0) j["pad_token_id"] = c.pad_token_id;
  auto dt_limit = [&] {
    json lim = json::array({c.dt_min, nullptr});
    if (std::isfinite(c.dt_max)) lim[1] = c.dt_max;
    else lim[1] = 1e30;  // JSON has no infinity; any dt below this is unclamped
    return lim;
  };
  switch (c.family) {
    case Family::kMamba2:
      j["architectures"] = {"Mamba2ForCausalLM"};
      j["state_size"] = c.ssm_state_size;
      j["num_heads"] = c.mamba_num_heads;
      j["head_dim"] = c.mamba_head_dim;
      j["n_groups"] = c.n_groups;
      j["conv_kernel"] = c.conv_kernel;
      j["expand"] = static_cast<double>(c.mamba_inner()) / static_cast<double>(c.hidden_size);
      if (c.mamba_inner() % c.hidden_size == 0) j["expand"] = c.mamba_inner() / c.hidden_size;
      j["chunk_size"] = c.chunk_size;
      j["layer_norm_epsilon"] = c.norm_eps;
      j["use_conv_bias"] = c.use_conv_bias;
      j["use_bias"] = c.use_bias;
      j["residual_in_fp32"] = true;
      j["hidden_act"] = "silu";
      j["time_step_min"] = c.time_step_min;
      j["time_step_max"] = c.time_step_max;
      j["time_step_floor"] = c.time_step_floor;
      if (c.dt_min != 0.0f || std::isfinite(c.dt_max)) j["time_step_limit"] = dt_limit();
      break;
    case Family::kLlama:
    case Family::kMistral:
      j["architectures"] = {c.family == Family::kLlama ? "LlamaForCausalLM" : "MistralForCausalLM"};
      j["intermediate_size"] = c.intermediate_size;
      j["num_attention_heads"] = c.num_attention_heads;
      j["num_key_value_heads"] = c.num_key_value_heads;
      j["head_dim"] = c.head_dim;
      j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", c.rope_theta}};
      j["rms_norm_eps"] = c.norm_eps;
      j["hidden_act"] = "silu";
      j["max_position_embeddings"] = 1 << 20;
      if (c.family == Family::kLlama) {
        j["attention_bias"] = c.attention_bias;
        j["mlp_bias"] = c.mlp_bias;
      } else {
        j["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
      }
      break;
    case Family::kNemotronH:
      j["architectures"] = {"NemotronHForCausalLM"};
      j["hybrid_override_pattern"] = c.pattern;
      j["layer_norm_epsilon"] = c.norm_eps;
      j["mamba_num_heads"] = c.mamba_num_heads;
      j["mamba_head_dim"] = c.mamba_head_dim;
      j["ssm_state_size"] = c.ssm_state_size;
      j["n_groups"] = c.n_groups;
      j["conv_kernel"] = c.conv_kernel;
      j["chunk_size"] = c.chunk_size;
      j["use_conv_bias"] = c.use_conv_bias;
      j["use_bias"] = c.use_bias;
      j["time_step_min"] = c.time_step_min;
      j["time_step_max"] = c.time_step_max;
      j["time_step_floor"] = c.time_step_floor;
      j["mamba_hidden_act"] = "silu";
      j["num_attention_heads"] = c.num_attention_heads > 0 ? c.num_attention_heads : 1;
      j["num_key_value_heads"] = c.num_key_value_heads > 0 ? c.num_key_value_heads : 1;
      j["head_dim"] = c.head_dim > 0 ? c.head_dim : 1;
      j["intermediate_size"] = c.intermediate_size > 0 ? c.intermediate_size : 1;
      j["mlp_hidden_act"] = "relu2";
      j["mlp_bias"] = c.mlp_bias;
      j["attention_bias"] = false;
      j["residual_in_fp32"] = false;
      j["use_mamba_kernels"] = false;
      break;
  }
  return j.dump(2);
}

}  // namespace tapeloop::engine
