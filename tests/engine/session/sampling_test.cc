#include "engine/session/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace tapeloop::engine {
namespace {

TEST(Sampling, GreedyIsArgmax) {
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f, 1.5f};
  uint64_t rng = 1;
  EXPECT_EQ(SampleToken(l, {}, &rng), 1);
  EXPECT_EQ(rng, 1u);  // greedy does not draw
  SamplingParams k1;
  k1.temperature = 1.0f;
  k1.top_k = 1;
  EXPECT_EQ(SampleToken(l, k1, &rng), 1);
}

TEST(Sampling, TemperatureMatchesSoftmax) {
  std::vector<float> l = {0.0f, 1.0f, 2.0f, -1.0f};
  SamplingParams p;
  p.temperature = 0.7f;
  uint64_t rng = 42;
  std::vector<int> counts(4);
  const int n = 40000;
  for (int i = 0; i < n; ++i) counts[SampleToken(l, p, &rng)]++;
  double z = 0;
  for (float x : l) z += std::exp(x / 0.7);
  for (int i = 0; i < 4; ++i) {
    const double want = std::exp(l[i] / 0.7) / z;
    EXPECT_NEAR(counts[i] / double(n), want, 0.01) << i;
  }
}

TEST(Sampling, TopKAndTopPRestrictTheSupport) {
  std::vector<float> l = {3.0f, 2.9f, 0.0f, -5.0f, 2.8f};
  uint64_t rng = 7;
  SamplingParams k;
  k.temperature = 1.0f;
  k.top_k = 2;
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.3f;  // the top token alone has ~0.35 of the mass
  for (int i = 0; i < 2000; ++i) {
    int t = SampleToken(l, k, &rng);
    EXPECT_TRUE(t == 0 || t == 1);
    EXPECT_EQ(SampleToken(l, p, &rng), 0);
  }
}

TEST(Sampling, SeededAndValidated) {
  std::vector<float> l(50);
  for (int i = 0; i < 50; ++i) l[i] = std::sin(i);
  SamplingParams p;
  p.temperature = 1.3f;
  uint64_t a = 9, b = 9;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(SampleToken(l, p, &a), SampleToken(l, p, &b));
  SamplingParams bad;
  bad.top_p = 0.0f;
  EXPECT_FALSE(ValidateSamplingParams(bad).ok());
  bad.top_p = 1.0f;
  bad.top_k = -1;
  EXPECT_FALSE(ValidateSamplingParams(bad).ok());
  bad.top_k = 0;
  bad.temperature = NAN;
  EXPECT_FALSE(ValidateSamplingParams(bad).ok());
}

}  // namespace
}  // namespace tapeloop::engine
