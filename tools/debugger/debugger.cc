#include "tools/debugger/debugger.h"

#include <pthread.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <utility>

#include "tools/debugger/parser.h"

namespace tapeloop::debugger {
namespace {

std::string Trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

bool ParseInt(const std::string& s, int* out) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  *out = std::stoi(s);
  return true;
}

// "A-B" or "A" -> (A, B).
bool ParseRange(const std::string& s, int* a, int* b) {
  size_t dash = s.find('-');
  if (dash == std::string::npos) {
    if (!ParseInt(s, a)) return false;
    *b = *a;
    return true;
  }
  return ParseInt(s.substr(0, dash), a) && ParseInt(s.substr(dash + 1), b);
}

// "FILE:LINE" -> (FILE, LINE).
bool ParseLocation(const std::string& s, std::string* file, int* line) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  *file = s.substr(0, colon);
  return ParseInt(s.substr(colon + 1), line);
}

void StatementLines(const Block& block, std::set<int>* lines) {
  for (const auto& s : block) {
    lines->insert(s->range.line);
    StatementLines(s->body, lines);
    StatementLines(s->orelse, lines);
    if (s->def) StatementLines(s->def->body, lines);
  }
}

Observation Error(std::string text) {
  Observation o;
  o.text = "*** " + std::move(text);
  o.is_error = true;
  o.data["error"] = true;
  return o;
}

struct CommandHelp {
  const char* name;
  const char* usage;
};

const std::vector<CommandHelp>& HelpTable() {
  static const auto* help = new std::vector<CommandHelp>{
      {"run", "run | restart: run the program from the start (breakpoints are kept)"},
      {"restart", "restart: same as run"},
      {"break", "break FILE:LINE: stop before LINE runs; `break` alone lists breakpoints"},
      {"clear", "clear [FILE:LINE]: remove a breakpoint (all of them without an argument)"},
      {"continue", "continue | c: run until the next breakpoint or the end"},
      {"step", "step | s: run one line, stepping into calls"},
      {"next", "next | n: run one line, stepping over calls"},
      {"where", "where | w: the stack of the stopped (or crashed) program"},
      {"up", "up: select the caller's frame"},
      {"down", "down: select the callee's frame"},
      {"print", "print EXPR | p EXPR: evaluate EXPR in the selected frame"},
      {"list", "list | l [FILE[:LINE]]: source around the current line"},
      {"ls", "ls: the program's files"},
      {"view", "view FILE [START-END]: a file with line numbers"},
      {"edit", "edit FILE START-END TEXT: replace lines START..END with TEXT (several lines "
               "allowed; empty TEXT deletes; END=START-1 inserts before START)"},
      {"help", "help: this list"}};
  return *help;
}

}  // namespace

struct DebugSession::Worker {
  std::function<void()> fn;
  pthread_t thread{};
  bool started = false;

  static void* Main(void* self) {
    static_cast<Worker*>(self)->fn();
    return nullptr;
  }
  bool Start() {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kInterpreterStackBytes);
    started = pthread_create(&thread, &attr, &Worker::Main, this) == 0;
    pthread_attr_destroy(&attr);
    return started;
  }
  void Join() {
    if (started) pthread_join(thread, nullptr);
    started = false;
  }
};

const std::vector<std::string>& DebugSession::CommandNames() {
  static const auto* names = [] {
    auto* v = new std::vector<std::string>();
    for (const auto& h : HelpTable()) v->push_back(h.name);
    for (const char* alias : {"c", "s", "n", "w", "p", "l"}) v->push_back(alias);
    return v;
  }();
  return *names;
}

DebugSession::DebugSession(FileMap files, SessionOptions options)
    : files_(std::move(files)), options_(std::move(options)) {}

DebugSession::~DebugSession() { StopWorker(); }

void DebugSession::StopWorker() {
  if (!worker_) return;
  {
    std::unique_lock<std::mutex> lock(mu_);
    stop_ = true;
    parked_ = false;
    cv_.notify_all();
  }
  worker_->Join();
  worker_.reset();
}

