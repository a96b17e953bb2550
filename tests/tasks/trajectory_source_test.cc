#include "tasks/trajectory_source.h"

#include <gtest/gtest.h>

namespace tapeloop::tasks {
namespace {

TEST(TrajectorySourceTest, DeterministicAndIndependentOfBatching) {
  TrajectorySourceConfig config{.task = "addition", .mode = Mode::kPointer, .max_length = 5,
                                .seed = 42};
  auto a = *MakeTrajectorySource(config);
  auto b = *MakeTrajectorySource(config);
  std::vector<Example> one = a->Next(12);
  std::vector<Example> two = b->Next(5);
  for (auto& e : b->Next(7)) two.push_back(std::move(e));
  ASSERT_EQ(one.size(), 12u);
  ASSERT_EQ(two.size(), 12u);
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i].index, i);
    EXPECT_EQ(one[i].tokens, two[i].tokens);
    EXPECT_EQ(one[i].loss_mask, two[i].loss_mask);
    EXPECT_EQ(one[i].tokens.size(), one[i].loss_mask.size());
  }
  // A different seed gives different instances.
  config.seed = 43;
  auto c = *MakeTrajectorySource(config);
  int same = 0;
  for (auto& e : c->Next(12)) same += e.tokens == one[e.index].tokens;
  EXPECT_LT(same, 6);
}

TEST(TrajectorySourceTest, SeekResumesExactly) {
  TrajectorySourceConfig config{.task = "multiplication-n2", .mode = Mode::kCot,
                                .max_length = 10, .seed = 7};
  auto a = *MakeTrajectorySource(config);
  a->Next(30);
  const uint64_t saved = a->position();
  EXPECT_EQ(saved, 30u);
  auto expected = a->Next(10);
  auto b = *MakeTrajectorySource(config);
  b->Seek(saved);
  auto resumed = b->Next(10);
  ASSERT_EQ(resumed.size(), expected.size());
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i].tokens, expected[i].tokens);
    EXPECT_EQ(resumed[i].index, expected[i].index);
  }
  // cot: observations are targets, so the mask covers everything after the prompt.
  for (const auto& e : resumed) {
    const size_t prompt = PromptTokens(e.instance).size();
    for (size_t i = prompt; i < e.tokens.size(); ++i) EXPECT_EQ(e.loss_mask[i], 1);
  }
}

TEST(TrajectorySourceTest, MaxTokensAndPadding) {
  TrajectorySourceConfig config{.task = "addition", .mode = Mode::kPointer, .max_length = 8,
                                .seed = 3, .max_tokens = 150};
  auto s = *MakeTrajectorySource(config);
  auto batch = s->Next(16);
  ASSERT_EQ(batch.size(), 16u);
  for (const auto& e : batch) EXPECT_LE(e.tokens.size(), 150u);
  EXPECT_GE(s->position(), 16u);
  PaddedBatch padded = PadBatch(batch, 160);
  EXPECT_EQ(padded.batch, 16);
  EXPECT_EQ(padded.time, 160);
  for (int i = 0; i < padded.batch; ++i) {
    for (int t = 0; t < padded.time; ++t) {
      const size_t k = static_cast<size_t>(i) * padded.time + t;
      if (t < static_cast<int>(batch[i].tokens.size())) {
        EXPECT_EQ(padded.tokens[k], batch[i].tokens[t]);
      } else {
        EXPECT_EQ(padded.tokens[k], tokens::kPad);
        EXPECT_EQ(padded.loss_mask[k], 0);
      }
    }
  }
}

TEST(TrajectorySourceTest, BadConfigs) {
  EXPECT_EQ(MakeTrajectorySource({.task = "sorting"}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(MakeTrajectorySource({.task = "addition", .max_length = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tapeloop::tasks
