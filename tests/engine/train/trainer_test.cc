#include "engine/train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/models/model.h"
#include "engine/train/rng.h"
#include "engine/train/transformer_lm.h"

namespace tapeloop::engine::train {
namespace {

// A deterministic copy task: [BOS] x1..xn [SEP] x1..xn [EOS]; the copy and [EOS] are targets.
class CopySource final : public ExampleSource {
 public:
  explicit CopySource(uint64_t seed) : seed_(seed) {}
  std::vector<TrainExample> Next(int count) override {
    std::vector<TrainExample> out;
    for (int i = 0; i < count; ++i) out.push_back(Make(pos_++));
    return out;
  }
  uint64_t position() const override { return pos_; }
  void Seek(uint64_t p) override { pos_ = p; }
  TrainExample Make(uint64_t index) const {
    Rng rng(seed_ * 1000003 + index);
    const int n = static_cast<int>(rng.UniformInt(2, 6));
    TrainExample e;
    std::vector<int32_t> x;
    for (int i = 0; i < n; ++i) x.push_back(static_cast<int32_t>(rng.UniformInt(0, 7)));
    e.tokens.push_back(10);
    e.tokens.insert(e.tokens.end(), x.begin(), x.end());
    e.tokens.push_back(11);
    e.tokens.insert(e.tokens.end(), x.begin(), x.end());
    e.tokens.push_back(12);
    e.loss_mask.assign(e.tokens.size(), 0);
    for (size_t i = n + 2; i < e.tokens.size(); ++i) e.loss_mask[i] = 1;
    return e;
  }

 private:
  uint64_t seed_;
  uint64_t pos_ = 0;
};

// Counting: [BOS] x x+1 x+2 ... (mod 8); every token after the first is a target.
class CountSource final : public ExampleSource {
 public:
  std::vector<TrainExample> Next(int count) override {
    std::vector<TrainExample> out;
    for (int i = 0; i < count; ++i) {
      Rng rng(pos_++);
      TrainExample e;
      e.tokens.push_back(10);
      int32_t x = static_cast<int32_t>(rng.UniformInt(0, 7));
      const int n = static_cast<int>(rng.UniformInt(4, 12));
      for (int k = 0; k < n; ++k) e.tokens.push_back((x + k) % 8);
      e.loss_mask.assign(e.tokens.size(), 1);
      e.loss_mask[0] = e.loss_mask[1] = 0;
      out.push_back(std::move(e));
    }
    return out;
  }
  uint64_t position() const override { return pos_; }
  void Seek(uint64_t p) override { pos_ = p; }

