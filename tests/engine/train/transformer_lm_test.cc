#include "engine/train/transformer_lm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/models/config.h"
#include "engine/models/model.h"
#include "engine/train/grad_check.h"
#include "engine/train/rng.h"

namespace tapeloop::engine::train {
namespace {

TransformerLmConfig Tiny(int64_t window) {
  TransformerLmConfig c;
  c.vocab = 11;
  c.d_model = 8;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 4;
  c.intermediate = 12;
  c.sliding_window = window;
  return c;
}

std::vector<float> Params(const TransformerLm& m, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> p = m.table().Initialize(rng);
  for (float& x : p) x += 0.1f * rng.Normal();
  return p;
}

void CheckGradients(int64_t window) {
  TransformerLm model(Tiny(window));
  std::vector<float> p = Params(model, 21);
  Rng rng(22);
  std::vector<int32_t> ids;
  std::vector<float> mask;
  for (int t = 0; t <= 10; ++t) ids.push_back(static_cast<int32_t>(rng.UniformInt(0, 10)));
  for (int t = 0; t < 10; ++t) mask.push_back(rng.Uniform() < 0.7f ? 1.f : 0.f);
  Mamba2Workspace ws;
  std::vector<float> grads(p.size(), 0.f);
  model.RowForwardBackward(p.data(), ids, mask, 1.0, grads.data(), &ws);
  const ParamTable& t = model.table();
  for (int i = 0; i < t.size(); ++i) {
    std::span<float> x(p.data() + t.offset(i), t.numel(i));
    std::span<const float> g(grads.data() + t.offset(i), t.numel(i));
    auto f = [&] {
      Mamba2Workspace w2;
      return model.RowForwardBackward(p.data(), ids, mask, 1.0, nullptr, &w2).loss_sum;
    };
    auto res = CheckGradient(x, g, f, GradCheckOptions{1e-2, 40, 1e-2});
    EXPECT_LT(res.max_rel_error, 2e-2) << t.spec(i).name << ": " << res.ToString();
    float gmax = 0;
    for (float v : g) gmax = std::max(gmax, std::fabs(v));
    EXPECT_GT(gmax, 2e-2) << t.spec(i).name << " has only tiny gradients: the check is vacuous";
  }
}

TEST(TransformerLm, LlamaGradientMatchesFiniteDifferences) { CheckGradients(0); }
TEST(TransformerLm, MistralSlidingWindowGradientMatchesFiniteDifferences) { CheckGradients(3); }

TEST(TransformerLm, MatchesTheEngineForward) {
  for (int64_t window : {0, 3}) {
    TransformerLm model(Tiny(window));
    std::vector<float> p = Params(model, 23);
    auto cfg = ParseModelConfig(model.config().ToHfConfigJson());
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    std::map<std::string, Tensor> tensors;
    for (int i = 0; i < model.table().size(); ++i) {
      Tensor x;
      x.shape = model.table().spec(i).shape;
      x.data.assign(p.begin() + model.table().offset(i),
                    p.begin() + model.table().offset(i) + model.table().numel(i));
      tensors[model.table().spec(i).name] = std::move(x);
    }
    auto engine = Model::FromTensors(*cfg, std::move(tensors));
    ASSERT_TRUE(engine.ok()) << engine.status();
    Rng rng(24);
    std::vector<int32_t> ids;
    for (int t = 0; t <= 12; ++t) ids.push_back(static_cast<int32_t>(rng.UniformInt(0, 10)));
    std::vector<float> mask(12, 1.f);
    SessionState state = (*engine)->NewState();
    std::vector<float> logits;
    std::vector<int32_t> in(ids.begin(), ids.end() - 1);
    ASSERT_TRUE((*engine)->Forward(in, &state, true, &logits).ok());
    double loss = 0;
    for (int t = 0; t < 12; ++t) {
      double mx = -1e30, se = 0;
      for (int v = 0; v < 11; ++v) mx = std::max(mx, double{logits[t * 11 + v]});
      for (int v = 0; v < 11; ++v) se += std::exp(logits[t * 11 + v] - mx);
      loss += mx + std::log(se) - logits[t * 11 + ids[t + 1]];
    }
    Mamba2Workspace ws;
    RowResult r = model.RowForwardBackward(p.data(), ids, mask, 1.0, nullptr, &ws);
    EXPECT_NEAR(r.loss_sum, loss, 1e-4 * loss) << "window " << window;
  }
}

}  // namespace
}  // namespace tapeloop::engine::train
