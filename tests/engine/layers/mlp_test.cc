// The decode step's MLP (MlpStep) against its plain reference (MlpForward): SwiGLU and relu^2,
// with and without biases, weights in one flat buffer as the model lays them out (gate and up
// fused into one product) or each in its own buffer, random inputs, batches of 1..67 rows.
#include "engine/layers/mlp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "tests/engine/test_util.h"

namespace tapeloop::engine {
namespace {

TEST(MlpStep, EqualsTheReference) {
  int index = 0;
  for (MlpKind kind : {MlpKind::kSwiGlu, MlpKind::kRelu2}) {
    for (bool bias : {false, true}) {
      for (bool flat : {false, true}) {
        MlpDims d;
        d.dim = 40;
        d.intermediate = 88;
        d.kind = kind;
        d.bias = bias;
        const std::vector<ParamSpec> specs = MlpParamSpecs(d);
        std::mt19937 rng(60 + index++);
        std::normal_distribution<float> nd(0.0f, 0.5f);
        std::vector<float> all;
        std::vector<std::vector<float>> separate;
        std::vector<int64_t> offsets;
        for (const ParamSpec& p : specs) {
          offsets.push_back(static_cast<int64_t>(all.size()));
          separate.emplace_back(NumElements(p.shape));
          for (auto& v : separate.back()) {
            v = nd(rng);
            all.push_back(v);
          }
        }
        auto lookup = [&](const std::string& suffix) -> float* {
          for (size_t i = 0; i < specs.size(); ++i) {
            if (specs[i].suffix == suffix)
              return flat ? all.data() + offsets[i] : separate[i].data();
          }
          return nullptr;
        };
        const MlpWeights w = BindMlpWeights(d, lookup);
        for (int64_t B : {1, 2, 5, 64, 67}) {
          std::vector<float> x(B * d.dim), got(B * d.dim, NAN), want(B * d.dim, NAN);
          for (auto& v : x) v = 2.0f * nd(rng);
          MlpStep(d, w, x.data(), B, got.data());
          MlpForward(d, w, x.data(), B, want.data());
          EXPECT_LE(testing::MaxRelErr(got, want), 1e-5)
              << "kind " << static_cast<int>(kind) << " bias " << bias << " flat " << flat << " B "
              << B;
        }
      }
    }
  }
}

}  // namespace
}  // namespace tapeloop::engine
