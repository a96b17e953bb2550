#include "engine/train/transformer_lm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/models/config.h"
#include "engine/models/model.h"
#include "engine/train/grad_check.h"
#include "engine/train/rng.h"
#include "row_grad_check.h"

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

TEST(TransformerLmConfig, HfConfigJsonParsesWithoutUnknownKeysForLlamaAndMistral) {
  for (int64_t window : {0, 3}) {
    ::testing::internal::CaptureStderr();
    auto cfg = ParseModelConfig(Tiny(window).ToHfConfigJson());
    const std::string warnings = ::testing::internal::GetCapturedStderr();
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    EXPECT_EQ(cfg->family, window > 0 ? Family::kMistral : Family::kLlama);
    EXPECT_EQ(warnings, "") << "window " << window;
  }
}

std::vector<float> Params(const TransformerLm& m, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> p = m.table().Initialize(rng);
  for (float& x : p) x += 0.1f * rng.Normal();
  return p;
}

// The engine's model over the trainer's parameters p (its HF config, tensors by HF name).
absl::StatusOr<std::unique_ptr<Model>> EngineModel(const TransformerLm& model,
                                                   const std::vector<float>& p) {
  auto cfg = ParseModelConfig(model.config().ToHfConfigJson());
  if (!cfg.ok()) return cfg.status();
  std::map<std::string, Tensor> tensors;
  const ParamTable& t = model.table();
  for (int i = 0; i < t.size(); ++i) {
    Tensor x;
    x.shape = t.spec(i).shape;
    x.data.assign(p.begin() + t.offset(i), p.begin() + t.offset(i) + t.numel(i));
    tensors[t.spec(i).name] = std::move(x);
  }
  return Model::FromTensors(*cfg, std::move(tensors));
}

void CheckGradients(int64_t window) {
  TransformerLm model(Tiny(window));
  std::vector<float> p = Params(model, 21);
  Rng rng(22);
  std::vector<int32_t> ids;
  std::vector<float> mask;
  for (int t = 0; t <= 10; ++t) ids.push_back(static_cast<int32_t>(rng.UniformInt(0, 10)));
  for (int t = 0; t < 10; ++t) mask.push_back(rng.Uniform() < 0.7f ? 1.f : 0.f);
  ExpectRowGradientMatchesFiniteDifferences(model, p, ids, mask, nullptr,
                                            GradCheckOptions{1e-2, 40, 1e-2}, 2e-2, 2e-2);
}

TEST(TransformerLm, LlamaGradientMatchesFiniteDifferences) { CheckGradients(0); }
TEST(TransformerLm, MistralSlidingWindowGradientMatchesFiniteDifferences) { CheckGradients(3); }

TEST(TransformerLm, MatchesTheEngineForward) {
  for (int64_t window : {0, 3}) {
    TransformerLm model(Tiny(window));
    std::vector<float> p = Params(model, 23);
    auto engine = EngineModel(model, p);
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

// Loss of `ids` [T+1] from logits f32 [T, V] (every position a target).
double LossFromLogits(const std::vector<float>& logits, const std::vector<int32_t>& ids, int V,
                      std::vector<int32_t>* argmax) {
  const int T = static_cast<int>(ids.size()) - 1;
  double loss = 0;
  argmax->clear();
  for (int t = 0; t < T; ++t) {
    const float* z = logits.data() + t * V;
    double mx = -1e30, se = 0;
    for (int v = 0; v < V; ++v) mx = std::max(mx, double{z[v]});
    for (int v = 0; v < V; ++v) se += std::exp(z[v] - mx);
    loss += mx + std::log(se) - z[ids[t + 1]];
    argmax->push_back(static_cast<int32_t>(std::max_element(z, z + V) - z));
  }
  return loss;
}

// The agent loop does not run a trajectory as one row: it prefills the prompt, then feeds one
// token at a time (the model's own tokens and the tool's observations) through the KV cache,
// batched with other sessions at other positions. Positions (RoPE from 0 at [BOS]), the cache
// and the sliding window must then give what the trainer computed for the whole row, position
// by position; a row long enough that the window evicts keys.
TEST(TransformerLm, EngineDecodeTokenByTokenMatchesTheTrainerRow) {
  for (int64_t window : {0, 3}) {
    TransformerLm model(Tiny(window));
    std::vector<float> p = Params(model, 25);
    auto engine = EngineModel(model, p);
    ASSERT_TRUE(engine.ok()) << engine.status();
    const int V = 11, T = 20, prompt = 5;
    Rng rng(26);
    std::vector<int32_t> ids, other;
    for (int t = 0; t <= T; ++t) ids.push_back(static_cast<int32_t>(rng.UniformInt(0, 10)));
    for (int t = 0; t <= T; ++t) other.push_back(static_cast<int32_t>(rng.UniformInt(0, 10)));
    std::vector<float> mask(T, 1.f);
    Mamba2Workspace ws;
    std::vector<int32_t> row_argmax;
    RowResult row = model.RowForwardBackward(p.data(), ids, mask, 1.0, nullptr, &ws, &row_argmax);

    // (a) Forward: the prompt in one call, then token by token.
    SessionState state = (*engine)->NewState();
    std::vector<float> logits, all;
    ASSERT_TRUE((*engine)
                    ->Forward(std::span<const int32_t>(ids.data(), prompt), &state, true, &logits)
                    .ok());
    all = logits;
    for (int t = prompt; t < T; ++t) {
      ASSERT_TRUE((*engine)
                      ->Forward(std::span<const int32_t>(ids.data() + t, 1), &state, false, &logits)
                      .ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    std::vector<int32_t> argmax;
    EXPECT_NEAR(LossFromLogits(all, ids, V, &argmax), row.loss_sum, 1e-4 * row.loss_sum)
        << "window " << window;
    EXPECT_EQ(argmax, row_argmax) << "window " << window;

    // (b) StepBatch beside another session that is 3 tokens ahead (positions differ per row).
    SessionState a = (*engine)->NewState(), b = (*engine)->NewState();
    ASSERT_TRUE(
        (*engine)->Forward(std::span<const int32_t>(ids.data(), prompt), &a, true, &logits).ok());
    all = logits;
    ASSERT_TRUE(
        (*engine)
            ->Forward(std::span<const int32_t>(other.data(), prompt + 3), &b, false, &logits)
            .ok());
    for (int t = prompt; t < T; ++t) {
      std::vector<int32_t> step = {ids[t], other[std::min(t + 3, T)]};
      std::vector<SessionState*> states = {&a, &b};
      ASSERT_TRUE((*engine)->StepBatch(step, states, &logits).ok());
      all.insert(all.end(), logits.begin(), logits.begin() + V);
    }
    EXPECT_NEAR(LossFromLogits(all, ids, V, &argmax), row.loss_sum, 1e-4 * row.loss_sum)
        << "window " << window;
    EXPECT_EQ(argmax, row_argmax) << "window " << window;
  }
}

}  // namespace
}  // namespace tapeloop::engine::train
