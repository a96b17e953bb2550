// The vectorized loops of kernels/vec.h (the decode step's, and the prefill attention's softmax)
// against the plain loops they replace: libm exp, SiLU as v / (1 + exp(-v)), sequential double
// sums, one SsmRowUpdate per row, the softmax with libm exp and a double sum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "engine/kernels/vec.h"

namespace tapeloop::engine {
namespace {

// |a - b| <= ulps * the float spacing at b (plus a tiny absolute floor for values near 0).
void ExpectUlps(float a, float b, double ulps, const char* what, float input) {
  const double spacing = std::abs(std::nextafter(b, INFINITY) - b);
  EXPECT_LE(std::abs(static_cast<double>(a) - b), ulps * spacing + 1e-37)
      << what << "(" << input << "): " << a << " vs " << b;
}

TEST(VecFast, ExpWithinTwoUlpsOfLibmOverItsRange) {
  std::vector<float> x;
  for (float v = -87.0f; v <= 88.0f; v += 0.0137f) x.push_back(v);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, 0.5f, -0.5f, 0.34657359f, 88.0f, -87.3f}) {
    x.push_back(v);
  }
  std::vector<float> y(x.size());
  VecExp(x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ExpectUlps(y[i], std::exp(x[i]), 2.0, "exp", x[i]);
  // Outside: 0 below -87.34, exp(88) above 88 (both far past anything a layer feeds it).
  std::vector<float> out = {-87.5f, -100.0f, -1e30f, -INFINITY, 88.5f, 1e30f, INFINITY};
  std::vector<float> got(out.size());
  VecExp(out.data(), got.data(), static_cast<int64_t>(out.size()));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], 0.0f) << out[i];
  for (int i = 4; i < 7; ++i) ExpectUlps(got[i], std::exp(88.0f), 2.0, "exp", out[i]);
}

TEST(VecFast, SiluAndGateMatchThePlainLoops) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 6.0f);
  for (int n : {0, 1, 7, 15, 16, 17, 33, 256, 289}) {
    std::vector<float> x(n), z(n);
    for (int i = 0; i < n; ++i) {
      x[i] = nd(rng);
      z[i] = nd(rng);
    }
    if (n > 3) {
      z[0] = -120.0f;  // exp(-z) past the clamp: silu -> -0 in libm, tiny negative here
      z[1] = 120.0f;
      z[2] = 0.0f;
    }
    std::vector<float> s(n), g(n), in_place = z;
    VecSilu(z.data(), s.data(), n);
    VecSilu(in_place.data(), in_place.data(), n);
    VecMulSilu(x.data(), z.data(), g.data(), n);
    for (int i = 0; i < n; ++i) {
      const float want = z[i] / (1.0f + std::exp(-z[i]));
      EXPECT_NEAR(s[i], want, 8e-7 * std::abs(want) + 1e-30) << z[i];
      EXPECT_EQ(in_place[i], s[i]);
      const float gate = x[i] * want;
      EXPECT_NEAR(g[i], gate, 8e-7 * std::abs(gate) + 1e-30) << x[i] << " " << z[i];
    }
  }
}

// The plain softmax the prefill attention used before VecMaskedSoftmax: libm exp, double sum.
void PlainMaskedSoftmax(float* row, int64_t lo, int64_t hi, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = lo; j < hi; ++j) mx = std::max(mx, row[j]);
  double sum = 0.0;
  for (int64_t j = lo; j < hi; ++j) {
    row[j] = std::exp(row[j] - mx);
    sum += row[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) row[j] = j >= lo && j < hi ? row[j] * inv : 0.0f;
}

TEST(VecFast, MaskedSoftmaxMatchesThePlainLoop) {
  std::mt19937 rng(17);
  int cases = 0;
  for (int n : {1, 2, 15, 16, 17, 63, 200, 1031, 10007}) {
    for (int trial = 0; trial < 6; ++trial) {
      const int64_t lo = std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
      const int64_t hi = std::uniform_int_distribution<int64_t>(lo + 1, n)(rng);
      // Scores of a spread like real attention logits, with a few far below the maximum (their
      // exp underflows to 0 in both) and garbage outside [lo, hi) that must be ignored.
      std::normal_distribution<float> nd(0.0f, trial % 2 ? 8.0f : 1.5f);
      std::vector<float> want(n);
      for (float& v : want) v = nd(rng);
      if (hi - lo > 3) want[lo + 1] = want[lo] - 200.0f;
      std::vector<float> got = want;
      for (int64_t j = 0; j < lo; ++j) got[j] = 1e30f;
      for (int64_t j = hi; j < n; ++j) got[j] = -1e30f;
      PlainMaskedSoftmax(want.data(), lo, hi, n);
      VecMaskedSoftmax(got.data(), lo, hi, n);
      double total = 0;
      for (int64_t j = 0; j < n; ++j) {
        ASSERT_NEAR(got[j], want[j], 2e-6 * want[j] + 1e-30) << "n=" << n << " j=" << j;
        total += got[j];
      }
      EXPECT_NEAR(total, 1.0, 1e-5);
      ++cases;
    }
  }
  EXPECT_EQ(cases, 54);
}

