#include "engine/train/nemotron_h_lm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/models/config.h"
#include "engine/models/model.h"
#include "engine/train/grad_check.h"
#include "engine/train/rng.h"
#include "engine/train/trainer.h"
#include "row_grad_check.h"

namespace tapeloop::engine::train {
namespace {

// Every kind of layer, two Mamba-2 layers with chunks crossed (chunk 4 < T), GQA attention.
NemotronHLmConfig Tiny() {
  NemotronHLmConfig c;
  c.vocab = 11;
  c.d_model = 8;
  c.pattern = "M*-M-";
  c.state = 4;
  c.mamba_head_dim = 4;
  c.expand = 2;  // 4 Mamba heads
  c.conv_kernel = 3;
  c.chunk = 4;
  c.heads = 4;
  c.kv_heads = 2;
  c.attn_head_dim = 4;
  c.intermediate = 12;
  return c;
}

// Initialized parameters, perturbed; A_log in [-1, 0.5] and dt_bias in [-1, 1] (dt ~ 0.3-1.3:
// the SSM matters, as in the PyTorch fixture) so that every Mamba-2 tensor's gradient stands
// well above finite-difference noise.
std::vector<float> Params(const NemotronHLm& m, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> p = m.table().Initialize(rng);
  for (float& x : p) x += 0.1f * rng.Normal();
  const ParamTable& t = m.table();
  for (int i = 0; i < t.size(); ++i) {
    const std::string& name = t.spec(i).name;
    const bool a_log = name.find("A_log") != std::string::npos;
    if (!a_log && name.find("dt_bias") == std::string::npos) continue;
    for (int64_t j = 0; j < t.numel(i); ++j)
      p[t.offset(i) + j] = a_log ? rng.Uniform() * 1.5f - 1.f : rng.Uniform() * 2.f - 1.f;
  }
  return p;
}

std::vector<int32_t> RandomIds(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> ids;
  for (int t = 0; t < n; ++t) ids.push_back(static_cast<int32_t>(rng.UniformInt(0, vocab - 1)));
  return ids;
}

TEST(NemotronHLmConfig, HfConfigJsonParsesWithoutUnknownKeys) {
  const NemotronHLmConfig c = Tiny();
  ::testing::internal::CaptureStderr();
  auto cfg = ParseModelConfig(c.ToHfConfigJson());
  const std::string warnings = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(warnings, "");
  EXPECT_EQ(cfg->family, Family::kNemotronH);
  EXPECT_EQ(cfg->pattern, c.pattern);
  EXPECT_EQ(cfg->mamba_num_heads, c.mamba_heads());
  EXPECT_EQ(cfg->mamba_head_dim, c.mamba_head_dim);
  EXPECT_EQ(cfg->num_attention_heads, c.heads);
  EXPECT_EQ(cfg->num_key_value_heads, c.kv_heads);
  EXPECT_EQ(cfg->head_dim, c.attn_head_dim);
  EXPECT_EQ(cfg->intermediate_size, c.intermediate);
  EXPECT_FALSE(cfg->use_rope);
  EXPECT_EQ(cfg->mlp_kind, MlpKind::kRelu2);
  EXPECT_FLOAT_EQ(cfg->dt_min, c.time_step_min);
}

TEST(NemotronHLmConfig, ValidateNamesTheBadField) {
  NemotronHLmConfig c = Tiny();
  EXPECT_TRUE(c.Validate().ok());
  c.pattern = "M*x";
  EXPECT_NE(c.Validate().message().find("'x'"), std::string::npos) << c.Validate();
  c = Tiny();
  c.pattern = "";
  EXPECT_NE(c.Validate().message().find("pattern is empty"), std::string::npos);
  c = Tiny();
  c.kv_heads = 3;
  EXPECT_NE(c.Validate().message().find("kv heads"), std::string::npos);
  c = Tiny();
  c.mamba_head_dim = 5;
  EXPECT_NE(c.Validate().message().find("Mamba head dim"), std::string::npos);
}

TEST(NemotronHLm, TensorNamesAreHfNemotronH) {
  NemotronHLm model(Tiny());
  const ParamTable& t = model.table();
  EXPECT_EQ(t.spec(0).name, "backbone.embeddings.weight");
  EXPECT_GE(t.Find("backbone.layers.0.mixer.in_proj.weight"), 0);
  EXPECT_GE(t.Find("backbone.layers.0.mixer.A_log"), 0);
  EXPECT_GE(t.Find("backbone.layers.1.mixer.q_proj.weight"), 0);
  EXPECT_GE(t.Find("backbone.layers.1.mixer.o_proj.weight"), 0);
  EXPECT_GE(t.Find("backbone.layers.2.mixer.up_proj.weight"), 0);
  EXPECT_GE(t.Find("backbone.layers.2.mixer.down_proj.weight"), 0);
  EXPECT_LT(t.Find("backbone.layers.2.mixer.gate_proj.weight"), 0);
  EXPECT_GE(t.Find("backbone.layers.4.norm.weight"), 0);
  EXPECT_EQ(t.spec(t.size() - 2).name, "backbone.norm_f.weight");
  EXPECT_EQ(t.spec(t.size() - 1).name, "lm_head.weight");
  EXPECT_EQ(model.state_size(), 0);
}

TEST(NemotronHLm, WholeModelGradientMatchesFiniteDifferences) {
  NemotronHLm model(Tiny());
  std::vector<float> p = Params(model, 31);
  const std::vector<int32_t> ids = RandomIds(14, 11, 32);
  Rng rng(33);
  std::vector<float> mask;
  for (int t = 0; t < 13; ++t) mask.push_back(rng.Uniform() < 0.7f ? 1.f : 0.f);
  // Errors are relative to at least 3e-2: the forward pass is f32, so with a loss sum of ~30
  // each difference carries ~5e-4 of rounding noise at this step, and how much depends on
  // the BLAS kernels OpenBLAS picks (a 1e-2 floor failed with its generic kernels).
  // Every tensor has gradients above 1e-2; the PyTorch fixture checks to 1e-4.
  ExpectRowGradientMatchesFiniteDifferences(model, p, ids, mask, nullptr,
                                            GradCheckOptions{3e-3, 40, 3e-2}, 2e-2, 1e-2);
}

// The dt clamp of NemotronH (dt >= time_step_min) is active for some tokens here (very negative
// dt_bias); where it holds, no gradient reaches dt_bias through that token.
TEST(NemotronHLm, DtClampMatchesFiniteDifferences) {
  NemotronHLmConfig c = Tiny();
  c.pattern = "M";
  c.time_step_min = 0.05f;
  NemotronHLm model(c);
  std::vector<float> p = Params(model, 41);
  const int dtb = model.table().Find("backbone.layers.0.mixer.dt_bias");
  ASSERT_GE(dtb, 0);
  for (int64_t h = 0; h < model.table().numel(dtb); ++h)
    p[model.table().offset(dtb) + h] = h % 2 ? -3.f : 0.5f;  // softplus(-3) = 0.049 < 0.05
  const std::vector<int32_t> ids = RandomIds(10, 11, 42);
  std::vector<float> mask(9, 1.f);
  // A small step: the clamp's kink must not fall inside the difference.
  ExpectRowGradientMatchesFiniteDifferences(model, p, ids, mask, nullptr,
                                            GradCheckOptions{2e-3, 40, 1e-2}, 3e-2, 0.f);
}

TEST(NemotronHLm, ChunkedSsdEqualsTheRecurrence) {
  NemotronHLmConfig a = Tiny(), b = Tiny();
  a.chunk = 1;
  b.chunk = 5;
  NemotronHLm ma(a), mb(b);
  std::vector<float> p = Params(ma, 51);
  const std::vector<int32_t> ids = RandomIds(17, 11, 52);
  std::vector<float> mask(16, 1.f);
  Mamba2Workspace ws;
  std::vector<float> ga(p.size(), 0.f), gb(p.size(), 0.f);
  const double la = ma.RowForwardBackward(p.data(), ids, mask, 1.0, ga.data(), &ws).loss_sum;
  const double lb = mb.RowForwardBackward(p.data(), ids, mask, 1.0, gb.data(), &ws).loss_sum;
  EXPECT_NEAR(la, lb, 1e-5 * la);
  double diff2 = 0, ref2 = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    diff2 += double{ga[i] - gb[i]} * (ga[i] - gb[i]);
    ref2 += double{ga[i]} * ga[i];
  }
  EXPECT_LT(std::sqrt(diff2 / ref2), 1e-5);
}

// One target per call: the trainer's per-position loss, against cross-entropy of logits.
double PositionLoss(const NemotronHLm& m, const std::vector<float>& p,
                    const std::vector<int32_t>& ids, int t) {
  std::vector<float> mask(ids.size() - 1, 0.f);
  mask[t] = 1.f;
  Mamba2Workspace ws;
  return m.RowForwardBackward(p.data(), ids, mask, 1.0, nullptr, &ws).loss_sum;
}

double CrossEntropy(const float* z, int V, int target) {
  double mx = -1e30, se = 0;
  for (int v = 0; v < V; ++v) mx = std::max(mx, double{z[v]});
  for (int v = 0; v < V; ++v) se += std::exp(z[v] - mx);
  return mx + std::log(se) - z[target];
}

class NoData final : public ExampleSource {
 public:
  std::vector<TrainExample> Next(int) override { return {}; }
  uint64_t position() const override { return 0; }
  void Seek(uint64_t) override {}
};

// Saved by the trainer (config.json + model.safetensors), loaded by the engine: the engine's
// nemotron_h forward (prefill, then token-by-token decode through the KV cache and the
// recurrent state) gives the trainer's loss at every position and the same argmax.
TEST(NemotronHLm, SavedCheckpointRunsInTheEngineWithTheTrainersOutputs) {
  const NemotronHLmConfig c = Tiny();
  NoData data;
  TrainOptions o;
  o.batch = 1;
  o.threads = 1;
  Trainer tr(std::make_unique<NemotronHLm>(c), o, &data);
  const auto& model = static_cast<const NemotronHLm&>(tr.model());
  tr.mutable_params() = Params(model, 61);
  const auto dir = std::filesystem::temp_directory_path() / "tapeloop_nemotron_h_lm_test";
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(tr.SaveCheckpoint(dir.string()).ok());
  auto engine = Model::Load(dir.string());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->config().family, Family::kNemotronH);

