#include "tasks/code_debug/code_debug.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <utility>

#include "common/tokenizer.h"
#include "tasks/task.h"
#include "tools/debugger/debugger.h"

namespace tapeloop::tasks::code_debug {
namespace {

using debugger::FileMap;

struct CallSpec {
  int callee = 0;
  std::vector<std::string> args;  // positional, variable names
  std::vector<std::pair<std::string, std::string>> kwargs;
  std::string assign_to;  // "" for a bare call
};

struct Line {
  std::string text;  // with indentation; unused for call lines
  int call = -1;     // index into Function::calls
  int indent = 4;
};

struct Function {
  std::string name;
  std::vector<std::string> params;  // required
  std::string default_name;         // "" if none
  int default_value = 0;
  std::vector<int> children;  // callees, in call order
  std::vector<Line> body;
  std::vector<CallSpec> calls;
};

std::string V(int i) { return "v" + std::to_string(i); }

class Generator {
 public:
  Generator(int n, uint64_t seed) : n_(n), rng_(MixSeed(seed, 0x636f6465ULL)) {}

  void Build() {
    // Names: main, distinct f-numbers, foo last.
    std::vector<int> ids(1000);
    for (int i = 0; i < 1000; ++i) ids[i] = i;
    for (int i = 999; i > 0; --i) std::swap(ids[i], ids[rng_.Uniform(0, i)]);
    funcs_.resize(n_);
    funcs_[0].name = "main";
    for (int i = 1; i + 1 < n_; ++i) funcs_[i].name = "f" + std::to_string(ids[i - 1]);
    funcs_[n_ - 1].name = "foo";
    // The DAG: each new function is called by one earlier function, sometimes by a second one
    // too, keeping the number of main -> f paths (and so the work) small.
    std::vector<int64_t> paths(n_, 0);
    paths[0] = 1;
    for (int i = 1; i < n_; ++i) {
      int p = static_cast<int>(rng_.Uniform(0, i - 1));
      funcs_[p].children.push_back(i);
      paths[i] = paths[p];
      if (i >= 2 && rng_.Uniform(0, 9) < 3) {
        int q = static_cast<int>(rng_.Uniform(0, i - 1));
        if (q != p && paths[i] + paths[q] <= 4) {
          funcs_[q].children.push_back(i);
          paths[i] += paths[q];
        }
      }
    }
    // Signatures.
    for (int i = 1; i < n_; ++i) {
      Function& f = funcs_[i];
      std::vector<int> pool = Shuffled();
      int k = static_cast<int>(rng_.Uniform(1, 3));
      for (int j = 0; j < k; ++j) f.params.push_back(V(pool[j]));
      if (rng_.Uniform(0, 9) < 3) {
        f.default_name = V(pool[k]);
        f.default_value = static_cast<int>(rng_.Uniform(0, 9));
      }
    }
    for (int i = 0; i < n_; ++i) Body(i);
  }

  std::string Render(int i, const std::set<int>& needs, bool fixed) const {
    const Function& f = funcs_[i];
    std::string out;
    std::vector<int> imports;
    for (int c : f.children)
      if (std::find(imports.begin(), imports.end(), c) == imports.end()) imports.push_back(c);
    for (int c : imports) {
      out += "from " + funcs_[c].name + " import " + funcs_[c].name + "\n";
    }
    if (!imports.empty()) out += "\n\n";
    std::vector<std::string> params = f.params;
    if (fixed && i != 0 && needs.count(i)) params.push_back("v10");
    if (!f.default_name.empty()) {
      params.push_back(f.default_name + "=" + std::to_string(f.default_value));
    }
    out += "def " + f.name + "(" + Join(params) + "):\n";
    for (const Line& line : f.body) {
      out += std::string(line.indent, ' ');
      if (line.call < 0) {
        out += line.text + "\n";
        continue;
      }
      const CallSpec& c = f.calls[line.call];
      std::vector<std::string> args = c.args;
      if (fixed && needs.count(c.callee)) args.push_back("v10");
      for (const auto& [k, v] : c.kwargs) args.push_back(k + "=" + v);
      if (!c.assign_to.empty()) out += c.assign_to + " = ";
      out += funcs_[c.callee].name + "(" + Join(args) + ")\n";
    }
    if (i == 0) out += "\n\nif __name__ == \"__main__\":\n    main()\n";
    return out;
  }

