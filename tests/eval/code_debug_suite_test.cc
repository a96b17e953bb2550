// The code-debug evaluator suite: episodes played by CodeDebugAgents, stored in the eval tables,
// resumed and reported like the arithmetic tasks.
#include "eval/code_debug_suite.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "agents/engine_policy.h"
#include "common/tokenizer.h"
#include "engine/models/model.h"
#include "eval/runner.h"
#include "store/database.h"
#include "tasks/task.h"
#include "tests/engine/test_util.h"

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

// A policy that writes a scripted token stream: the expert's trajectory (the tokens a perfect
// model would write) or any other script. It checks that the prompt and every observation the
// agent appends are exactly the trajectory's (the token form the trainer trains on).
class ScriptedPolicy final : public agents::Policy {
 public:
  // `script`: the whole token stream (prompt included) and its roles; Step writes the non-
  // observation tokens after the prompt in order, Append must receive the observation runs.
  explicit ScriptedPolicy(tasks::Trajectory script) : script_(std::move(script)) {}
  std::string name() const override { return "scripted"; }
  absl::StatusOr<int> Open(const agents::EpisodeContext&,
                           std::span<const TokenId> prompt) override {
    pos_ = script_.PromptSize();
    if (std::vector<TokenId>(prompt.begin(), prompt.end()) !=
        std::vector<TokenId>(script_.tokens.begin(), script_.tokens.begin() + pos_)) {
      mismatches_.push_back("prompt");
    }
    return 0;
  }
  absl::Status Append(int, std::span<const TokenId> tokens) override {
    for (TokenId id : tokens) {
      if (pos_ >= script_.tokens.size() || script_.roles[pos_] != tasks::Role::kObservation ||
          script_.tokens[pos_] != id) {
        mismatches_.push_back("observation at " + std::to_string(pos_));
        return absl::OkStatus();
      }
      ++pos_;
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<TokenId>> Step(std::span<const int>) override {
    if (pos_ >= script_.tokens.size()) return std::vector<TokenId>{tokens::kEos};
    if (script_.roles[pos_] == tasks::Role::kObservation) {
      mismatches_.push_back("asked for a token where an observation comes, at " +
                            std::to_string(pos_));
    }
    return std::vector<TokenId>{script_.tokens[pos_++]};
  }
  void Close(int) override { closed_ = true; }

  const std::vector<std::string>& mismatches() const { return mismatches_; }
  bool closed() const { return closed_; }

 private:
  tasks::Trajectory script_;
  size_t pos_ = 0;
  std::vector<std::string> mismatches_;
  bool closed_ = false;
};

// A script: the prompt of `instance`, then `written` as if the model wrote it (observations are
// the agent's business, so none are scripted).
tasks::Trajectory Script(const cd::CodeDebugInstance& instance, std::vector<TokenId> written) {
  tasks::Trajectory t;
  t.tokens.push_back(tokens::kBos);
  t.roles.push_back(tasks::Role::kPrompt);
  for (unsigned char c : instance.prompt) {
    t.tokens.push_back(c);
    t.roles.push_back(tasks::Role::kPrompt);
  }
  for (TokenId id : written) {
    t.tokens.push_back(id);
    t.roles.push_back(tasks::Role::kCommand);
  }
  return t;
}

std::vector<TokenId> Call(const std::string& command) {
  std::vector<TokenId> out = {tokens::kCall};
  for (unsigned char c : command) out.push_back(c);
  out.push_back(tokens::kCallEnd);
  return out;
}

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

TEST(PlayCodeDebugTest, APolicyWritingTheExpertsCommandsReproducesItsTrajectoryAndPasses) {
  // Random instances of several sizes in both modes: the agent's token stream (prompt,
  // commands, the observations it appends) must be the trainer's trajectory token for token.
  for (cd::CodeDebugMode mode : {cd::CodeDebugMode::kInteractive, cd::CodeDebugMode::kSingleTurn}) {
    for (int n : {2, 5, 11}) {
      SCOPED_TRACE(std::string(cd::CodeDebugModeName(mode)) + " n=" + std::to_string(n));
      auto instance = cd::GenerateCodeDebug(n, tasks::MixSeed(1234, n));
      ASSERT_TRUE(instance.ok()) << instance.status();
      auto expert = cd::Oracle(*instance, mode);
      ASSERT_TRUE(expert.ok()) << expert.status();
      const tasks::Trajectory want = expert->ToTrajectory();
      ScriptedPolicy policy(want);
      auto got = PlayCodeDebug(policy, *instance, mode, /*seed=*/1);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_TRUE(policy.mismatches().empty()) << policy.mismatches().front();
      EXPECT_TRUE(policy.closed());
      EXPECT_EQ(got->ToTrajectory().tokens, want.tokens);
      EXPECT_EQ(got->stop_reason, mode == cd::CodeDebugMode::kInteractive ? "solved" : "eos");
      EXPECT_EQ(got->runs, expert->runs);
      EXPECT_TRUE(cd::ScoreCodeDebug(*instance, got->final_files).passed);
    }
  }
}

TEST(PlayCodeDebugTest, EveryWayAModelCanGoWrongEndsTheEpisodeWithItsReason) {
  auto instance = cd::GenerateCodeDebug(4, 99);
  ASSERT_TRUE(instance.ok());
  const auto mode = cd::CodeDebugMode::kInteractive;
  auto play = [&](std::vector<TokenId> written, ModelDebugLimits limits = {}) {
    ScriptedPolicy policy(Script(*instance, std::move(written)));
    auto t = PlayCodeDebug(policy, *instance, mode, 1, limits);
    EXPECT_TRUE(t.ok()) << t.status();
    EXPECT_TRUE(policy.closed());
    return *t;
  };
  // A byte between calls, a special token inside a call.
  cd::CodeDebugTrajectory t = play({'r', 'u', 'n'});
  EXPECT_EQ(t.stop_reason, "bad_token 'r' between calls");
  EXPECT_TRUE(t.steps.empty());
  t = play({tokens::kCall, 'r', tokens::kAns});
  EXPECT_EQ(t.stop_reason, "bad_token [ANS] in a command");
  t = play({0x9e});  // not UTF-8 on its own: the reason stays ASCII
  EXPECT_EQ(t.stop_reason, "bad_token \\x9e between calls");
  // [EOS] at once: nothing sent, the files are the buggy ones, which fail.
  t = play({tokens::kEos});
  EXPECT_EQ(t.stop_reason, "eos");
  EXPECT_FALSE(cd::ScoreCodeDebug(*instance, t.final_files).passed);
  // Commands the debugger refuses are observations (errors), not the end.
  std::vector<TokenId> w = Call("frobnicate");
  for (TokenId id : Call("run")) w.push_back(id);
  w.push_back(tokens::kEos);
  t = play(w);
  EXPECT_EQ(t.stop_reason, "eos");
  ASSERT_EQ(t.steps.size(), 2u);
  EXPECT_TRUE(t.steps[0].is_error);
  EXPECT_EQ(t.runs, 1);
  EXPECT_NE(t.steps[1].observation.find("NameError"), std::string::npos) << t.steps[1].observation;
  // Limits: steps, command bytes, tokens.
  w.clear();
  for (int i = 0; i < 10; ++i) {
    for (TokenId id : Call("ls")) w.push_back(id);
  }
  ModelDebugLimits limits;
  limits.max_steps = 3;
  t = play(w, limits);
  EXPECT_EQ(t.stop_reason, "max_steps");
  EXPECT_EQ(t.steps.size(), 3u);
  limits = {};
  limits.max_command_bytes = 5;
  t = play(Call("view main.py"), limits);
  EXPECT_EQ(t.stop_reason, "long_command");
  limits = {};
  limits.max_tokens = 7;
  t = play(w, limits);
  EXPECT_EQ(t.stop_reason, "max_tokens");
  EXPECT_EQ(t.steps.size(), 1u);  // [CALL] l s [/CALL] = 4 tokens; the second call is cut
}

// The bundled code-debug model (models/nemotron_h-code-debug, a hybrid whose KV cache grows
// with the episode) plays real episodes: several at once, their decode steps batched and
// finished episodes replaced by waiting ones, give exactly the episodes it plays one at a
// time, each with its session's peak state.
TEST(PlayCodeDebugGamesTest, BatchedEpisodesEqualOneAtATime) {
  auto model =
      engine::Model::Load(std::string(TAPELOOP_SOURCE_DIR) + "/models/nemotron_h-code-debug");
  ASSERT_TRUE(model.ok()) << model.status();
  const auto mode = cd::CodeDebugMode::kInteractive;
  std::vector<cd::CodeDebugInstance> instances;
  for (int i = 0; i < 7; ++i) {
    auto instance = cd::GenerateCodeDebug(2 + i % 3, tasks::MixSeed(77, i));
    ASSERT_TRUE(instance.ok()) << instance.status();
    instances.push_back(std::move(*instance));
  }
  std::vector<CodeDebugGame> games;
  for (const auto& instance : instances) games.push_back({&instance, mode, instance.seed});
  ModelDebugLimits limits;
  limits.max_steps = 12;  // keeps the failing episodes short
  agents::EnginePolicyOptions options;
  options.appends = agents::EnginePolicyOptions::Appends::kPrefill;
  options.threads = 1;
  agents::EnginePolicy policy(model->get(), engine::SamplingParams{}, options);
  auto together = PlayCodeDebugGames(policy, games, limits, /*parallel=*/4);
  ASSERT_EQ(together.size(), games.size());
  int passed = 0;
  std::set<size_t> commands;
  for (size_t i = 0; i < games.size(); ++i) {
    SCOPED_TRACE(i);
    agents::EnginePolicy alone_policy(model->get(), engine::SamplingParams{}, options);
    auto alone = PlayCodeDebug(alone_policy, instances[i], mode, instances[i].seed, limits);
    ASSERT_TRUE(alone.ok()) << alone.status();
    ASSERT_TRUE(together[i].ok()) << together[i].status();
    const cd::CodeDebugTrajectory& t = together[i]->trajectory;
    EXPECT_EQ(t.ToTrajectory().tokens, alone->ToTrajectory().tokens);
    EXPECT_EQ(t.stop_reason, alone->stop_reason);
    EXPECT_EQ(t.final_files, alone->final_files);
    EXPECT_EQ(t.runs, alone->runs);
    // At least the state after the prompt, and more than that once an observation went in.
    ASSERT_FALSE(t.steps.empty());
    EXPECT_GT(together[i]->peak_session_bytes, 0);
    EXPECT_GT(together[i]->wall_ms, 0);
    passed += cd::ScoreCodeDebug(instances[i], t.final_files).passed ? 1 : 0;
    commands.insert(t.steps.size());
  }
  // Real play, not garbage: some programs fixed, episodes of different lengths.
  EXPECT_GE(passed, 1);
  EXPECT_GE(commands.size(), 2u);
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
  // A checkpoint that is not there: the error names it.
  o.entries = {{(dir_ / "some-checkpoint").string(), {"interactive"}}};
  auto s = RunEvaluation(o).status();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("some-checkpoint"), std::string::npos) << s;
}

// A tiny random-weight checkpoint plays code_debug through the engine: it writes garbage, but
// every episode ends (by its first bad token, at the latest at the token or step limit), is
// scored and stored, and the same instance gives the same episode (greedy decoding).
TEST_F(CodeDebugRunTest, AModelCheckpointPlaysThroughTheEngineAndIsStoredAndReported) {
  engine::ModelConfig c = engine::testing::TinyConfig(engine::Family::kMamba2);
  c.vocab_size = tokens::kVocabSize;  // tapeloop-tokens-v1, as EnginePolicy requires
  c.bos_token_id = tokens::kBos;
  c.eos_token_id = tokens::kEos;
  c.initializer_range = 0.5f;
  auto model = engine::Model::RandomInit(c, 5);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string path = (dir_ / "random-coder").string();
  ASSERT_TRUE((*model)->Save(path).ok());

  ModelCodeDebugAgent agent(model->get());
  auto instance = cd::GenerateCodeDebug(4, 3);
  ASSERT_TRUE(instance.ok());
  auto a = agent.Solve(*instance, cd::CodeDebugMode::kInteractive);
  auto b = agent.Solve(*instance, cd::CodeDebugMode::kInteractive);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE(a->stop_reason.empty());
  EXPECT_EQ(a->stop_reason, b->stop_reason);
  EXPECT_EQ(a->ToTrajectory().tokens, b->ToTrajectory().tokens);

  EvalOptions o;
  o.tasks = {"code_debug"};
  o.lengths = {3, 6};
  o.episodes = 3;
  o.seeds = {1};
  o.parallel = 2;
  o.db_path = (dir_ / "results.db").string();
  o.entries = {{path, {"interactive"}}, {"oracle", {"interactive"}}};
  auto run = RunEvaluation(o);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->ran, 12);
  auto db = store::Database::Open(o.db_path);
  ASSERT_TRUE(db.ok());
  ResultsStore results(db->get());
  auto episodes = results.Episodes(run->run_id, /*with_records=*/true);
  ASSERT_TRUE(episodes.ok()) << episodes.status();
  ASSERT_EQ(episodes->size(), 12u);
  for (const EpisodeRow& r : *episodes) {
    SCOPED_TRACE(r.record.dump().substr(0, 300));
    if (r.key.model == "oracle") {
      EXPECT_TRUE(r.correct);
      EXPECT_TRUE(r.trajectory_match);
      EXPECT_FALSE(r.record.contains("stop_reason"));
    } else {
      EXPECT_EQ(r.key.model, "random-coder");
      EXPECT_GT(r.peak_state_bytes, 0);
      EXPECT_FALSE(r.correct);
      EXPECT_FALSE(r.trajectory_match);
      EXPECT_FALSE(r.record.value("stop_reason", "").empty());
    }
  }
  EXPECT_NE(run->markdown.find("random-coder"), std::string::npos) << run->markdown;
  // Rerun: everything resumes.
  auto again = RunEvaluation(o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->ran, 0);
  EXPECT_EQ(again->resumed, 12);
}

