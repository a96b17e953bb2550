// LinearForwardPacked (packed panels, register blocks) against LinearForwardRef (OpenBLAS) over
// ragged shapes: rows around the 12-row blocks, outputs around the 32-column panels, inputs not
// a multiple of 16 and across the 256-input chunks, with and without a bias, products big enough
// to be split over threads; and the packing itself, on first use from several threads at once.
#include "engine/kernels/linear_packed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "engine/kernels/linear.h"

namespace tapeloop::engine {
namespace {

// Checks got against LinearForwardRef to a few roundings of the sum of |terms|.
void ExpectNearRef(const std::vector<float>& got, const std::vector<float>& x,
                   const std::vector<float>& w, const float* b, int64_t rows, int64_t in,
                   int64_t out) {
  std::vector<float> want(rows * out);
  LinearForwardRef(want.data(), x.data(), w.data(), b, rows, in, out);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double mag = b ? std::abs(b[o]) : 0.0;
      for (int64_t i = 0; i < in; ++i) mag += std::abs(x[r * in + i] * w[o * in + i]);
      ASSERT_NEAR(got[r * out + o], want[r * out + o], 1e-6 * (1 + mag))
          << rows << " x " << in << " -> " << out << " at " << r << "," << o;
    }
  }
}

TEST(LinearForwardPacked, EqualsTheBlasReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  int cases = 0;
  for (int64_t rows : {1, 2, 5, 11, 12, 13, 24, 33, 64, 67, 131}) {
    for (int64_t in : {1, 7, 16, 33, 256, 300, 385, 600}) {
      for (int64_t out : {1, 5, 31, 32, 33, 70, 285}) {
        if (rows * in * out > 6'000'000) continue;
        for (bool bias : {false, true}) {
          std::vector<float> x(rows * in), w(out * in), b(out);
          for (auto& v : x) v = nd(rng);
          for (auto& v : w) v = nd(rng);
          for (auto& v : b) v = nd(rng);
          PackedLinear packed(w.data(), in, out);
          EXPECT_EQ(packed.bytes(), 4 * in * ((out + 31) / 32) * 32);
          std::vector<float> got(rows * out, NAN);
          LinearForwardPacked(got.data(), x.data(), packed, bias ? b.data() : nullptr, rows);
          ExpectNearRef(got, x, w, bias ? b.data() : nullptr, rows, in, out);
          ++cases;
        }
      }
    }
  }
  EXPECT_GT(cases, 500);
}

TEST(LinearForwardPacked, NarrowBlocksForCpusWithoutAvx512EqualTheBlasReference) {
  std::mt19937 rng(6);
  std::normal_distribution<float> nd;
  for (int64_t rows : {1, 2, 3, 7, 40}) {
    for (int64_t in : {1, 17, 300}) {
      for (int64_t out : {5, 32, 70}) {
        std::vector<float> x(rows * in), w(out * in), b(out);
        for (auto& v : x) v = nd(rng);
        for (auto& v : w) v = nd(rng);
        for (auto& v : b) v = nd(rng);
        PackedLinear packed(w.data(), in, out);
        std::vector<float> got(rows * out, NAN);
        LinearForwardPackedNarrowForTest(got.data(), x.data(), packed, b.data(), rows);
        ExpectNearRef(got, x, w, b.data(), rows, in, out);
      }
    }
  }
}

TEST(LinearForwardPacked, DecodeOverloadUsesEitherPath) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const int64_t in = 130, out = 77;
  std::vector<float> w(out * in), b(out);
  for (auto& v : w) v = nd(rng);
  for (auto& v : b) v = nd(rng);
  PackedLinear packed(w.data(), in, out);
  for (int64_t rows : {int64_t{1}, int64_t{4}, kMinPackedRows - 1, kMinPackedRows, int64_t{80}}) {
    std::vector<float> x(rows * in);
    for (auto& v : x) v = nd(rng);
    for (const PackedLinear* p : std::vector<const PackedLinear*>{nullptr, &packed}) {
      std::vector<float> got(rows * out, NAN);
      LinearForwardDecode(got.data(), x.data(), w.data(), p, b.data(), rows, in, out);
      ExpectNearRef(got, x, w, b.data(), rows, in, out);
    }
  }
  EXPECT_TRUE(packed.built());  // by the calls with at least kMinPackedRows rows
}

TEST(LinearForwardPacked, PacksOnceUnderConcurrentFirstUse) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  const int64_t rows = 40, in = 200, out = 100;
  std::vector<float> x(rows * in), w(out * in);
  for (auto& v : x) v = nd(rng);
  for (auto& v : w) v = nd(rng);
  PackedLinear packed(w.data(), in, out);
  EXPECT_FALSE(packed.built());
  std::vector<std::vector<float>> got(4, std::vector<float>(rows * out, NAN));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back(
        [&, t] { LinearForwardPacked(got[t].data(), x.data(), packed, nullptr, rows); });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(packed.built());
  for (int t = 0; t < 4; ++t) {
    ExpectNearRef(got[t], x, w, nullptr, rows, in, out);
    EXPECT_EQ(got[t], got[0]);  // the same panels and arithmetic whichever thread packed
  }
}

}  // namespace
}  // namespace tapeloop::engine