  // Functions with a path to foo (foo included, main excluded).
  std::set<int> NeedsV10() const {
    std::set<int> needs = {n_ - 1};
    for (int i = n_ - 2; i >= 1; --i) {
      for (int c : funcs_[i].children) {
        if (needs.count(c)) needs.insert(i);
      }
    }
    return needs;
  }

  const std::vector<Function>& funcs() const { return funcs_; }

 private:
  static std::string Join(const std::vector<std::string>& parts) {
    std::string out;
    for (size_t i = 0; i < parts.size(); ++i) out += (i ? ", " : "") + parts[i];
    return out;
  }

  std::vector<int> Shuffled() {
    std::vector<int> v = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (int i = 9; i > 0; --i) std::swap(v[i], v[rng_.Uniform(0, i)]);
    return v;
  }

  int Mod() {
    static const int kMods[] = {7, 10, 97, 100, 1000};
    return kMods[rng_.Uniform(0, 4)];
  }

  std::string Pick(const std::vector<std::string>& defined) {
    return defined[rng_.Uniform(0, static_cast<int64_t>(defined.size()) - 1)];
  }

  // A bounded integer expression over the defined variables.
  std::string Expression(const std::vector<std::string>& defined) {
    if (defined.empty()) return std::to_string(rng_.Uniform(0, 20));
    std::string a = Pick(defined), b = Pick(defined);
    int k = static_cast<int>(rng_.Uniform(2, 9));
    switch (rng_.Uniform(0, 5)) {
      case 0: return "(" + a + " + " + b + ") % " + std::to_string(Mod());
      case 1: return "(" + a + " * " + std::to_string(k) + " + " + b + ") % " + std::to_string(Mod());
      case 2: return "(" + a + " - " + b + ") % " + std::to_string(Mod());
      case 3: return a + " // " + std::to_string(k) + " + " + std::to_string(rng_.Uniform(0, 9));
      case 4: return a + " % " + std::to_string(k) + " + 1";
      default: return std::to_string(rng_.Uniform(0, 50));
    }
  }

  std::string FreshOrExisting(std::vector<std::string>* defined, const std::set<std::string>& taken) {
    std::vector<int> pool = Shuffled();
    if (!defined->empty() && rng_.Uniform(0, 3) == 0) return Pick(*defined);
    for (int v : pool) {
      std::string name = V(v);
      if (!taken.count(name) &&
          std::find(defined->begin(), defined->end(), name) == defined->end()) {
        return name;
      }
    }
    return Pick(*defined);
  }

  void Define(std::vector<std::string>* defined, const std::string& name) {
    if (std::find(defined->begin(), defined->end(), name) == defined->end()) {
      defined->push_back(name);
    }
  }

  void Add(Function& f, std::string text, int indent = 4) {
    f.body.push_back(Line{std::move(text), -1, indent});
  }

