#include "tasks/trajectory.h"

#include <gtest/gtest.h>

#include "tasks/addition.h"
#include "tasks/task.h"

namespace tapeloop::tasks {
namespace {

TEST(TrajectoryTest, ModeNames) {
  for (Mode m : AllModes()) EXPECT_EQ(*ParseMode(ModeName(m)), m);
  auto bad = ParseMode("telepathy");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("direct-reversed"), std::string::npos);
}

TEST(TrajectoryTest, LossMaskMasksPromptAndObservations) {
  const Task& task = **FindTask("addition");
  Rng rng(1);
  Instance x = task.Generate(4, false, rng);
  for (Mode mode : AllModes()) {
    Trajectory t = *task.Expert(x, mode);
    auto mask = t.LossMask();
    ASSERT_EQ(mask.size(), t.tokens.size());
    const size_t prompt = PromptTokens(x).size();
    EXPECT_EQ(t.PromptSize(), prompt);
    for (size_t i = 0; i < mask.size(); ++i) {
      if (i < prompt) {
        EXPECT_EQ(mask[i], 0);
      } else if (t.roles[i] == Role::kObservation) {
        EXPECT_EQ(mask[i], mode == Mode::kCot ? 1 : 0) << ModeName(mode) << " " << i;
      } else {
        EXPECT_EQ(mask[i], 1);
      }
    }
    EXPECT_EQ(t.tokens.back(), tokens::kEos);
    EXPECT_EQ(t.roles.back(), Role::kEos);
  }
}

// tokens + mode + prompt size -> roles (hence mask) reproduce the expert's exactly.
TEST(TrajectoryTest, RolesRoundTripFromTokens) {
  Rng rng(2);
  for (const std::string& name : TaskNames()) {
    const Task& task = **FindTask(name);
    for (int n : {1, 3, 9, 30}) {
      Instance x = task.Generate(n, true, rng);
      for (Mode mode : AllModes()) {
        Trajectory t = *task.Expert(x, mode);
        auto back = TrajectoryFromTokens(t.tokens, mode, t.PromptSize());
        ASSERT_TRUE(back.ok()) << back.status();
        EXPECT_EQ(back->RoleString(), t.RoleString()) << name << " " << ModeName(mode);
        EXPECT_EQ(back->LossMask(), t.LossMask());
        EXPECT_EQ(back->Output(), t.Output());
        // Through text and back.
        Tokenizer tok;
        EXPECT_EQ(tok.Encode(*tok.Decode(t.tokens)), t.tokens);
      }
    }
  }
  std::vector<TokenId> bad = {tokens::kBos, 999};
  EXPECT_FALSE(TrajectoryFromTokens(bad, Mode::kPointer, 1).ok());
  EXPECT_FALSE(TrajectoryFromTokens(bad, Mode::kPointer, 5).ok());
}

TEST(TrajectoryTest, ShapesOfTheToolFreeAndCalculatorModes) {
  const Task& task = **FindTask("addition");
  Instance x = AdditionTask::Make("123", "989", 3);
  Tokenizer tok;
  EXPECT_EQ(*tok.Decode(task.Expert(x, Mode::kCalculator)->tokens),
            "[BOS]123+989=[CALL]add(123,989)[/CALL][OBS]1112[/OBS][ANS]1112[EOS]");
  EXPECT_EQ(*tok.Decode(task.Expert(x, Mode::kDirect)->tokens), "[BOS]123+989=1112[EOS]");
  EXPECT_EQ(*tok.Decode(task.Expert(x, Mode::kDirectReversed)->tokens),
            "[BOS]123+989=2111[EOS]");
  EXPECT_EQ(task.Expert(x, Mode::kCot)->tokens, task.Expert(x, Mode::kPointer)->tokens);
  EXPECT_EQ(task.Expert(x, Mode::kCalculator)->RoleString(),
            "PPPPPPPPPCCCCCCCCCCCCCCOOOOOOTAAAAE");
}

}  // namespace
}  // namespace tapeloop::tasks
