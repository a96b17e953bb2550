// LinearForwardDecode (register-blocked dot products) against LinearForwardRef (OpenBLAS) over
// ragged shapes: rows and outputs around the 4 x 4 blocks, inputs around the 16-wide vectors,
// with and without a bias, and products big enough to be split over threads.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/kernels/linear.h"

namespace tapeloop::engine {
namespace {

TEST(LinearForwardDecode, EqualsTheBlasReference) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  int cases = 0;
  for (int64_t rows : {1, 2, 3, 4, 5, 7, 16, 50, 63, 64, 67}) {
    for (int64_t in : {1, 5, 16, 17, 31, 128, 256}) {
      for (int64_t out : {1, 3, 4, 6, 33, 285, 560}) {
        if (rows * in * out > 4'000'000) continue;
        for (bool bias : {false, true}) {
          std::vector<float> x(rows * in), w(out * in), b(out);
          for (auto& v : x) v = nd(rng);
          for (auto& v : w) v = nd(rng);
          for (auto& v : b) v = nd(rng);
          std::vector<float> got(rows * out, NAN), want(rows * out);
          LinearForwardDecode(got.data(), x.data(), w.data(), bias ? b.data() : nullptr, rows, in,
                              out);
          LinearForwardRef(want.data(), x.data(), w.data(), bias ? b.data() : nullptr, rows, in,
                           out);
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t o = 0; o < out; ++o) {
              // Bound: a few roundings of the sum of |terms|.
              double mag = bias ? std::abs(b[o]) : 0.0;
              for (int64_t i = 0; i < in; ++i) mag += std::abs(x[r * in + i] * w[o * in + i]);
              ASSERT_NEAR(got[r * out + o], want[r * out + o], 1e-6 * (1 + mag))
                  << rows << " x " << in << " -> " << out << " at " << r << "," << o;
            }
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_GT(cases, 800);
}

}  // namespace
}  // namespace tapeloop::engine