TEST(CodeDebugSuiteOptionsTest, SuitesCoverNUpTo64InBothModes) {
  for (const std::string name : {"code-debug", "code-debug-short"}) {
    // Without the models directory the oracle plays alone and the model is reported missing.
    auto o = SuiteOptions(name, "/nonexistent-models-dir");
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_EQ(o->tasks, std::vector<std::string>{"code_debug"});
    ASSERT_EQ(o->entries.size(), 1u);
    EXPECT_EQ(o->entries[0].model, "oracle");
    EXPECT_EQ(o->entries[0].modes, (std::vector<std::string>{"interactive", "single-turn"}));
    EXPECT_EQ(o->missing,
              std::vector<std::string>{"/nonexistent-models-dir/nemotron_h-code-debug"});
    EXPECT_EQ(o->lengths.back(), 64);
    EXPECT_NE(std::find(o->lengths.begin(), o->lengths.end(), 16), o->lengths.end());
    // With the bundled models, the trained model plays the interactive mode beside it.
    o = SuiteOptions(name, std::string(TAPELOOP_SOURCE_DIR) + "/models");
    ASSERT_TRUE(o.ok()) << o.status();
    ASSERT_EQ(o->entries.size(), 2u);
    EXPECT_EQ(o->entries[1].model,
              std::string(TAPELOOP_SOURCE_DIR) + "/models/nemotron_h-code-debug");
    EXPECT_EQ(o->entries[1].modes, std::vector<std::string>{"interactive"});
    EXPECT_EQ(o->stop_after_zero, name == "code-debug" ? 2 : 0);
  }
  auto names = SuiteNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "code-debug"), names.end());
}

}  // namespace
}  // namespace tapeloop::eval