  void Body(int i) {
    Function& f = funcs_[i];
    std::vector<std::string> defined = f.params;
    if (!f.default_name.empty()) defined.push_back(f.default_name);
    std::set<std::string> none;
    if (i == 0) Add(f, "v10 = " + std::to_string(rng_.Uniform(1, 99)));
    int assigns = static_cast<int>(rng_.Uniform(i == 0 ? 2 : 1, 2));
    for (int a = 0; a < assigns; ++a) {
      std::string target = FreshOrExisting(&defined, none);
      std::string expr = Expression(defined);
      Add(f, target + " = " + expr);
      Define(&defined, target);
    }
    if (rng_.Uniform(0, 9) < 3 && defined.size() >= 2) {
      std::string a = Pick(defined), b = Pick(defined);
      std::string target = FreshOrExisting(&defined, none);
      Add(f, "if " + a + " > " + b + ":");
      Add(f, target + " = " + Expression(defined), 8);
      Add(f, "else:");
      Add(f, target + " = " + Expression(defined), 8);
      Define(&defined, target);
    }
    if (rng_.Uniform(0, 9) < 2) {
      std::string acc = Pick(defined);
      std::set<std::string> taken(defined.begin(), defined.end());
      std::string var;
      for (int v : Shuffled()) {
        if (!taken.count(V(v))) {
          var = V(v);
          break;
        }
      }
      if (!var.empty()) {
        Add(f, "for " + var + " in range(" + std::to_string(rng_.Uniform(1, 4)) + "):");
        Add(f, acc + " = (" + acc + " + " + var + ") % " + std::to_string(Mod()), 8);
        Define(&defined, var);
      }
    }
    if (rng_.Uniform(0, 9) < 1) {
      std::string c = Pick(defined);
      Add(f, "while " + c + " > 20:");
      Add(f, c + " = " + c + " // 3", 8);
    }
    if (i == n_ - 1) {
      // foo uses v10, which nobody passes to it: the bug.
      std::string a = Pick(defined);
      if (rng_.Uniform(0, 1) == 0) {
        Add(f, "print(" + a + ", v10)");
      } else {
        std::string target = FreshOrExisting(&defined, none);
        Add(f, target + " = (" + a + " + v10) % " + std::to_string(Mod()));
        Define(&defined, target);
        Add(f, "print(" + target + ")");
      }
    } else {
      std::string a = Pick(defined);
      switch (rng_.Uniform(0, 2)) {
        case 0: Add(f, "print(" + a + ")"); break;
        case 1: Add(f, "print(" + a + ", " + Pick(defined) + ")"); break;
        default: Add(f, "print(\"" + f.name + "\", " + a + ")"); break;
      }
    }
    for (int c : f.children) {
      const Function& callee = funcs_[c];
      CallSpec call;
      call.callee = c;
      for (size_t p = 0; p < callee.params.size(); ++p) call.args.push_back(Pick(defined));
      if (!callee.default_name.empty() && rng_.Uniform(0, 1) == 0) {
        call.kwargs.emplace_back(callee.default_name, Pick(defined));
      }
      if (rng_.Uniform(0, 9) < 4) {
        call.assign_to = FreshOrExisting(&defined, none);
        Define(&defined, call.assign_to);
      }
      f.calls.push_back(call);
      f.body.push_back(Line{"", static_cast<int>(f.calls.size()) - 1, 4});
    }
    if (i != 0) Add(f, "return " + Pick(defined));
  }

