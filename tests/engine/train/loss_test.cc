#include "engine/train/loss.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/train/grad_check.h"
#include "engine/train/rng.h"

namespace tapeloop::engine::train {
namespace {

TEST(MaskedCrossEntropy, ValueMatchesDefinition) {
  const int R = 6, V = 7;
  Rng rng(5);
  std::vector<float> logits(R * V);
  rng.FillNormal(logits, 2.f);
  std::vector<int32_t> targets = {0, 3, 6, 2, 2, 5};
  std::vector<float> mask = {1, 0, 1, 1, 0, 1};
  auto res = MaskedCrossEntropy(logits, targets, mask, R, V, 4.0, {});
  double expect = 0;
  for (int r = 0; r < R; ++r) {
    if (!mask[r]) continue;
    double se = 0;
    for (int v = 0; v < V; ++v) se += std::exp(double{logits[r * V + v]});
    expect += std::log(se) - logits[r * V + targets[r]];
  }
  EXPECT_NEAR(res.loss_sum, expect, 1e-5);
  EXPECT_EQ(res.counted, 4);
}

TEST(MaskedCrossEntropy, GradientMatchesFiniteDifferences) {
  const int R = 9, V = 11;
  Rng rng(6);
  std::vector<float> logits(R * V);
  rng.FillNormal(logits, 1.5f);
  std::vector<int32_t> targets(R);
  std::vector<float> mask(R);
  for (int r = 0; r < R; ++r) {
    targets[r] = static_cast<int32_t>(rng.UniformInt(0, V - 1));
    mask[r] = (r % 3 == 1) ? 0.f : 1.f;
  }
  const double denom = 6.0;
  std::vector<float> d(R * V);
  MaskedCrossEntropy(logits, targets, mask, R, V, denom, d);
  for (int v = 0; v < V; ++v) EXPECT_EQ(d[1 * V + v], 0.f);  // masked row: no gradient
  auto f = [&] { return MaskedCrossEntropy(logits, targets, mask, R, V, denom, {}).loss_sum / denom; };
  auto res = CheckGradient(logits, d, f, GradCheckOptions{1e-2, 1000, 1e-4});
  EXPECT_LT(res.max_rel_error, 2e-3) << res.ToString();
}

TEST(GradCheck, DetectsAWrongGradient) {
  std::vector<float> x = {0.5f, -1.0f, 2.0f};
  auto f = [&] { return double{x[0]} * x[0] + 3.0 * x[1] + std::sin(double{x[2]}); };
  std::vector<float> good = {1.0f, 3.0f, static_cast<float>(std::cos(2.0))};
  EXPECT_LT(CheckGradient(x, good, f).max_rel_error, 1e-3);
  std::vector<float> bad = good;
  bad[2] *= 1.1f;
  auto res = CheckGradient(x, bad, f);
  EXPECT_GT(res.max_rel_error, 0.05);
  EXPECT_EQ(res.worst_index, 2);
  EXPECT_EQ(x[0], 0.5f);  // restored
}

}  // namespace
}  // namespace tapeloop::engine::train
