#include "tools/debugger/debugger.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "tools/registry.h"

namespace tapeloop::debugger {
namespace {

FileMap Program() {
  return {{"main.py",
           "from f0 import f0\n"
           "\n"
           "def main():\n"
           "    v10 = 7\n"
           "    v1 = 2\n"
           "    print(v1)\n"
           "    f0(v1)\n"
           "\n"
           "main()\n"},
          {"f0.py",
           "def f0(v3):\n"
           "    v4 = v3 * 3\n"
           "    print(v4, v10)\n"}};
}

TEST(DebugSessionTest, RunShowsTraceback) {
  DebugSession s(Program());
  Observation o = s.Execute("run");
  EXPECT_TRUE(o.is_error);
  EXPECT_NE(o.text.find("2\nTraceback (most recent call last):\n"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("NameError: name 'v10' is not defined"), std::string::npos) << o.text;
  EXPECT_EQ(o.data["exception_type"], "NameError");
}

TEST(DebugSessionTest, BreakStepWherePrintEditRestart) {
  DebugSession s(Program());
  EXPECT_FALSE(s.Execute("break f0.py:3").is_error);
  Observation o = s.Execute("run");
  EXPECT_FALSE(o.is_error) << o.text;
  EXPECT_EQ(o.text, "2\n> f0.py(3)f0()\n-> print(v4, v10)\n");
  o = s.Execute("where");
  EXPECT_EQ(o.text,
            "  main.py(9)<module>()\n-> main()\n  main.py(7)main()\n-> f0(v1)\n"
            "> f0.py(3)f0()\n-> print(v4, v10)\n");
  EXPECT_EQ(s.Execute("print v4").text, "6\n");
  EXPECT_EQ(s.Execute("p v3 + 1").text, "3\n");
  EXPECT_TRUE(s.Execute("print v10").is_error);
  EXPECT_EQ(s.Execute("up").text, "> main.py(7)main()\n-> f0(v1)\n");
  EXPECT_EQ(s.Execute("print v10").text, "7\n");
  // Fix: pass v10 down.
  EXPECT_FALSE(s.Execute("edit f0.py 1-1 def f0(v3, v10):").is_error);
  EXPECT_FALSE(s.Execute("edit main.py 7 \n    f0(v1, v10)").is_error);
  EXPECT_FALSE(s.Execute("clear").is_error);
  o = s.Execute("restart");
  EXPECT_FALSE(o.is_error) << o.text;
  EXPECT_EQ(o.text, "2\n6 7\n[program exited normally]\n");
}

TEST(DebugSessionTest, StepAndNext) {
  DebugSession s(Program());
  Observation o = s.Execute("step");
  EXPECT_EQ(o.text, "> main.py(1)<module>()\n-> from f0 import f0\n");
  o = s.Execute("next");
  EXPECT_EQ(o.text, "> main.py(3)<module>()\n-> def main():\n");
  s.Execute("next");
  o = s.Execute("step");
  EXPECT_EQ(o.text, "> main.py(4)main()\n-> v10 = 7\n");
  s.Execute("n");
  s.Execute("n");
  o = s.Execute("n");
  EXPECT_EQ(o.text, "2\n> main.py(7)main()\n-> f0(v1)\n");
  o = s.Execute("s");
  EXPECT_EQ(o.text, "> f0.py(2)f0()\n-> v4 = v3 * 3\n");
  o = s.Execute("c");
  EXPECT_TRUE(o.is_error);
  // Post-mortem.
  EXPECT_EQ(s.Execute("print v4").text, "6\n");
}

TEST(DebugSessionTest, BadCommandsAreErrorObservations) {
  DebugSession s(Program());
  for (const char* bad : {"", "frobnicate", "break", "break nofile.py:1", "break main.py:2",
                          "break main.py:99", "break main.py", "clear main.py:3", "where",
                          "print v1", "view nofile.py", "view main.py 5-2", "edit main.py",
                          "edit main.py 0-1 x", "edit main.py 20-30 x", "up", "list nofile.py",
                          "print (", "run now"}) {
    Observation o = s.Execute(bad);
    if (std::string(bad) == "break") {
      EXPECT_FALSE(o.is_error);
      continue;
    }
    EXPECT_TRUE(o.is_error) << "'" << bad << "' -> " << o.text;
    EXPECT_EQ(o.text.rfind("*** ", 0), 0u) << o.text;
  }
  EXPECT_EQ(s.Execute("ls").text, "f0.py (3 lines)\nmain.py (9 lines)\n");
  EXPECT_EQ(s.Execute("view f0.py 2-3").text, "   2     v4 = v3 * 3\n   3     print(v4, v10)\n");
}

TEST(DebugSessionTest, BadProgramsGiveClearObservations) {
  struct Case {
    std::string source;
    std::string expect;
  };
  std::vector<Case> cases = {
      {"while True:\n    pass\n", "instruction budget exhausted"},
      {"def r(n):\n    return r(n + 1)\nr(0)\n", "RecursionError: maximum recursion depth exceeded"},
      {"x = [0] * 100000000\n", "MemoryError"},
      {"x = []\nwhile True:\n    x.append(1)\n", "MemoryError"},
      {"def f(:\n    pass\n", "SyntaxError"},
      {"while True:\n    print('spam')\n", "output limit"},
  };
  for (const auto& c : cases) {
    SessionOptions options;
    options.limits.max_steps = 200000;
    options.limits.max_output_bytes = 10000;
    options.limits.max_object_size = 10000;
    DebugSession s({{"main.py", c.source}}, options);
    Observation o = s.Execute("run");
    EXPECT_TRUE(o.is_error) << o.text;
    EXPECT_NE(o.text.find(c.expect), std::string::npos) << o.text;
    // The session keeps working.
    EXPECT_FALSE(s.Execute("ls").is_error);
    int n = static_cast<int>(std::count(c.source.begin(), c.source.end(), '\n'));
    EXPECT_FALSE(s.Execute("edit main.py 1-" + std::to_string(n) + " print('fixed')").is_error);
    EXPECT_EQ(s.Execute("run").text, "fixed\n[program exited normally]\n");
  }
}

TEST(DebugSessionTest, EditThatBreaksSyntaxWarnsAndRunReportsIt) {
  DebugSession s(Program());
  Observation o = s.Execute("edit f0.py 1-1 def f0(v3:");
  EXPECT_FALSE(o.is_error);
  EXPECT_NE(o.text.find("warning: f0.py no longer parses"), std::string::npos) << o.text;
  o = s.Execute("run");
  EXPECT_TRUE(o.is_error);
  EXPECT_EQ(o.text,
            "Traceback (most recent call last):\n"
            "  File \"main.py\", line 1, in <module>\n"
            "    from f0 import f0\n"
            "  File \"f0.py\", line 1\n"
            "    def f0(v3:\n"
            "          ^\n"
            "SyntaxError: '(' was never closed\n"
            "[program exited with SyntaxError]\n");
}

TEST(DebugSessionTest, RestartWhilePausedAndDestroyWhilePaused) {
  auto s = std::make_unique<DebugSession>(Program());
  s->Execute("break f0.py:2");
  EXPECT_FALSE(s->Execute("run").is_error);
  EXPECT_TRUE(s->paused());
  Observation o = s->Execute("restart");
  EXPECT_EQ(o.text, "2\n> f0.py(2)f0()\n-> v4 = v3 * 3\n");
  s.reset();  // must not hang or leak the worker
}

TEST(DebuggerToolTest, SchemaAndCalls) {
  tools::ToolRegistry registry;
  ASSERT_TRUE(registry.Register(std::make_unique<DebuggerTool>(Program())).ok());
  tools::ToolCall call{"c1", "debugger", {{"command", "view main.py 4-4"}}};
  tools::ToolResult r = registry.Call(call);
  EXPECT_EQ(r.call_id, "c1");
  EXPECT_FALSE(r.is_error);
  EXPECT_EQ(r.text, "   4     v10 = 7\n");
  r = registry.Call({"c2", "debugger", {{"command", "bogus"}}});
  EXPECT_TRUE(r.is_error);
  r = registry.Call({"c3", "debugger", {{"cmd", "run"}}});
  EXPECT_TRUE(r.is_error);
  r = registry.CallText("run", "c4");
  EXPECT_EQ(r.call_id, "c4");
  EXPECT_TRUE(r.is_error);
  EXPECT_NE(r.text.find("NameError"), std::string::npos);
}

}  // namespace
}  // namespace tapeloop::debugger

namespace tapeloop::debugger {
namespace {

TEST(DebugSessionTest, RandomCommandsNeverCrash) {
  uint64_t state = 99;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  const std::vector<std::string> words = {
      "run", "restart", "break", "clear", "continue", "c", "step", "s", "next", "n", "where",
      "up", "down", "print", "p", "list", "l", "ls", "view", "edit", "help", "bogus", ""};
  const std::vector<std::string> args = {
      "", "main.py", "f0.py", "main.py:7", "f0.py:2", "f0.py:3", "x.py:1", "1-2", "2", "0-0",
      "v4", "v10 + 1", "(", "main.py 7-7     f0(v1, v10)", "f0.py 1-1 def f0(v3, v10):",
      "f0.py 2-1 \n    v9 = 1", "main.py 1-9 ", "\n", "-1", "99999999999", "f0.py:1 extra"};
  SessionOptions options;
  options.limits.max_steps = 100000;
  DebugSession s(Program(), options);
  for (int i = 0; i < 3000; ++i) {
    std::string command = words[next() % words.size()];
    if (next() % 2) command += " " + args[next() % args.size()];
    Observation o = s.Execute(command);
    EXPECT_FALSE(o.text.empty()) << command;
  }
}

}  // namespace
}  // namespace tapeloop::debugger
