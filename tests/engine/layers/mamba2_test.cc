#include "engine/layers/mamba2.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tests/engine/test_util.h"

namespace tapeloop::engine {
namespace {

// A direct, double-precision transcription of the recurrence (the layer's contract), used as
// the oracle for both the chunked SSD form and the step form.
std::vector<float> NaiveMamba2(const Mamba2Dims& d, const Mamba2Weights& w, const std::vector<float>& x, int T,
                               std::vector<double>& conv, std::vector<double>& ssm) {
  const int64_t inner = d.inner(), C = d.conv_dim(), PD = d.proj_dim(), K = d.conv_kernel;
  const int P = d.head_dim, N = d.state, H = d.heads;
  std::vector<float> out(T * d.dim);
  for (int t = 0; t < T; ++t) {
    std::vector<double> proj(PD);
    for (int64_t o = 0; o < PD; ++o) {
      double acc = w.in_proj_b ? w.in_proj_b[o] : 0.0;
      for (int64_t i = 0; i < d.dim; ++i) acc += double(w.in_proj_w[o * d.dim + i]) * x[t * d.dim + i];
      proj[o] = acc;
    }
    std::vector<double> xbc(C);
    for (int64_t c = 0; c < C; ++c) {
      double acc = w.conv_b ? w.conv_b[c] : 0.0;
      for (int64_t k = 0; k < K - 1; ++k) acc += double(w.conv_w[c * K + k]) * conv[k * C + c];
      acc += double(w.conv_w[c * K + K - 1]) * proj[inner + c];
      xbc[c] = acc / (1.0 + std::exp(-acc));
    }
    for (int64_t k = 0; k + 1 < K - 1; ++k) {
      for (int64_t c = 0; c < C; ++c) conv[k * C + c] = conv[(k + 1) * C + c];
    }
    for (int64_t c = 0; c < C && K > 1; ++c) conv[(K - 2) * C + c] = proj[inner + c];
    std::vector<double> y(inner);
    for (int h = 0; h < H; ++h) {
      const int g = h / (H / d.groups);
      double dt = proj[inner + C + h] + w.dt_bias[h];
      dt = dt > 20 ? dt : std::log1p(std::exp(dt));
      dt = std::min(std::max(dt, double(d.dt_min)), double(d.dt_max));
      const double dA = std::exp(dt * -std::exp(double(w.A_log[h])));
      for (int p = 0; p < P; ++p) {
        double acc = 0;
        for (int n = 0; n < N; ++n) {
          double& s = ssm[(h * P + p) * N + n];
          s = s * dA + dt * xbc[h * P + p] * xbc[inner + g * N + n];
          acc += s * xbc[inner + (d.groups + g) * N + n];
        }
        y[h * P + p] = acc + w.D[h] * xbc[h * P + p];
      }
    }
    // Gated norm.
    for (int64_t i = 0; i < inner; ++i) {
      const double z = proj[i];
      y[i] *= z / (1.0 + std::exp(-z));
    }
    for (int64_t g0 = 0; g0 < inner; g0 += d.norm_group) {
      double ss = 0;
      for (int64_t i = g0; i < g0 + d.norm_group; ++i) ss += y[i] * y[i];
      const double inv = 1.0 / std::sqrt(ss / d.norm_group + d.eps);
      for (int64_t i = g0; i < g0 + d.norm_group; ++i) y[i] *= inv * w.norm_w[i];
    }
    for (int64_t o = 0; o < d.dim; ++o) {
      double acc = w.out_proj_b ? w.out_proj_b[o] : 0.0;
      for (int64_t i = 0; i < inner; ++i) acc += double(w.out_proj_w[o * inner + i]) * y[i];
      out[t * d.dim + o] = static_cast<float>(acc);
    }
  }
  return out;
}

struct Fixture {
  Mamba2Dims d;
  std::vector<float> params;
  std::vector<ParamSpec> specs;
  std::vector<int64_t> offsets;
  Mamba2Weights w;
};

Fixture Make(int groups, int64_t norm_group, bool bias, int chunk) {
  Fixture f;
  f.d.dim = 12;
  f.d.heads = 4;
  f.d.head_dim = 5;
  f.d.state = 6;
  f.d.groups = groups;
  f.d.conv_kernel = 4;
  f.d.chunk = chunk;
  f.d.conv_bias = true;
  f.d.proj_bias = bias;
  f.d.norm_group = norm_group;
  f.d.dt_min = 0.01f;
  f.d.dt_max = 0.5f;
  f.specs = Mamba2ParamSpecs(f.d);
  std::mt19937 rng(groups * 10 + chunk);
  std::normal_distribution<float> nd(0.0f, 0.4f);
  int64_t total = 0;
  for (auto& s : f.specs) {
    f.offsets.push_back(total);
    total += NumElements(s.shape);
  }
  f.params.resize(total);
  for (auto& v : f.params) v = nd(rng);
  auto lookup = [&f](const std::string& suffix) -> float* {
    for (size_t i = 0; i < f.specs.size(); ++i) {
      if (f.specs[i].suffix == suffix) return f.params.data() + f.offsets[i];
    }
    return nullptr;
  };
  f.w = BindMamba2Weights(f.d, lookup);
  return f;
}

TEST(Mamba2Layer, ChunkedAndStepMatchTheRecurrence) {
  for (int groups : {1, 2, 4}) {
    for (int chunk : {1, 3, 8, 64}) {
      for (bool bias : {false, true}) {
        Fixture f = Make(groups, groups == 2 ? 10 : 20, bias, chunk);
        const int T = 37;
        std::mt19937 rng(5);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> x(T * f.d.dim);
        for (auto& v : x) v = nd(rng);
        // Start from a non-zero state.
        std::vector<float> conv(f.d.conv_state_size()), ssm(f.d.ssm_state_size());
        for (auto& v : conv) v = nd(rng);
        for (auto& v : ssm) v = 0.3f * nd(rng);
        std::vector<double> conv_ref(conv.begin(), conv.end()), ssm_ref(ssm.begin(), ssm.end());
        std::vector<float> want = NaiveMamba2(f.d, f.w, x, T, conv_ref, ssm_ref);

        std::vector<float> conv_a = conv, ssm_a = ssm, out_a(T * f.d.dim);
        Mamba2Forward(f.d, f.w, x.data(), T, out_a.data(), {conv_a.data(), ssm_a.data()});
        EXPECT_LE(testing::MaxRelErr(out_a, want), 2e-5) << groups << " " << chunk;
        std::vector<float> ssm_want(ssm_ref.begin(), ssm_ref.end()), conv_want(conv_ref.begin(), conv_ref.end());
        EXPECT_LE(testing::MaxRelErr(ssm_a, ssm_want), 2e-5);
        EXPECT_LE(testing::MaxRelErr(conv_a, conv_want), 1e-6);

        std::vector<float> conv_b = conv, ssm_b = ssm, out_b(T * f.d.dim);
        Mamba2State st{conv_b.data(), ssm_b.data()};
        for (int t = 0; t < T; ++t) Mamba2Step(f.d, f.w, x.data() + t * f.d.dim, 1, out_b.data() + t * f.d.dim, &st);
        EXPECT_LE(testing::MaxRelErr(out_b, want), 2e-5);
        EXPECT_LE(testing::MaxRelErr(ssm_b, ssm_want), 2e-5);
      }
    }
  }
}

TEST(Mamba2Layer, SavesWhatBackwardNeeds) {
  Fixture f = Make(2, 20, false, 8);
  const int T = 9;
  std::vector<float> x(T * f.d.dim, 0.5f), out(T * f.d.dim);
  std::vector<float> conv(f.d.conv_state_size()), ssm(f.d.ssm_state_size());
  Mamba2Saved saved;
  Mamba2Forward(f.d, f.w, x.data(), T, out.data(), {conv.data(), ssm.data()}, &saved);
  EXPECT_EQ(saved.proj.size(), size_t(T * f.d.proj_dim()));
  EXPECT_EQ(saved.xbc.size(), size_t(T * f.d.conv_dim()));
  EXPECT_EQ(saved.dt.size(), size_t(T * f.d.heads));
  EXPECT_EQ(saved.y.size(), size_t(T * f.d.inner()));
  for (float dt : saved.dt) {
    EXPECT_GE(dt, f.d.dt_min);
    EXPECT_LE(dt, f.d.dt_max);
  }
}

}  // namespace
}  // namespace tapeloop::engine
