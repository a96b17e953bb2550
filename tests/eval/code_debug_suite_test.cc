// The code-debug evaluator suite: episodes played by CodeDebugAgents, stored in the eval tables,
// resumed and reported like the arithmetic tasks.
#include "eval/code_debug_suite.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "eval/runner.h"
#include "tasks/task.h"

namespace tapeloop::eval {
namespace {

namespace fs = std::filesystem;
namespace cd = ::tapeloop::tasks::code_debug;

// An agent that never fixes anything: it runs the program once and leaves the files as given.
class RunOnlyAgent final : public CodeDebugAgent {
 public:
  absl::StatusOr<cd::CodeDebugTrajectory> Solve(const cd::CodeDebugInstance& instance,
                                                cd::CodeDebugMode mode) override {
    cd::CodeDebugEnv env(instance);
    cd::CodeDebugTrajectory t;
    t.mode = mode;
    t.prompt = instance.prompt;
    env.Step("run");
    t.steps = env.steps();
    t.final_files = env.files();
    t.runs = 1;
    return t;
  }
};

// An agent that fails outright on odd n.
class FailingAgent final : public CodeDebugAgent {
 public:
  absl::StatusOr<cd::CodeDebugTrajectory> Solve(const cd::CodeDebugInstance& instance,
                                                cd::CodeDebugMode mode) override {
    if (instance.n % 2) return absl::InternalError("agent crashed");
    return cd::Oracle(instance, mode);
  }
};

std::vector<EpisodeKey> Keys(const std::vector<std::string>& modes,
                             const std::vector<int64_t>& lengths, int64_t episodes) {
  std::vector<EpisodeKey> keys;
  for (const auto& m : modes) {
    for (int64_t n : lengths) {
      for (int64_t i = 0; i < episodes; ++i) keys.push_back({"oracle", "code_debug", m, n, 7, i});
    }
  }
  return keys;
}

TEST(CodeDebugSuiteTest, OraclePassesEveryEpisodeInBothModes) {
  OracleCodeDebugAgent oracle;
  auto keys = Keys({"interactive", "single-turn"}, {3, 9, 20}, 4);
  auto rows = RunCodeDebugEpisodes(oracle, keys, 2);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const EpisodeRow& r = (*rows)[i];
    SCOPED_TRACE(r.record.dump().substr(0, 400));
    EXPECT_EQ(r.key, keys[i]);
    EXPECT_TRUE(r.correct);
    EXPECT_TRUE(r.record.value("passed", false));
    EXPECT_GT(r.tool_calls, 0);
    EXPECT_GT(r.generated_tokens, 0);
    // Episode i of (n, seed) is the instance of MixSeed(seed, i).
    EXPECT_EQ(r.record.value("instance_seed", uint64_t{0}),
              tasks::MixSeed(keys[i].seed, keys[i].index));
    const auto& steps = r.record["steps"];
    ASSERT_FALSE(steps.empty());
    if (keys[i].mode == "interactive") {
      EXPECT_EQ(steps.front()["command"], "run");
      EXPECT_EQ(steps.back()["command"], "run");
      EXPECT_GE(r.record.value("runs", 0), 2);
    } else {
      EXPECT_EQ(steps.front()["command"], "ls");
      EXPECT_EQ(r.record.value("runs", -1), 0);
    }
  }
}

TEST(CodeDebugSuiteTest, AnAgentThatFixesNothingFailsAndErrorsAreFailedEpisodes) {
  RunOnlyAgent lazy;
  auto keys = Keys({"interactive"}, {4, 10}, 3);
  auto rows = RunCodeDebugEpisodes(lazy, keys, 2);
  ASSERT_TRUE(rows.ok());
  for (const auto& r : *rows) {
    EXPECT_FALSE(r.correct);
    EXPECT_EQ(r.record["score"]["outcome"], "exception") << r.record.dump();
  }
  FailingAgent failing;
  keys = Keys({"single-turn"}, {5, 6}, 2);
  rows = RunCodeDebugEpisodes(failing, keys, 1);
  ASSERT_TRUE(rows.ok());
  for (const auto& r : *rows) {
    EXPECT_EQ(r.correct, r.key.length == 6);
    EXPECT_EQ(r.record.contains("error"), r.key.length == 5);
  }
  // Bad keys are refused as a whole.
  EXPECT_EQ(RunCodeDebugEpisodes(failing, {{"oracle", "addition", "single-turn", 5, 1, 0}}, 1)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunCodeDebugEpisodes(failing, {{"oracle", "code_debug", "pointer", 5, 1, 0}}, 1)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunCodeDebugEpisodes(failing, {{"oracle", "code_debug", "interactive", 1, 1, 0}}, 1)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

class CodeDebugRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tapeloop_cdsuite_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(CodeDebugRunTest, SuiteRunsStoresResumesAndReportsPassRateByNPerMode) {
  EvalOptions o;
  o.entries = {{"oracle", {"interactive", "single-turn"}}};
  o.tasks = {"code_debug"};
  o.lengths = {4, 12};
  o.episodes = 3;
  o.seeds = {1, 2};
  o.commit_every = 5;  // several batches per cell
  o.db_path = (dir_ / "results.db").string();
  o.report_dir = (dir_ / "report").string();
  auto first = RunEvaluation(o);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->ran, 2 * 2 * 2 * 3);
  EXPECT_EQ(first->resumed, 0);
  for (std::string row : {"| oracle / interactive |", "| oracle / single-turn |"}) {
    size_t at = first->markdown.find(row);
    ASSERT_NE(at, std::string::npos) << first->markdown;
    std::string line = first->markdown.substr(at, first->markdown.find('\n', at) - at);
    EXPECT_NE(line.find("| 100% [100%-100%] | 100% [100%-100%] |"), std::string::npos) << line;
  }
  EXPECT_NE(first->markdown.find("## code_debug"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir_ / "report" / "report.md"));
  EXPECT_TRUE(fs::exists(dir_ / "report" / "aggregate.json"));
  std::ifstream in(dir_ / "report" / "episodes.jsonl");
  int lines = 0;
  for (std::string l; std::getline(in, l);) {
    auto j = nlohmann::json::parse(l);
    EXPECT_EQ(j["task"], "code_debug");
    EXPECT_TRUE(j["correct"].get<bool>());
    ++lines;
  }
  EXPECT_EQ(lines, 24);

  // The same command resumes: nothing is run again; the report is unchanged.
  auto again = RunEvaluation(o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->run_id, first->run_id);
  EXPECT_EQ(again->ran, 0);
  EXPECT_EQ(again->resumed, 24);
  EXPECT_EQ(again->markdown, first->markdown);
  auto report = ReportOnly(o);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->markdown, first->markdown);
}

TEST_F(CodeDebugRunTest, BadCodeDebugOptionsAreRefused) {
  EvalOptions o;
  o.tasks = {"code_debug"};
  o.lengths = {4};
  o.episodes = 1;
  o.db_path = (dir_ / "results.db").string();
  o.entries = {{"oracle", {"pointer"}}};
  EXPECT_EQ(RunEvaluation(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.entries = {{"oracle", {"interactive"}}};
  o.lengths = {1};
  EXPECT_EQ(RunEvaluation(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.lengths = {4};
  o.entries = {{(dir_ / "some-checkpoint").string(), {"interactive"}}};
  auto s = RunEvaluation(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_NE(std::string(s.message()).find("no model policy"), std::string::npos) << s;
}

TEST(CodeDebugSuiteOptionsTest, SuitesCoverNUpTo64InBothModes) {
  for (const std::string name : {"code-debug", "code-debug-short"}) {
    auto o = SuiteOptions(name, "/nonexistent-models-dir");
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_EQ(o->tasks, std::vector<std::string>{"code_debug"});
    ASSERT_EQ(o->entries.size(), 1u);
    EXPECT_EQ(o->entries[0].model, "oracle");
    EXPECT_EQ(o->entries[0].modes, (std::vector<std::string>{"interactive", "single-turn"}));
    EXPECT_EQ(o->lengths.back(), 64);
    EXPECT_NE(std::find(o->lengths.begin(), o->lengths.end(), 16), o->lengths.end());
  }
  auto names = SuiteNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "code-debug"), names.end());
}

}  // namespace
}  // namespace tapeloop::eval