  int n_;
  Rng rng_;
  std::vector<Function> funcs_;
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

// `def NAME(a, b=1):` -> the line with v10 inserted after the last parameter without a
// default; the line unchanged if it already has v10.
std::string AddParam(const std::string& line) {
  size_t open = line.find('(');
  size_t close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return line;
  std::string inner = line.substr(open + 1, close - open - 1);
  std::vector<std::string> parts;
  size_t start = 0;
  while (!inner.empty() && start <= inner.size()) {
    size_t comma = inner.find(',', start);
    if (comma == std::string::npos) comma = inner.size();
    std::string p = inner.substr(start, comma - start);
    while (!p.empty() && p.front() == ' ') p.erase(p.begin());
    while (!p.empty() && p.back() == ' ') p.pop_back();
    if (!p.empty()) parts.push_back(p);
    start = comma + 1;
  }
  for (const auto& p : parts)
    if (p == "v10" || p.rfind("v10=", 0) == 0) return line;
  size_t at = 0;
  while (at < parts.size() && parts[at].find('=') == std::string::npos) ++at;
  parts.insert(parts.begin() + at, "v10");
  std::string joined;
  for (size_t i = 0; i < parts.size(); ++i) joined += (i ? ", " : "") + parts[i];
  return line.substr(0, open + 1) + joined + line.substr(close);
}

// The same for a call `callee(...)` on the line.
std::string AddArg(const std::string& line, const std::string& callee) {
  size_t pos = 0;
  while (true) {
    pos = line.find(callee + "(", pos);
    if (pos == std::string::npos) return line;
    bool boundary = pos == 0 || !(std::isalnum(static_cast<unsigned char>(line[pos - 1])) ||
                                  line[pos - 1] == '_');
    if (boundary) break;
    pos += callee.size();
  }
  size_t open = pos + callee.size();
  size_t close = line.find(')', open);
  if (close == std::string::npos) return line;
  std::string rewritten = AddParam("x" + line.substr(open, close - open + 1));
  return line.substr(0, open) + rewritten.substr(1) + line.substr(close + 1);
}

struct Frame {
  std::string file;
  int line = 0;
  std::string function;
};

std::vector<Frame> ParseFrames(const std::string& text) {
  std::vector<Frame> frames;
  for (const auto& l : Lines(text)) {
    const std::string prefix = "  File \"";
    if (l.rfind(prefix, 0) != 0) continue;
    size_t q = l.find('"', prefix.size());
    size_t ln = l.find(", line ", q);
    size_t in = l.find(", in ", ln);
    if (q == std::string::npos || ln == std::string::npos || in == std::string::npos) continue;
    Frame f;
    f.file = l.substr(prefix.size(), q - prefix.size());
    f.line = std::stoi(l.substr(ln + 7, in - ln - 7));
    f.function = l.substr(in + 5);
    frames.push_back(f);
  }
  return frames;
}

class Episode {
 public:
  explicit Episode(const CodeDebugInstance& x, CodeDebugMode mode) : session_(x.buggy) {
    trajectory_.mode = mode;
    trajectory_.prompt = x.prompt;
  }
  debugger::Observation Do(const std::string& command) {
    debugger::Observation o = session_.Execute(command);
    trajectory_.steps.push_back(DebugStep{command, o.text, o.is_error});
    if (command == "run") ++trajectory_.runs;
    return o;
  }
  const FileMap& files() const { return session_.files(); }
  CodeDebugTrajectory Finish() {
    trajectory_.final_files = session_.files();
    return std::move(trajectory_);
  }

  // Views `file` and rewrites the def line (if add_param) and the call to `callee` on
  // `call_line` (if > 0). Returns whether anything changed.
  bool FixFile(const std::string& file, const std::string& function, bool add_param,
               int call_line, const std::string& callee) {
    auto it = files().find(file);
    if (it == files().end()) return false;
    std::vector<std::string> lines = Lines(it->second);
    std::vector<std::pair<int, std::string>> edits;
    if (add_param) {
      for (size_t i = 0; i < lines.size(); ++i) {
        if (lines[i].rfind("def " + function + "(", 0) == 0) {
          std::string fixed = AddParam(lines[i]);
          if (fixed != lines[i]) edits.emplace_back(static_cast<int>(i) + 1, fixed);
          break;
        }
      }
    }
    if (call_line >= 1 && call_line <= static_cast<int>(lines.size())) {
      std::string fixed = AddArg(lines[call_line - 1], callee);
      if (fixed != lines[call_line - 1]) edits.emplace_back(call_line, fixed);
    }
    if (edits.empty()) return false;
    Do("view " + file);
    for (const auto& [line, text] : edits) {
      Do("edit " + file + " " + std::to_string(line) + "-" + std::to_string(line) + " " + text);
    }
    return true;
  }