 private:
  uint64_t pos_ = 0;
};

Mamba2LmConfig Small() {
  Mamba2LmConfig c;
  c.vocab = 13;
  c.d_model = 16;
  c.layers = 2;
  c.state = 8;
  c.head_dim = 8;
  c.chunk = 8;
  return c;
}

TrainOptions Opts() {
  TrainOptions o;
  o.steps = 60;
  o.batch = 16;
  o.lr = 1e-2;
  o.warmup = 5;
  o.threads = 2;
  o.seed = 3;
  return o;
}

std::string TempDir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("tapeloop_trainer_test_" + name);
  std::filesystem::remove_all(p);
  return p.string();
}

TEST(Trainer, LossDecreasesOnCountingTask) {
  CountSource data;
  Trainer tr(Small(), Opts(), &data);
  double first = 0, last = 0;
  for (int s = 0; s < 60; ++s) {
    StepStats st = tr.Step();
    if (s == 0) first = st.loss;
    last = st.loss;
    ASSERT_TRUE(std::isfinite(st.loss));
  }
  EXPECT_LT(last, 0.2 * first) << first << " -> " << last;
  CountSource held;
  held.Seek(1000000);
  EvalStats ev = tr.Evaluate(held.Next(32));
  EXPECT_EQ(ev.examples, 32);
  EXPECT_GT(ev.token_acc, 0.9);
  EXPECT_GT(ev.exact, 0);
}

TEST(Trainer, ResumeEqualsUninterruptedRun) {
  for (InitState mode : {InitState::kZero, InitState::kPassFinal}) {
    TrainOptions o = Opts();
    o.init_state = mode;
    CopySource d1(2);
    Trainer full(Small(), o, &d1);
    std::vector<double> losses;
    for (int s = 0; s < 6; ++s) losses.push_back(full.Step().loss);

    CopySource d2(2);
    Trainer first(Small(), o, &d2);
    for (int s = 0; s < 3; ++s) first.Step();
    const std::string dir = TempDir("resume");
    ASSERT_TRUE(first.SaveCheckpoint(dir).ok());

    CopySource d3(2);
    TrainOptions o2 = o;
    o2.seed = o.seed;  // same options; parameters come from the checkpoint
    Trainer resumed(Small(), o2, &d3);
    absl::Status s = resumed.LoadCheckpoint(dir);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(resumed.step(), 3);
    for (int k = 3; k < 6; ++k) EXPECT_EQ(resumed.Step().loss, losses[k]) << k;
    EXPECT_EQ(resumed.params(), full.params());  // bit-exact
  }
}

TEST(Trainer, CheckpointLoadsInTheEngineWithTheSameLoss) {
  CopySource data(4);
  Trainer tr(Small(), Opts(), &data);
  for (int s = 0; s < 5; ++s) tr.Step();
  const std::string dir = TempDir("engine");
  ASSERT_TRUE(tr.SaveCheckpoint(dir).ok());
  auto model = Model::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  TrainExample e = data.Make(12345);
  SessionState state = (*model)->NewState();
  std::vector<float> logits;
  std::vector<int32_t> in(e.tokens.begin(), e.tokens.end() - 1);
  ASSERT_TRUE((*model)->Forward(in, &state, true, &logits).ok());
  const int V = 13;
  double engine_loss = 0;
  for (size_t t = 0; t < in.size(); ++t) {
    if (!e.loss_mask[t + 1]) continue;
    double mx = -1e30, se = 0;
    for (int v = 0; v < V; ++v) mx = std::max(mx, double{logits[t * V + v]});
    for (int v = 0; v < V; ++v) se += std::exp(logits[t * V + v] - mx);
    engine_loss += mx + std::log(se) - logits[t * V + e.tokens[t + 1]];
  }
  std::vector<float> mask(e.loss_mask.begin() + 1, e.loss_mask.end());
  Mamba2Workspace ws;
  RowResult r = tr.model().RowForwardBackward(tr.params().data(), e.tokens, mask, 1.0, nullptr,
                                              nullptr, nullptr, &ws);
  EXPECT_NEAR(r.loss_sum, engine_loss, 1e-4 * (1 + engine_loss));
}

TEST(Trainer, RefusesCorruptOrMismatchedCheckpoints) {
  CopySource data(5);
  Trainer tr(Small(), Opts(), &data);
  tr.Step();
  const std::string dir = TempDir("corrupt");
  ASSERT_TRUE(tr.SaveCheckpoint(dir).ok());
  {  // other options
    TrainOptions o = Opts();
    o.lr = 5e-3;
    CopySource d(5);
    Trainer other(Small(), o, &d);
    absl::Status s = other.LoadCheckpoint(dir);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("lr=0.01"), std::string::npos) << s;
  }
  {  // another model
    Mamba2LmConfig c = Small();
    c.d_model = 32;
    CopySource d(5);
    Trainer other(c, Opts(), &d);
    EXPECT_EQ(other.LoadCheckpoint(dir).code(), absl::StatusCode::kFailedPrecondition);
  }
  {  // a flipped byte in the moments
    const std::string f = dir + "/trainer_state.safetensors";
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(0, std::ios::end);
    const auto size = static_cast<int64_t>(io.tellg());
    io.seekp(size - 5);
    char c = 0x5a;
    io.write(&c, 1);
    io.close();
    CopySource d(5);
    Trainer other(Small(), Opts(), &d);
    absl::Status s = other.LoadCheckpoint(dir);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  }
  {  // a truncated model file
    ASSERT_TRUE(tr.SaveCheckpoint(dir).ok());
    std::filesystem::resize_file(dir + "/model.safetensors", 100);
    CopySource d(5);
    Trainer other(Small(), Opts(), &d);
    absl::Status s = other.LoadCheckpoint(dir);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("load checkpoint"), std::string::npos) << s;
  }
  {  // a missing directory
    CopySource d(5);
    Trainer other(Small(), Opts(), &d);
    EXPECT_FALSE(other.LoadCheckpoint(dir + "_missing").ok());
  }
}

