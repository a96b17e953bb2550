// Mamba-2 language model for training: forward and backward of one token row, CPU f32.
//
// The architecture and tensor names are HF Mamba2ForCausalLM (n_groups = 1, no in/out-proj bias,
// conv bias, gated RMSNorm with the gate applied before normalization, untied lm_head):
//   h = embeddings[ids]                                                    f32 [T, D]
//   per layer l:  h += out_proj(gated_norm(SSD(silu(conv(in_proj(rms(h)))))))
//   logits = lm_head(rms_f(h))                                             f32 [T, V]
// The mixer (glossary: H heads, P head dim, N state, K conv kernel, di = H*P, C = di + 2N,
// E = 2 di + 2N + H):
//   [z | xBC | dt] = in_proj(u)                 z [T, di], xBC [T, C], dt [T, H]
//   xBC = silu(causal depthwise conv(xBC) + b)  starting from the row's conv state [K-1, C]
//   [x | B | C] = xBC                           x [T, H, P], B, C [T, N]
//   dt = softplus(dt + dt_bias);  a = -exp(A_log)
//   S_t = exp(dt_t a) S_{t-1} + dt_t x_t B_t^T;  y_t = S_t C_t + D x_t       S [H, P, N]
//   out = out_proj(rms(y * silu(z)) * norm.weight)
// The SSM runs in the chunked SSD form (quadratic inside chunks of `chunk` tokens, states passed
// between chunks); the backward pass walks the same chunks in reverse. chunk = 1 is the plain
// recurrence, so chunked and recurrent forms can be compared. The mixer's forward and backward
// live in engine/train/mamba2_mixer_grad.h (shared with NemotronHLm).
//
// Rows are processed one at a time (no padding): a trainer splits a batch's rows over threads,
// each with its own Workspace and gradient buffer, and sums the buffers in a fixed order.
//
// Thread safety: Mamba2Lm is immutable after construction; RowForwardBackward is safe to call
// concurrently with distinct workspaces and gradient buffers.
#ifndef TAPELOOP_ENGINE_TRAIN_MAMBA2_LM_H_
#define TAPELOOP_ENGINE_TRAIN_MAMBA2_LM_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/train/params.h"
#include "engine/train/row_model.h"

namespace tapeloop::engine::train {

struct Mamba2LmConfig {
  int64_t vocab = 285;  // V
  int64_t d_model = 128;  // D
  int layers = 4;
  int state = 16;       // N
  int head_dim = 16;    // P
  int expand = 2;
  int conv_kernel = 4;  // K
  int chunk = 64;       // SSD chunk length used by training (any value gives the same math)
  float eps = 1e-5f;    // every RMSNorm, gated one included

  int64_t inner() const { return expand * d_model; }              // di
  int heads() const { return static_cast<int>(inner() / head_dim); }  // H
  int64_t conv_dim() const { return inner() + 2 * state; }        // C
  int64_t proj_dim() const { return 2 * inner() + 2 * state + heads(); }  // E
  // Per-row recurrent state of the whole model: per layer conv [K-1, C] then ssm [H, P, N].
  int64_t layer_state_size() const {
    return (conv_kernel - 1) * conv_dim() + int64_t{heads()} * head_dim * state;
  }
  int64_t state_size() const { return layers * layer_state_size(); }

  // HF config.json for Mamba2ForCausalLM.
  std::string ToHfConfigJson() const;
};

class Mamba2Lm final : public RowModel {
 public:
  explicit Mamba2Lm(const Mamba2LmConfig& config);
  Mamba2Lm(const Mamba2Lm&) = delete;
  Mamba2Lm& operator=(const Mamba2Lm&) = delete;

  const Mamba2LmConfig& config() const { return config_; }
  // Tensor specs in HF names; parameter/gradient/moment buffers use this layout.
  const ParamTable& table() const override { return table_; }
  int64_t state_size() const override { return config_.state_size(); }
  // SSM states ~ N(0, stddev^2), conv states 0.
  void NoiseState(Rng& rng, float stddev, float* state) const override;
  std::string HfConfigJson() const override { return config_.ToHfConfigJson(); }
  std::string Describe() const override;

  // One row: inputs ids[0..T-1], targets ids[1..T] where T = ids.size() - 1; target t (the
  // token ids[t+1]) counts with weight target_mask[t] (f32 [T]). The loss gradient is
  // d(loss_sum / denom); it is ADDED to `grads` (f32 [params], may be null: forward only).
  // init_state (f32 [state_size], null = zeros) is the recurrent state before the row (no
  // gradient flows into it: truncated backpropagation); final_state (null = not wanted)
  // receives the state after the row. If argmax is non-null it receives the predicted token
  // for each of the T positions.
  RowResult RowForwardBackward(const float* params, std::span<const int32_t> ids,
                               std::span<const float> target_mask, double denom,
                               const float* init_state, float* final_state, float* grads,
                               Mamba2Workspace* ws,
                               std::vector<int32_t>* argmax = nullptr) const override;

  // Recurrent single-token step for `rows` independent rows (greedy decoding / agent loops):
  // tokens [rows], states f32 [rows, state_size] advanced in place, logits f32 [rows, V].
  void Step(const float* params, std::span<const int32_t> tokens, float* states,
            float* logits) const;

 private:
  Mamba2LmConfig config_;
  ParamTable table_;
};

// PyTorch-default / prototype initializers of the Mamba-2 tensors.
std::vector<ParamSpec> Mamba2LmSpecs(const Mamba2LmConfig& config);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_MAMBA2_LM_H_
