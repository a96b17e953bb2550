// Cross-check of the debugger's interpreter against the real CPython (/usr/bin/python3, 3.11):
// generated code_debug programs (buggy, fixed, and every intermediate state of the interactive
// oracle, which fail with TypeError) plus hand-written error programs run in both, and must
// print the same stdout and the same stderr (traceback frames, carets, exception line), with the
// temporary directory's path removed from CPython's file names.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tasks/code_debug/code_debug.h"
#include "tasks/task.h"
#include "tools/debugger/debugger.h"
#include "tools/debugger/interpreter.h"

namespace tapeloop::tasks::code_debug {
namespace {

constexpr char kPython[] = "/usr/bin/python3";

struct PythonRun {
  bool ran = false;
  std::string out, err;
};

std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

// Writes the files to a fresh temp dir and runs `python3 main.py` there (10 s timeout).
PythonRun RunCPython(const debugger::FileMap& files) {
  PythonRun result;
  char tmpl[] = "/tmp/tapeloop_xcheck_XXXXXX";
  char* dir = mkdtemp(tmpl);
  if (dir == nullptr) return result;
  std::string d = dir;
  for (const auto& [name, text] : files) std::ofstream(d + "/" + name) << text;
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) return result;
  pid_t pid = fork();
  if (pid == 0) {
    if (chdir(d.c_str()) != 0) _exit(126);
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(err[0]);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    execl(kPython, kPython, "-E", "-s", "main.py", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  int waited_ms = 0;
  while (open_fds > 0 && waited_ms < 10000) {
    int ready = poll(fds, 2, 100);
    if (ready == 0) {
      waited_ms += 100;
      continue;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[8192];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? result.out : result.err).append(buf, n);
      }
    }
  }
  if (open_fds > 0) kill(pid, SIGKILL);
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int status = 0;
  waitpid(pid, &status, 0);
  for (const auto& [name, unused] : files) unlink((d + "/" + name).c_str());
  rmdir(d.c_str());
  result.ran = open_fds == 0;
  result.err = ReplaceAll(result.err, d + "/", "");
  return result;
}

bool HavePython() { return access(kPython, X_OK) == 0; }

// Compares one program; returns false (with a gtest failure) on a mismatch.
bool Same(const debugger::FileMap& files, const std::string& label) {
  PythonRun py = RunCPython(files);
  EXPECT_TRUE(py.ran) << label;
  debugger::RunResult ours = debugger::RunProgram(files, "main.py");
  EXPECT_EQ(ours.output, py.out) << label;
  EXPECT_EQ(ours.error_text, py.err) << label << "\n--- files ---\n"
                                     << (files.count("main.py") ? files.at("main.py") : "");
  return ours.output == py.out && ours.error_text == py.err;
}

// Replays an oracle trajectory and collects the files at every `run`.
std::vector<debugger::FileMap> IntermediatePrograms(const CodeDebugInstance& x,
                                                    const CodeDebugTrajectory& t) {
  std::vector<debugger::FileMap> programs;
  debugger::DebugSession session(x.buggy);
  for (const auto& step : t.steps) {
    if (step.command == "run") {
      programs.push_back(session.files());
    } else {
      session.Execute(step.command);
    }
  }
  return programs;
}

TEST(CPythonCrossCheckTest, GeneratedPrograms) {
  if (!HavePython()) GTEST_SKIP() << kPython << " not found";
  int programs = 0, type_errors = 0, suggestions = 0;
  const int sizes[] = {2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64};
  for (int n : sizes) {
    for (uint64_t seed = 1; seed <= 8; ++seed) {
      auto x = GenerateCodeDebug(n, seed * 7919 + n);
      ASSERT_TRUE(x.ok()) << x.status();
      std::string label = "n=" + std::to_string(n) + " seed=" + std::to_string(seed);
      std::vector<debugger::FileMap> cases = {x->buggy, x->fixed};
      if (seed <= 2 && n <= 32) {
        auto t = InteractiveOracle(*x);
        ASSERT_TRUE(t.ok()) << t.status();
        for (auto& p : IntermediatePrograms(*x, *t)) cases.push_back(std::move(p));
      }
      for (size_t i = 0; i < cases.size(); ++i) {
        debugger::RunResult r = debugger::RunProgram(cases[i], "main.py");
        type_errors += r.exception_type == "TypeError";
        suggestions += r.error_text.find("Did you mean") != std::string::npos;
        ASSERT_TRUE(Same(cases[i], label + " case " + std::to_string(i)));
        ++programs;
      }
    }
  }
  for (int n : {128, 400, 1001}) {  // a few large codebases
    auto x = GenerateCodeDebug(n, 11);
    ASSERT_TRUE(x.ok()) << x.status();
    ASSERT_TRUE(Same(x->buggy, "large buggy n=" + std::to_string(n)));
    ASSERT_TRUE(Same(x->fixed, "large fixed n=" + std::to_string(n)));
    programs += 2;
  }
  EXPECT_GE(programs, 200);
  EXPECT_GT(type_errors, 10);
  std::cout << "cross-checked " << programs << " generated programs (" << type_errors
            << " TypeError, " << suggestions << " with a suggestion)\n";
}

TEST(CPythonCrossCheckTest, HandWrittenErrors) {
  if (!HavePython()) GTEST_SKIP() << kPython << " not found";
  const std::string helper =
      "def f(a, b=2):\n    return a\ndef g():\n    x = 1\n    y = x + z\ng2 = 5\n"
      "def h():\n    print(q)\n    q = 1\ndef k(v1, v0):\n    v3 = 2\n    print(v10)\n";
  const std::vector<std::string> mains = {
      "from e1 import f\nf(1, 2, 3)\n",
      "from e1 import f\nf()\n",
      "from e1 import f\nf(1, c=2)\n",
      "from e1 import f\nf(1, a=2)\n",
      "from e1 import g\ng()\n",
      "from e1 import h\nh()\n",
      "from e1 import k\nk(1, 2)\n",
      "x = [1, 2]\ny = x[0] + x[5]\n",
      "a = 3\nb = a // (a - 3)\n",
      "a = 3\nprint(a % 0)\n",
      "x = 5\nx.append(3)\n",
      "x = [1]\nx.apend(3)\n",
      "from e1 import nothing\n",
      "import nomod\n",
      "print(len(5))\n",
      "print(int(\"x1\"))\n",
      "x = 1\nx += \"a\"\n",
      "print(\"a\" + 1)\n",
      "print(prnt)\n",
      "print(-\"a\")\n",
      "def f():\n    return f()\nf()\n",
      "def f(n):\n    if n == 0:\n        return 0\n    return 1 + f(n - 1)\nprint(f(500))\nf(5000)\n",
      "print(1 < \"a\")\n",
      "print(1 > \"a\")\n",
      "print(1 <= \"a\")\n",
      "print(\"a\" >= 1)\n",
      "print([1, 2] < [1, 3], [1] > ['a'])\n",
      "print(max(1, 'a'))\n",
      "print(min(1, 'a'))\n",
      "z = [1][1:] + 3\n",
      "for i in 5:\n    pass\n",
      "import e1\nprint(e1.g2)\ne1.nothing()\n",
      "def f(a, b):\n    return a\nprint(f(1))\n",
      "def f(a, b, c):\n    return a\nprint(f())\n",
      "def f(a):\n    return a\nprint(f(1, 2))\n",
      "def f():\n    return 1\nprint(f(1))\n",
      "x = [1, 'a', None, True, [2]]\nprint(x, len(x), x[-1], str(x), 'it''s')\n",
      "s = 0\nfor i in range(10):\n    if i % 3 == 0:\n        continue\n    if i > 7:\n"
      "        break\n    s += i\nelse:\n    s = -1\nprint(s, 7 // -2, -7 % 3, 2 ** 10)\n",
      "x = 3\nwhile x > 0:\n    x -= 1\n    print(x, x == 1 or 'no', x and 5, not x)\n",
      "def f(a, b=[]):\n    b.append(a)\n    return b\nprint(f(1), f(2), max(3, 9, 2), min([4, 1]), "
      "sum(range(5)), abs(-3))\n",
      "print('a' * 3, [0] * 2, 1 if 2 > 3 else 4, 1 < 2 < 3, 3 in [1, 3], 'b' not in 'abc')\n",
      "x = [3, 1, 2]\nx.sort()\nprint(x, x.pop(), x.index(2), ' '.join(['a', 'b']), 'a,b'.split(','))\n",
      "def f(x):\n    print(x)\n\nf(1)\nf(undefined_name)\n",
      "def f(\n",
      "x = (1 +\n",
      "if x\n    pass\n",
      "def f():\npass\n",
      "x = 1\n  y = 2\n",
      "x = 1 +\n",
      "from e2 import y\nprint(y)\n",
  };
  int n = 0;
  for (const auto& main : mains) {
    debugger::FileMap files = {{"main.py", main}, {"e1.py", helper},
                               {"e2.py", "def y(v1:\n    pass\n"}};
    Same(files, "program:\n" + main);
    ++n;
  }
  EXPECT_EQ(n, static_cast<int>(mains.size()));
}

}  // namespace
}  // namespace tapeloop::tasks::code_debug

