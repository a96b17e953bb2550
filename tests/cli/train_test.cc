// `tapeloop train` and `tapeloop run` on code_debug, run as processes: a short run on
// code_debug trajectories writes a checkpoint the engine, the evaluator and `run` load, plays
// code_debug episodes with it through the debugger (the agent eval), and records what it was
// trained on; the oracle plays through `run` and passes; an arithmetic run still works; bad
// task / mode / range flags exit 2 with a message naming the flag.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/models/model.h"
#include "nlohmann/json.hpp"
#include "tests/cli/process.h"

namespace tapeloop {
namespace {

namespace fs = std::filesystem;
using testing::Process;
using testing::TapeloopBinary;

using Result = testing::CliResult;

Result RunCli(std::vector<std::string> args) {
  return testing::RunCli(std::move(args), std::chrono::seconds(600));
}

nlohmann::json ReadJson(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
}

class TrainCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tapeloop_train_cli_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(TrainCliTest, CodeDebugRunWritesACheckpointThatPlaysAndEvaluates) {
  const std::string out = (dir_ / "coder").string();
  Result r = RunCli({"train",      "--arch",
                     "mamba2",     "--task",
                     "code_debug", "--min-len",
                     "2",          "--max-len",
                     "3",          "--steps",
                     "3",          "--batch",
                     "4",          "--d-model",
                     "32",         "--layers",
                     "2",          "--eval-every",
                     "3",          "--eval-count",
                     "4",          "--seed",
                     "5",          "--out",
                     out,          "--agent-eval-lengths",
                     "2,3",        "--agent-episodes",
                     "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("code_debug/interactive"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("held-out n<=3 exact"), std::string::npos) << r.err;
  // What it was trained on.
  nlohmann::json tj = ReadJson(fs::path(out) / "training.json");
  EXPECT_EQ(tj.value("task", ""), "code_debug");
  EXPECT_EQ(tj.value("mode", ""), "interactive");
  EXPECT_EQ(tj.value("min_len", 0), 2);
  EXPECT_EQ(tj.value("max_len", 0), 3);
  // One JSON line per agent-eval n: two episodes each, every one with the reason it ended.
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    lines.push_back(nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false));
  }
  ASSERT_EQ(lines.size(), 2u) << r.out;
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(lines[i].value("agent_eval_length", 0), i + 2);
    EXPECT_EQ(lines[i].value("episodes", 0), 2);
    int reasons = 0;
    for (const auto& [k, v] : lines[i]["stop_reasons"].items()) reasons += v.get<int>();
    EXPECT_EQ(reasons, 2) << lines[i].dump();
  }
  // The checkpoint loads in the engine and the evaluator plays it.
  auto model = engine::Model::Load(out);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string db = (dir_ / "r.db").string();
  Result e = RunCli({"eval", "--models", out, "--task", "code_debug", "--modes", "interactive",
                     "--lengths", "2", "--episodes", "2", "--seeds", "1", "--db", db, "--report",
                     (dir_ / "report").string()});
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_NE((e.out + e.err).find("coder"), std::string::npos) << e.out << e.err;
  // `tapeloop run` plays it too: one JSON record per episode, each with why it ended.
  Result run = RunCli({"run", "--model", out, "--task", "code_debug", "--length", "3", "--episodes",
                       "2", "--seed", "4", "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  int records = 0;
  for (absl::string_view line : absl::StrSplit(run.out, '\n', absl::SkipEmpty())) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_EQ(j.value("task", ""), "code_debug") << line;
    EXPECT_EQ(j.value("n", 0), 3) << line;
    EXPECT_FALSE(j.value("stop_reason", "").empty()) << line;
    ++records;
  }
  EXPECT_EQ(records, 2) << run.out;
}

TEST_F(TrainCliTest, RunPlaysCodeDebugWithTheOracleAndRefusesBadFlags) {
  Result r = RunCli({"run", "--oracle", "--task", "code_debug", "--length", "6", "--mode",
                     "single-turn", "--episodes", "3", "--seed", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("$ ls\n"), std::string::npos) << r.out.substr(0, 500);
  EXPECT_NE(r.out.find("passed: 3 / 3"), std::string::npos) << r.out.substr(r.out.size() - 300);
  r = RunCli({"run", "--oracle", "--task", "code_debug", "--length", "4"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("$ run\n"), std::string::npos);
  EXPECT_NE(r.out.find("passed: yes"), std::string::npos);
  for (const auto& bad : std::vector<std::vector<std::string>>{
           {"--length", "1"}, {"--mode", "pointer"}, {"--temperature", "0.5"}, {"--training"}}) {
    std::vector<std::string> args = {"run", "--oracle", "--task", "code_debug"};
    args.insert(args.end(), bad.begin(), bad.end());
    Result b = RunCli(args);
    EXPECT_EQ(b.code, 2) << bad[0] << ": " << b.err;
    EXPECT_NE(b.err.find(bad[0] == "--length" ? "length 1"
                         : bad[0] == "--mode" ? "pointer"
                                              : bad[0]),
              std::string::npos)
        << b.err;
  }
}

TEST_F(TrainCliTest, AnArithmeticRunStillTrainsAndRecordsItsLength) {
  const std::string out = (dir_ / "adder").string();
  Result r = RunCli({"train",   "--arch",       "mamba2", "--task",   "addition", "--mode",
                     "pointer", "--max-len",    "3",      "--steps",  "2",        "--batch",
                     "4",       "--d-model",    "32",     "--layers", "2",        "--eval-every",
                     "2",       "--eval-count", "4",      "--out",    out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("held-out length 3 exact"), std::string::npos) << r.err;
  nlohmann::json tj = ReadJson(fs::path(out) / "training.json");
  EXPECT_EQ(tj.value("task", ""), "addition");
  EXPECT_EQ(tj.value("mode", ""), "pointer");
  EXPECT_EQ(tj.value("max_len", 0), 3);
  EXPECT_FALSE(tj.contains("min_len"));
}

// --eval-only / --resume take the model and task flags of the model in DIR (its config.json and
// training.json) where the command line does not give them: a small nemotron_h evaluates with
// no model flag at all. A flag that contradicts the checkpoint is refused, naming the model DIR
// holds beside the one the flags built; the optimizer flags do not matter to --eval-only (here
// --steps and --batch differ from the training run's).
TEST_F(TrainCliTest, EvalOnlyAndResumeTakeTheModelFlagsOfTheDirectory) {
  const std::string out = (dir_ / "small").string();
  Result trained =
      RunCli({"train", "--arch",          "nemotron_h", "--pattern",       "M*-M-", "--max-len",
              "3",     "--steps",         "1",          "--batch",         "4",     "--d-model",
              "32",    "--ffn",           "48",         "--heads",         "2",     "--kv-heads",
              "1",     "--attn-head-dim", "16",         "--time-step-min", "0.002", "--eval-every",
              "100",   "--out",           out});
  ASSERT_EQ(trained.code, 0) << trained.err;
  const std::string built =
      "nemotron_h V=285 D=32 pattern=M*-M- N=16 P=16 expand=2 K=4 chunk=64 dt_min=0.002 Hq=2 "
      "Hkv=1 hd=16 F=48";
  Result ok = RunCli({"train", "--eval-only", "--diagnose", "4", "--out", out});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.err.find(built), std::string::npos) << ok.err;
  EXPECT_NE(ok.err.find("loaded parameters from"), std::string::npos) << ok.err;
  // An evaluation's header names no optimizer or schedule settings (none of them apply).
  EXPECT_NE(ok.err.find("tapeloop train --eval-only: addition/pointer"), std::string::npos)
      << ok.err;
  EXPECT_EQ(ok.err.find(", lr "), std::string::npos) << ok.err;
  for (const std::string flag : {"--eval-only", "--resume"}) {
    Result r = RunCli({"train", flag, "--d-model", "64", "--steps", "2", "--batch", "8",
                       "--diagnose", "4", "--out", out});
    EXPECT_EQ(r.code, 1) << flag << ": " << r.err;
    EXPECT_NE(r.err.find(built), std::string::npos) << r.err;                    // DIR's model
    EXPECT_NE(r.err.find("nemotron_h V=285 D=64"), std::string::npos) << r.err;  // the flags'
  }
}

TEST_F(TrainCliTest, BadTaskModeAndRangeFlagsExit2NamingTheFlag) {
  const std::string out = (dir_ / "x").string();
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{"--task", "code_debug", "--mode", "pointer"}, "--mode pointer"},
      {{"--task", "code_debug", "--min-len", "5", "--max-len", "3"}, "--min-len 5 / --max-len 3"},
      {{"--task", "code_debug", "--min-len", "1", "--max-len", "3"}, "--min-len 1"},
      {{"--task", "code_debug", "--max-len", "2000"}, "--max-len 2000"},
      {{"--task", "sorting"}, "unknown task \"sorting\""},
      {{"--task", "addition", "--mode", "interactive"}, "unknown mode \"interactive\""},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"train", "--steps", "1", "--out", out};
    args.insert(args.end(), c.args.begin(), c.args.end());
    Result r = RunCli(args);
    EXPECT_EQ(r.code, 2) << c.needle << ": " << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(fs::path(out) / "model.safetensors"));
  }
}

}  // namespace
}  // namespace tapeloop
