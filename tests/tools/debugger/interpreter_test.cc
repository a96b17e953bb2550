#include "tools/debugger/interpreter.h"

#include <gtest/gtest.h>

namespace tapeloop::debugger {
namespace {

TEST(InterpreterTest, RunsImportsAndPrints) {
  FileMap files = {
      {"main.py", "from f0 import f0\n\ndef main(v0, v1=3):\n    v2 = v0 + v1\n    print(v2)\n"
                  "    f0(v2)\n\nmain(1)\n"},
      {"f0.py", "def f0(v3):\n    print(v3, v10)\n"}};
  RunResult r = RunProgram(files, "main.py");
  EXPECT_EQ(r.output, "4\n");
  EXPECT_EQ(r.outcome, Outcome::kException);
  EXPECT_EQ(r.error_text,
            "Traceback (most recent call last):\n"
            "  File \"main.py\", line 8, in <module>\n"
            "    main(1)\n"
            "  File \"main.py\", line 6, in main\n"
            "    f0(v2)\n"
            "  File \"f0.py\", line 2, in f0\n"
            "    print(v3, v10)\n"
            "              ^^^\n"
            "NameError: name 'v10' is not defined\n");
}

}  // namespace
}  // namespace tapeloop::debugger

namespace tapeloop::debugger {
namespace {

TEST(InterpreterTest, DeepOrLongSourcesAreSyntaxErrorsNotCrashes) {
  std::vector<std::string> sources;
  std::string chain = "x = 1";
  for (int i = 0; i < 50000; ++i) chain += " + 1";
  sources.push_back(chain + "\n");
  std::string nots = "x = ";
  for (int i = 0; i < 50000; ++i) nots += "not ";
  sources.push_back(nots + "1\n");
  std::string pows = "x = 2";
  for (int i = 0; i < 50000; ++i) pows += " ** 1";
  sources.push_back(pows + "\n");
  std::string calls = "x = print";
  for (int i = 0; i < 50000; ++i) calls += "()";
  sources.push_back(calls + "\n");
  std::string parens(50000, '(');
  sources.push_back("x = " + parens + "\n");
  std::string minus = "x = ";
  for (int i = 0; i < 50000; ++i) minus += "-";
  sources.push_back(minus + "1\n");
  for (const auto& source : sources) {
    ParseResult parsed = ParseModule("main.py", source);
    ASSERT_TRUE(parsed.error.has_value());
    EXPECT_EQ(parsed.error->type, "SyntaxError");
  }
  // Moderately long chains still work.
  std::string ok = "x = 0";
  for (int i = 0; i < 500; ++i) ok += " + 1";
  RunResult r = RunProgram({{"main.py", ok + "\nprint(x)\n"}}, "main.py");
  EXPECT_EQ(r.output, "500\n");
}

TEST(InterpreterTest, RandomBytesNeverCrash) {
  uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  const std::string alphabet = "abv10 ()[]:,=+-*/%<>!.'\"#\n\n    \tdefifwhilereturnprint";
  for (int i = 0; i < 3000; ++i) {
    std::string source;
    int len = static_cast<int>(next() % 80);
    for (int j = 0; j < len; ++j) source += alphabet[next() % alphabet.size()];
    RunLimits limits;
    limits.max_steps = 10000;
    RunResult r = RunProgram({{"main.py", source}}, "main.py", limits);
    if (r.outcome != Outcome::kOk) {
      EXPECT_FALSE(r.error_text.empty()) << source;
    }
  }
}

TEST(InterpreterTest, BudgetIsDeterministic) {
  FileMap files = {{"main.py", "i = 0\nwhile True:\n    i += 1\n    if i % 7 == 3:\n        print(i)\n"}};
  RunLimits limits;
  limits.max_steps = 5000;
  RunResult a = RunProgram(files, "main.py", limits);
  RunResult b = RunProgram(files, "main.py", limits);
  EXPECT_EQ(a.outcome, Outcome::kBudgetExhausted);
  EXPECT_EQ(a.output, b.output);
  EXPECT_EQ(a.error_text, b.error_text);
  EXPECT_NE(a.error_text.find("instruction budget exhausted after 5000 steps"), std::string::npos);
}

}  // namespace
}  // namespace tapeloop::debugger
