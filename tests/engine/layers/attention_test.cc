#include "engine/layers/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tests/engine/test_util.h"

namespace tapeloop::engine {
namespace {

TEST(Rope, RotationDependsOnlyOnRelativePosition) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> q(8), k(8);
  for (auto& v : q) v = nd(rng);
  for (auto& v : k) v = nd(rng);
  auto dot_at = [&](int64_t pq, int64_t pk) {
    std::vector<float> a = q, b = k;
    ApplyRope(a.data(), 1, 8, 1, 8, pq, 10000.0);
    ApplyRope(b.data(), 1, 8, 1, 8, pk, 10000.0);
    double s = 0;
    for (int i = 0; i < 8; ++i) s += double(a[i]) * b[i];
    return s;
  };
  EXPECT_NEAR(dot_at(5, 2), dot_at(105, 102), 1e-4);
  EXPECT_NEAR(dot_at(0, 0), [&] { double s = 0; for (int i = 0; i < 8; ++i) s += double(q[i]) * k[i]; return s; }(), 1e-5);
}

// Naive causal attention over the whole sequence with an optional window (double precision).
std::vector<float> Naive(const AttentionDims& d, const AttentionWeights& w, const std::vector<float>& x, int T) {
  const int64_t qd = d.q_dim(), kvd = d.kv_dim(), hd = d.head_dim;
  auto lin = [&](const float* W, const float* b, int64_t out) {
    std::vector<float> y(T * out);
    for (int t = 0; t < T; ++t)
      for (int64_t o = 0; o < out; ++o) {
        double acc = b ? b[o] : 0;
        for (int64_t i = 0; i < d.dim; ++i) acc += double(W[o * d.dim + i]) * x[t * d.dim + i];
        y[t * out + o] = float(acc);
      }
    return y;
  };
  auto q = lin(w.q_w, w.q_b, qd), k = lin(w.k_w, w.k_b, kvd), v = lin(w.v_w, w.v_b, kvd);
  if (d.use_rope) {
    ApplyRope(q.data(), T, qd, d.num_heads, d.head_dim, 0, d.rope_theta);
    ApplyRope(k.data(), T, kvd, d.num_kv_heads, d.head_dim, 0, d.rope_theta);
  }
  std::vector<double> o(T * qd);
  const int group = d.num_heads / d.num_kv_heads;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < d.num_heads; ++h) {
      const int kvh = h / group;
      const int lo = d.window > 0 ? std::max<int>(0, t - int(d.window) + 1) : 0;
      std::vector<double> s(t + 1, -INFINITY);
      double mx = -INFINITY;
      for (int j = lo; j <= t; ++j) {
        double acc = 0;
        for (int e = 0; e < hd; ++e) acc += double(q[t * qd + h * hd + e]) * k[j * kvd + kvh * hd + e];
        s[j] = acc / std::sqrt(double(hd));
        mx = std::max(mx, s[j]);
      }
      double z = 0;
      for (int j = lo; j <= t; ++j) z += std::exp(s[j] - mx);
      for (int j = lo; j <= t; ++j)
        for (int e = 0; e < hd; ++e) o[t * qd + h * hd + e] += std::exp(s[j] - mx) / z * v[j * kvd + kvh * hd + e];
    }
  std::vector<float> out(T * d.dim);
  for (int t = 0; t < T; ++t)
    for (int64_t i = 0; i < d.dim; ++i) {
      double acc = w.o_b ? w.o_b[i] : 0;
      for (int64_t j = 0; j < qd; ++j) acc += double(w.o_w[i * qd + j]) * o[t * qd + j];
      out[t * d.dim + i] = float(acc);
    }
  return out;
}

TEST(AttentionLayer, ChunksAndStepsMatchNaive) {
  for (int64_t window : {0, 1, 4, 9}) {
    for (bool rope : {true, false}) {
      AttentionDims d;
      d.dim = 16;
      d.num_heads = 4;
      d.num_kv_heads = 2;
      d.head_dim = 6;
      d.use_rope = rope;
      d.rope_theta = 100.0;
      d.window = window;
      d.bias = true;
      auto specs = AttentionParamSpecs(d);
      std::vector<std::vector<float>> store;
      std::mt19937 rng(window + 7);
      std::normal_distribution<float> nd(0.0f, 0.5f);
      for (auto& s : specs) {
        store.emplace_back(NumElements(s.shape));
        for (auto& v : store.back()) v = nd(rng);
      }
      auto lookup = [&](const std::string& suffix) -> float* {
        for (size_t i = 0; i < specs.size(); ++i)
          if (specs[i].suffix == suffix) return store[i].data();
        return nullptr;
      };
      AttentionWeights w = BindAttentionWeights(d, lookup);
      const int T = 23;
      std::vector<float> x(T * d.dim);
      for (auto& v : x) v = nd(rng);
      auto want = Naive(d, w, x, T);
      // Chunks of 5 (crossing the window).
      KvCache cache;
      std::vector<float> got(T * d.dim);
      for (int t0 = 0; t0 < T; t0 += 5) {
        int n = std::min(5, T - t0);
        AttentionForward(d, w, x.data() + t0 * d.dim, n, got.data() + t0 * d.dim, &cache);
      }
      EXPECT_LE(testing::MaxRelErr(got, want), 1e-5) << window;
      EXPECT_EQ(cache.live_rows(window), window > 0 ? std::min<int64_t>(window, T) : T);
      // Steps.
      KvCache c2;
      KvCache* cp = &c2;
      std::vector<float> stepped(T * d.dim);
      for (int t = 0; t < T; ++t) AttentionStep(d, w, x.data() + t * d.dim, 1, stepped.data() + t * d.dim, &cp);
      EXPECT_LE(testing::MaxRelErr(stepped, want), 1e-5) << window;
    }
  }
}

}  // namespace
}  // namespace tapeloop::engine