TEST(VecFast, SumsScalesAndHeadUpdatesMatchThePlainLoops) {
  std::mt19937 rng(21);
  std::normal_distribution<float> nd;
  for (int n : {0, 1, 5, 8, 9, 16, 17, 31, 64, 65, 256}) {
    std::vector<float> x(n), w(n);
    for (int i = 0; i < n; ++i) {
      x[i] = nd(rng);
      w[i] = nd(rng);
    }
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    EXPECT_NEAR(VecSumSquares(x.data(), n), ss, 1e-12 * (1 + ss));
    std::vector<float> y = x;
    VecScaleMul(w.data(), 0.37f, y.data(), n);
    for (int i = 0; i < n; ++i) EXPECT_EQ(y[i], w[i] * (x[i] * 0.37f));

    // A head of P rows of state size n: SsmHeadUpdate against one SsmRowUpdate per row.
    const int P = 3 + n % 5;
    std::vector<float> s(P * n), s_ref, Bv(n), Cv(n), dx(P), yh(P);
    for (auto& v : s) v = nd(rng);
    for (int i = 0; i < n; ++i) {
      Bv[i] = nd(rng);
      Cv[i] = nd(rng);
    }
    for (auto& v : dx) v = nd(rng);
    s_ref = s;
    SsmHeadUpdate(s.data(), P, n, 0.83f, dx.data(), Bv.data(), Cv.data(), yh.data());
    for (int p = 0; p < P; ++p) {
      const float want = SsmRowUpdate(s_ref.data() + p * n, 0.83f, dx[p], Bv.data(), Cv.data(), n);
      double scale = 1;
      for (int i = 0; i < n; ++i) scale += std::abs(s_ref[p * n + i] * Cv[i]);
      EXPECT_NEAR(yh[p], want, 1e-6 * scale) << "n " << n << " p " << p;
    }
    for (int i = 0; i < P * n; ++i) EXPECT_NEAR(s[i], s_ref[i], 1e-6 * (1 + std::abs(s_ref[i])));
  }
}

// SsmHeadUpdate on whole heads (P rows, 16 at a time where it can) is bit-identical to the same
// head updated one row at a time (P = 1 calls), for state sizes of whole 16-wide vectors and
// others, and head sizes below, at and past multiples of 16.
TEST(VecFast, SsmHeadUpdateIsRowByRowBitForBit) {
  std::mt19937 rng(29);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int n : {16, 32, 64, 8, 24}) {
    for (int P : {5, 16, 17, 37, 64}) {
      std::vector<float> s(P * n), Bv(n), Cv(n), dx(P), y(P), y_rows(P);
      for (auto& v : s) v = nd(rng);
      for (auto& v : Bv) v = nd(rng);
      for (auto& v : Cv) v = nd(rng);
      for (auto& v : dx) v = nd(rng);
      std::vector<float> s_rows = s;
      SsmHeadUpdate(s.data(), P, n, 0.91f, dx.data(), Bv.data(), Cv.data(), y.data());
      for (int p = 0; p < P; ++p) {
        SsmHeadUpdate(s_rows.data() + p * n, 1, n, 0.91f, dx.data() + p, Bv.data(), Cv.data(),
                      y_rows.data() + p);
      }
      for (int p = 0; p < P; ++p) {
        ASSERT_EQ(y[p], y_rows[p]) << "n " << n << " P " << P << " p " << p;
      }
      ASSERT_EQ(s, s_rows) << "n " << n << " P " << P;
    }
  }
}

// The result may not depend on where the buffers sit: GCC guards a vectorized loop with run-time
// checks on the buffers' addresses (overlap, alignment) and falls back to a scalar copy, and
// the two copies must round alike. Same inputs at many placements, one answer.
TEST(VecFast, SsmHeadUpdateDoesNotDependOnBufferAddresses) {
  std::mt19937 rng(31);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  int placements = 0;
  for (int n : {8, 12, 16, 24, 40, 64}) {
    for (int P : {1, 3, 16}) {
      std::vector<float> s0(P * n), B0(n), C0(n), dx0(P);
      for (auto& v : s0) v = nd(rng);
      for (auto& v : B0) v = nd(rng);
      for (auto& v : C0) v = nd(rng);
      for (auto& v : dx0) v = nd(rng);
      std::vector<float> want_s, want_y;
      // One arena: the state, B, C and dx at varying offsets and distances from each other
      // (adjacent to far apart, in both orders), so every address check GCC may emit goes both
      // ways.
      std::vector<float> arena(4 * P * n + 8192);
      for (int s_off : {0, 1, 3, 16}) {
        for (int gap : {0, 1, 5, 16, 300}) {
          for (bool inputs_first : {false, true}) {
            float* base = arena.data() + s_off;
            float *s, *B, *C, *dx;
            if (inputs_first) {
              dx = base;
              B = dx + P + gap;
              C = B + n + gap;
              s = C + n + gap;
            } else {
              s = base;
              B = s + P * n + gap;
              C = B + n + gap;
              dx = C + n + gap;
            }
            std::copy(s0.begin(), s0.end(), s);
            std::copy(B0.begin(), B0.end(), B);
            std::copy(C0.begin(), C0.end(), C);
            std::copy(dx0.begin(), dx0.end(), dx);
            std::vector<float> y(P);
            SsmHeadUpdate(s, P, n, 0.87f, dx, B, C, y.data());
            std::vector<float> got_s(s, s + P * n);
            ++placements;
            if (want_s.empty()) {
              want_s = got_s;
              want_y = y;
              continue;
            }
            ASSERT_EQ(got_s, want_s) << "n " << n << " P " << P << " s_off " << s_off << " gap "
                                     << gap << " inputs_first " << inputs_first;
            ASSERT_EQ(y, want_y) << "n " << n << " P " << P << " s_off " << s_off << " gap " << gap
                                 << " inputs_first " << inputs_first;
          }
        }
      }
    }
  }
  EXPECT_EQ(placements, 6 * 3 * 4 * 5 * 2);
}

}  // namespace
}  // namespace tapeloop::engine
