#include "tasks/code_debug/code_debug.h"

#include <gtest/gtest.h>

#include "tools/debugger/interpreter.h"

namespace tapeloop::tasks::code_debug {
namespace {

TEST(CodeDebugTest, GeneratorIsDeterministicAndHasTheBug) {
  for (int n : {2, 3, 6, 16, 40}) {
    for (uint64_t seed : {1u, 2u, 77u}) {
      auto a = GenerateCodeDebug(n, seed);
      auto b = GenerateCodeDebug(n, seed);
      ASSERT_TRUE(a.ok()) << a.status();
      EXPECT_EQ(a->buggy, b->buggy);
      EXPECT_EQ(a->buggy.size(), static_cast<size_t>(n));
      EXPECT_TRUE(a->buggy.count("main.py"));
      EXPECT_TRUE(a->buggy.count("foo.py"));
      EXPECT_EQ(a->functions.front(), "main");
      EXPECT_EQ(a->functions.back(), "foo");
      EXPECT_NE(a->buggy.at("main.py").find("v10 = "), std::string::npos);
      EXPECT_NE(a->buggy.at("foo.py").find("v10"), std::string::npos);
      debugger::RunResult r = debugger::RunProgram(a->buggy, "main.py");
      EXPECT_EQ(r.exception_type, "NameError") << r.error_text;
      EXPECT_EQ(r.frames.back().function, "foo");
      EXPECT_FALSE(ScoreCodeDebug(*a, a->buggy).passed);
      EXPECT_TRUE(ScoreCodeDebug(*a, a->fixed).passed);
    }
  }
  EXPECT_NE(GenerateCodeDebug(10, 1)->buggy, GenerateCodeDebug(10, 2)->buggy);
  EXPECT_FALSE(GenerateCodeDebug(1, 1).ok());
  EXPECT_FALSE(GenerateCodeDebug(2000, 1).ok());
}

TEST(CodeDebugTest, InteractiveOraclePassesAtN64) {
  int passed = 0, total = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    auto x = GenerateCodeDebug(64, seed);
    ASSERT_TRUE(x.ok()) << x.status();
    auto t = InteractiveOracle(*x);
    ASSERT_TRUE(t.ok()) << t.status();
    ++total;
    CodeDebugScore s = ScoreCodeDebug(*x, t->final_files);
    passed += s.passed;
    EXPECT_TRUE(s.passed) << "seed " << seed << ": " << s.error_text;
    // Each round edits at most 3 files.
    int files_this_round = 0;
    std::set<std::string> files;
    for (const auto& step : t->steps) {
      if (step.command == "run") {
        files.clear();
      } else if (step.command.rfind("edit ", 0) == 0) {
        files.insert(step.command.substr(5, step.command.find(' ', 5) - 5));
        EXPECT_LE(files.size(), 3u);
      }
    }
    (void)files_this_round;
    EXPECT_EQ(t->steps.back().command, "run");
  }
  EXPECT_EQ(passed, total);
}

TEST(CodeDebugTest, SingleTurnOraclePassesAtN16) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    auto x = GenerateCodeDebug(16, seed);
    ASSERT_TRUE(x.ok());
    auto t = SingleTurnOracle(*x);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->runs, 0);
    EXPECT_TRUE(ScoreCodeDebug(*x, t->final_files).passed) << "seed " << seed;
    EXPECT_EQ(t->final_files, x->fixed) << "seed " << seed;
  }
}

TEST(CodeDebugTest, OraclesAcrossSizes) {
  for (int n : {2, 4, 8, 16, 32, 100}) {
    for (uint64_t seed = 100; seed < 104; ++seed) {
      auto x = GenerateCodeDebug(n, seed);
      ASSERT_TRUE(x.ok());
      for (CodeDebugMode mode : {CodeDebugMode::kInteractive, CodeDebugMode::kSingleTurn}) {
        auto t = Oracle(*x, mode);
        ASSERT_TRUE(t.ok()) << t.status();
        EXPECT_TRUE(ScoreCodeDebug(*x, t->final_files).passed)
            << "n " << n << " seed " << seed << " " << CodeDebugModeName(mode);
      }
    }
  }
}

TEST(CodeDebugTest, ScorerRejectsWrongFixes) {
  auto x = GenerateCodeDebug(8, 5);
  ASSERT_TRUE(x.ok());
  debugger::FileMap wrong = x->fixed;
  // Declaring v10 in foo itself runs, but prints the wrong value unless it happens to match.
  std::string& foo = wrong["foo.py"];
  foo.replace(foo.find("):\n") + 3, 0, "    v10 = 123456\n");
  CodeDebugScore s = ScoreCodeDebug(*x, wrong);
  EXPECT_FALSE(s.passed);
  EXPECT_EQ(s.outcome, "ok");
}

