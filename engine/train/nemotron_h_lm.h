// Nemotron-H (hybrid) language model for training: forward and backward of one token row, CPU
// f32.
//
// HF NemotronHForCausalLM (names, shapes; untied lm_head, no biases, n_groups = 1): a per-layer
// pattern such as "M-M-M*-" picks each layer's mixer, 'M' Mamba-2, '*' attention, '-' MLP:
//   h = backbone.embeddings[ids]                                            f32 [T, D]
//   per layer l:  h += mixer_l(rms(h) * backbone.layers.l.norm.weight)
//   logits = lm_head(rms(h) * backbone.norm_f.weight)                       f32 [T, V]
// with the mixers (tensors under backbone.layers.l.mixer.):
//   'M'  the Mamba-2 mixer of mamba2_mixer_grad.h (in_proj, conv1d, dt_bias, A_log, D, norm,
//        out_proj), dt clamped to [time_step_min, inf) as HF NemotronH does
//   '*'  causal attention WITHOUT positional encoding (NemotronHAttention), attention_grad.h
//        (q_proj, k_proj, v_proj, o_proj; GQA, scores / sqrt(hd))
//   '-'  the relu^2 MLP of mlp_grad.h: down_proj(relu(up_proj(x))^2)
// The saved checkpoint (config.json from HfConfigJson, tensors in table order) loads in the
// engine (model_type nemotron_h) and in HF transformers.
//
// Rows always start fresh: state_size() is 0 (an attention layer's KV cache is not a
// fixed-size state to carry between rows), so the trainer's init-state options do not apply
// and init_state / final_state are ignored. Thread safety as Mamba2Lm.
#ifndef TAPELOOP_ENGINE_TRAIN_NEMOTRON_H_LM_H_
#define TAPELOOP_ENGINE_TRAIN_NEMOTRON_H_LM_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/train/params.h"
#include "engine/train/row_model.h"

namespace tapeloop::engine::train {

struct NemotronHLmConfig {
  int64_t vocab = 285;    // V
  int64_t d_model = 128;  // D
  std::string pattern = "M-M-M*-";
  // Mamba-2 layers.
  int state = 16;           // N
  int mamba_head_dim = 16;  // P
  int expand = 2;           // mamba heads H = expand * D / P
  int conv_kernel = 4;      // K
  int chunk = 64;           // SSD chunk length used by training (any value gives the same math)
  float time_step_min = 0.001f;  // dt clamp [time_step_min, inf) (HF NemotronH); dt_bias init
                                 // is log-uniform in [1e-3, 1e-1] as Mamba2Lm
  // Attention layers.
  int heads = 4;           // Hq
  int kv_heads = 2;        // Hkv, divides Hq
  int attn_head_dim = 32;  // hd
  // MLP layers.
  int64_t intermediate = 384;  // F
  float eps = 1e-5f;           // every RMSNorm, gated one included

  int64_t mamba_inner() const { return int64_t{expand} * d_model; }
  int mamba_heads() const { return static_cast<int>(mamba_inner() / mamba_head_dim); }

  // OK, or InvalidArgument naming the bad field (empty pattern or a letter other than M * -,
  // a size < 1, expand * d_model not divisible by mamba_head_dim, heads not a multiple of
  // kv_heads).
  absl::Status Validate() const;
  // HF config.json for NemotronHForCausalLM.
  std::string ToHfConfigJson() const;
};

std::vector<ParamSpec> NemotronHLmSpecs(const NemotronHLmConfig& config);

class NemotronHLm final : public RowModel {
 public:
  // REQUIRES: config.Validate().ok().
  explicit NemotronHLm(const NemotronHLmConfig& config);
  NemotronHLm(const NemotronHLm&) = delete;
  NemotronHLm& operator=(const NemotronHLm&) = delete;

  const NemotronHLmConfig& config() const { return config_; }
  const ParamTable& table() const override { return table_; }
  int64_t state_size() const override { return 0; }
  void NoiseState(Rng&, float, float*) const override {}
  std::string HfConfigJson() const override { return config_.ToHfConfigJson(); }
  std::string Describe() const override;

  // The RowModel form: no carried state, so init_state / final_state are ignored.
  RowResult RowForwardBackward(const float* params, std::span<const int32_t> ids,
                               std::span<const float> target_mask, double denom,
                               const float* init_state, float* final_state, float* grads,
                               Mamba2Workspace* ws,
                               std::vector<int32_t>* argmax = nullptr) const override {
    return RowForwardBackward(params, ids, target_mask, denom, grads, ws, argmax);
  }

  // As Mamba2Lm::RowForwardBackward without states: ids [T+1], target_mask f32 [T]; adds
  // d(loss_sum / denom) to grads (null: forward only); argmax (if non-null) receives the
  // predicted token at each of the T positions.
  RowResult RowForwardBackward(const float* params, std::span<const int32_t> ids,
                               std::span<const float> target_mask, double denom, float* grads,
                               Mamba2Workspace* ws, std::vector<int32_t>* argmax = nullptr) const;

 private:
  NemotronHLmConfig config_;
  ParamTable table_;
  std::vector<int> first_;  // per layer: table index of its norm (its mixer's tensors follow)
};

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_NEMOTRON_H_LM_H_
