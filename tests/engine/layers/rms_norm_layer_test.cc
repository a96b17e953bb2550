#include "engine/layers/rms_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace tapeloop::engine {
namespace {

TEST(GatedRmsNorm, GroupsNormalizeIndependently) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  const int rows = 3, width = 12;
  for (int group : {12, 4, 3}) {
    std::vector<float> x(rows * width), z(rows * width), w(width), y(rows * width);
    for (auto& v : x) v = nd(rng);
    for (auto& v : z) v = nd(rng);
    for (auto& v : w) v = nd(rng);
    GatedRmsNormForward(y.data(), x.data(), width, z.data(), width, w.data(), rows, width, group, 1e-5f);
    for (int r = 0; r < rows; ++r) {
      for (int g0 = 0; g0 < width; g0 += group) {
        double ss = 0;
        for (int i = g0; i < g0 + group; ++i) {
          double h = x[r * width + i] * (z[r * width + i] / (1 + std::exp(-z[r * width + i])));
          ss += h * h;
        }
        double inv = 1 / std::sqrt(ss / group + 1e-5);
        for (int i = g0; i < g0 + group; ++i) {
          double h = x[r * width + i] * (z[r * width + i] / (1 + std::exp(-z[r * width + i])));
          EXPECT_NEAR(y[r * width + i], h * inv * w[i], 1e-5 * (1 + std::abs(h * inv * w[i])));
        }
      }
    }
  }
}

}  // namespace
}  // namespace tapeloop::engine