TEST(CodeDebugTest, TrajectoryTokens) {
  auto x = GenerateCodeDebug(6, 9);
  ASSERT_TRUE(x.ok());
  auto t = InteractiveOracle(*x);
  ASSERT_TRUE(t.ok());
  Trajectory tr = t->ToTrajectory();
  ASSERT_EQ(tr.tokens.size(), tr.roles.size());
  EXPECT_EQ(tr.tokens.front(), tokens::kBos);
  EXPECT_EQ(tr.tokens.back(), tokens::kEos);
  auto mask = tr.LossMask();
  size_t commands = 0;
  for (size_t i = 0; i < mask.size(); ++i) commands += mask[i];
  EXPECT_GT(commands, 0u);
  EXPECT_NE(t->ToText().find("$ run\n"), std::string::npos);

  auto source = MakeCodeDebugTrajectorySource({CodeDebugMode::kInteractive, 4, 8, 3, 0});
  ASSERT_TRUE(source.ok());
  auto batch = (*source)->Next(3);
  ASSERT_EQ(batch.size(), 3u);
  (*source)->Seek(1);
  auto again = (*source)->Next(1);
  EXPECT_EQ(again[0].tokens, batch[1].tokens);
  EXPECT_FALSE(MakeCodeDebugTrajectorySource({CodeDebugMode::kSingleTurn, 9, 4, 0, 0}).ok());
}

// The Mode a code_debug Trajectory carries is the text-tool role scheme (kCalculator: [CALL]
// ... [/CALL] commands, [OBS] ... [/OBS] observations). It must be the right label: the roles
// recovered from the token ids alone under that mode are exactly the roles the trajectory was
// built with, and the loss mask trains the commands and [EOS] only, in both oracle modes.
TEST(CodeDebugTest, TrajectoryModeLabelRecoversTheRolesFromTheTokens) {
  for (CodeDebugMode mode : {CodeDebugMode::kInteractive, CodeDebugMode::kSingleTurn}) {
    for (int n : {3, 11, 40}) {
      auto x = GenerateCodeDebug(n, 1000 + n);
      ASSERT_TRUE(x.ok());
      auto t = Oracle(*x, mode);
      ASSERT_TRUE(t.ok());
      Trajectory tr = t->ToTrajectory();
      size_t prompt = 1 + x->prompt.size();  // [BOS] + the prompt bytes
      ASSERT_EQ(tr.PromptSize(), prompt);
      auto recovered = TrajectoryFromTokens(tr.tokens, tr.mode, prompt);
      ASSERT_TRUE(recovered.ok()) << recovered.status();
      EXPECT_EQ(recovered->RoleString(), tr.RoleString()) << "n=" << n;
      auto mask = tr.LossMask();
      for (size_t i = 0; i < mask.size(); ++i) {
        bool trained = tr.roles[i] == Role::kCommand || tr.roles[i] == Role::kEos;
        ASSERT_EQ(mask[i] != 0, trained) << "token " << i << " role " << RoleLetter(tr.roles[i]);
      }
      // Nothing of a debugging episode is an arithmetic answer or a thought.
      EXPECT_TRUE(tr.Output().empty());
      EXPECT_EQ(tr.RoleString().find_first_of("TA"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace tapeloop::tasks::code_debug

namespace tapeloop::tasks::code_debug {
namespace {

TEST(CodeDebugEnvTest, OracleCommandsSolveTheEpisode) {
  auto x = GenerateCodeDebug(12, 4);
  ASSERT_TRUE(x.ok());
  auto t = InteractiveOracle(*x);
  ASSERT_TRUE(t.ok());
  CodeDebugEnv env(*x, 1000);
  EXPECT_EQ(env.prompt(), x->prompt);
  for (const auto& step : t->steps) {
    ASSERT_FALSE(env.done());
    debugger::Observation o = env.Step(step.command);
    EXPECT_EQ(o.text, step.observation);
  }
  EXPECT_TRUE(env.done());
  EXPECT_TRUE(env.solved());
  EXPECT_TRUE(env.Score().passed);
  EXPECT_TRUE(env.Step("run").is_error);  // over
}

TEST(CodeDebugEnvTest, TruncatesAtTheStepLimit) {
  auto x = GenerateCodeDebug(5, 4);
  ASSERT_TRUE(x.ok());
  CodeDebugEnv env(*x, 3);
  env.Step("run");
  env.Step("ls");
  EXPECT_FALSE(env.done());
  env.Step("bogus");
  EXPECT_TRUE(env.done());
  EXPECT_TRUE(env.truncated());
  EXPECT_FALSE(env.solved());
  EXPECT_FALSE(env.Score().passed);
  EXPECT_EQ(env.steps().size(), 3u);
}

}  // namespace
}  // namespace tapeloop::tasks::code_debug
