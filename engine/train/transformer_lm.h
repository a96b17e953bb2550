// Llama / Mistral language model for training: forward and backward of one token row, CPU f32.
//
// HF LlamaForCausalLM / MistralForCausalLM (names, shapes; untied lm_head, no biases):
//   h = embed_tokens[ids]                                                   f32 [T, D]
//   per layer:  h += o_proj(attention(rope(q_proj(rms(h))), rope(k_proj(..)), v_proj(..)))
//               h += down_proj(silu(gate_proj(rms(h))) * up_proj(rms(h)))
//   logits = lm_head(rms(h))
// Attention: Hq query heads, Hkv key/value heads (GQA: query head i uses kv head i / (Hq/Hkv)),
// head dim hd, scores scaled by 1/sqrt(hd), causal; with sliding_window > 0 (Mistral) a query
// at t sees keys s with t - s < sliding_window. RoPE as HF (rotate_half: pairs (i, i + hd/2),
// inv_freq_i = theta^(-2i/hd)), positions 0..T-1 from the start of the row. The layers'
// forward and backward live in engine/train/{attention,mlp,rms_norm}_grad.h (shared with
// NemotronHLm).
//
// The trainer's Mamba2Lm has the same row interface; this model has no recurrent state, so
// its rows always start fresh. Thread safety as Mamba2Lm.
#ifndef TAPELOOP_ENGINE_TRAIN_TRANSFORMER_LM_H_
#define TAPELOOP_ENGINE_TRAIN_TRANSFORMER_LM_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/train/mamba2_lm.h"
#include "engine/train/params.h"

namespace tapeloop::engine::train {

struct TransformerLmConfig {
  int64_t vocab = 285;       // V
  int64_t d_model = 128;     // D
  int layers = 4;
  int heads = 4;             // Hq
  int kv_heads = 2;          // Hkv, divides Hq
  int head_dim = 32;         // hd, even
  int64_t intermediate = 384;  // F
  double rope_theta = 10000.0;
  int64_t sliding_window = 0;  // 0: full causal attention (llama); > 0: mistral
  float eps = 1e-5f;

  // HF config.json (LlamaForCausalLM, or MistralForCausalLM when sliding_window > 0).
  std::string ToHfConfigJson() const;
};

std::vector<ParamSpec> TransformerLmSpecs(const TransformerLmConfig& config);

class TransformerLm final : public RowModel {
 public:
  explicit TransformerLm(const TransformerLmConfig& config);
  TransformerLm(const TransformerLm&) = delete;
  TransformerLm& operator=(const TransformerLm&) = delete;

  const TransformerLmConfig& config() const { return config_; }
  const ParamTable& table() const override { return table_; }
  int64_t state_size() const override { return 0; }
  void NoiseState(Rng&, float, float*) const override {}
  std::string HfConfigJson() const override { return config_.ToHfConfigJson(); }
  std::string Describe() const override;

  // The RowModel form: no recurrent state, so init_state / final_state are ignored.
  RowResult RowForwardBackward(const float* params, std::span<const int32_t> ids,
                               std::span<const float> target_mask, double denom,
                               const float* init_state, float* final_state, float* grads,
                               Mamba2Workspace* ws,
                               std::vector<int32_t>* argmax = nullptr) const override {
    return RowForwardBackward(params, ids, target_mask, denom, grads, ws, argmax);
  }

  // As Mamba2Lm::RowForwardBackward without states: ids [T+1], target_mask f32 [T]; adds
  // d(loss_sum / denom) to grads (null: forward only).
  RowResult RowForwardBackward(const float* params, std::span<const int32_t> ids,
                               std::span<const float> target_mask, double denom, float* grads,
                               Mamba2Workspace* ws, std::vector<int32_t>* argmax = nullptr) const;

 private:
  TransformerLmConfig config_;
  ParamTable table_;
};

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_TRANSFORMER_LM_H_
