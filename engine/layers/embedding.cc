#include "engine/layers/embedding.h"

#include <cstring>

#include "engine/check.h"

namespace tapeloop::engine {

std::vector<ParamSpec> EmbeddingParamSpecs(int64_t vocab, int64_t dim) {
  return {{"weight", {vocab, dim}, Init::kNormal}};
}

void EmbeddingForward(float* out, const float* table, const int32_t* tokens, int64_t T, int64_t V,
                      int64_t D) {
  for (int64_t t = 0; t < T; ++t) {
    TL_CHECK(tokens[t] >= 0 && tokens[t] < V);
    std::memcpy(out + t * D, table + static_cast<int64_t>(tokens[t]) * D, sizeof(float) * D);
  }
}

}  // namespace tapeloop::engine
