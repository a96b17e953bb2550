#include "engine/train/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/train/params.h"
#include "engine/train/rng.h"

namespace tapeloop::engine::train {
namespace {

ParamTable TwoTensors() {
  return ParamTable({ParamSpec{"w", {3, 4}, InitNormal(1.f), true},
                     ParamSpec{"norm", {5}, InitConstant(1.f), false}});
}

// A direct double-precision transcription of torch.optim.AdamW's update.
TEST(AdamW, MatchesReferenceUpdateOverSeveralSteps) {
  ParamTable table = TwoTensors();
  Rng rng(3);
  std::vector<float> p = table.Initialize(rng);
  std::vector<double> ref(p.begin(), p.end()), m(p.size(), 0), v(p.size(), 0);
  AdamW opt(table, AdamWConfig{0.9f, 0.95f, 1e-8f, 0.1f, false});
  for (int step = 1; step <= 5; ++step) {
    std::vector<float> g(p.size());
    rng.FillNormal(g, 0.5f);
    const float lr = 0.01f * step;
    opt.Step(p, g, lr);
    for (size_t j = 0; j < p.size(); ++j) {
      const bool decay = j < 12;
      if (decay) ref[j] *= 1.0 - double{lr} * 0.1;
      m[j] = 0.9 * m[j] + 0.1 * g[j];
      v[j] = 0.95 * v[j] + 0.05 * double{g[j]} * g[j];
      const double mh = m[j] / (1 - std::pow(0.9, step));
      const double vh = v[j] / (1 - std::pow(0.95, step));
      ref[j] -= lr * mh / (std::sqrt(vh) + 1e-8);
    }
  }
  for (size_t j = 0; j < p.size(); ++j) EXPECT_NEAR(p[j], ref[j], 1e-5) << j;
  EXPECT_EQ(opt.step(), 5);
}

// The vectorized update (AVX-512 / AVX2 / baseline clones) is the plain float loop of the same
// operations, bit for bit: tensors whose sizes leave vector tails, decay on and off.
TEST(AdamW, EqualsThePlainFloatLoopBitForBit) {
  ParamTable table({ParamSpec{"a", {37, 29}, InitNormal(1.f), true},
                    ParamSpec{"b", {13}, InitConstant(1.f), false},
                    ParamSpec{"c", {3, 71}, InitNormal(0.3f), true}});
  const AdamWConfig config{0.9f, 0.95f, 1e-8f, 0.1f, false};
  Rng rng(7);
  std::vector<float> p = table.Initialize(rng), ref = p;
  std::vector<float> m(p.size(), 0.f), v(p.size(), 0.f);
  AdamW opt(table, config);
  for (int step = 1; step <= 6; ++step) {
    std::vector<float> g(p.size());
    rng.FillNormal(g, step % 2 ? 0.5f : 2e-3f);
    const float lr = 3e-3f * step;
    opt.Step(p, g, lr, /*threads=*/2);
    const float b1 = config.beta1, b2 = config.beta2;
    const float step_size = static_cast<float>(lr / (1.0 - std::pow(double{b1}, step)));
    const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(double{b2}, step)));
    for (int i = 0; i < table.size(); ++i) {
      const float keep = table.spec(i).decay ? 1.f - lr * config.weight_decay : 1.f;
      for (int64_t j = table.offset(i); j < table.offset(i) + table.numel(i); ++j) {
        ref[j] *= keep;
        m[j] = b1 * m[j] + (1.f - b1) * g[j];
        v[j] = b2 * v[j] + (1.f - b2) * g[j] * g[j];
        const float denom = std::sqrt(v[j]) / bc2_sqrt + config.eps;
        ref[j] -= step_size * m[j] / denom;
      }
    }
    ASSERT_EQ(p, ref) << "step " << step;
    ASSERT_EQ(opt.m(), m) << "step " << step;
    ASSERT_EQ(opt.v(), v) << "step " << step;
  }
}

