// The token embedding of every trainer model, forward and backward side by side (CPU f32, one
// row of T tokens):  h[t] = embedding[ids[t]]  (f32 [T, D] from f32 [V, D]).
//
// Thread safety: pure functions of their arguments.
#ifndef TAPELOOP_ENGINE_TRAIN_EMBEDDING_GRAD_H_
#define TAPELOOP_ENGINE_TRAIN_EMBEDDING_GRAD_H_

#include <cstdint>
#include <span>

namespace tapeloop::engine::train {

// WRITES h (f32 [T, D]) from the rows of emb (f32 [V, D]) named by ids[0..T-1].
// REQUIRES every id in [0, V) (checked).
void EmbeddingForward(const float* emb, std::span<const int32_t> ids, int64_t T, int64_t D,
                      int64_t V, float* h);

// Given dh = d loss / d h (f32 [T, D]): ADDS row t of dh to row ids[t] of d_emb (f32 [V, D]).
void EmbeddingBackward(const float* dh, std::span<const int32_t> ids, int64_t T, int64_t D,
                       float* d_emb);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_EMBEDDING_GRAD_H_
