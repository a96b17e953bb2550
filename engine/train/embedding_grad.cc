#include "engine/train/embedding_grad.h"

#include <cstring>

#include "engine/check.h"

namespace tapeloop::engine::train {

void EmbeddingForward(const float* emb, std::span<const int32_t> ids, int64_t T, int64_t D,
                      int64_t V, float* h) {
  for (int64_t t = 0; t < T; ++t) {
    const int32_t id = ids[t];
    TL_CHECK(id >= 0 && id < V);
    std::memcpy(h + t * D, emb + id * D, sizeof(float) * D);
  }
}

void EmbeddingBackward(const float* dh, std::span<const int32_t> ids, int64_t T, int64_t D,
                       float* d_emb) {
  for (int64_t t = 0; t < T; ++t) {
    float* dst = d_emb + ids[t] * D;
    const float* src = dh + t * D;
    for (int64_t i = 0; i < D; ++i) dst[i] += src[i];
  }
}

}  // namespace tapeloop::engine::train
