// Model configuration: Hugging Face config.json for the four families the engine runs.
//
//   mamba2     Mamba2ForCausalLM     every layer: RMSNorm -> Mamba-2 mixer -> residual
//   llama      LlamaForCausalLM      every layer: RMSNorm -> attention (RoPE) -> residual,
//                                                 RMSNorm -> SwiGLU MLP -> residual
//   mistral    MistralForCausalLM    as llama, attention optionally windowed (sliding_window)
//   nemotron_h NemotronHForCausalLM  layer i: RMSNorm -> (Mamba-2 | attention without positional
//                                    encoding | relu^2 MLP) -> residual, chosen by
//                                    hybrid_override_pattern ("M", "*", "-") or layers_block_type
//
// Parsing follows HF's keys and defaults. Keys that shape the model (sizes, head counts,
// pattern) are required; a missing one is an InvalidArgument error naming the key, as is an
// inconsistent one (e.g. hidden_size * expand != num_heads * head_dim) or an unsupported
// feature (rope_scaling, MoE layers, activations other than HF's for the family). Unknown keys
// are ignored with one warning line each on stderr.
#ifndef TAPELOOP_ENGINE_MODELS_CONFIG_H_
#define TAPELOOP_ENGINE_MODELS_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tapeloop::engine {

enum class Family { kMamba2, kLlama, kMistral, kNemotronH };
enum class BlockKind { kMamba2, kAttention, kMlp };
enum class MlpKind { kSwiGlu, kRelu2 };

// The HF model_type string ("mamba2", "llama", "mistral", "nemotron_h").
std::string FamilyName(Family family);

struct ModelConfig {
  Family family = Family::kMamba2;
  int64_t vocab_size = 0;        // V
  int64_t hidden_size = 0;       // D
  int num_hidden_layers = 0;     // HF layers (a llama layer holds an attention and an MLP block)
  bool tie_word_embeddings = false;
  float norm_eps = 1e-5f;        // every RMSNorm (and the gated one) of the model
  float initializer_range = 0.02f;
  int64_t bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;  // -1: not set

  // Per-HF-layer mixer for nemotron_h: 'M' Mamba-2, '*' attention, '-' MLP. Empty otherwise.
  std::string pattern;

  // Mamba-2 (mamba2, nemotron_h).
  int mamba_num_heads = 0;       // H
  int mamba_head_dim = 0;        // P
  int ssm_state_size = 0;        // N
  int n_groups = 1;              // G (B and C shared by H / G heads)
  int conv_kernel = 4;           // K
  int chunk_size = 256;          // SSD chunk length
  bool use_conv_bias = true;
  bool use_bias = false;         // in_proj / out_proj bias
  float dt_min = 0.0f, dt_max = 0.0f;  // clamp of dt after softplus (HF's time_step_limit)
  float time_step_min = 0.001f, time_step_max = 0.1f, time_step_floor = 1e-4f;  // dt_bias init
  int gated_norm_group_size = 0; // mamba2: whole inner width; nemotron_h: inner / n_groups

  // Attention (llama, mistral, nemotron_h).
  int num_attention_heads = 0;   // Hq
  int num_key_value_heads = 0;   // Hkv
  int head_dim = 0;              // hd
  bool use_rope = false;
  double rope_theta = 10000.0;
  int64_t sliding_window = 0;    // 0: full causal attention; else keys with q - k < window
  bool attention_bias = false;

  // MLP (llama, mistral: SwiGLU; nemotron_h: relu^2).
  int64_t intermediate_size = 0; // F
  MlpKind mlp_kind = MlpKind::kSwiGlu;
  bool mlp_bias = false;

  // The config.json this was parsed from (written back verbatim by Save); empty when built in
  // code, in which case ToJson() generates it.
  std::string source_json;

  int64_t mamba_inner() const { return int64_t{mamba_num_heads} * mamba_head_dim; }
  // The engine's flat block list: one entry per (norm, mixer, residual) unit.
  std::vector<BlockKind> Blocks() const;
};

// Parses config.json text. Warnings for unknown keys go to stderr.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text);

// Checks the fields of a config built in code (the same rules as parsing); names the field.
absl::Status ValidateModelConfig(const ModelConfig& config);

// HF config.json for `config` (source_json if set, else generated with HF's keys).
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_MODELS_CONFIG_H_
