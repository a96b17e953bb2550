#include "engine/train/vec_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/train/rng.h"

namespace tapeloop::engine::train {
namespace {

// Lengths below, at and around the 16-float vector width, so both the vector body and the
// scalar tail run.
const int64_t kLengths[] = {1, 5, 15, 16, 17, 31, 32, 33, 100};

std::vector<float> Inputs(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(n);
  rng.FillNormal(x, 4.f);
  if (n > 2) x[1] = 0.f, x[2] = -0.f;  // relu's edge
  return x;
}

double Sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

TEST(VecMath, ExpAndSiluMatchLibm) {
  for (int64_t n : kLengths) {
    const std::vector<float> x = Inputs(n, 1 + n);
    std::vector<float> e = x, y(n);
    ExpInPlace(e.data(), n);
    SiluArray(x.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(e[i], std::exp(double{x[i]}), 4e-7 * std::exp(double{x[i]})) << n << " " << i;
      EXPECT_NEAR(y[i], x[i] * Sigmoid(x[i]), 1e-6 * (1 + std::fabs(x[i]))) << n << " " << i;
    }
  }
}

TEST(VecMath, SiluGradsMatchDefinition) {
  for (int64_t n : kLengths) {
    const std::vector<float> z = Inputs(n, 2 + n), y = Inputs(n, 3 + n), g = Inputs(n, 4 + n);
    std::vector<float> dz(n), dg = g, d = g;
    SiluGrad(z.data(), dz.data(), n, y.data(), dg.data());
    SiluGradInPlace(z.data(), d.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double s = Sigmoid(z[i]), dsilu = s * (1 + z[i] * (1 - s));
      EXPECT_NEAR(dz[i], g[i] * y[i] * dsilu, 1e-5 * (1 + std::fabs(g[i] * y[i]))) << i;
      EXPECT_NEAR(dg[i], g[i] * z[i] * s, 1e-5 * (1 + std::fabs(g[i] * z[i]))) << i;
      EXPECT_NEAR(d[i], g[i] * dsilu, 1e-5 * (1 + std::fabs(g[i]))) << i;
    }
  }
}

// The backward pass takes SiLU's denominators from the forward (SiluArray's den) instead of
// recomputing them: every result must be the one recomputing gives, bit for bit.
TEST(VecMath, StoredSiluDenominatorsGiveTheSameBits) {
  for (int64_t n : kLengths) {
    const std::vector<float> z = Inputs(n, 7 + n), y = Inputs(n, 8 + n), g = Inputs(n, 9 + n);
    std::vector<float> a(n), b(n), den(n, -1.f);
    SiluArray(z.data(), a.data(), n);
    SiluArray(z.data(), b.data(), n, den.data());
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(a[i], b[i]) << n << " " << i;
      EXPECT_NEAR(den[i], 1.0 + std::exp(-double{z[i]}), 1e-6 * (1.0 + std::exp(-double{z[i]})))
          << n << " " << i;
      EXPECT_EQ(z[i] / den[i], a[i]) << n << " " << i;  // what MlpBackward recomputes
    }
    std::vector<float> dz1(n), dz2(n), dg1 = g, dg2 = g, d1 = g, d2 = g;
    SiluGrad(z.data(), dz1.data(), n, y.data(), dg1.data());
    SiluGrad(z.data(), dz2.data(), n, y.data(), dg2.data(), den.data());
    SiluGradInPlace(z.data(), d1.data(), n);
    SiluGradInPlace(z.data(), d2.data(), n, den.data());
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(dz1[i], dz2[i]) << n << " " << i;
      EXPECT_EQ(dg1[i], dg2[i]) << n << " " << i;
      EXPECT_EQ(d1[i], d2[i]) << n << " " << i;
    }
  }
}

// relu^2 and its gradient are exact: the same float operations as the plain expressions.
TEST(VecMath, Relu2EqualsPlainExpressions) {
  for (int64_t n : kLengths) {
    const std::vector<float> x = Inputs(n, 5 + n), dy = Inputs(n, 6 + n);
    std::vector<float> y(n), dx(n), dx_alias = dy;
    Relu2Array(x.data(), y.data(), n);
    Relu2Grad(x.data(), dy.data(), dx.data(), n);
    Relu2Grad(x.data(), dx_alias.data(), dx_alias.data(), n);  // dx may alias dy
    for (int64_t i = 0; i < n; ++i) {
      const float r = x[i] > 0.f ? x[i] : 0.f;
      EXPECT_EQ(y[i], r * r) << n << " " << i;
      const float want = x[i] > 0.f ? dy[i] * 2.f * x[i] : 0.f;
      EXPECT_EQ(dx[i], want) << n << " " << i;
      EXPECT_EQ(dx_alias[i], want) << n << " " << i;
    }
  }
}

}  // namespace
}  // namespace tapeloop::engine::train