 private:
  debugger::DebugSession session_;
  CodeDebugTrajectory trajectory_;
};

std::string Prompt(const CodeDebugInstance& x) {
  std::string files;
  for (const auto& [name, unused] : x.buggy) files += (files.empty() ? "" : " ") + name;
  return "Fix the program so that `python main.py` runs without errors. Files: " + files + "\n";
}

}  // namespace

nlohmann::json CodeDebugInstance::ToJson() const {
  return {{"task", kTaskName},   {"n", n},       {"seed", seed},
          {"files", buggy},      {"fixed", fixed}, {"expected_output", expected_output},
          {"functions", functions}, {"needs_v10", needs_v10}};
}

absl::StatusOr<CodeDebugInstance> GenerateCodeDebug(int n, uint64_t seed) {
  if (n < kMinFunctions || n > kMaxFunctions + 1) {
    return absl::InvalidArgumentError("code_debug: n = " + std::to_string(n) +
                                      " functions is out of range [" +
                                      std::to_string(kMinFunctions) + ", " +
                                      std::to_string(kMaxFunctions + 1) + "]");
  }
  Generator g(n, seed);
  g.Build();
  std::set<int> needs = g.NeedsV10();
  CodeDebugInstance x;
  x.n = n;
  x.seed = seed;
  for (int i = 0; i < n; ++i) {
    const std::string file = g.funcs()[i].name + ".py";
    x.buggy[file] = g.Render(i, needs, false);
    x.fixed[file] = g.Render(i, needs, true);
    x.functions.push_back(g.funcs()[i].name);
  }
  for (int i : needs) x.needs_v10.push_back(g.funcs()[i].name);
  debugger::RunResult r = debugger::RunProgram(x.fixed, "main.py");
  if (r.outcome != debugger::Outcome::kOk) {
    return absl::InternalError("code_debug: the reference fix for n=" + std::to_string(n) +
                               " seed=" + std::to_string(seed) + " fails: " + r.error_text);
  }
  x.expected_output = r.output;
  x.prompt = Prompt(x);
  return x;
}

std::string_view CodeDebugModeName(CodeDebugMode mode) {
  return mode == CodeDebugMode::kInteractive ? "interactive" : "single-turn";
}

absl::StatusOr<CodeDebugMode> ParseCodeDebugMode(std::string_view name) {
  if (name == "interactive") return CodeDebugMode::kInteractive;
  if (name == "single-turn" || name == "single_turn") return CodeDebugMode::kSingleTurn;
  return absl::InvalidArgumentError("code_debug: unknown mode '" + std::string(name) +
                                    "' (interactive, single-turn)");
}

absl::StatusOr<CodeDebugTrajectory> InteractiveOracle(const CodeDebugInstance& x,
                                                      int max_files_per_round, int max_rounds) {
  Episode episode(x, CodeDebugMode::kInteractive);
  for (int round = 0; round < max_rounds; ++round) {
    debugger::Observation o = episode.Do("run");
    if (o.data.value("outcome", "") == "ok") return episode.Finish();
    std::string type = o.data.value("exception_type", "");
    std::string message = o.data.value("exception_message", "");
    std::vector<Frame> frames = ParseFrames(o.text);
    if (frames.empty()) {
      return absl::InternalError("code_debug oracle: no traceback in: " + o.text);
    }
    int i = static_cast<int>(frames.size()) - 1;
    int fixed_files = 0;
    std::string callee;  // the function the frame at i calls, needing v10
    if (type == "NameError" && message == "name 'v10' is not defined") {
      if (episode.FixFile(frames[i].file, frames[i].function, true, 0, "")) ++fixed_files;
      callee = frames[i].function;
      --i;
    } else if (type == "TypeError" &&
               message.find("() missing 1 required positional argument: 'v10'") !=
                   std::string::npos) {
      callee = message.substr(0, message.find("()"));
    } else {
      return absl::InternalError("code_debug oracle: unexpected failure: " + o.text);
    }
    for (; i >= 0 && fixed_files < max_files_per_round; --i) {
      const Frame& f = frames[i];
      if (f.function == "<module>") break;
      bool add_param = f.function != "main";
      if (episode.FixFile(f.file, f.function, add_param, f.line, callee)) ++fixed_files;
      if (!add_param) break;
      callee = f.function;
    }
    if (fixed_files == 0) {
      return absl::InternalError("code_debug oracle: nothing to fix for: " + o.text);
    }
  }
  return absl::InternalError("code_debug oracle: still failing after " +
                             std::to_string(max_rounds) + " rounds");
}

absl::StatusOr<CodeDebugTrajectory> SingleTurnOracle(const CodeDebugInstance& x) {
  Episode episode(x, CodeDebugMode::kSingleTurn);
  debugger::Observation ls = episode.Do("ls");
  // What the oracle reads: every file.
  std::map<std::string, std::vector<std::string>> source;
  for (const auto& [file, text] : episode.files()) {
    episode.Do("view " + file);
    source[file] = Lines(text);
  }
  // The call graph from the source: def lines and calls to other files' functions.
  std::map<std::string, std::string> function_of;  // file -> function
  for (const auto& [file, lines] : source) {
    for (const auto& l : lines) {
      if (l.rfind("def ", 0) == 0) {
        function_of[file] = l.substr(4, l.find('(') - 4);
        break;
      }
    }
  }
  std::map<std::string, std::vector<std::pair<int, std::string>>> calls;  // file -> (line, f)
  for (const auto& [file, lines] : source) {
    for (size_t i = 0; i < lines.size(); ++i) {
      const std::string& l = lines[i];
      if (l.rfind("def ", 0) == 0 || l.rfind("from ", 0) == 0) continue;
      for (const auto& [other, fn] : function_of) {
        if (other == file || fn == "main") continue;
        if (AddArg(l, fn) != l || l.find(fn + "(v10") != std::string::npos) {
          calls[file].emplace_back(static_cast<int>(i) + 1, fn);
        }
      }
    }
  }
  std::set<std::string> needs;  // functions that must take v10
  for (const auto& [file, lines] : source) {
    for (const auto& l : lines) {
      if (l.find("v10") != std::string::npos && function_of[file] != "main") {
        needs.insert(function_of[file]);
      }
    }
  }
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& [file, list] : calls) {
      const std::string& fn = function_of[file];
      if (fn == "main" || needs.count(fn)) continue;
      for (const auto& [line, callee] : list) {
        if (needs.count(callee)) {
          needs.insert(fn);
          grew = true;
          break;
        }
      }
    }
  }
  for (const auto& [file, lines] : source) {
    const std::string& fn = function_of[file];
    for (size_t i = 0; i < lines.size(); ++i) {
      std::string fixed = lines[i];
      if (lines[i].rfind("def " + fn + "(", 0) == 0 && needs.count(fn)) {
        fixed = AddParam(lines[i]);
      }
      for (const auto& [line, callee] : calls[file]) {
        if (line == static_cast<int>(i) + 1 && needs.count(callee)) fixed = AddArg(fixed, callee);
      }
      if (fixed != lines[i]) {
        episode.Do("edit " + file + " " + std::to_string(i + 1) + "-" + std::to_string(i + 1) +
                   " " + fixed);
      }
    }
  }
  return episode.Finish();
}

