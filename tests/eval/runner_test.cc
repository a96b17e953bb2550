#include "eval/runner.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "engine/models/model.h"
#include "tests/cli/process.h"

namespace tapeloop::eval {
namespace {

namespace fs = std::filesystem;

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tapeloop_runner_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A tiny random-weight Mamba-2 checkpoint: it plays garbage, but deterministic garbage, so
  // its aggregates are a sharp fingerprint of exactly which episodes were stored.
  std::string RandomModel() {
    engine::ModelConfig c;
    c.family = engine::Family::kMamba2;
    c.vocab_size = 320;
    c.hidden_size = 32;
    c.initializer_range = 0.5f;
    c.tie_word_embeddings = true;
    c.num_hidden_layers = 2;
    c.mamba_num_heads = 4;
    c.mamba_head_dim = 16;
    c.ssm_state_size = 8;
    c.n_groups = 1;
    c.chunk_size = 16;
    c.gated_norm_group_size = 64;
    c.dt_max = INFINITY;
    auto model = engine::Model::RandomInit(c, 11);
    EXPECT_TRUE(model.ok()) << model.status();
    std::string path = (dir_ / "random-mamba2").string();
    EXPECT_TRUE((*model)->Save(path).ok());
    return path;
  }

  fs::path dir_;
};

TEST_F(RunnerTest, OracleIsExactAndARerunResumesEverything) {
  EvalOptions o;
  o.entries = {{"oracle", {"pointer", "calculator", "direct"}}};
  o.tasks = {"addition", "multiplication-n2"};
  o.lengths = {3, 40};
  o.episodes = 5;
  o.seeds = {1, 2};
  o.db_path = (dir_ / "r.db").string();
  o.report_dir = (dir_ / "report").string();
  auto first = RunEvaluation(o);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->ran, 3 * 2 * 2 * 2 * 5);
  EXPECT_EQ(first->resumed, 0);
  auto db = store::Database::Open(o.db_path);
  ASSERT_TRUE(db.ok());
  ResultsStore store(db->get());
  auto cells = store.Aggregates(first->run_id);
  ASSERT_TRUE(cells.ok());
  for (const Aggregate& a : *cells) {
    EXPECT_EQ(a.accuracy, 1.0) << a.model << " " << a.mode << " " << a.task << " " << a.length;
  }
  auto again = RunEvaluation(o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->run_id, first->run_id);
  EXPECT_EQ(again->ran, 0);
  EXPECT_EQ(again->resumed, first->ran);
  EXPECT_EQ(again->markdown, first->markdown);
  auto report = ReportOnly(o);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->markdown, first->markdown);
}

TEST_F(RunnerTest, EntryLengthCapSkipsLongerLengthsForThatEntryOnly) {
  EvalOptions o;
  o.entries = {{"oracle", {"pointer"}, /*max_length=*/10}, {"oracle", {"direct"}, 0}};
  o.tasks = {"addition"};
  o.lengths = {5, 40};
  o.episodes = 3;
  o.db_path = (dir_ / "cap.db").string();
  auto run = RunEvaluation(o);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->ran, 3 + 3 * 2);
  EXPECT_NE(run->markdown.find("| oracle / pointer | ?->5 (100%) | 100% | |"), std::string::npos)
      << run->markdown;
}

