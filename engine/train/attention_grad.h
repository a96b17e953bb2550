// Causal self-attention for training, forward and backward side by side (CPU f32, one row of T
// tokens). Semantics of HF LlamaAttention / MistralAttention / NemotronHAttention (eager, no
// biases):
//   q = q_proj(u), k = k_proj(u), v = v_proj(u)     Hq query heads, Hkv key/value heads, dim hd
//   RoPE on q, k when rope (rotate_half: pairs (i, i + hd/2), inv_freq_i = theta^(-2i/hd),
//   positions 0..T-1 from the start of the row); none for NemotronH
//   o_t = softmax(q_t . k_s / sqrt(hd), s <= t [and t - s < window]) v_s   (GQA: query head i
//   uses kv head i / (Hq / Hkv))
//   out += o_proj(o)
// The attention probabilities are kept for the backward pass ([Hq, T, T] per layer: rows are
// trajectories of at most a few thousand tokens). Used by TransformerLm and NemotronHLm.
//
// Thread safety: pure functions of their arguments; distinct rows may run concurrently with
// distinct saved / scratch buffers and gradient buffers.
#ifndef TAPELOOP_ENGINE_TRAIN_ATTENTION_GRAD_H_
#define TAPELOOP_ENGINE_TRAIN_ATTENTION_GRAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/train/params.h"
#include "engine/train/row_math.h"

namespace tapeloop::engine::train {

struct AttentionDims {
  int64_t T = 0, D = 0;
  int64_t Hq = 4, Hkv = 2, hd = 32;  // Hkv divides Hq; hd even when rope
  bool rope = true;
  double theta = 10000.0;
  int64_t window =
      0;  // 0: full causal attention; > 0: a query at t sees keys s with t - s < window

  int64_t q_dim() const { return Hq * hd; }
  int64_t kv_dim() const { return Hkv * hd; }
};

// The layer's tensors, consecutive in a ParamTable in this order (HF names under a prefix such
// as "model.layers.0.self_attn." or "backbone.layers.5.mixer."):
//   q_proj.weight [Hq*hd, D], k_proj.weight [Hkv*hd, D], v_proj.weight [Hkv*hd, D],
//   o_proj.weight [D, Hq*hd].
template <typename F>
struct AttentionTensors {
  F *q, *k, *v, *o;
};
using AttentionWeights = AttentionTensors<const float>;
using AttentionGrads = AttentionTensors<float>;
constexpr int kAttentionTensors = 4;

template <typename F>
AttentionTensors<F> BindAttention(F* flat, const ParamTable& table, int first) {
  auto at = [&](int k) { return flat + table.offset(first + k); };
  return {at(0), at(1), at(2), at(3)};
}

// Appends the layer's specs under `prefix`: every matrix U(+-1/sqrt(fan_in)) (PyTorch's
// nn.Linear default), all decayed.
void AppendAttentionSpecs(const std::string& prefix, const AttentionDims& d,
                          std::vector<ParamSpec>* specs);

struct AttentionSaved {
  float* q;  // f32 [T, Hq*hd]   after RoPE
  float* k;  // f32 [T, Hkv*hd]  after RoPE
  float* v;  // f32 [T, Hkv*hd]
  float* P;  // f32 [Hq, T, T]   attention probabilities (0 outside the causal / window mask)
  float* o;  // f32 [T, Hq*hd]   o_proj input

  static AttentionSaved Carve(const AttentionDims& d, Carver& c);
};

// Per-row scratch of the backward pass, shared by every attention layer of a model.
struct AttentionScratch {
  float *dq, *dk, *dv, *dO;  // f32 [T, Hq*hd], [T, Hkv*hd] x 2, [T, Hq*hd]
  float* dP;                 // f32 [T, T]

  static AttentionScratch Carve(const AttentionDims& d, Carver& c);
};

// u f32 [T, D] (the normed block input); out f32 [T, D]: out += attention(u). Fills `s`.
void AttentionForward(const AttentionDims& d, const AttentionWeights& w, const float* u,
                      const AttentionSaved& s, float* out);

// Given dout = d loss / d out (f32 [T, D]): du (f32 [T, D]) is OVERWRITTEN with d loss / d u and
// the parameter gradients are ADDED to `g`.
void AttentionBackward(const AttentionDims& d, const AttentionWeights& w, const float* u,
                       const AttentionSaved& s, const AttentionScratch& scratch, const float* dout,
                       float* du, const AttentionGrads& g);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_ATTENTION_GRAD_H_
