#include "agents/engine_policy.h"

#include <gtest/gtest.h>

#include <cmath>

#include "agents/agent_loop.h"
#include "engine/models/model.h"

namespace tapeloop::agents {
namespace {

using tasks::Mode;

engine::ModelConfig Tiny(engine::Family family) {
  engine::ModelConfig c;
  c.family = family;
  c.vocab_size = tokens::kVocabSize;
  c.hidden_size = 32;
  c.initializer_range = 0.5f;  // peaked logits: random models still choose clearly
  c.tie_word_embeddings = true;
  c.num_hidden_layers = 2;
  if (family == engine::Family::kMamba2) {
    c.mamba_num_heads = 4;
    c.mamba_head_dim = 16;
    c.ssm_state_size = 8;
    c.n_groups = 2;
    c.conv_kernel = 4;
    c.chunk_size = 16;
    c.gated_norm_group_size = 64;
    c.dt_max = INFINITY;
  } else {
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.intermediate_size = 48;
    c.use_rope = true;
  }
  return c;
}

std::vector<EpisodeSpec> Specs(Mode mode, int count, int length) {
  const tasks::Task* task = *tasks::FindTask("addition");
  std::vector<EpisodeSpec> specs;
  for (int i = 0; i < count; ++i) {
    tasks::Rng rng(100 + i);
    specs.push_back({task, task->Generate(length, /*training=*/true, rng), mode,
                     static_cast<uint64_t>(7 + i)});
  }
  return specs;
}

class EnginePolicyTest : public ::testing::TestWithParam<engine::Family> {
 protected:
  void SetUp() override {
    auto model = engine::Model::RandomInit(Tiny(GetParam()), 3);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  std::unique_ptr<engine::Model> model_;
};

// A random-weight checkpoint runs through the loop end to end, and batching does not change
// any episode, greedy or sampled.
TEST_P(EnginePolicyTest, BatchedEpisodesEqualOneAtATime) {
  for (float temperature : {0.0f, 1.0f}) {
    for (Mode mode : {Mode::kPointer, Mode::kDirect, Mode::kCalculator}) {
      auto specs = Specs(mode, 5, 6);
      LoopOptions one{.parallel = 1, .max_generated_tokens = 40};
      LoopOptions batched{.parallel = 5, .max_generated_tokens = 40};
      engine::SamplingParams params;
      params.temperature = temperature;
      EnginePolicy a(model_.get(), params);
      EnginePolicy b(model_.get(), params);
      auto ra = RunEpisodes(a, specs, one);
      auto rb = RunEpisodes(b, specs, batched);
      ASSERT_TRUE(ra.ok() && rb.ok());
      int64_t generated = 0;
      for (const auto& r : *ra) generated += r.generated_tokens;
      // Not vacuous: the random model runs for a while in at least some episodes.
      EXPECT_GT(generated, 3 * static_cast<int64_t>(specs.size()))
          << tasks::ModeName(mode) << " " << (*ra)[0].stop_reason << " " << (*ra)[0].error;
      for (size_t i = 0; i < specs.size(); ++i) {
        const auto& x = (*ra)[i];
        const auto& y = (*rb)[i];
        EXPECT_EQ(x.trajectory.tokens, y.trajectory.tokens) << i;
        EXPECT_EQ(x.stop_reason, y.stop_reason);
        EXPECT_EQ(x.policy, "engine");
        EXPECT_NE(x.stop_reason, "policy_error") << x.error;
        EXPECT_GT(x.generated_tokens, 0);
        EXPECT_GT(x.peak_session_bytes, 0);
      }
    }
  }
}

// Observations go into the same session: its position is the whole trajectory (every token
// fed once), and a Mamba-2 session's size does not grow with it.
TEST_P(EnginePolicyTest, ObservationsEnterTheSameSession) {
  EnginePolicy policy(model_.get());
  auto specs = Specs(Mode::kDirect, 1, 4);
  tasks::Trajectory expert = *specs[0].task->Expert(specs[0].instance, Mode::kPointer);
  EpisodeContext context{&specs[0].instance, Mode::kPointer, &expert, 1};
  auto prompt = tasks::PromptTokens(specs[0].instance);
  int slot = *policy.Open(context, prompt);
  const int64_t bytes0 = policy.SessionBytes(slot);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(policy.Step(std::vector<int>{slot}).ok());
    std::vector<TokenId> obs = {'5', tokens::kEnd};
    ASSERT_TRUE(policy.Append(slot, obs).ok());
  }
  const int64_t bytes1 = policy.SessionBytes(slot);
  if (GetParam() == engine::Family::kMamba2) {
    EXPECT_EQ(bytes0, bytes1);
  } else {
    EXPECT_GE(bytes1, bytes0);
  }
  EXPECT_FALSE(policy.Append(slot + 1, std::vector<TokenId>{'1'}).ok());
  policy.Close(slot);
  EXPECT_FALSE(policy.Step(std::vector<int>{slot}).ok());
}

TEST(EnginePolicyVocabTest, RejectsModelsWithTooSmallAVocabulary) {
  auto config = Tiny(engine::Family::kMamba2);
  config.vocab_size = 100;
  auto model = *engine::Model::RandomInit(config, 1);
  EnginePolicy policy(model.get());
  auto specs = Specs(Mode::kPointer, 1, 3);
  auto records = *RunEpisodes(policy, specs);
  EXPECT_EQ(records[0].stop_reason, "policy_error");
  EXPECT_NE(records[0].error.find("vocabulary"), std::string::npos) << records[0].error;
}

INSTANTIATE_TEST_SUITE_P(Families, EnginePolicyTest,
                         ::testing::Values(engine::Family::kMamba2, engine::Family::kLlama),
                         [](const auto& info) { return engine::FamilyName(info.param); });

}  // namespace
}  // namespace tapeloop::agents