bool DebugSession::OnLine(const std::vector<std::shared_ptr<Frame>>& stack) {
  std::unique_lock<std::mutex> lock(mu_);
  if (stop_) return false;
  const Frame& top = *stack.back();
  bool at_break = breakpoints_.count({top.filename(), top.line}) > 0;
  bool pause = at_break || mode_ == Mode::kStep ||
               (mode_ == Mode::kNext && stack.size() <= next_depth_);
  if (!pause) return true;
  parked_ = true;
  parked_stack_ = stack;
  last_stop_ = {top.filename(), top.line};
  cv_.notify_all();
  cv_.wait(lock, [&] { return !parked_; });
  return !stop_;
}

Observation DebugSession::Start(Mode mode) {
  StopWorker();
  interpreter_ = std::make_unique<Interpreter>(files_, options_.limits);
  last_result_.reset();
  output_seen_ = 0;
  selected_frame_ = 0;
  auto result = std::make_shared<RunResult>();
  {
    std::unique_lock<std::mutex> lock(mu_);
    parked_ = false;
    done_ = false;
    stop_ = false;
    mode_ = mode;
    next_depth_ = SIZE_MAX;
  }
  worker_ = std::make_unique<Worker>();
  Interpreter* interpreter = interpreter_.get();
  std::string main_file = options_.main_file;
  worker_->fn = [this, interpreter, main_file, result] {
    RunResult r = interpreter->Run(main_file, this);
    std::unique_lock<std::mutex> lock(mu_);
    *result = std::move(r);
    done_ = true;
    cv_.notify_all();
  };
  pending_ = result;
  if (!worker_->Start()) {
    worker_.reset();
    return Error("could not start the program's thread");
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return parked_ || done_; });
  }
  return AfterResume();
}

Observation DebugSession::Resume(Mode mode) {
  if (state_ != State::kPaused) return Start(mode);
  {
    std::unique_lock<std::mutex> lock(mu_);
    mode_ = mode;
    next_depth_ = parked_stack_.size();
    parked_ = false;
    cv_.notify_all();
    cv_.wait(lock, [&] { return parked_ || done_; });
  }
  return AfterResume();
}

Observation DebugSession::AfterResume() {
  Observation o;
  bool done;
  {
    std::unique_lock<std::mutex> lock(mu_);
    done = done_;
  }
  if (done) {
    worker_->Join();
    worker_.reset();
    state_ = State::kFinished;
    last_result_ = std::move(*pending_);
    pending_.reset();
    const RunResult& r = *last_result_;
    o.text = r.output.substr(std::min(output_seen_, r.output.size()));
    if (!o.text.empty() && o.text.back() != '\n') o.text += "\n";
    o.text += r.error_text;
    switch (r.outcome) {
      case Outcome::kOk: o.text += "[program exited normally]\n"; break;
      case Outcome::kException:
      case Outcome::kSyntaxError:
        o.text += "[program exited with " + r.exception_type + "]\n";
        o.is_error = true;
        break;
      case Outcome::kBudgetExhausted:
        o.text += "[program stopped: instruction budget exhausted]\n";
        o.is_error = true;
        break;
      case Outcome::kOutputLimit:
        o.text += "[program stopped: output limit exceeded]\n";
        o.is_error = true;
        break;
      case Outcome::kStopped: o.text += "[program stopped]\n"; break;
    }
    auto stack = interpreter_->Stack();
    selected_frame_ = stack.empty() ? 0 : stack.size() - 1;
    o.data = StateJson();
    return o;
  }
  state_ = State::kPaused;
  std::string out = interpreter_->output();
  o.text = out.substr(std::min(output_seen_, out.size()));
  output_seen_ = out.size();
  if (!o.text.empty() && o.text.back() != '\n') o.text += "\n";
  selected_frame_ = parked_stack_.size() - 1;
  o.text += Location(*parked_stack_.back(), true);
  o.data = StateJson();
  return o;
}

