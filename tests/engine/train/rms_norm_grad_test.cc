#include "engine/train/rms_norm_grad.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/train/rng.h"

namespace tapeloop::engine::train {
namespace {

// The fast RMSNorm (8 or 16 rows' reductions side by side, the 16-row blocks transposed in
// registers) equals the plain loops bit for bit, for row counts below, at and around its blocks
// of rows (16s, then 8s, then single rows), and widths below, at and around its 16 columns.
TEST(RmsNormGrad, FastEqualsPlainLoopsBitForBit) {
  Rng rng(11);
  for (int64_t D : {1, 7, 16, 33, 128, 250}) {
    for (int64_t T : {1, 3, 7, 8, 9, 16, 17, 24, 29, 31, 32, 47, 128}) {
      std::vector<float> x(T * D), w(D), dy(T * D);
      rng.FillNormal(x, 1.5f);
      rng.FillNormal(w, 1.f);
      rng.FillNormal(dy, 1.f);
      std::vector<float> r(T), y(T * D), r_ref(T), y_ref(T * D);
      RmsNormForward(x.data(), w.data(), T, D, 1e-5f, r.data(), y.data());
      RmsNormForwardRef(x.data(), w.data(), T, D, 1e-5f, r_ref.data(), y_ref.data());
      ASSERT_EQ(std::memcmp(r.data(), r_ref.data(), sizeof(float) * T), 0) << T << "x" << D;
      ASSERT_EQ(std::memcmp(y.data(), y_ref.data(), sizeof(float) * T * D), 0) << T << "x" << D;
      // Backward adds into dx and dw: start both from non-zero values.
      std::vector<float> dx(T * D), dw(D);
      rng.FillNormal(dx, 1.f);
      rng.FillNormal(dw, 1.f);
      std::vector<float> dx_ref = dx, dw_ref = dw;
      RmsNormBackward(x.data(), w.data(), r.data(), dy.data(), T, D, dx.data(), dw.data());
      RmsNormBackwardRef(x.data(), w.data(), r.data(), dy.data(), T, D, dx_ref.data(),
                         dw_ref.data());
      ASSERT_EQ(std::memcmp(dx.data(), dx_ref.data(), sizeof(float) * T * D), 0) << T << "x" << D;
      ASSERT_EQ(std::memcmp(dw.data(), dw_ref.data(), sizeof(float) * D), 0) << T << "x" << D;
    }
  }
}

// The plain forward is the definition: y = x / sqrt(mean(x^2) + eps) * w.
TEST(RmsNormGrad, ForwardMatchesDefinition) {
  const int64_t T = 5, D = 6;
  Rng rng(12);
  std::vector<float> x(T * D), w(D), r(T), y(T * D);
  rng.FillNormal(x, 2.f);
  rng.FillNormal(w, 1.f);
  RmsNormForward(x.data(), w.data(), T, D, 1e-5f, r.data(), y.data());
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += double{x[t * D + i]} * x[t * D + i];
    const double rr = 1.0 / std::sqrt(ss / D + 1e-5);
    EXPECT_NEAR(r[t], rr, 1e-5 * rr);
    for (int64_t i = 0; i < D; ++i) EXPECT_NEAR(y[t * D + i], x[t * D + i] * rr * w[i], 1e-5);
  }
}

}  // namespace
}  // namespace tapeloop::engine::train