namespace tapeloop::tasks::code_debug {
namespace {

// Random small mutations of generated programs (renamed variables, dropped or extra
// arguments, zero divisors, deleted lines) give a wide mix of NameError, UnboundLocalError,
// TypeError, ZeroDivisionError, IndentationError... each must match CPython too.
debugger::FileMap Mutate(const debugger::FileMap& files, Rng& rng) {
  debugger::FileMap out = files;
  auto it = out.begin();
  std::advance(it, rng.Uniform(0, static_cast<int64_t>(out.size()) - 1));
  std::string& text = it->second;
  std::vector<size_t> starts = {0};
  for (size_t i = 0; i + 1 < text.size(); ++i)
    if (text[i] == '\n') starts.push_back(i + 1);
  size_t li = rng.Uniform(0, static_cast<int64_t>(starts.size()) - 1);
  size_t a = starts[li];
  size_t b = text.find('\n', a);
  std::string line = text.substr(a, b - a);
  switch (rng.Uniform(0, 4)) {
    case 0: {  // rename a variable
      size_t v = line.find('v');
      if (v != std::string::npos && v + 1 < line.size() && isdigit(line[v + 1])) {
        size_t e = v + 1;
        while (e < line.size() && isdigit(line[e])) ++e;
        line.replace(v, e - v, "v" + std::to_string(rng.Uniform(0, 11)));
      }
      break;
    }
    case 1: {  // drop an argument / parameter
      size_t c = line.rfind(", ");
      if (c != std::string::npos) {
        size_t e = line.find_first_of(",)", c + 2);
        if (e != std::string::npos) line.erase(c, e - c);
      }
      break;
    }
    case 2: {  // an extra argument (to a call or def: never making a tuple)
      size_t c = line.rfind(')');
      size_t o = c == std::string::npos ? c : line.rfind('(', c);
      if (c != std::string::npos && o != std::string::npos && o > 0 && isalnum(line[o - 1]) &&
          line.find("print") == std::string::npos) {
        line.insert(c, line[c - 1] == '(' ? "v3" : ", v3");
      }
      break;
    }
    case 3: {  // a zero divisor
      size_t c = line.find("% ");
      if (c == std::string::npos) c = line.find("// ");
      if (c != std::string::npos) {
        size_t d = line.find(' ', c) + 1;
        size_t e = d;
        while (e < line.size() && isdigit(line[e])) ++e;
        if (e > d) line.replace(d, e - d, "0");
      }
      break;
    }
    default:  // delete the line
      line.clear();
      break;
  }
  text.replace(a, b - a, line);
  return out;
}

TEST(CPythonCrossCheckTest, MutatedPrograms) {
  if (!HavePython()) GTEST_SKIP() << kPython << " not found";
  Rng rng(2024);
  std::map<std::string, int> types;
  int compared = 0;
  for (int i = 0; i < 150; ++i) {
    int n = static_cast<int>(rng.Uniform(2, 12));
    auto x = GenerateCodeDebug(n, rng.Next());
    ASSERT_TRUE(x.ok());
    debugger::FileMap files = Mutate(rng.Uniform(0, 1) ? x->fixed : x->buggy, rng);
    if (rng.Uniform(0, 2) == 0) files = Mutate(files, rng);
    debugger::RunResult r = debugger::RunProgram(files, "main.py");
    ++types[r.exception_type.empty() ? "ok" : r.exception_type];
    Same(files, "mutation " + std::to_string(i));
    ++compared;
  }
  std::string summary;
  for (const auto& [type, count] : types) summary += type + "=" + std::to_string(count) + " ";
  std::cout << "cross-checked " << compared << " mutated programs: " << summary << "\n";
  EXPECT_GE(types.size(), 4u);
}

}  // namespace
}  // namespace tapeloop::tasks::code_debug