TEST(Trainer, TrainsAndCheckpointsATransformer) {
  for (int64_t window : {0, 4}) {
    TransformerLmConfig c;
    c.vocab = 13;
    c.d_model = 16;
    c.layers = 2;
    c.heads = 2;
    c.kv_heads = 1;
    c.head_dim = 8;
    c.intermediate = 32;
    c.sliding_window = window;
    CountSource data;
    Trainer tr(std::make_unique<TransformerLm>(c), Opts(), &data);
    double first = 0, last = 0;
    for (int s = 0; s < 60; ++s) {
      const double loss = tr.Step().loss;
      if (s == 0) first = loss;
      last = loss;
    }
    EXPECT_LT(last, 0.3 * first) << "window " << window << ": " << first << " -> " << last;
    const std::string dir = TempDir(absl::StrCat("transformer", window));
    ASSERT_TRUE(tr.SaveCheckpoint(dir).ok());
    auto model = Model::Load(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_EQ((*model)->config().sliding_window, window);
    CountSource d2;
    Trainer resumed(std::make_unique<TransformerLm>(c), Opts(), &d2);
    ASSERT_TRUE(resumed.LoadCheckpoint(dir).ok());
    EXPECT_EQ(resumed.params(), tr.params());
  }
}

TEST(Trainer, ZeroInitialStatesByDefault) {
  CopySource data(6);
  Trainer tr(Small(), Opts(), &data);
  tr.Step();
  for (float v : tr.last_initial_states()) ASSERT_EQ(v, 0.f);
  float mx = 0;
  for (float v : tr.last_final_states()) mx = std::max(mx, std::fabs(v));
  EXPECT_GT(mx, 0.f);
}

TEST(Trainer, NoiseInitialStatesHaveTheRequestedSpread) {
  TrainOptions o = Opts();
  o.init_state = InitState::kNoise;
  o.noise_std = 0.5f;
  CopySource data(7);
  Trainer tr(Small(), o, &data);
  tr.Step();
  const Mamba2LmConfig c = Small();
  const int64_t conv = (c.conv_kernel - 1) * c.conv_dim();
  double s2 = 0;
  int64_t n = 0;
  const auto& init = tr.last_initial_states();
  for (int r = 0; r < o.batch; ++r)
    for (int l = 0; l < c.layers; ++l) {
      const float* st = init.data() + r * c.state_size() + l * c.layer_state_size();
      for (int64_t i = 0; i < conv; ++i) ASSERT_EQ(st[i], 0.f);
      for (int64_t i = conv; i < c.layer_state_size(); ++i, ++n) s2 += double{st[i]} * st[i];
    }
  EXPECT_NEAR(std::sqrt(s2 / n), 0.5, 0.03);
}

TEST(Trainer, PassFinalStatesFeedTheNextStep) {
  TrainOptions o = Opts();
  o.init_state = InitState::kPassFinal;
  CopySource data(8);
  Trainer tr(Small(), o, &data);
  tr.Step();
  for (float v : tr.last_initial_states()) ASSERT_EQ(v, 0.f);  // nothing to pass yet
  const std::vector<float> finals = tr.last_final_states();
  tr.Step();
  const int64_t S = Small().state_size();
  std::vector<bool> used(o.batch, false);
  for (int r = 0; r < o.batch; ++r) {
    int match = -1;
    for (int k = 0; k < o.batch && match < 0; ++k)
      if (!used[k] && std::equal(finals.begin() + k * S, finals.begin() + (k + 1) * S,
                                 tr.last_initial_states().begin() + r * S))
        match = k;
    ASSERT_GE(match, 0) << "row " << r << " does not start from a final state of the last step";
    used[match] = true;
  }
}

TEST(Trainer, TruncatedBpttCarriesStateButNotGradient) {
  TrainOptions o = Opts();
  o.tbptt_concat = 3;
  CopySource d1(9), d2(9);
  Trainer whole(Small(), o, &d1);
  o.tbptt_window = 5;
  Trainer windows(Small(), o, &d2);
  StepStats a = whole.Step(), b = windows.Step();
  // The forward pass is the same computation (state carried across windows)...
  EXPECT_NEAR(a.loss, b.loss, 1e-5 * a.loss);
  for (size_t i = 0; i < whole.last_final_states().size(); ++i)
    ASSERT_NEAR(whole.last_final_states()[i], windows.last_final_states()[i], 1e-4);
  // ...but gradients stop at window boundaries.
  EXPECT_GT(std::fabs(a.grad_norm - b.grad_norm), 1e-6 * a.grad_norm);
}

}  // namespace
}  // namespace tapeloop::engine::train