nlohmann::json DebugSession::StateJson() const {
  nlohmann::json j;
  switch (state_) {
    case State::kIdle: j["state"] = "idle"; break;
    case State::kPaused: {
      j["state"] = "paused";
      const Frame& f = *parked_stack_.back();
      j["file"] = f.filename();
      j["line"] = f.line;
      j["function"] = f.name();
      break;
    }
    case State::kFinished: {
      j["state"] = "finished";
      j["outcome"] = OutcomeName(last_result_->outcome);
      if (!last_result_->exception_type.empty()) {
        j["exception_type"] = last_result_->exception_type;
        j["exception_message"] = last_result_->exception_message;
      }
      break;
    }
  }
  return j;
}

std::string DebugSession::Location(const Frame& frame, bool arrow) const {
  std::string text = std::string(arrow ? "> " : "  ") + frame.filename() + "(" +
                     std::to_string(frame.line) + ")" + frame.name() + "()\n";
  // The source the program runs, which may predate later edits.
  if (interpreter_) {
    const FileMap& ran = interpreter_->files();
    auto it = ran.find(frame.filename());
    if (it != ran.end()) {
      auto lines = SplitLines(it->second);
      if (frame.line >= 1 && frame.line <= static_cast<int>(lines.size())) {
        text += "-> " + Trim(lines[frame.line - 1]) + "\n";
      }
    }
  }
  return text;
}

Observation DebugSession::Where() {
  std::vector<std::shared_ptr<Frame>> stack;
  if (state_ == State::kPaused) {
    stack = parked_stack_;
  } else if (interpreter_) {
    stack = interpreter_->Stack();
  }
  if (stack.empty()) {
    return Error("no stack: the program is not stopped (use `break FILE:LINE` and `run`, or "
                 "`step`)");
  }
  Observation o;
  for (size_t i = 0; i < stack.size(); ++i) o.text += Location(*stack[i], i == selected_frame_);
  if (state_ == State::kFinished) o.text += "(post-mortem: the frames where the error was raised)\n";
  o.data = StateJson();
  return o;
}

Observation DebugSession::Print(const std::string& expr) {
  if (expr.empty()) return Error("usage: print EXPR");
  if (!interpreter_ || interpreter_->Stack().empty()) {
    return Error("no frame to evaluate in: the program is not stopped (use `break FILE:LINE` "
                 "and `run`, or `step`)");
  }
  bool ok = false;
  std::string text = interpreter_->EvalInFrame(expr, selected_frame_, &ok);
  if (!ok) return Error(text);
  Observation o;
  o.text = text + "\n";
  o.data = StateJson();
  return o;
}

Observation DebugSession::Ls() {
  Observation o;
  for (const auto& [name, source] : files_) {
    o.text += name + " (" + std::to_string(SplitLines(source).size()) + " lines)\n";
  }
  o.data["files"] = nlohmann::json::array();
  for (const auto& [name, unused] : files_) o.data["files"].push_back(name);
  return o;
}

Observation DebugSession::View(const std::string& args) {
  std::string a = Trim(args);
  size_t space = a.find_first_of(" \t");
  std::string file = a.substr(0, space);
  std::string range = space == std::string::npos ? "" : Trim(a.substr(space));
  if (file.empty()) return Error("usage: view FILE [START-END]");
  auto it = files_.find(file);
  if (it == files_.end()) return Error("no such file: " + file + " (`ls` lists the files)");
  auto lines = SplitLines(it->second);
  int n = static_cast<int>(lines.size());
  int start = 1, end = n;
  if (!range.empty()) {
    if (!ParseRange(range, &start, &end) || start < 1 || end < start) {
      return Error("bad line range '" + range + "': expected START-END, e.g. 3-7");
    }
    if (start > n) {
      return Error(file + " has " + std::to_string(n) + " lines; line " + std::to_string(start) +
                   " does not exist");
    }
    end = std::min(end, n);
  }
  Observation o;
  for (int i = start; i <= end; ++i) {
    char num[16];
    snprintf(num, sizeof num, "%4d ", i);
    o.text += num + lines[i - 1] + "\n";
  }
  if (n == 0) o.text = "(" + file + " is empty)\n";
  o.data["file"] = file;
  return o;
}

