// The fast batched decode step (Mamba2Step) against its plain reference (Mamba2StepRef): random
// weights, random non-zero states, ragged shapes (state sizes below, at and above the 16-wide
// vector loops, groups, conv kernels 1..4, biases on and off), batches of 1..19 sessions each
// stepped many times. Outputs and both states agree to float rounding (the conv state holds
// in_proj rows, which LinearForwardDecode and OpenBLAS round differently).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/layers/mamba2.h"
#include "tests/engine/test_util.h"

namespace tapeloop::engine {
namespace {

struct Shape {
  int64_t dim;
  int heads, head_dim, state, groups, kernel;
  bool bias;
  int norm_groups;  // the gated norm's groups (norm_group = inner / norm_groups)
};

TEST(Mamba2Step, FastPathEqualsReference) {
  const Shape shapes[] = {
      {12, 4, 5, 6, 1, 4, false, 1},     {32, 8, 16, 16, 2, 4, true, 2},
      {20, 3, 7, 20, 1, 2, false, 1},    {16, 2, 8, 33, 1, 1, true, 2},
      {128, 16, 16, 16, 1, 4, false, 1},  // the bundled mamba2-pointer's shape
      {24, 4, 32, 64, 4, 3, false, 4},
  };
  int case_index = 0;
  for (const Shape& s : shapes) {
    Mamba2Dims d;
    d.dim = s.dim;
    d.heads = s.heads;
    d.head_dim = s.head_dim;
    d.state = s.state;
    d.groups = s.groups;
    d.conv_kernel = s.kernel;
    d.conv_bias = s.bias;
    d.proj_bias = s.bias;
    d.norm_group = d.inner() / s.norm_groups;
    d.dt_min = 0.001f;
    d.dt_max = s.bias ? 0.3f : INFINITY;
    std::vector<ParamSpec> specs = Mamba2ParamSpecs(d);
    std::mt19937 rng(17 + case_index++);
    std::normal_distribution<float> nd(0.0f, 0.5f);
    std::vector<float> params;
    std::vector<int64_t> offsets;
    for (const ParamSpec& p : specs) {
      offsets.push_back(static_cast<int64_t>(params.size()));
      for (int64_t i = 0; i < NumElements(p.shape); ++i) params.push_back(nd(rng));
    }
    // Large raw dt for some heads (softplus' linear branch) and strongly decaying heads.
    auto lookup = [&](const std::string& suffix) -> float* {
      for (size_t i = 0; i < specs.size(); ++i) {
        if (specs[i].suffix == suffix) return params.data() + offsets[i];
      }
      return nullptr;
    };
    float* dt_bias = lookup("dt_bias");
    dt_bias[0] = 25.0f;
    if (d.heads > 2) dt_bias[1] = -6.0f;
    lookup("A_log")[d.heads - 1] = 3.0f;
    const Mamba2Weights w = BindMamba2Weights(d, lookup);

    for (int B : {1, 5, 19}) {
      std::vector<float> conv(B * d.conv_state_size()), ssm(B * d.ssm_state_size());
      for (auto& v : conv) v = 2.0f * nd(rng);
      for (auto& v : ssm) v = nd(rng);
      std::vector<float> conv_ref = conv, ssm_ref = ssm;
      std::vector<Mamba2State> fast(B), ref(B);
      for (int b = 0; b < B; ++b) {
        fast[b] = {conv.data() + b * d.conv_state_size(), ssm.data() + b * d.ssm_state_size()};
        ref[b] = {conv_ref.data() + b * d.conv_state_size(),
                  ssm_ref.data() + b * d.ssm_state_size()};
      }
      std::vector<float> x(B * d.dim), out(B * d.dim), out_ref(B * d.dim);
      for (int step = 0; step < 12; ++step) {
        for (auto& v : x) v = 4.0f * nd(rng);  // wide inputs: SiLU and exp far from 0
        Mamba2Step(d, w, x.data(), B, out.data(), fast.data());
        Mamba2StepRef(d, w, x.data(), B, out_ref.data(), ref.data());
        ASSERT_LE(testing::MaxRelErr(out, out_ref), 1e-5)
            << "shape " << case_index << " B " << B << " step " << step;
      }
      EXPECT_LE(testing::MaxRelErr(ssm, ssm_ref), 1e-5) << "shape " << case_index << " B " << B;
      EXPECT_LE(testing::MaxRelErr(conv, conv_ref), 1e-6);  // in_proj rows, copied
      double norm = 0;
      for (float v : out) norm += std::abs(v);
      EXPECT_GT(norm, 1e-3);  // not vacuous
    }
  }
}

}  // namespace
}  // namespace tapeloop::engine
