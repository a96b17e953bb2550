#include "agents/engine_policy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

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
    if (family == engine::Family::kMistral) c.sliding_window = 7;  // the ring wraps
  }
  return c;
}

std::vector<EpisodeSpec> Specs(Mode mode, int count, int length) {
  const tasks::Task* task = *tasks::FindTask("addition");
  std::vector<EpisodeSpec> specs;
  for (int i = 0; i < count; ++i) {
    tasks::Rng rng(100 + i);
    specs.push_back(
        {task, task->Generate(length, /*training=*/true, rng), mode, static_cast<uint64_t>(7 + i)});
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

// Max |a - b| / max |b| over two logit vectors.
double RelDiff(std::span<const float> a, std::span<const float> b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 1e-30;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

// The batched (queued) appends against the plain reference (a prefill per Append), driven by
// the same random script: opens, Appends of 1..24 random tokens (queues longer than
// kMaxBatchedAppend included), Steps over random subsets of the slots (greedy and sampled),
// closes. Every Step gives the same tokens, and every slot's logits and state size agree to
// float rounding, checked after every operation on a random slot.
TEST_P(EnginePolicyTest, BatchedAppendsEqualPrefillAppends) {
  for (float temperature : {0.0f, 1.0f}) {
    engine::SamplingParams params;
    params.temperature = temperature;
    EnginePolicy eager(model_.get(), params, {.appends = EnginePolicyOptions::Appends::kPrefill});
    EnginePolicy lazy(model_.get(), params, {.appends = EnginePolicyOptions::Appends::kBatched});
    std::mt19937 rng(temperature > 0 ? 11 : 5);
    auto specs = Specs(Mode::kPointer, 1, 5);
    EpisodeContext context{&specs[0].instance, Mode::kPointer, nullptr, 0};
    std::vector<int> live;
    int steps = 0, queued_long = 0, multi_round = 0;
    for (int op = 0; op < 400; ++op) {
      const int kind = live.size() < 2 ? 0 : static_cast<int>(rng() % 10);
      if (kind == 0 && live.size() < 12) {  // open
        context.seed = rng();
        std::vector<TokenId> prompt(1 + rng() % 30);
        for (auto& t : prompt) t = static_cast<TokenId>(rng() % tokens::kVocabSize);
        auto a = eager.Open(context, prompt);
        auto b = lazy.Open(context, prompt);
        ASSERT_TRUE(a.ok() && b.ok());
        ASSERT_EQ(*a, *b);
        live.push_back(*a);
      } else if (kind <= 4) {  // append
        const int slot = live[rng() % live.size()];
        const size_t n = rng() % 7 == 0 ? 17 + rng() % 8 : 1 + rng() % 3;
        queued_long += n > EnginePolicy::kMaxBatchedAppend;
        multi_round += n > 1;
        std::vector<TokenId> obs(n);
        for (auto& t : obs) t = static_cast<TokenId>(rng() % tokens::kVocabSize);
        ASSERT_TRUE(eager.Append(slot, obs).ok());
        ASSERT_TRUE(lazy.Append(slot, obs).ok());
      } else if (kind <= 8) {  // step a random subset, in random order
        std::vector<int> subset;
        for (int id : live) {
          if (rng() % 3 != 0) subset.push_back(id);
        }
        std::shuffle(subset.begin(), subset.end(), rng);
        if (subset.empty()) continue;
        auto a = eager.Step(subset);
        auto b = lazy.Step(subset);
        ASSERT_TRUE(a.ok() && b.ok());
        EXPECT_EQ(*a, *b) << "op " << op;
        ++steps;
      } else {  // close
        const size_t k = rng() % live.size();
        eager.Close(live[k]);
        lazy.Close(live[k]);
        live.erase(live.begin() + k);
        continue;
      }
      const int probe = live[rng() % live.size()];
      EXPECT_EQ(eager.SessionBytes(probe), lazy.SessionBytes(probe));
      if (rng() % 4 == 0) {  // Logits feeds the queue, so probe only now and then
        auto la = eager.Logits(probe);
        auto lb = lazy.Logits(probe);
        ASSERT_TRUE(la.ok() && lb.ok());
        EXPECT_LE(RelDiff(*lb, *la), 1e-5) << "op " << op;
      }
    }
    for (int id : live) {
      auto la = eager.Logits(id);
      auto lb = lazy.Logits(id);
      ASSERT_TRUE(la.ok() && lb.ok());
      EXPECT_LE(RelDiff(*lb, *la), 1e-5);
    }
    EXPECT_GT(steps, 100);
    EXPECT_GT(queued_long, 5);
    EXPECT_GT(multi_round, 50);
  }
}

// Episodes through the loop: batched appends and several Step groups (threads) give the same
// records as the reference policy (prefill appends, one group), greedy and sampled, in every
// mode.
TEST_P(EnginePolicyTest, GroupedBatchedEpisodesEqualReference) {
  for (float temperature : {0.0f, 1.0f}) {
    for (Mode mode : {Mode::kPointer, Mode::kCalculator}) {
      auto specs = Specs(mode, 40, 6);
      LoopOptions loop{.parallel = 40, .max_generated_tokens = 60};
      engine::SamplingParams params;
      params.temperature = temperature;
      EnginePolicy reference(model_.get(), params,
                             {.appends = EnginePolicyOptions::Appends::kPrefill, .threads = 1});
      EnginePolicy grouped(model_.get(), params,
                           {.appends = EnginePolicyOptions::Appends::kBatched, .threads = 4});
      auto ra = RunEpisodes(reference, specs, loop);
      auto rb = RunEpisodes(grouped, specs, loop);
      ASSERT_TRUE(ra.ok() && rb.ok());
      int64_t tool_steps = 0, generated = 0;
      for (size_t i = 0; i < specs.size(); ++i) {
        const auto& x = (*ra)[i];
        const auto& y = (*rb)[i];
        EXPECT_EQ(x.trajectory.tokens, y.trajectory.tokens) << i;
        EXPECT_EQ(x.trajectory.roles, y.trajectory.roles) << i;
        EXPECT_EQ(x.stop_reason, y.stop_reason) << i;
        EXPECT_EQ(x.error, y.error) << i;
        EXPECT_EQ(x.tool_steps, y.tool_steps) << i;
        EXPECT_EQ(x.peak_session_bytes, y.peak_session_bytes) << i;
        EXPECT_EQ(x.score.ToJson(), y.score.ToJson()) << i;
        tool_steps += x.tool_steps;
        generated += x.generated_tokens;
      }
      // Not vacuous (a random model seldom closes a [CALL], so only pointer mode must use tools;
      // multi-token observations are covered by BatchedAppendsEqualPrefillAppends).
      EXPECT_GT(generated, 3 * static_cast<int64_t>(specs.size())) << tasks::ModeName(mode);
      if (mode == Mode::kPointer) {
        EXPECT_GT(tool_steps, 20);
      }
    }
  }
}

TEST_P(EnginePolicyTest, StepErrors) {
  EnginePolicy policy(model_.get());
  auto specs = Specs(Mode::kPointer, 1, 3);
  EpisodeContext context{&specs[0].instance, Mode::kPointer, nullptr, 1};
  auto prompt = tasks::PromptTokens(specs[0].instance);
  const int a = *policy.Open(context, prompt);
  EXPECT_EQ(policy.Step(std::vector<int>{a, a}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(policy.Append(a, std::vector<TokenId>{}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(policy.Append(a, std::vector<TokenId>{tokens::kVocabSize}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(policy.Append(a, std::vector<TokenId>{-1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(policy.Logits(a + 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(policy.Step(std::vector<int>{a}).ok());  // nothing was queued by the bad Appends
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
                         ::testing::Values(engine::Family::kMamba2, engine::Family::kLlama,
                                           engine::Family::kMistral),
                         [](const auto& info) { return engine::FamilyName(info.param); });

}  // namespace
}  // namespace tapeloop::agents
