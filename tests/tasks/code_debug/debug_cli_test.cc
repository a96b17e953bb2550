// `tapeloop debug` driven as a process with a piped, scripted session.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tasks/code_debug/code_debug.h"

namespace tapeloop::tasks::code_debug {
namespace {

std::string Binary() { return std::string(TAPELOOP_BINARY_DIR) + "/bin/tapeloop"; }

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the binary with `input` on stdin; stdout/stderr go to temp files (no pipe deadlocks).
CliRun RunTapeloop(const std::vector<std::string>& args, const std::string& input) {
  char dir_template[] = "/tmp/tapeloop_debug_cli_XXXXXX";
  std::string dir = mkdtemp(dir_template);
  std::string in = dir + "/in", out = dir + "/out", err = dir + "/err";
  std::ofstream(in) << input;
  pid_t pid = fork();
  if (pid == 0) {
    int i = open(in.c_str(), O_RDONLY);
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(i, 0);
    dup2(o, 1);
    dup2(e, 2);
    std::vector<std::string> full = {Binary(), "debug"};
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    alarm(60);  // never hang the test suite
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CliRun r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream o(out), e(err);
  r.out.assign(std::istreambuf_iterator<char>(o), {});
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  for (const auto& f : {in, out, err}) unlink(f.c_str());
  rmdir(dir.c_str());
  return r;
}

class DebugCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(Binary().c_str(), X_OK) != 0) {
      GTEST_SKIP() << Binary() << " is not built (ninja tapeloop)";
    }
  }
};

// The acceptance scenario: find the bug with a breakpoint and `where`, fix it with `edit`,
// and see the task pass.
TEST_F(DebugCliTest, FindAndFixTheBugInACodeDebugTask) {
  auto x = GenerateCodeDebug(6, 1);
  ASSERT_TRUE(x.ok());
  auto oracle = InteractiveOracle(*x);
  ASSERT_TRUE(oracle.ok());
  // The line of foo.py that uses v10.
  const std::string& foo = x->buggy.at("foo.py");
  int line = 1, v10_line = 0;
  for (size_t i = 0; i < foo.size(); ++i) {
    if (foo.compare(i, 3, "v10") == 0 && v10_line == 0) v10_line = line;
    if (foo[i] == '\n') ++line;
  }
  ASSERT_GT(v10_line, 0);
  std::string script = "ls\nrun\nbreak foo.py:" + std::to_string(v10_line) +
                       "\nrun\nwhere\nup\nlist\nclear\nbogus command\n";
  for (const auto& step : oracle->steps) {
    if (step.command.rfind("edit ", 0) == 0) script += step.command + "\n";
  }
  script += "run\nhistory\n!!\nquit\n";
  CliRun r = RunTapeloop({"--task", "code_debug", "--length", "6", "--seed", "1"}, script);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("NameError: name 'v10' is not defined"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Breakpoint set at foo.py:" + std::to_string(v10_line)), std::string::npos);
  EXPECT_NE(r.out.find("> foo.py(" + std::to_string(v10_line) + ")foo()"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("  main.py("), std::string::npos) << r.out;  // where shows the stack
  EXPECT_NE(r.out.find("*** unknown command 'bogus'"), std::string::npos);
  EXPECT_NE(r.out.find("[program exited normally]\n[task] PASS"), std::string::npos) << r.out;
  // `!!` reran the last command.
  size_t first_pass = r.out.find("[task] PASS");
  EXPECT_NE(r.out.find("[task] PASS", first_pass + 1), std::string::npos);
}

TEST_F(DebugCliTest, ProgramFromADirectoryAndMultiLineEdit) {
  char dir_template[] = "/tmp/tapeloop_debug_prog_XXXXXX";
  std::string dir = mkdtemp(dir_template);
  std::ofstream(dir + "/main.py") << "from util import twice\nprint(twice(x))\n";
  std::ofstream(dir + "/util.py") << "def twice(a):\n    return a * 2\n";
  CliRun r = RunTapeloop({dir}, "run\nedit main.py 2-2\nx = 21\nprint(twice(x))\n.\nrun\nview main.py\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("NameError: name 'x' is not defined"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("42\n[program exited normally]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("   3 print(twice(x))"), std::string::npos) << r.out;
  // Nothing on disk changed.
  std::ifstream main(dir + "/main.py");
  std::string text((std::istreambuf_iterator<char>(main)), {});
  EXPECT_EQ(text, "from util import twice\nprint(twice(x))\n");
  unlink((dir + "/main.py").c_str());
  unlink((dir + "/util.py").c_str());
  rmdir(dir.c_str());
}

TEST_F(DebugCliTest, BadUsageExitsWithTwo) {
  EXPECT_EQ(RunTapeloop({}, "").exit_code, 2);
  EXPECT_EQ(RunTapeloop({"/nonexistent/dir"}, "").exit_code, 2);
  EXPECT_EQ(RunTapeloop({"--task", "addition", "--length", "3"}, "").exit_code, 2);
  EXPECT_EQ(RunTapeloop({"--task", "code_debug", "--length", "1"}, "").exit_code, 2);
  EXPECT_EQ(RunTapeloop({"--task", "code_debug"}, "").exit_code, 2);
  EXPECT_EQ(RunTapeloop({"--bogus", "1"}, "").exit_code, 2);
}

}  // namespace
}  // namespace tapeloop::tasks::code_debug
