#include "eval/results.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "eval/report.h"

namespace tapeloop::eval {
namespace {

namespace fs = std::filesystem;

class ResultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tapeloop_eval_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto db = store::Database::Open((dir_ / "r.db").string());
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }
  void TearDown() override {
    db_.reset();
    fs::remove_all(dir_);
  }

  // Random rows over a grid of models x modes x lengths x seeds x episodes.
  std::vector<EpisodeRow> RandomRows(std::mt19937& rng) {
    std::vector<EpisodeRow> rows;
    std::bernoulli_distribution coin(0.6);
    for (std::string model : {"mamba2", "llama"}) {
      for (std::string mode : {"pointer", "direct"}) {
        for (int64_t length : {5, 20, 100}) {
          for (int64_t seed : {1, 2}) {
            for (int64_t i = 0; i < 7; ++i) {
              EpisodeRow r;
              r.key = {model, "addition", mode, length, seed, i};
              r.correct = coin(rng);
              r.trajectory_match = r.correct && coin(rng);
              r.digit_accuracy = r.correct ? 1.0 : std::uniform_real_distribution<>(0, 1)(rng);
              r.generated_tokens = 10 * length + i;
              r.tool_calls = 3 * length;
              r.wall_ms = 0.5 * length + i;
              r.peak_state_bytes = model == "mamba2" ? 4096 : 64 * length;
              r.record = {{"answer", std::to_string(rng())}};
              rows.push_back(r);
            }
          }
        }
      }
    }
    return rows;
  }

  fs::path dir_;
  std::unique_ptr<store::Database> db_;
};

TEST_F(ResultsTest, SameConfigurationIsTheSameRunAndResumes) {
  ResultsStore store(db_.get());
  nlohmann::json config = {{"task", "addition"}, {"lengths", {5, 20}}, {"seeds", {1, 2}}};
  auto a = store.BeginRun(config, "0.1.0");
  ASSERT_TRUE(a.ok()) << a.status();
  // Key order does not change the id: the JSON is canonical.
  nlohmann::json reordered = {{"seeds", {1, 2}}, {"lengths", {5, 20}}, {"task", "addition"}};
  EXPECT_EQ(*store.BeginRun(reordered, "0.1.0"), *a);
  nlohmann::json other = config;
  other["seeds"] = {1, 3};
  EXPECT_NE(*store.BeginRun(other, "0.1.0"), *a);
  EXPECT_EQ(*store.RunConfig(*a), config);
  EXPECT_EQ(store.RunConfig("nope").status().code(), absl::StatusCode::kNotFound);

  std::mt19937 rng(5);
  auto rows = RandomRows(rng);
  std::vector<EpisodeRow> first(rows.begin(), rows.begin() + 50);
  ASSERT_TRUE(store.Record(*a, first).ok());
  auto done = store.Done(*a);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->size(), 50u);
  EXPECT_TRUE(done->count(rows[0].key));
  EXPECT_FALSE(done->count(rows[50].key));
  // A batch with one duplicate is refused whole: nothing of it is stored.
  std::vector<EpisodeRow> dup(rows.begin() + 45, rows.begin() + 60);
  EXPECT_FALSE(store.Record(*a, dup).ok());
  EXPECT_EQ(store.Done(*a)->size(), 50u);
  std::vector<EpisodeRow> rest(rows.begin() + 50, rows.end());
  ASSERT_TRUE(store.Record(*a, rest).ok());
  auto back = store.Episodes(*a);
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->size(), rows.size());
  EXPECT_EQ(store.LatestRun().ok(), true);
}