absl::StatusOr<CodeDebugTrajectory> Oracle(const CodeDebugInstance& instance,
                                           CodeDebugMode mode) {
  return mode == CodeDebugMode::kInteractive ? InteractiveOracle(instance)
                                             : SingleTurnOracle(instance);
}

nlohmann::json CodeDebugScore::ToJson() const {
  return {{"passed", passed}, {"outcome", outcome}, {"output", output}, {"error", error_text}};
}

CodeDebugScore ScoreCodeDebug(const CodeDebugInstance& instance, const FileMap& files) {
  debugger::RunResult r = debugger::RunProgram(files, "main.py");
  CodeDebugScore s;
  s.outcome = debugger::OutcomeName(r.outcome);
  s.output = r.output;
  s.error_text = r.error_text;
  s.passed = r.outcome == debugger::Outcome::kOk && r.output == instance.expected_output;
  return s;
}

CodeDebugEnv::CodeDebugEnv(CodeDebugInstance instance, int max_steps)
    : instance_(std::move(instance)), max_steps_(max_steps), session_(instance_.buggy) {}

debugger::Observation CodeDebugEnv::Step(std::string_view command) {
  if (done()) {
    debugger::Observation o;
    o.text = solved_ ? "*** the episode is over: the program is fixed\n"
                     : "*** the episode is over: step limit of " + std::to_string(max_steps_) +
                           " reached\n";
    o.is_error = true;
    return o;
  }
  debugger::Observation o = session_.Execute(command);
  steps_.push_back(DebugStep{std::string(command), o.text, o.is_error});
  if (o.data.value("state", "") == "finished" && o.data.value("outcome", "") == "ok") {
    solved_ = session_.last_result() && session_.last_result()->output == instance_.expected_output;
  }
  return o;
}

