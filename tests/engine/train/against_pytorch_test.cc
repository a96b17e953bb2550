// The C++ trainer against PyTorch autograd (fixture made by fixtures/make_train_fixtures.py, in
// float64 with the sequential recurrence): loss and every parameter gradient on a fixed batch,
// and a 10-step AdamW loss curve. The same for Llama and Mistral (sliding window 3)
// (fixtures/make_llama_train_fixture.py, float64, checked there against HF LlamaForCausalLM /
// MistralForCausalLM). The same for a hybrid NemotronH (pattern M*-M-, fixture from
// make_train_fixtures.py nemotron_h, checked there against HF NemotronHForCausalLM).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/checkpoint/safetensors.h"
#include "engine/train/mamba2_lm.h"
#include "engine/train/nemotron_h_lm.h"
#include "engine/train/trainer.h"
#include "engine/train/transformer_lm.h"
#include "nlohmann/json.hpp"

namespace tapeloop::engine::train {
namespace {

// One fixture file read for a model family: the model built from its config, its parameters
// (tensors "param.NAME") in the model's table order, and its batch (ids / mask / lengths).
struct Fixture {
  SafetensorsFile file;
  nlohmann::json config;  // metadata "config"
  std::function<std::unique_ptr<RowModel>()> make_model;
  std::vector<float> params;
  std::vector<TrainExample> rows;
};

// `make_model` builds the family's model from the fixture's config.
Fixture Load(const std::string& name,
             std::function<std::unique_ptr<RowModel>(const nlohmann::json&)> make_model) {
  Fixture f;
  auto file = ReadSafetensorsFile(std::string(TAPELOOP_SOURCE_DIR) +
                                  "/tests/engine/train/fixtures/" + name);
  EXPECT_TRUE(file.ok()) << file.status();
  f.file = std::move(*file);
  f.config = nlohmann::json::parse(f.file.metadata.at("config"));
  f.make_model = [make_model, cfg = f.config] { return make_model(cfg); };
  std::unique_ptr<RowModel> model = f.make_model();
  std::vector<std::pair<std::string, Tensor>> named;
  for (const auto& spec : model->table().specs())
    named.emplace_back(spec.name, f.file.tensors.at("param." + spec.name));
  auto flat = model->table().FromTensors(named);
  EXPECT_TRUE(flat.ok()) << flat.status();
  f.params = std::move(*flat);
  const Tensor& ids = f.file.tensors.at("ids");
  const Tensor& mask = f.file.tensors.at("mask");
  const Tensor& lengths = f.file.tensors.at("lengths");
  const int64_t T = ids.shape[1];
  for (size_t r = 0; r < lengths.data.size(); ++r) {
    TrainExample e;
    const int n = static_cast<int>(lengths.data[r]);
    for (int t = 0; t < n; ++t) {
      e.tokens.push_back(static_cast<int32_t>(ids.data[r * T + t]));
      e.loss_mask.push_back(static_cast<uint8_t>(mask.data[r * T + t]));
    }
    f.rows.push_back(std::move(e));
  }
  return f;
}

Fixture LoadMamba2() {
  return Load("mamba2_train_fixture.safetensors", [](const nlohmann::json& cfg) {
    Mamba2LmConfig c;
    c.vocab = cfg["vocab"];
    c.d_model = cfg["d_model"];
    c.layers = cfg["layers"];
    c.state = cfg["state"];
    c.head_dim = cfg["head_dim"];
    c.expand = cfg["expand"];
    c.conv_kernel = cfg["conv_kernel"];
    c.chunk = 4;  // several chunks: the reference uses the plain recurrence
    return std::make_unique<Mamba2Lm>(c);
  });
}

Fixture LoadTransformer(const std::string& name) {
  return Load(name, [](const nlohmann::json& cfg) {
    TransformerLmConfig c;
    c.vocab = cfg["vocab"];
    c.d_model = cfg["d_model"];
    c.layers = cfg["layers"];
    c.heads = cfg["heads"];
    c.kv_heads = cfg["kv_heads"];
    c.head_dim = cfg["head_dim"];
    c.intermediate = cfg["intermediate"];
    c.rope_theta = cfg["rope_theta"];
    c.eps = cfg["eps"];
    c.sliding_window = cfg["sliding_window"];
    return std::make_unique<TransformerLm>(c);
  });
}

Fixture LoadNemotronH() {
  return Load("nemotron_h_train_fixture.safetensors", [](const nlohmann::json& cfg) {
    NemotronHLmConfig c;
    c.vocab = cfg["vocab"];
    c.d_model = cfg["d_model"];
    c.pattern = cfg["pattern"];
    c.state = cfg["state"];
    c.mamba_head_dim = cfg["mamba_head_dim"];
    c.expand = cfg["expand"];
    c.conv_kernel = cfg["conv_kernel"];
    c.chunk = 4;  // several chunks: the reference uses the plain recurrence
    c.time_step_min = cfg["time_step_min"];
    c.heads = cfg["heads"];
    c.kv_heads = cfg["kv_heads"];
    c.attn_head_dim = cfg["attn_head_dim"];
    c.intermediate = cfg["intermediate"];
    c.eps = cfg["eps"];
    return std::make_unique<NemotronHLm>(c);
  });
}

// The batch's mean loss (over masked targets) and every parameter gradient equal the fixture's
// (relative error <= 1e-4), and HF's loss where the fixture records one.
void ExpectLossAndGradientsMatch(const Fixture& f) {
  std::unique_ptr<RowModel> model = f.make_model();
  double denom = 0;
  for (const auto& e : f.rows)
    for (size_t i = 1; i < e.loss_mask.size(); ++i) denom += e.loss_mask[i];
  std::vector<float> grads(f.params.size(), 0.f);
  double loss = 0;
  Mamba2Workspace ws;
  for (const auto& e : f.rows) {
    std::vector<float> mask(e.loss_mask.begin() + 1, e.loss_mask.end());
    loss += model
                ->RowForwardBackward(f.params.data(), e.tokens, mask, denom, nullptr, nullptr,
                                     grads.data(), &ws)
                .loss_sum;
  }
  loss /= denom;
  const double ref_loss = std::stod(f.file.metadata.at("loss"));
  EXPECT_NEAR(loss, ref_loss, 1e-4 * ref_loss);
  auto hf = f.file.metadata.find("hf_loss");
  if (hf != f.file.metadata.end() && !hf->second.empty()) {
    EXPECT_NEAR(loss, std::stod(hf->second), 1e-4 * ref_loss) << "HF transformers";
  }
  const ParamTable& t = model->table();
  for (int i = 0; i < t.size(); ++i) {
    const Tensor& ref = f.file.tensors.at("grad." + t.spec(i).name);
    ASSERT_EQ(ref.data.size(), static_cast<size_t>(t.numel(i)));
    double diff2 = 0, ref2 = 0;
    for (int64_t j = 0; j < t.numel(i); ++j) {
      const double d = double{grads[t.offset(i) + j]} - ref.data[j];
      diff2 += d * d;
      ref2 += double{ref.data[j]} * ref.data[j];
    }
    const double rel = std::sqrt(diff2 / std::max(ref2, 1e-30));
    EXPECT_LE(rel, 1e-4) << t.spec(i).name << " |g| " << std::sqrt(ref2);
    EXPECT_GT(ref2, 0) << t.spec(i).name;
  }
}

class FixedBatch final : public ExampleSource {
 public:
  explicit FixedBatch(std::vector<TrainExample> rows) : rows_(std::move(rows)) {}
  std::vector<TrainExample> Next(int count) override {
    EXPECT_EQ(count, static_cast<int>(rows_.size()));
    ++pos_;
    return rows_;
  }
  uint64_t position() const override { return pos_; }
  void Seek(uint64_t p) override { pos_ = p; }