// A model that scores 0% at two lengths in a row is not run at its longer lengths; the oracle
// beside it runs every length, the report says which cells were stopped, and a rerun resumes.
TEST_F(RunnerTest, StopAfterZeroSkipsLongerLengthsOfAFailingModelOnly) {
  std::string model = RandomModel();
  EvalOptions o;
  o.entries = {{model, {"pointer"}}, {"oracle", {"pointer"}}};
  o.tasks = {"addition"};
  o.lengths = {30, 3, 9, 5};  // run in increasing order whatever the order given
  o.episodes = 4;
  o.seeds = {1, 2};
  o.stop_after_zero = 2;
  o.db_path = (dir_ / "stop.db").string();
  std::vector<Progress> seen;
  auto run = RunEvaluation(o, [&](const Progress& p) { seen.push_back(p); });
  ASSERT_TRUE(run.ok()) << run.status();
  // The random model: lengths 3 and 5 (8 episodes each, all wrong), then stopped; the oracle:
  // all four lengths.
  EXPECT_EQ(run->ran, 2 * 8 + 4 * 8);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front().total, 8 * 8);  // planned before the stop
  EXPECT_EQ(seen.back().total, 6 * 8);   // the stopped cells left the plan
  EXPECT_EQ(seen.back().done, seen.back().total);
  EXPECT_NE(run->markdown.find("| random-mamba2 / pointer | 5->- (0%) | 0% [0%-0%] | "
                               "0% [0%-0%] | stopped | stopped |"),
            std::string::npos)
      << run->markdown;
  EXPECT_NE(run->markdown.find("| oracle / pointer | ?->30 (100%) | 100% [100%-100%] | 100% "
                               "[100%-100%] | 100% [100%-100%] | 100% [100%-100%] |"),
            std::string::npos)
      << run->markdown;
  EXPECT_NE(run->markdown.find("(--stop-after-zero 2)"), std::string::npos);

  auto again = RunEvaluation(o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->run_id, run->run_id);
  EXPECT_EQ(again->ran, 0);
  EXPECT_EQ(again->resumed, run->ran);
  EXPECT_EQ(again->markdown, run->markdown);

  // Without the stop it is another run, and every length runs.
  o.stop_after_zero = 0;
  auto full = RunEvaluation(o);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_NE(full->run_id, run->run_id);
  EXPECT_EQ(full->ran, 8 * 8);
  EXPECT_EQ(full->markdown.find("stopped"), std::string::npos);
}

// A cancel flag stops the run with CANCELLED, stores nothing of the batch in flight, and the
// same configuration resumes to the same result as an uninterrupted run.
TEST_F(RunnerTest, CancelStopsTheRunAndARerunResumes) {
  EvalOptions o;
  o.entries = {{"oracle", {"pointer"}}};
  o.tasks = {"addition"};
  o.lengths = {4, 12};
  o.episodes = 6;
  o.commit_every = 3;
  o.db_path = (dir_ / "cancel.db").string();
  std::atomic<bool> cancel{false};
  o.cancel = &cancel;
  int batches = 0;
  auto first = RunEvaluation(o, [&](const Progress& p) {
    if (p.done > 0 && ++batches == 2) cancel = true;  // after two stored batches
  });
  ASSERT_EQ(first.status().code(), absl::StatusCode::kCancelled) << first.status();
  EXPECT_NE(first.status().message().find("resumes"), std::string::npos);
  cancel = false;
  auto rest = RunEvaluation(o);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->resumed, 6);
  EXPECT_EQ(rest->ran, 12 - 6);
  EXPECT_NE(rest->markdown.find("| oracle / pointer | ?->12 (100%) | 100% | 100% |"),
            std::string::npos)
      << rest->markdown;
}

// A prepared run is the run RunEvaluation(options) makes, on the checkpoints loaded when it was
// prepared: they are not read again (here the directory is gone by the time it runs).
TEST_F(RunnerTest, PreparedRunIsTheSameRunOnTheModelsItLoaded) {
  const std::string model = RandomModel();
  EvalOptions o;
  o.entries = {{model, {"pointer", "direct"}}, {"oracle", {"pointer"}}};
  o.tasks = {"addition"};
  o.lengths = {3, 7};
  o.episodes = 3;
  o.seeds = {4, 9};
  o.db_path = (dir_ / "direct.db").string();
  auto direct = RunEvaluation(o);
  ASSERT_TRUE(direct.ok()) << direct.status();

  EvalOptions p = o;
  p.db_path = (dir_ / "prepared.db").string();
  auto prepared = PrepareRun(p);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  auto config = RunConfig(p);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(prepared->config(), *config);
  fs::remove_all(model);
  EXPECT_EQ(RunConfig(p).status().code(), absl::StatusCode::kNotFound);  // a reload would fail

  PreparedRun taken = std::move(*prepared);
  auto moved_from = RunEvaluation(std::move(*prepared));
  EXPECT_EQ(moved_from.status().code(), absl::StatusCode::kFailedPrecondition)
      << moved_from.status();
  auto run = RunEvaluation(std::move(taken));
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->run_id, direct->run_id);
  EXPECT_EQ(run->ran, direct->ran);
  EXPECT_EQ(run->ran, 3 * 2 * 2 * 3);
  // The accuracy tables agree; the cost table holds wall times, which differ run to run.
  auto tables = [](const std::string& md) { return md.substr(0, md.find("\nCost per episode")); };
  EXPECT_EQ(tables(run->markdown), tables(direct->markdown));
  EXPECT_NE(run->markdown.find("| oracle / pointer | ?->7 (100%) |"), std::string::npos)
      << run->markdown;

  EvalOptions bad = o;
  bad.entries = {{(dir_ / "absent").string(), {"pointer"}}};
  auto refused = PrepareRun(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(refused.status().message().find("absent"), std::string::npos) << refused.status();
}

