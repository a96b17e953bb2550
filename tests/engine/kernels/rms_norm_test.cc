#include "engine/kernels/rms_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/kernels/device.h"

#ifdef TAPELOOP_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace tapeloop::engine {
namespace {

std::vector<float> Random(size_t n, std::mt19937& rng, float scale = 1.f) {
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(RmsNormRef, MatchesDefinitionInDouble) {
  std::mt19937 rng(7);
  for (int dim : {1, 3, 64, 257}) {
    const int rows = 5;
    auto x = Random(rows * dim, rng, 3.f);
    auto w = Random(dim, rng);
    std::vector<float> y(rows * dim);
    RmsNormForwardRef(y.data(), x.data(), w.data(), rows, dim, 1e-5f);
    for (int r = 0; r < rows; ++r) {
      double ss = 0;
      for (int i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
      double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
      for (int i = 0; i < dim; ++i) {
        EXPECT_NEAR(y[r * dim + i], x[r * dim + i] * inv * w[i], 1e-5 * (1 + std::abs(y[r * dim + i])));
      }
      // Unit weights give unit root-mean-square (up to eps).
    }
  }
}

TEST(RmsNormRef, InPlaceEqualsOutOfPlace) {
  std::mt19937 rng(11);
  const int rows = 4, dim = 33;
  auto x = Random(rows * dim, rng);
  auto w = Random(dim, rng);
  std::vector<float> y(rows * dim);
  RmsNormForwardRef(y.data(), x.data(), w.data(), rows, dim, 1e-6f);
  RmsNormForwardRef(x.data(), x.data(), w.data(), rows, dim, 1e-6f);
  EXPECT_EQ(x, y);
}

TEST(RmsNormGpu, MatchesReference) {
#ifndef TAPELOOP_HAVE_CUDA
  GTEST_SKIP() << "CPU-only build";
#else
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no GPU visible";
  std::mt19937 rng(3);
  for (int dim : {1, 31, 128, 1000, 4099}) {
    for (int rows : {1, 7, 300}) {
      auto x = Random(size_t(rows) * dim, rng, 2.f);
      auto w = Random(dim, rng);
      std::vector<float> ref(x.size()), got(x.size());
      RmsNormForwardRef(ref.data(), x.data(), w.data(), rows, dim, 1e-5f);
      float *dx, *dw, *dy;
      ASSERT_EQ(cudaMalloc(&dx, x.size() * 4), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&dw, w.size() * 4), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&dy, x.size() * 4), cudaSuccess);
      cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
      cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
      ASSERT_TRUE(RmsNormForwardCuda(dy, dx, dw, rows, dim, 1e-5f).ok());
      cudaMemcpy(got.data(), dy, x.size() * 4, cudaMemcpyDeviceToHost);
      cudaFree(dx);
      cudaFree(dw);
      cudaFree(dy);
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_NEAR(got[i], ref[i], 1e-5f * (1 + std::abs(ref[i]))) << "dim " << dim << " i " << i;
      }
    }
  }
#endif
}

}  // namespace
}  // namespace tapeloop::engine