 private:
  std::vector<TrainExample> rows_;
  uint64_t pos_ = 0;
};

// The trainer's AdamW loss curve over the fixture's steps equals PyTorch's within 1e-3.
void ExpectLossCurveMatches(const Fixture& f) {
  auto curve = nlohmann::json::parse(f.file.metadata.at("curve"));
  TrainOptions o;
  o.steps = f.config["steps"];
  o.batch = static_cast<int>(f.rows.size());
  o.lr = f.config["lr"];
  o.warmup = f.config["warmup"];
  o.clip = f.config["clip"];
  o.threads = 2;
  FixedBatch data(f.rows);
  Trainer tr(f.make_model(), o, &data);
  tr.mutable_params() = f.params;
  ASSERT_EQ(curve.size(), static_cast<size_t>(o.steps));
  for (int s = 0; s < o.steps; ++s) {
    const double loss = tr.Step().loss;
    EXPECT_NEAR(loss, curve[s].get<double>(), 1e-3) << "step " << s + 1;
  }
}

TEST(AgainstPytorch, LossAndEveryGradientMatchAutograd) {
  ExpectLossAndGradientsMatch(LoadMamba2());
}

TEST(AgainstPytorch, TenStepAdamWLossCurveMatches) { ExpectLossCurveMatches(LoadMamba2()); }

// Llama / Mistral fixtures: the same checks for TransformerLm.
class TransformerAgainstPytorch : public ::testing::TestWithParam<std::string> {};

TEST_P(TransformerAgainstPytorch, LossAndEveryGradientMatchAutograd) {
  ExpectLossAndGradientsMatch(LoadTransformer(GetParam()));
}

TEST_P(TransformerAgainstPytorch, TenStepAdamWLossCurveMatches) {
  ExpectLossCurveMatches(LoadTransformer(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(LlamaAndMistral, TransformerAgainstPytorch,
                         ::testing::Values("llama_train_fixture.safetensors",
                                           "mistral_train_fixture.safetensors"));

// NemotronH fixture: the same checks for NemotronHLm.
TEST(NemotronHAgainstPytorch, LossAndEveryGradientMatchAutograd) {
  ExpectLossAndGradientsMatch(LoadNemotronH());
}

TEST(NemotronHAgainstPytorch, TenStepAdamWLossCurveMatches) {
  ExpectLossCurveMatches(LoadNemotronH());
}

}  // namespace
}  // namespace tapeloop::engine::train
