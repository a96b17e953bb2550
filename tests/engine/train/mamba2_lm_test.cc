#include "engine/train/mamba2_lm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/train/grad_check.h"
#include "engine/train/rng.h"
#include "row_grad_check.h"

namespace tapeloop::engine::train {
namespace {

Mamba2LmConfig Tiny(int chunk) {
  Mamba2LmConfig c;
  c.vocab = 11;
  c.d_model = 8;
  c.layers = 2;
  c.state = 4;
  c.head_dim = 4;
  c.expand = 2;
  c.conv_kernel = 4;
  c.chunk = chunk;
  return c;
}

struct Row {
  std::vector<int32_t> ids;
  std::vector<float> mask;
};

Row RandomRow(Rng& rng, int T, int vocab) {
  Row r;
  for (int t = 0; t <= T; ++t) r.ids.push_back(static_cast<int32_t>(rng.UniformInt(0, vocab - 1)));
  for (int t = 0; t < T; ++t) r.mask.push_back(rng.Uniform() < 0.7f ? 1.f : 0.f);
  return r;
}

// Parameters a bit away from init so every path (decays, gates) has non-trivial gradients.
std::vector<float> Params(const Mamba2Lm& m, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> p = m.table().Initialize(rng);
  for (float& x : p) x += 0.1f * rng.Normal();
  // Larger dt and slower decays than at init, so the SSM parameters get gradients well above
  // finite-difference noise.
  for (int i = 0; i < m.table().size(); ++i) {
    const std::string& name = m.table().spec(i).name;
    const bool dt_bias = name.find("dt_bias") != std::string::npos;
    const bool a_log = name.find("A_log") != std::string::npos;
    if (!dt_bias && !a_log) continue;
    for (int64_t j = 0; j < m.table().numel(i); ++j)
      p[m.table().offset(i) + j] = dt_bias ? rng.Normal() : rng.Uniform(-1.f, 0.5f);
  }
  return p;
}

void CheckModelGradient(bool with_init_state, int chunk) {
  Mamba2Lm model(Tiny(chunk));
  std::vector<float> p = Params(model, 11);
  Rng rng(12);
  Row row = RandomRow(rng, 10, 11);
  std::vector<float> init(model.config().state_size());
  rng.FillNormal(init, 0.5f);
  const float* init_ptr = with_init_state ? init.data() : nullptr;
  ExpectRowGradientMatchesFiniteDifferences(model, p, row.ids, row.mask, init_ptr,
                                            GradCheckOptions{3e-3, 40, 1e-2}, 2e-2, 2e-2);
}

TEST(Mamba2Lm, GradientMatchesFiniteDifferencesMultiChunk) { CheckModelGradient(false, 3); }
TEST(Mamba2Lm, GradientMatchesFiniteDifferencesWithInitialState) { CheckModelGradient(true, 4); }
TEST(Mamba2Lm, GradientMatchesFiniteDifferencesOneChunk) { CheckModelGradient(false, 64); }

TEST(Mamba2Lm, ChunkSizeDoesNotChangeResults) {
  Rng rng(3);
  Row row = RandomRow(rng, 37, 11);
  std::vector<float> ref_state;
  double ref_loss = 0;
  std::vector<float> ref_grads;
  for (int chunk : {64, 1, 5, 16}) {
    Mamba2Lm model(Tiny(chunk));
    std::vector<float> p = Params(model, 4);
    std::vector<float> state(model.config().state_size()), grads(p.size(), 0.f);
    Mamba2Workspace ws;
    auto r = model.RowForwardBackward(p.data(), row.ids, row.mask, 1.0, nullptr, state.data(),
                                      grads.data(), &ws);
    if (ref_state.empty()) {
      ref_state = state;
      ref_loss = r.loss_sum;
      ref_grads = grads;
      continue;
    }
    EXPECT_NEAR(r.loss_sum, ref_loss, 1e-4 * std::fabs(ref_loss)) << chunk;
    for (size_t i = 0; i < state.size(); ++i) ASSERT_NEAR(state[i], ref_state[i], 1e-4) << chunk;
    for (size_t i = 0; i < grads.size(); ++i)
      ASSERT_NEAR(grads[i], ref_grads[i], 1e-3 * (1 + std::fabs(ref_grads[i])))
          << chunk << " " << i;
  }
}

TEST(Mamba2Lm, StepMatchesRowForward) {
  Mamba2Lm model(Tiny(4));
  std::vector<float> p = Params(model, 5);
  Rng rng(6);
  Row row = RandomRow(rng, 13, 11);
  std::vector<float> final_state(model.config().state_size());
  std::vector<int32_t> argmax;
  Mamba2Workspace ws;
  model.RowForwardBackward(p.data(), row.ids, row.mask, 1.0, nullptr, final_state.data(), nullptr,
                           &ws, &argmax);
  std::vector<float> state(model.config().state_size(), 0.f), logits(11);
  for (size_t t = 0; t + 1 < row.ids.size(); ++t) {
    model.Step(p.data(), std::span<const int32_t>(&row.ids[t], 1), state.data(), logits.data());
    EXPECT_EQ(std::max_element(logits.begin(), logits.end()) - logits.begin(), argmax[t]) << t;
  }
  for (size_t i = 0; i < state.size(); ++i) EXPECT_NEAR(state[i], final_state[i], 1e-4) << i;
}

TEST(Mamba2Lm, InitialStateContinuesARow) {
  // Running a+b in one row equals running b from a's final state.
  Mamba2Lm model(Tiny(4));
  std::vector<float> p = Params(model, 7);
  Rng rng(8);
  Row whole = RandomRow(rng, 20, 11);
  for (int t = 0; t < 9; ++t) whole.mask[t] = 0.f;
  Row a{std::vector<int32_t>(whole.ids.begin(), whole.ids.begin() + 10), {}};
  a.mask.assign(9, 0.f);
  Row b{std::vector<int32_t>(whole.ids.begin() + 9, whole.ids.end()),
        std::vector<float>(whole.mask.begin() + 9, whole.mask.end())};
  Mamba2Workspace ws;
  std::vector<float> mid(model.config().state_size()), end1(mid.size()), end2(mid.size());
  auto r_whole = model.RowForwardBackward(p.data(), whole.ids, whole.mask, 1.0, nullptr,
                                          end1.data(), nullptr, &ws);
  model.RowForwardBackward(p.data(), a.ids, a.mask, 1.0, nullptr, mid.data(), nullptr, &ws);
  auto r_b =
      model.RowForwardBackward(p.data(), b.ids, b.mask, 1.0, mid.data(), end2.data(), nullptr, &ws);
  EXPECT_NEAR(r_b.loss_sum, r_whole.loss_sum, 1e-4 * r_whole.loss_sum);
  for (size_t i = 0; i < end1.size(); ++i) EXPECT_NEAR(end1[i], end2[i], 1e-4);
}

TEST(Mamba2Lm, HfNamesAndParameterCount) {
  Mamba2LmConfig c;  // the prototype's D=128, 4 layers
  Mamba2Lm model(c);
  EXPECT_EQ(model.table().spec(0).name, "backbone.embeddings.weight");
  EXPECT_GE(model.table().Find("backbone.layers.3.mixer.A_log"), 0);
  EXPECT_GE(model.table().Find("lm_head.weight"), 0);
  EXPECT_LT(model.table().total(), 1'000'000);
  EXPECT_GT(model.table().total(), 400'000);
}

}  // namespace
}  // namespace tapeloop::engine::train

namespace tapeloop::engine::train {
namespace {

// The check above is not vacuous: a 5% error in one tensor's gradient is caught.
TEST(Mamba2Lm, GradientCheckCatchesACorruptedTensor) {
  Mamba2Lm model(Tiny(3));
  std::vector<float> p = Params(model, 11);
  Rng rng(12);
  Row row = RandomRow(rng, 10, 11);
  Mamba2Workspace ws;
  std::vector<float> grads(p.size(), 0.f);
  model.RowForwardBackward(p.data(), row.ids, row.mask, 1.0, nullptr, nullptr, grads.data(), &ws);
  const int i = model.table().Find("backbone.layers.0.mixer.A_log");
  std::span<float> x(p.data() + model.table().offset(i), model.table().numel(i));
  std::vector<float> g(grads.begin() + model.table().offset(i),
                       grads.begin() + model.table().offset(i) + model.table().numel(i));
  auto f = [&] {
    Mamba2Workspace w2;
    return model
        .RowForwardBackward(p.data(), row.ids, row.mask, 1.0, nullptr, nullptr, nullptr, &w2)
        .loss_sum;
  };
  auto good = CheckGradient(x, g, f, GradCheckOptions{3e-3, 40, 1e-2});
  EXPECT_LT(good.max_rel_error, 2e-2) << good.ToString();
  for (float& v : g) v *= 1.05f;
  auto bad = CheckGradient(x, g, f, GradCheckOptions{3e-3, 40, 1e-2});
  EXPECT_GT(bad.max_rel_error, 0.03) << bad.ToString();
}

}  // namespace
}  // namespace tapeloop::engine::train
