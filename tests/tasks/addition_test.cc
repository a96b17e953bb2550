#include "tasks/addition.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <unistd.h>

#include "tasks/task.h"

namespace tapeloop::tasks {
namespace {

const Task& Addition() { return **FindTask("addition"); }

std::string Text(const std::vector<TokenId>& ids) { return *Tokenizer().Decode(ids); }

TEST(AdditionTest, GeneratorRespectsLengths) {
  Rng rng(3);
  for (int i = 0; i < 200; ++i) {
    Instance x = Addition().Generate(7, /*training=*/false, rng);
    ASSERT_EQ(x.operands[0].size(), 7u);
    ASSERT_EQ(x.operands[1].size(), 7u);
    EXPECT_NE(x.operands[0][0], '0');
    EXPECT_EQ(x.prompt, x.operands[0] + "+" + x.operands[1] + "=");
  }
  std::set<size_t> seen;
  for (int i = 0; i < 400; ++i) {
    Instance x = Addition().Generate(5, /*training=*/true, rng);
    ASSERT_GE(x.operands[0].size(), 1u);
    ASSERT_LE(x.operands[0].size(), 5u);
    seen.insert(x.operands[0].size() * 10 + x.operands[1].size());
  }
  EXPECT_EQ(seen.size(), 25u);  // n1, n2 independent over U{1..5}
  Rng a(9), b(9);
  EXPECT_EQ(Addition().Generate(50, false, a).prompt, Addition().Generate(50, false, b).prompt);
}

TEST(AdditionTest, WorkedExample) {
  // The example of docs/tasks.md.
  auto t = *Addition().Expert(AdditionTask::Make("57", "8", 2), Mode::kPointer);
  std::string want =
      "[BOS]57+8=[P1.NEW][P2.NEW][P3.NEW]"
      "[P1.READ]5[P1.RIGHT][P1.READ]7[P1.RIGHT][P1.READ]+[P1.LEFT]"
      "[P2.READ]5[P2.RIGHT][P2.READ]7[P2.RIGHT][P2.READ]+[P2.RIGHT][P2.READ]8[P2.RIGHT]"
      "[P2.READ]=[P2.LEFT]"
      "[P1.READ]7[P1.LEFT][P2.READ]8[P2.LEFT]51"
      "[P1.READ]5[P1.LEFT][P2.READ]+60"
      "[P1.READ][END]"
      "[ANS]"
      "[P3.READ]5[P3.RIGHT][P3.READ]7[P3.RIGHT][P3.READ]+[P3.RIGHT][P3.READ]8[P3.RIGHT]"
      "[P3.READ]=[P3.RIGHT][P3.READ]5[P3.RIGHT][P3.READ]1[P3.RIGHT][P3.READ]6[P3.RIGHT]"
      "[P3.READ]0[P3.RIGHT][P3.READ][ANS]"
      "[P3.LEFT][P3.READ]0[P3.LEFT][P3.READ]66"
      "[P3.LEFT][P3.READ]1[P3.LEFT][P3.READ]55"
      "[P3.LEFT][P3.READ]="
      "[EOS]";
  EXPECT_EQ(Text(t.tokens), want);
  EXPECT_EQ(Text(t.Output()), "65");
  // Roles: every read is followed by one observation.
  for (size_t i = 0; i + 1 < t.tokens.size(); ++i) {
    if (tokens::IsPointerCommand(t.tokens[i]) &&
        tokens::CommandOp(t.tokens[i]) == tokens::PointerOp::kRead) {
      EXPECT_EQ(t.roles[i + 1], Role::kObservation) << i;
    }
  }
}

// The expert is the prototype's POINTERS=3 algorithm: with our [Pk.NEW] commands removed and
// names mapped, the token sequences are identical.
TEST(AdditionTest, MatchesReferencePrototype) {
  const std::filesystem::path traj =
      std::filesystem::path(TAPELOOP_SOURCE_DIR) / ".." / "shared" / "reference" /
      "prototype" / "traj.py";
  if (!std::filesystem::exists(traj)) GTEST_SKIP() << "no prototype at " << traj;
  Rng rng(21);
  std::vector<Instance> xs;
  for (int n : {1, 2, 3, 5, 8, 20}) {
    for (int k = 0; k < 4; ++k) xs.push_back(Addition().Generate(n, /*training=*/true, rng));
  }
  std::ostringstream py;
  py << "import sys\nsys.path.insert(0, '" << traj.parent_path().string() << "')\n"
     << "import traj\n";
  for (const auto& x : xs) {
    py << "print(' '.join(traj.expert('" << x.operands[0] << "', '" << x.operands[1]
       << "')[0]))\n";
  }
  std::string script = testing::TempDir() + "/tapeloop_addition_ref_" +
                       std::to_string(getpid()) + ".py";
  { std::ofstream(script) << py.str(); }
  FILE* pipe = popen(("POINTERS=3 /usr/bin/python3 " + script).c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  pclose(pipe);
  std::istringstream lines(out);
  Tokenizer tok;
  for (const auto& x : xs) {
    std::string line;
    ASSERT_TRUE(std::getline(lines, line)) << "python output: " << out.substr(0, 300);
    // Map the prototype's spellings onto ours.
    std::string mapped;
    std::istringstream words(line);
    std::string w;
    while (words >> w) {
      if (w.size() == 6 && w[0] == '[' && w[1] == 'P' && w[3] == '.') {
        std::string op = w[4] == 'R' ? "READ" : w[4] == 'L' ? "LEFT" : "RIGHT";
        w = "[P" + std::string(1, w[2]) + "." + op + "]";
      }
      mapped += w;
    }
    auto t = *Addition().Expert(x, Mode::kPointer);
    std::vector<TokenId> ours;
    for (TokenId id : t.tokens) {
      if (!(tokens::IsPointerCommand(id) && tokens::CommandOp(id) == tokens::PointerOp::kNew)) {
        ours.push_back(id);
      }
    }
    EXPECT_EQ(*tok.Decode(ours), mapped) << x.prompt;
  }
}

TEST(AdditionTest, ExpertIsExactInEveryModeOnRandomLengths) {
  Rng rng(5);
  for (int n : {1, 2, 3, 7, 19, 64, 200}) {
    for (int k = 0; k < 5; ++k) {
      Instance x = Addition().Generate(n, /*training=*/k % 2 == 0, rng);
      for (Mode mode : AllModes()) {
        auto t = Addition().Expert(x, mode);
        ASSERT_TRUE(t.ok()) << t.status();
        Score s = ScoreOutput(x, mode, t->Output());
        EXPECT_TRUE(s.exact) << ModeName(mode) << " " << x.prompt << " got " << s.produced;
        EXPECT_EQ(s.digit_accuracy, 1.0);
      }
    }
  }
}

TEST(AdditionTest, ExpertRejectsMalformedInstances) {
  Instance x = AdditionTask::Make("12", "3x", 2);
  EXPECT_EQ(Addition().Expert(x, Mode::kPointer).status().code(),
            absl::StatusCode::kInvalidArgument);
  Instance other = x;
  other.task = "multiplication-n2";
  EXPECT_FALSE(Addition().Expert(other, Mode::kDirect).ok());
}

}  // namespace
}  // namespace tapeloop::tasks
