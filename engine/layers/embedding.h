// Token embedding: out[t, :] = table[tokens[t], :].
#ifndef TAPELOOP_ENGINE_LAYERS_EMBEDDING_H_
#define TAPELOOP_ENGINE_LAYERS_EMBEDDING_H_

#include <cstdint>
#include <vector>

#include "engine/layers/param_spec.h"

namespace tapeloop::engine {

// "weight" f32 [V, D], N(0, initializer_range).
std::vector<ParamSpec> EmbeddingParamSpecs(int64_t vocab, int64_t dim);

// out: f32 [T, D]; table: f32 [V, D]; tokens: [T], each in [0, V) (TL_CHECK; callers validate
// user input first and return a Status).
void EmbeddingForward(float* out, const float* table, const int32_t* tokens, int64_t T, int64_t V,
                      int64_t D);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_LAYERS_EMBEDDING_H_
