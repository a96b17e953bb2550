// AttentionDecodeRef: the plain reference of AttentionDecode (see attention_decode.h).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/check.h"
#include "engine/kernels/attention_decode.h"

namespace tapeloop::engine {

void AttentionDecodeRef(float* out, const float* q, int64_t ldq, const KvRows* kv, int64_t B,
                        int num_heads, int num_kv_heads, int head_dim, float scale) {
  TL_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0 &&
           ldq >= int64_t{num_heads} * head_dim);
  const int64_t hd = head_dim, qd = int64_t{num_heads} * hd, kvd = int64_t{num_kv_heads} * hd;
  const int group = num_heads / num_kv_heads;
  std::vector<float> scores;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = kv[b].rows;
    TL_CHECK(n >= 1);
    scores.resize(n);
    for (int h = 0; h < num_heads; ++h) {
      const int64_t kvh = h / group;
      const float* qh = q + b * ldq + h * hd;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        const float* kj = kv[b].k + j * kvd + kvh * hd;
        float s = 0.0f;
        for (int64_t e = 0; e < hd; ++e) s += qh[e] * kj[e];
        scores[j] = s * scale;
        mx = std::max(mx, scores[j]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* o = out + b * qd + h * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        const float* vj = kv[b].v + j * kvd + kvh * hd;
        const float p = scores[j] * inv;
        for (int64_t e = 0; e < hd; ++e) o[e] += p * vj[e];
      }
    }
  }
}

}  // namespace tapeloop::engine