Observation DebugSession::List(const std::string& args) {
  std::string a = Trim(args);
  std::string file;
  int center = 0;
  if (a.empty()) {
    std::vector<std::shared_ptr<Frame>> stack =
        state_ == State::kPaused ? parked_stack_
                                 : (interpreter_ ? interpreter_->Stack()
                                                 : std::vector<std::shared_ptr<Frame>>{});
    if (!stack.empty() && selected_frame_ < stack.size()) {
      file = stack[selected_frame_]->filename();
      center = stack[selected_frame_]->line;
    } else {
      file = options_.main_file;
      center = 6;
    }
  } else if (!ParseLocation(a, &file, &center)) {
    file = a;
    center = 6;
  }
  auto it = files_.find(file);
  if (it == files_.end()) return Error("no such file: " + file + " (`ls` lists the files)");
  auto lines = SplitLines(it->second);
  int n = static_cast<int>(lines.size());
  int start = std::max(1, center - 5);
  int end = std::min(n, start + 10);
  int current = 0;
  std::vector<std::shared_ptr<Frame>> stack =
      state_ == State::kPaused ? parked_stack_
                               : (interpreter_ ? interpreter_->Stack()
                                               : std::vector<std::shared_ptr<Frame>>{});
  if (selected_frame_ < stack.size() && stack[selected_frame_]->filename() == file) {
    current = stack[selected_frame_]->line;
  }
  Observation o;
  for (int i = start; i <= end; ++i) {
    char num[16];
    snprintf(num, sizeof num, "%4d ", i);
    o.text += num;
    o.text += breakpoints_.count({file, i}) ? "B" : " ";
    o.text += i == current ? "-> " : "   ";
    o.text += lines[i - 1] + "\n";
  }
  if (o.text.empty()) o.text = "(no lines to list)\n";
  return o;
}

Observation DebugSession::Break(const std::string& args) {
  std::string a = Trim(args);
  if (a.empty()) {
    Observation o;
    std::unique_lock<std::mutex> lock(mu_);
    if (breakpoints_.empty()) o.text = "No breakpoints.\n";
    for (const auto& [file, line] : breakpoints_) {
      o.text += "Breakpoint at " + file + ":" + std::to_string(line) + "\n";
    }
    return o;
  }
  std::string file;
  int line;
  if (!ParseLocation(a, &file, &line)) return Error("usage: break FILE:LINE (e.g. break main.py:5)");
  auto it = files_.find(file);
  if (it == files_.end()) return Error("no such file: " + file + " (`ls` lists the files)");
  auto lines = SplitLines(it->second);
  if (line < 1 || line > static_cast<int>(lines.size())) {
    return Error(file + " has " + std::to_string(lines.size()) + " lines; line " +
                 std::to_string(line) + " does not exist");
  }
  ParseResult parsed = ParseModule(file, it->second);
  if (parsed.module) {
    std::set<int> statement_lines;
    StatementLines(parsed.module->body, &statement_lines);
    if (!statement_lines.count(line)) {
      return Error("no statement starts on " + file + ":" + std::to_string(line) +
                   " (blank, comment or continuation line)");
    }
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    breakpoints_.insert({file, line});
  }
  Observation o;
  o.text = "Breakpoint set at " + file + ":" + std::to_string(line) + "\n";
  return o;
}

Observation DebugSession::Clear(const std::string& args) {
  std::string a = Trim(args);
  Observation o;
  std::unique_lock<std::mutex> lock(mu_);
  if (a.empty()) {
    breakpoints_.clear();
    o.text = "Deleted all breakpoints\n";
    return o;
  }
  std::string file;
  int line;
  if (!ParseLocation(a, &file, &line)) return Error("usage: clear [FILE:LINE]");
  if (!breakpoints_.erase({file, line})) {
    return Error("no breakpoint at " + file + ":" + std::to_string(line));
  }
  o.text = "Deleted breakpoint at " + file + ":" + std::to_string(line) + "\n";
  return o;
}

