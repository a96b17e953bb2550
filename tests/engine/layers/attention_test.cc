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
  for (int64_t window : {0, 1, 4, 9, 70}) {
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
      const int T = 173;
      std::vector<float> x(T * d.dim);
      for (auto& v : x) v = nd(rng);
      auto want = Naive(d, w, x, T);
      // Chunks crossing the window: short ones, and one of 150 tokens after 12 cached (three
      // query blocks of AttentionForward, each seeing its own range of keys).
      KvCache cache;
      std::vector<float> got(T * d.dim);
      for (int t0 = 0; t0 < T;) {
        const int n = std::min(t0 == 12 ? 150 : 4 + t0 % 5, T - t0);
        AttentionForward(d, w, x.data() + t0 * d.dim, n, got.data() + t0 * d.dim, &cache);
        t0 += n;
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

// The fast batched step (AttentionStep) against its plain reference (AttentionStepRef): random
// weights in one flat buffer as the model lays them out (q, k, v fused into one product) or each
// in its own buffer (three products), random prompts so the sessions sit at different
// positions, windows that wrap, head dims on and off the vectorized kernel's sizes, batches of
// 1..67 sessions stepped several times. Outputs and caches agree to float rounding.
TEST(AttentionStep, FastPathEqualsReference) {
  struct Case {
    int heads, kv_heads, head_dim;
    int64_t window;
    bool bias, rope, flat;
  };
  const Case cases[] = {
      {4, 2, 6, 0, true, true, false},  {4, 2, 16, 5, false, true, true},
      {4, 2, 32, 0, false, true, true}, {8, 4, 64, 9, true, false, true},
      {2, 1, 32, 3, true, true, false}, {6, 3, 16, 0, false, false, false},
  };
  int index = 0;
  for (const Case& c : cases) {
    AttentionDims d;
    d.dim = 24;
    d.num_heads = c.heads;
    d.num_kv_heads = c.kv_heads;
    d.head_dim = c.head_dim;
    d.use_rope = c.rope;
    d.rope_theta = 500.0;
    d.window = c.window;
    d.bias = c.bias;
    const std::vector<ParamSpec> specs = AttentionParamSpecs(d);
    std::mt19937 rng(40 + index++);
    std::normal_distribution<float> nd(0.0f, 0.4f);
    std::vector<float> flat;
    std::vector<std::vector<float>> separate;
    std::vector<int64_t> offsets;
    for (const ParamSpec& p : specs) {
      offsets.push_back(static_cast<int64_t>(flat.size()));
      separate.emplace_back(NumElements(p.shape));
      for (auto& v : separate.back()) {
        v = nd(rng);
        flat.push_back(v);
      }
    }
    auto lookup = [&](const std::string& suffix) -> float* {
      for (size_t i = 0; i < specs.size(); ++i) {
        if (specs[i].suffix == suffix)
          return c.flat ? flat.data() + offsets[i] : separate[i].data();
      }
      return nullptr;
    };
    const AttentionWeights w = BindAttentionWeights(d, lookup);
    for (int B : {1, 4, 67}) {
      std::vector<KvCache> fast(B), ref(B);
      std::vector<KvCache*> fp(B), rp(B);
      for (int b = 0; b < B; ++b) {
        // A prompt of 1..40 tokens through the sequence path, then the same cache for both.
        const int T = 1 + static_cast<int>(rng() % 40);
        std::vector<float> x(T * d.dim), y(T * d.dim);
        for (auto& v : x) v = nd(rng);
        AttentionForward(d, w, x.data(), T, y.data(), &fast[b]);
        ref[b] = fast[b];
        fp[b] = &fast[b];
        rp[b] = &ref[b];
      }
      for (int step = 0; step < 4; ++step) {
        std::vector<float> x(B * d.dim), got(B * d.dim, NAN), want(B * d.dim, NAN);
        for (auto& v : x) v = nd(rng);
        AttentionStep(d, w, x.data(), B, got.data(), fp.data());
        AttentionStepRef(d, w, x.data(), B, want.data(), rp.data());
        ASSERT_LE(testing::MaxRelErr(got, want), 1e-5) << "case " << index << " B " << B;
        for (int b = 0; b < B; ++b) {
          ASSERT_EQ(fast[b].tokens, ref[b].tokens);
          const int64_t n = fast[b].live_rows(d.window) * d.kv_dim();
          std::vector<float> kf(fast[b].k.begin(), fast[b].k.begin() + n),
              kr(ref[b].k.begin(), ref[b].k.begin() + n);
          std::vector<float> vf(fast[b].v.begin(), fast[b].v.begin() + n),
              vr(ref[b].v.begin(), ref[b].v.begin() + n);
          ASSERT_LE(testing::MaxRelErr(kf, kr), 1e-5);
          ASSERT_LE(testing::MaxRelErr(vf, vr), 1e-5);
        }
      }
    }
  }
}

}  // namespace
}  // namespace tapeloop::engine
