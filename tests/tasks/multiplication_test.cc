#include "tasks/multiplication.h"

#include <gtest/gtest.h>

#include <map>

#include "tasks/task.h"

namespace tapeloop::tasks {
namespace {

std::string Text(const std::vector<TokenId>& ids) { return *Tokenizer().Decode(ids); }

TEST(MultiplicationTest, Names) {
  EXPECT_EQ((*FindTask("multiplication"))->name(), "multiplication-n2");
  EXPECT_EQ((*FindTask("multiplication-n1"))->name(), "multiplication-n1");
  EXPECT_EQ(FindTask("division").status().code(), absl::StatusCode::kNotFound);
}

TEST(MultiplicationTest, GeneratorShapes) {
  Rng rng(4);
  for (int digits : {1, 2}) {
    const Task& task = **FindTask(digits == 1 ? "multiplication-n1" : "multiplication-n2");
    for (int i = 0; i < 100; ++i) {
      Instance x = task.Generate(12, /*training=*/false, rng);
      ASSERT_EQ(x.operands[0].size(), 12u);
      ASSERT_EQ(x.operands[1].size(), static_cast<size_t>(digits));
      EXPECT_NE(x.operands[1][0], '0');
      Instance y = task.Generate(12, /*training=*/true, rng);
      EXPECT_LE(y.operands[0].size(), 12u);
    }
  }
}

TEST(MultiplicationTest, WorkedExampleNx2) {
  const auto& task = static_cast<const MultiplicationTask&>(**FindTask("multiplication-n2"));
  auto t = *task.Expert(task.Make("57", "34", 2), Mode::kPointer);
  EXPECT_EQ(Text(t.Output()), "1938");
  std::string text = Text(t.tokens);
  // Pass 1 writes 57*4 = 228 reversed with carries: (8,2) (2,2) (2,0); pass 2 writes
  // 228 + 570*3 = 1938 reversed: (8,0) (3,2) (9,1) (1,0). docs/tasks.md shows it whole.
  EXPECT_NE(text.find("[P1.READ]7[P1.LEFT][P2.READ]482[P1.READ]5[P1.LEFT][P2.READ]422"
                      "[P1.READ][END]20[P1.READ][END][P2.LEFT][P2.READ]3+[P3.NEW]"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("[P4.READ]=[P4.RIGHT][P4.READ]8[P4.RIGHT][P4.RIGHT][P3.READ]*[P3.LEFT]80"
                      "[P4.READ]2[P4.RIGHT][P4.RIGHT][P3.READ]7[P3.LEFT][P2.READ]332"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("[P4.READ]+[P3.READ][END][P2.LEFT][P2.READ]*[ANS][P4.RIGHT]"),
            std::string::npos)
      << text;
  EXPECT_EQ(t.tokens.size(), 192u);
}

TEST(MultiplicationTest, ExpertIsExactInEveryMode) {
  Rng rng(8);
  for (const char* name : {"multiplication-n1", "multiplication-n2"}) {
    const Task& task = **FindTask(name);
    for (int n : {1, 2, 3, 5, 11, 40, 150}) {
      for (int k = 0; k < 6; ++k) {
        Instance x = task.Generate(n, /*training=*/k % 2 == 0, rng);
        for (Mode mode : AllModes()) {
          auto t = task.Expert(x, mode);
          ASSERT_TRUE(t.ok()) << t.status();
          Score s = ScoreOutput(x, mode, t->Output());
          EXPECT_TRUE(s.exact) << name << " " << ModeName(mode) << " " << x.prompt << " got "
                               << s.produced;
        }
      }
    }
  }
  // Zeros and nines everywhere.
  const auto& task = static_cast<const MultiplicationTask&>(**FindTask("multiplication-n2"));
  for (auto [a, b] : std::vector<std::pair<std::string, std::string>>{
           {"9999999", "99"}, {"1000000", "10"}, {"5", "20"}, {"1", "11"}, {"909090", "90"}}) {
    Instance x = task.Make(a, b, a.size());
    EXPECT_TRUE(ScoreOutput(x, Mode::kPointer, task.Expert(x, Mode::kPointer)->Output()).exact)
        << a << "*" << b;
  }
}

// The design rule of docs/tasks.md: every token the expert generates is a function of the
// last kWindow tokens. Collect (window -> next generated token) over many training-length
// trajectories and check that no window is followed by two different tokens.
void ExpectLocal(const Task& task, int max_length, bool training, size_t window, int samples) {
  std::map<std::vector<TokenId>, TokenId> next;
  Rng rng(99);
  int conflicts = 0;
  for (int i = 0; i < samples; ++i) {
    Instance x = task.Generate(max_length, training, rng);
    auto t = *task.Expert(x, Mode::kPointer);
    for (size_t p = window; p < t.tokens.size(); ++p) {
      if (t.roles[p] == Role::kPrompt || t.roles[p] == Role::kObservation) continue;
      std::vector<TokenId> ctx(t.tokens.begin() + (p - window), t.tokens.begin() + p);
      auto [it, inserted] = next.emplace(ctx, t.tokens[p]);
      if (!inserted && it->second != t.tokens[p] && ++conflicts <= 3) {
        ADD_FAILURE() << task.name() << ": context " << Text(ctx) << " -> " << Text({it->second})
                      << " and " << Text({t.tokens[p]}) << " (" << x.prompt << ")";
      }
    }
  }
  EXPECT_EQ(conflicts, 0) << task.name();
}

TEST(MultiplicationTest, EveryDecisionIsLocal) {
  ExpectLocal(**FindTask("multiplication-n1"), 12, /*training=*/true, 12, 300);
  ExpectLocal(**FindTask("multiplication-n2"), 12, /*training=*/true, 12, 300);
}

TEST(AdditionLocalityTest, EveryDecisionIsLocalAtEqualLengths) {
  // The prototype's addition keeps "this summand has run out" in mind when the summands have
  // different lengths (training only); at equal lengths every decision is local.
  ExpectLocal(**FindTask("addition"), 12, /*training=*/false, 12, 300);
}

}  // namespace
}  // namespace tapeloop::tasks