Observation DebugSession::Edit(const std::string& args) {
  // FILE, RANGE, then TEXT after exactly one separator (space or newline) so indentation stays.
  size_t i = 0;
  while (i < args.size() && (args[i] == ' ' || args[i] == '\t')) ++i;
  size_t file_end = args.find_first_of(" \t\n", i);
  if (file_end == std::string::npos) return Error("usage: edit FILE START-END TEXT");
  std::string file = args.substr(i, file_end - i);
  size_t r = file_end;
  while (r < args.size() && (args[r] == ' ' || args[r] == '\t')) ++r;
  size_t range_end = args.find_first_of(" \t\n", r);
  std::string range = args.substr(r, range_end == std::string::npos ? std::string::npos
                                                                    : range_end - r);
  std::string text = range_end == std::string::npos ? "" : args.substr(range_end + 1);
  int start, end;
  if (range.empty() || !ParseRange(range, &start, &end)) {
    return Error("bad line range '" + range + "': expected START-END, e.g. edit foo.py 3-4 TEXT");
  }
  auto it = files_.find(file);
  if (it == files_.end()) return Error("no such file: " + file + " (`ls` lists the files)");
  auto lines = SplitLines(it->second);
  int n = static_cast<int>(lines.size());
  if (start < 1 || start > n + 1 || end < start - 1 || end > n) {
    return Error("bad line range " + range + " for " + file + " (" + std::to_string(n) +
                 " lines): need 1 <= START <= " + std::to_string(n + 1) +
                 " and START-1 <= END <= " + std::to_string(n));
  }
  if (!text.empty() && text.back() == '\n') text.pop_back();
  std::vector<std::string> replacement = text.empty() ? std::vector<std::string>{}
                                                      : SplitLines(text + "\n");
  std::vector<std::string> updated(lines.begin(), lines.begin() + (start - 1));
  updated.insert(updated.end(), replacement.begin(), replacement.end());
  updated.insert(updated.end(), lines.begin() + end, lines.end());
  std::string source = JoinLines(updated);
  if (source.size() > options_.max_file_bytes) {
    return Error("edit rejected: " + file + " would exceed " +
                 std::to_string(options_.max_file_bytes) + " bytes");
  }
  it->second = source;
  Observation o;
  o.text = "Edited " + file + ": lines " + std::to_string(start) + "-" + std::to_string(end) +
           " replaced by " + std::to_string(replacement.size()) + " line" +
           (replacement.size() == 1 ? "" : "s") + "\n";
  int from = std::max(1, start - 1);
  int to = std::min<int>(static_cast<int>(updated.size()),
                         start + static_cast<int>(replacement.size()));
  for (int k = from; k <= to; ++k) {
    char num[16];
    snprintf(num, sizeof num, "%4d ", k);
    o.text += num + updated[k - 1] + "\n";
  }
  ParseResult parsed = ParseModule(file, source);
  if (parsed.error) {
    o.text += "warning: " + file + " no longer parses:\n" + FormatSyntaxError(*parsed.error);
    o.data["syntax_error"] = parsed.error->message;
  }
  if (state_ == State::kPaused) {
    o.text += "(the paused program keeps running the old code; `restart` runs the new one)\n";
  }
  o.data["file"] = file;
  return o;
}

Observation DebugSession::Help() {
  Observation o;
  for (const auto& h : HelpTable()) o.text += std::string(h.usage) + "\n";
  return o;
}