TEST_F(RunnerTest, BadOptionsNameTheProblem) {
  EvalOptions o;
  o.entries = {{"oracle", {"pointer"}}};
  o.tasks = {"addition"};
  o.lengths = {5};
  o.db_path = (dir_ / "bad.db").string();
  auto with = [&](auto edit) {
    EvalOptions copy = o;
    edit(copy);
    return RunEvaluation(copy).status();
  };
  EXPECT_NE(with([](EvalOptions& x) { x.tasks = {"subtraction"}; }).message().find("subtraction"),
            std::string::npos);
  EXPECT_NE(
      with([](EvalOptions& x) { x.entries[0].modes = {"psychic"}; }).message().find("psychic"),
      std::string::npos);
  EXPECT_EQ(with([](EvalOptions& x) { x.lengths = {0}; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_NE(with([](EvalOptions& x) { x.stop_after_zero = -1; }).message().find("stop-after-zero"),
            std::string::npos);
  EXPECT_EQ(with([](EvalOptions& x) {
              x.entries = {{"/no/such/model", {"pointer"}}};
            }).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(SuiteOptions("nope", "models").status().code(), absl::StatusCode::kNotFound);
}

// A run killed with SIGKILL midway and rerun gives the same final aggregates as an
// uninterrupted run.
TEST_F(RunnerTest, KilledRunResumesToTheSameAggregates) {
  std::string model = RandomModel();
  auto args = [&](const std::string& db, const std::string& report) {
    return std::vector<std::string>{testing::TapeloopBinary(),
                                    "eval",
                                    "--models",
                                    model + ",oracle",
                                    "--task",
                                    "addition",
                                    "--modes",
                                    "pointer,direct",
                                    "--lengths",
                                    "4,9,30",
                                    "--episodes",
                                    "6",
                                    "--seeds",
                                    "1,2",
                                    "--parallel",
                                    "4",
                                    "--commit-every",
                                    "3",
                                    "--db",
                                    db,
                                    "--report",
                                    report};
  };
  std::string killed_db = (dir_ / "killed.db").string();
  {
    testing::Process proc(args(killed_db, (dir_ / "rk").string()));
    // Progress lines go to stderr; wait until the database holds some episodes, then kill.
    for (int i = 0; i < 600; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      auto db = store::Database::Open(killed_db);
      if (!db.ok()) continue;
      auto n = (*db)->Prepare("SELECT count(*) FROM eval_episodes");
      if (n.ok() && *n->Step() && n->ColumnInt(0) >= 6) break;
    }
    proc.Signal(SIGKILL);
    EXPECT_EQ(proc.Wait(), 128 + SIGKILL) << proc.stderr_text();
  }
  int64_t partial;
  {
    auto db = store::Database::Open(killed_db);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->CheckIntegrity().ok());
    auto n = (*db)->Prepare("SELECT count(*) FROM eval_episodes");
    ASSERT_TRUE(*n->Step());
    partial = n->ColumnInt(0);
  }
  const int64_t total = 2 * 2 * 3 * 6 * 2;
  ASSERT_GT(partial, 0);
  ASSERT_LT(partial, total) << "the run finished before it was killed; make it longer";
  EXPECT_EQ(partial % 3, 0) << "batches are committed whole";

  testing::Process resumed(args(killed_db, (dir_ / "rk").string()));
  ASSERT_EQ(resumed.Wait(), 0) << resumed.stderr_text();
  EXPECT_NE(resumed.all_stdout().find(std::to_string(partial) + " resumed"), std::string::npos)
      << resumed.all_stdout();
  testing::Process clean(args((dir_ / "clean.db").string(), (dir_ / "rc").string()));
  ASSERT_EQ(clean.Wait(), 0) << clean.stderr_text();

  auto cells = [](const fs::path& report) {
    std::ifstream in(report / "aggregate.json");
    return nlohmann::json::parse(in)["cells"];
  };
  auto a = cells(dir_ / "rk"), b = cells(dir_ / "rc");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    for (auto key : {"model", "mode", "length", "episodes", "accuracy", "digit_accuracy",
                     "mean_generated_tokens", "trajectory_match"}) {
      EXPECT_EQ(a[i][key], b[i][key]) << key << " in cell " << i;
    }
  }
}

}  // namespace
}  // namespace tapeloop::eval
