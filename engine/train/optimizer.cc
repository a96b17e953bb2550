#include "engine/train/optimizer.h"

// AdamW's elementwise update is vectorized by GCC (AVX-512 / AVX2 / baseline clones) with every
// element's arithmetic unchanged: IEEE sqrt and division are correctly rounded in any width, and
// fp-contract=off keeps the FMA-capable clones from fusing the multiply-adds the baseline build
// rounds separately. The file is compiled with -fno-math-errno (engine/CMakeLists.txt), without
// which sqrt keeps a scalar errno branch.
#pragma GCC optimize("O3", "fp-contract=off")

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "engine/check.h"

namespace tapeloop::engine::train {
namespace {

// p, g, m, v: [n], one tensor's slice. The update of AdamW::Step for every element, in its order
// of operations.
__attribute__((target_clones("avx512f", "avx2", "default"))) void AdamWUpdate(
    float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
    int64_t n, float keep, float b1, float b2, float step_size, float bc2_sqrt, float eps) {
  for (int64_t j = 0; j < n; ++j) {
    const float pj = p[j] * keep;
    const float mj = b1 * m[j] + (1.f - b1) * g[j];
    const float vj = b2 * v[j] + (1.f - b2) * g[j] * g[j];
    m[j] = mj;
    v[j] = vj;
    const float denom = std::sqrt(vj) / bc2_sqrt + eps;
    p[j] = pj - step_size * mj / denom;
  }
}

}  // namespace

AdamW::AdamW(const ParamTable& table, AdamWConfig config)
    : table_(table), config_(config), m_(table.total(), 0.f), v_(table.total(), 0.f) {}

void AdamW::Step(std::span<float> params, std::span<const float> grads, float lr, int threads) {
  TL_CHECK(static_cast<int64_t>(params.size()) == table_.total());
  TL_CHECK(static_cast<int64_t>(grads.size()) == table_.total());
  TL_CHECK(threads >= 1);
  ++step_;
  const float b1 = config_.beta1, b2 = config_.beta2;
  const double bc1 = 1.0 - std::pow(static_cast<double>(b1), static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(static_cast<double>(b2), static_cast<double>(step_));
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  // Updates elements [lo, hi), tensor by tensor.
  auto update = [&](int64_t lo, int64_t hi) {
    for (int i = 0; i < table_.size(); ++i) {
      const bool decay = config_.decay_all || table_.spec(i).decay;
      const float keep = decay ? 1.f - lr * config_.weight_decay : 1.f;
      const int64_t begin = std::max(lo, table_.offset(i)),
                    end = std::min(hi, table_.offset(i) + table_.numel(i));
      if (end <= begin) continue;
      AdamWUpdate(params.data() + begin, grads.data() + begin, m_.data() + begin, v_.data() + begin,
                  end - begin, keep, b1, b2, step_size, bc2_sqrt, config_.eps);
    }
  };
  const int64_t n = table_.total();
  std::vector<std::thread> pool;
  for (int w = 1; w < threads; ++w)
    pool.emplace_back(update, n * w / threads, n * (w + 1) / threads);
  update(0, n / threads);
  for (auto& t : pool) t.join();
}

double GradNorm(std::span<const float> grads) {
  double s = 0;
  for (float g : grads) s += static_cast<double>(g) * g;
  return std::sqrt(s);
}

double ClipGradNorm(std::span<float> grads, double max_norm) {
  const double norm = GradNorm(grads);
  const double coef = std::min(1.0, max_norm / (norm + 1e-6));
  if (coef < 1.0) {
    const float c = static_cast<float>(coef);
    for (float& g : grads) g *= c;
  }
  return norm;
}

double WarmupCosineLr(double base_lr, int64_t step, int64_t warmup, int64_t total_steps) {
  const double warm =
      warmup <= 0 ? 1.0
                  : std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(warmup));
  double cosine = 1.0;
  if (total_steps > 0) {
    const double s = static_cast<double>(std::min(step, total_steps));
    cosine = 0.5 * (1.0 + std::cos(M_PI * s / static_cast<double>(total_steps)));
  }
  return base_lr * warm * cosine;
}

}  // namespace tapeloop::engine::train