TEST_F(ResultsTest, AggregatesMatchAHandCount) {
  ResultsStore store(db_.get());
  auto run = store.BeginRun({{"x", 1}}, "v");
  ASSERT_TRUE(run.ok());
  std::mt19937 rng(9);
  auto rows = RandomRows(rng);
  ASSERT_TRUE(store.Record(*run, rows).ok());
  auto cells = store.Aggregates(*run);
  ASSERT_TRUE(cells.ok());
  EXPECT_EQ(cells->size(), 2u * 2 * 3);
  for (const Aggregate& a : *cells) {
    int correct = 0, total = 0, s1 = 0, n1 = 0;
    for (const EpisodeRow& r : rows) {
      if (r.key.model != a.model || r.key.mode != a.mode || r.key.length != a.length) continue;
      correct += r.correct;
      ++total;
      if (r.key.seed == 1) {
        s1 += r.correct;
        ++n1;
      }
    }
    EXPECT_EQ(a.episodes, total);
    EXPECT_DOUBLE_EQ(a.accuracy, double(correct) / total);
    EXPECT_DOUBLE_EQ(a.by_seed.at(1), double(s1) / n1);
    EXPECT_LE(a.seed_min, a.accuracy);
    EXPECT_GE(a.seed_max, a.accuracy);
  }
}

TEST(LengthGeneralization, LargestLengthAtLeastFivePercent) {
  auto cell = [](int64_t L, double acc) {
    Aggregate a;
    a.length = L;
    a.accuracy = acc;
    return a;
  };
  EXPECT_EQ(LengthGeneralization(5, {cell(5, 1.0), cell(10, 0.5), cell(100, 0.04)}),
            "5->10 (50%)");
  EXPECT_EQ(LengthGeneralization(5, {cell(5, 1.0), cell(1000, 1.0)}), "5->1000 (100%)");
  EXPECT_EQ(LengthGeneralization(5, {cell(5, 0.0), cell(10, 0.01)}), "5->- (0%)");
  EXPECT_EQ(LengthGeneralization(0, {cell(7, 0.05)}), "?->7 (5%)");
}

TEST_F(ResultsTest, ReportWritesTablesPlotsAndAggregate) {
  ResultsStore store(db_.get());
  auto run = store.BeginRun({{"suite", "test"}}, "v");
  ASSERT_TRUE(run.ok());
  std::mt19937 rng(13);
  auto rows = RandomRows(rng);
  ASSERT_TRUE(store.Record(*run, rows).ok());
  ReportInput input;
  input.run_id = *run;
  input.config = *store.RunConfig(*run);
  input.episodes = *store.Episodes(*run);
  input.train_length = {{"mamba2", 5}, {"llama", 5}};
  fs::path out = dir_ / "report";
  ASSERT_TRUE(WriteReport(input, out.string()).ok());
  for (auto f : {"report.md", "report.html", "aggregate.json", "episodes.jsonl"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
  }
  // The Markdown table holds the aggregates computed from the database.
  std::ifstream md_in(out / "report.md");
  std::string md((std::istreambuf_iterator<char>(md_in)), std::istreambuf_iterator<char>());
  auto cells = *store.Aggregates(*run);
  for (const Aggregate& a : cells) {
    std::string row = "| " + a.model + " / " + a.mode + " |";
    EXPECT_NE(md.find(row), std::string::npos) << row;
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    for (auto f : {"accuracy_addition.svg", "accuracy_addition.png", "cost_addition.svg",
                   "cost_addition.png"}) {
      ASSERT_TRUE(fs::exists(out / f)) << f;
      EXPECT_GT(fs::file_size(out / f), 2000u) << f;
    }
    std::ifstream png(out / "accuracy_addition.png", std::ios::binary);
    char sig[8];
    png.read(sig, 8);
    EXPECT_EQ(std::string(sig + 1, 3), "PNG");
    // The SVG is well-formed XML (checked by CPython's parser).
    std::string cmd = "/usr/bin/python3 -c \"import sys, xml.dom.minidom as m; "
                      "d = m.parse(sys.argv[1]); assert d.documentElement.tagName == 'svg'\" " +
                      (out / "accuracy_addition.svg").string();
    EXPECT_EQ(std::system(cmd.c_str()), 0);
  }
  // The aggregate JSON carries the configuration and every cell.
  std::ifstream agg_in(out / "aggregate.json");
  auto agg = nlohmann::json::parse(agg_in);
  EXPECT_EQ(agg["config"]["suite"], "test");
  EXPECT_EQ(agg["cells"].size(), cells.size());
}

}  // namespace
}  // namespace tapeloop::eval