  const int V = 11, T = 19, prompt = 6;
  const std::vector<int32_t> ids = RandomIds(T + 1, V, 62);
  std::vector<float> mask(T, 1.f);
  Mamba2Workspace ws;
  std::vector<int32_t> row_argmax;
  const RowResult row =
      model.RowForwardBackward(tr.params().data(), ids, mask, 1.0, nullptr, &ws, &row_argmax);

  SessionState state = (*engine)->NewState();
  std::vector<float> logits, all;
  ASSERT_TRUE(
      (*engine)->Forward(std::span<const int32_t>(ids.data(), prompt), &state, true, &logits).ok());
  all = logits;
  for (int t = prompt; t < T; ++t) {
    ASSERT_TRUE((*engine)
                    ->Forward(std::span<const int32_t>(ids.data() + t, 1), &state, false, &logits)
                    .ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  ASSERT_EQ(all.size(), static_cast<size_t>(T * V));
  double total = 0;
  std::vector<int32_t> argmax;
  for (int t = 0; t < T; ++t) {
    const float* z = all.data() + t * V;
    const double ce = CrossEntropy(z, V, ids[t + 1]);
    total += ce;
    EXPECT_NEAR(ce, PositionLoss(model, tr.params(), ids, t), 1e-4 * std::max(1.0, ce))
        << "position " << t;
    argmax.push_back(static_cast<int32_t>(std::max_element(z, z + V) - z));
  }
  EXPECT_NEAR(total, row.loss_sum, 1e-4 * row.loss_sum);
  EXPECT_EQ(argmax, row_argmax);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tapeloop::engine::train