Observation DebugSession::Execute(std::string_view command_line) {
  std::string line(command_line);
  size_t i = 0;
  while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
  size_t word_end = i;
  while (word_end < line.size() && !std::isspace(static_cast<unsigned char>(line[word_end])))
    ++word_end;
  std::string cmd = line.substr(i, word_end - i);
  std::string rest = word_end < line.size() ? line.substr(word_end) : "";
  if (cmd.empty()) return Error("empty command (`help` lists the commands)");
  if (cmd == "edit") {
    // Keep TEXT verbatim: drop only the single separator after the command word.
    return Edit(rest.empty() ? rest : rest.substr(1));
  }
  std::string args = Trim(rest);
  if (cmd == "run" || cmd == "restart" || cmd == "r") {
    if (!args.empty()) return Error(cmd + " takes no arguments");
    return Start(Mode::kContinue);
  }
  if (cmd == "continue" || cmd == "c" || cmd == "cont") return Resume(Mode::kContinue);
  if (cmd == "step" || cmd == "s") return Resume(Mode::kStep);
  if (cmd == "next" || cmd == "n") return Resume(Mode::kNext);
  if (cmd == "break" || cmd == "b") return Break(args);
  if (cmd == "clear" || cmd == "cl") return Clear(args);
  if (cmd == "where" || cmd == "w" || cmd == "bt") return Where();
  if (cmd == "up" || cmd == "u" || cmd == "down" || cmd == "d") {
    std::vector<std::shared_ptr<Frame>> stack =
        state_ == State::kPaused ? parked_stack_
                                 : (interpreter_ ? interpreter_->Stack()
                                                 : std::vector<std::shared_ptr<Frame>>{});
    if (stack.empty()) return Error("no stack: the program is not stopped");
    bool up = cmd == "up" || cmd == "u";
    if (up && selected_frame_ == 0) return Error("Oldest frame");
    if (!up && selected_frame_ + 1 >= stack.size()) return Error("Newest frame");
    selected_frame_ += up ? -1 : 1;
    Observation o;
    o.text = Location(*stack[selected_frame_], true);
    return o;
  }
  if (cmd == "print" || cmd == "p") return Print(args);
  if (cmd == "list" || cmd == "l") return List(args);
  if (cmd == "ls") return Ls();
  if (cmd == "view" || cmd == "cat") return View(args);
  if (cmd == "help" || cmd == "h") return Help();
  std::string shown = cmd.size() > 40 ? cmd.substr(0, 40) + "..." : cmd;
  return Error("unknown command '" + shown + "' (`help` lists the commands)");
}

// ---- the tool ----

DebuggerTool::DebuggerTool(FileMap files, SessionOptions options)
    : session_(std::move(files), std::move(options)) {
  definition_.name = kName;
  definition_.description =
      "A pdb-like debugger over a small Python program held in memory. One command per call: "
      "run | restart, break FILE:LINE, clear [FILE:LINE], continue, step, next, where, up, down, "
      "print EXPR, list [FILE[:LINE]], ls, view FILE [START-END], edit FILE START-END TEXT "
      "(TEXT replaces the lines and may span several lines).";
  definition_.input_schema = {
      {"type", "object"},
      {"properties",
       {{"command",
         {{"type", "string"},
          {"description", "the debugger command line, e.g. \"break main.py:5\" or "
                          "\"edit foo.py 1-1 def foo(v2, v10):\""}}}}},
      {"required", {"command"}},
      {"additionalProperties", false}};
}

tools::ToolResult DebuggerTool::Call(const tools::ToolCall& call) {
  if (!call.arguments.is_object() || !call.arguments.contains("command") ||
      !call.arguments["command"].is_string()) {
    return tools::ToolResult::Error(call.id, "debugger: argument \"command\" (a string) is "
                                             "required");
  }
  Observation o = session_.Execute(call.arguments["command"].get<std::string>());
  tools::ToolResult r = tools::ToolResult::Ok(call.id, o.text, o.data);
  r.is_error = o.is_error;
  return r;
}

std::optional<tools::ToolCall> DebuggerTool::ParseTextCall(std::string_view text) const {
  std::string t(text);
  size_t end = t.find_first_of(" \t\n");
  std::string word = t.substr(0, end);
  const auto& names = DebugSession::CommandNames();
  if (std::find(names.begin(), names.end(), word) == names.end()) return std::nullopt;
  tools::ToolCall call;
  call.name = kName;
  call.arguments = {{"command", t}};
  return call;
}

}  // namespace tapeloop::debugger