CodeDebugScore CodeDebugEnv::Score() const { return ScoreCodeDebug(instance_, session_.files()); }

Trajectory CodeDebugTrajectory::ToTrajectory() const {
  Trajectory t;
  t.mode = Mode::kCalculator;
  auto add = [&t](TokenId id, Role role) {
    t.tokens.push_back(id);
    t.roles.push_back(role);
  };
  auto add_text = [&](const std::string& text, Role role) {
    for (unsigned char c : text) add(static_cast<TokenId>(c), role);
  };
  add(tokens::kBos, Role::kPrompt);
  add_text(prompt, Role::kPrompt);
  for (const auto& step : steps) {
    add(tokens::kCall, Role::kCommand);
    add_text(step.command, Role::kCommand);
    add(tokens::kCallEnd, Role::kCommand);
    add(tokens::kObs, Role::kObservation);
    add_text(step.observation, Role::kObservation);
    add(tokens::kObsEnd, Role::kObservation);
  }
  add(tokens::kEos, Role::kEos);
  return t;
}

std::string CodeDebugTrajectory::ToText() const {
  std::string out = prompt;
  for (const auto& step : steps) out += "$ " + step.command + "\n" + step.observation;
  return out;
}

namespace {

class CodeDebugSource : public TrajectorySource {
 public:
  explicit CodeDebugSource(const CodeDebugSourceConfig& config) : config_(config) {
    common_.task = kTaskName;
    common_.max_length = config.max_functions;
    common_.seed = config.seed;
    common_.max_tokens = config.max_tokens;
    common_.training = true;
    common_.mode = Mode::kCalculator;
  }

  std::vector<Example> Next(int batch_size) override {
    std::vector<Example> out;
    int attempts = 0;
    while (static_cast<int>(out.size()) < batch_size && attempts < batch_size * 100) {
      ++attempts;
      uint64_t index = position_++;
      Rng rng(MixSeed(config_.seed, index));
      int n = static_cast<int>(rng.Uniform(config_.min_functions, config_.max_functions));
      auto x = GenerateCodeDebug(n, MixSeed(config_.seed, index));
      if (!x.ok()) continue;
      auto t = Oracle(*x, config_.mode);
      if (!t.ok()) continue;
      Trajectory tr = t->ToTrajectory();
      if (config_.max_tokens > 0 && static_cast<int64_t>(tr.tokens.size()) > config_.max_tokens)
        continue;
      Example e;
      e.index = index;
      e.tokens = tr.tokens;
      e.loss_mask = tr.LossMask();
      e.instance.task = kTaskName;
      e.instance.prompt = x->prompt;
      e.instance.answer = x->expected_output;
      e.instance.length = n;
      out.push_back(std::move(e));
    }
    return out;
  }
  uint64_t position() const override { return position_; }
  void Seek(uint64_t position) override { position_ = position; }
  const TrajectorySourceConfig& config() const override { return common_; }

 private:
  CodeDebugSourceConfig config_;
  TrajectorySourceConfig common_;
  uint64_t position_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TrajectorySource>> MakeCodeDebugTrajectorySource(
    const CodeDebugSourceConfig& config) {
  if (config.min_functions < kMinFunctions || config.max_functions > kMaxFunctions + 1 ||
      config.min_functions > config.max_functions) {
    return absl::InvalidArgumentError(
        "code_debug source: need " + std::to_string(kMinFunctions) +
        " <= min_functions <= max_functions <= " + std::to_string(kMaxFunctions + 1) +
        ", got " + std::to_string(config.min_functions) + ".." +
        std::to_string(config.max_functions));
  }
  return std::unique_ptr<TrajectorySource>(new CodeDebugSource(config));
}

}  // namespace tapeloop::tasks::code_debug