// Splitting the update over threads (ranges that cut through tensors, more threads than some
// tensors have elements) changes nothing, bit for bit.
TEST(AdamW, ThreadsDoNotChangeTheUpdate) {
  ParamTable table = TwoTensors();
  for (int threads : {2, 3, 5, 17}) {
    Rng rng(4);
    std::vector<float> p1 = table.Initialize(rng), p2 = p1;
    AdamW one(table, AdamWConfig{0.9f, 0.95f, 1e-8f, 0.1f, false});
    AdamW many(table, AdamWConfig{0.9f, 0.95f, 1e-8f, 0.1f, false});
    for (int step = 1; step <= 3; ++step) {
      std::vector<float> g(p1.size());
      rng.FillNormal(g, 0.5f);
      one.Step(p1, g, 0.01f * step);
      many.Step(p2, g, 0.01f * step, threads);
    }
    EXPECT_EQ(p1, p2) << threads;
    EXPECT_EQ(one.m(), many.m()) << threads;
    EXPECT_EQ(one.v(), many.v()) << threads;
  }
}

TEST(AdamW, NoDecayOnNormsUnlessDecayAll) {
  ParamTable table = TwoTensors();
  std::vector<float> zero_grad(table.total(), 0.f);
  for (bool decay_all : {false, true}) {
    std::vector<float> p(table.total(), 2.f);
    AdamW opt(table, AdamWConfig{0.9f, 0.95f, 1e-8f, 0.5f, decay_all});
    opt.Step(p, zero_grad, 0.1f);
    EXPECT_FLOAT_EQ(p[0], 2.f * (1 - 0.05f));
    EXPECT_FLOAT_EQ(p[12], decay_all ? 2.f * (1 - 0.05f) : 2.f);
  }
}

TEST(ClipGradNorm, ScalesOnlyAboveMax) {
  std::vector<float> g = {3.f, 4.f};
  EXPECT_NEAR(ClipGradNorm(g, 10.0), 5.0, 1e-12);
  EXPECT_FLOAT_EQ(g[0], 3.f);
  EXPECT_NEAR(ClipGradNorm(g, 1.0), 5.0, 1e-12);
  EXPECT_NEAR(GradNorm(g), 1.0, 1e-6);
  EXPECT_NEAR(g[0] / g[1], 0.75, 1e-6);
}

TEST(WarmupCosineLr, MatchesPrototypeLambda) {
  const int64_t S = 400;
  for (int64_t s : {0, 1, 50, 99, 100, 250, 399, 400, 500}) {
    const double expect = 2e-3 * std::min(1.0, (s + 1) / 100.0) * 0.5 *
                          (1 + std::cos(M_PI * std::min(s, S) / double(S)));
    EXPECT_NEAR(WarmupCosineLr(2e-3, s, 100, S), expect, 1e-15) << s;
  }
  EXPECT_NEAR(WarmupCosineLr(1.0, 0, 100, S), 0.01, 1e-12);
  EXPECT_NEAR(WarmupCosineLr(1.0, S, 100, S), 0.0, 1e-12);
}

TEST(Rng, DeterministicAndRoughlyNormal) {
  Rng a(42), b(42), c(43);
  EXPECT_EQ(a.Next(), b.Next());
  EXPECT_NE(a.Next(), c.Next());
  Rng r(1);
  double s = 0, s2 = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double x = r.Normal();
    s += x;
    s2 += x * x;
  }
  EXPECT_NEAR(s / n, 0.0, 0.03);
  EXPECT_NEAR(s2 / n, 1.0, 0.05);
  auto st = r.state();
  const uint64_t next = r.Next();
  r.set_state(st);
  EXPECT_EQ(r.Next(), next);
  for (int i = 0; i < 1000; ++i) {
    const int64_t k = r.UniformInt(1, 5);
    ASSERT_GE(k, 1);
    ASSERT_LE(k, 5);
  }
}

}  // namespace
}  // namespace tapeloop::engine::train
