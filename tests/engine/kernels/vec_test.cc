#include "engine/kernels/vec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace tapeloop::engine {
namespace {

TEST(Vec, MatchesPlainLoopsOverRaggedSizes) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd;
  for (int n : {0, 1, 7, 8, 9, 16, 31, 64, 129}) {
    std::vector<float> a(n), b(n), c(n), s(n);
    for (int i = 0; i < n; ++i) {
      a[i] = nd(rng);
      b[i] = nd(rng);
      c[i] = nd(rng);
      s[i] = nd(rng);
    }
    double dot = 0;
    for (int i = 0; i < n; ++i) dot += double(a[i]) * b[i];
    EXPECT_NEAR(VecDot(a.data(), b.data(), n), dot, 1e-5 * (1 + n));

    std::vector<float> y = c;
    VecAxpy(0.3f, a.data(), y.data(), n);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(y[i], c[i] + 0.3f * a[i], 1e-6);

    std::vector<float> y2 = c;
    VecMulAdd(a.data(), b.data(), y2.data(), n);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(y2[i], c[i] + a[i] * b[i], 1e-6);

    std::vector<float> st = s;
    double want = 0;
    std::vector<double> s2(n);
    for (int i = 0; i < n; ++i) {
      s2[i] = double(s[i]) * 0.9 + 0.2 * double(a[i]);
      want += s2[i] * c[i];
    }
    EXPECT_NEAR(SsmRowUpdate(st.data(), 0.9f, 0.2f, a.data(), c.data(), n), want, 1e-5 * (1 + n));
    for (int i = 0; i < n; ++i) EXPECT_NEAR(st[i], s2[i], 1e-6);
  }
}

}  // namespace
}  // namespace tapeloop::engine
