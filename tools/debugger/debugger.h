// A pdb-like debugging session over an in-memory Python program (tools/debugger/interpreter.h),
// plus the JSON-schema tool that exposes it (name "debugger").
//
// Commands (one per Execute call; docs/debugger.md has the full reference):
//   run | restart                 start the program afresh (breakpoints are kept)
//   break FILE:LINE | break       set a breakpoint / list breakpoints
//   clear [FILE:LINE]             remove one breakpoint / all of them
//   continue | c, step | s, next | n
//   where | w, up, down           the paused (or crashed) program's stack
//   print EXPR | p EXPR           evaluate in the selected frame
//   list [FILE[:LINE]] | l        source around the current line
//   ls, view FILE [START-END], edit FILE START-END TEXT   (TEXT may span several lines; an
//                                 empty TEXT deletes the range; END = START-1 inserts)
//   help
// A bad command is an error Observation (is_error), never a crash. The program runs on a worker
// thread that parks before each line where the session must stop; Execute returns only once the
// worker is parked or finished, so a session is deterministic.
//
// Thread safety: one DebugSession serves one caller at a time (guard it externally if shared).
#ifndef TAPELOOP_TOOLS_DEBUGGER_DEBUGGER_H_
#define TAPELOOP_TOOLS_DEBUGGER_DEBUGGER_H_

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"
#include "tools/debugger/interpreter.h"
#include "tools/tool.h"

namespace tapeloop::debugger {

struct Observation {
  std::string text;
  bool is_error = false;
  // {"state": "idle"|"paused"|"finished", "file", "line", "function", "outcome",
  //  "exception_type", "exception_message"} where they apply.
  nlohmann::json data = nlohmann::json::object();
};

struct SessionOptions {
  std::string main_file = "main.py";
  RunLimits limits;
  size_t max_files = 1000;
  size_t max_file_bytes = 1 << 20;
};

class DebugSession : public LineHook {
 public:
  explicit DebugSession(FileMap files, SessionOptions options = {});
  ~DebugSession() override;  // stops a paused program
  DebugSession(const DebugSession&) = delete;
  DebugSession& operator=(const DebugSession&) = delete;

  // Runs one command line (may contain newlines for `edit`). Never throws.
  Observation Execute(std::string_view command);

  // The current files (with every edit applied).
  const FileMap& files() const { return files_; }
  // The result of the last run that finished, if any.
  const std::optional<RunResult>& last_result() const { return last_result_; }
  bool paused() const { return state_ == State::kPaused; }

  // Names of the commands, for help and completion.
  static const std::vector<std::string>& CommandNames();

  // LineHook (worker thread).
  bool OnLine(const std::vector<std::shared_ptr<Frame>>& stack) override;

 private:
  enum class State { kIdle, kPaused, kFinished };
  enum class Mode { kContinue, kStep, kNext };

  Observation Start(Mode mode);
  Observation Resume(Mode mode);
  Observation AfterResume();
  void StopWorker();
  Observation Where();
  Observation List(const std::string& args);
  Observation View(const std::string& args);
  Observation Edit(const std::string& args);
  Observation Break(const std::string& args);
  Observation Clear(const std::string& args);
  Observation Print(const std::string& expr);
  Observation Ls();
  Observation Help();
  std::string Location(const Frame& frame, bool arrow) const;
  nlohmann::json StateJson() const;

  FileMap files_;
  SessionOptions options_;
  std::set<std::pair<std::string, int>> breakpoints_;
  State state_ = State::kIdle;
  size_t selected_frame_ = 0;  // index into the stack, innermost = size - 1
  std::optional<RunResult> last_result_;
  std::unique_ptr<Interpreter> interpreter_;
  size_t output_seen_ = 0;

  // Worker handshake.
  struct Worker;
  std::unique_ptr<Worker> worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool parked_ = false;
  bool done_ = false;
  bool stop_ = false;
  Mode mode_ = Mode::kContinue;
  size_t next_depth_ = 0;
  std::pair<std::string, int> last_stop_;
  std::vector<std::shared_ptr<Frame>> parked_stack_;
  std::shared_ptr<RunResult> pending_;  // written by the worker when it finishes
};

// The JSON-schema tool: {"command": "break main.py:5"} -> the session's Observation.
// Name "debugger"; text form (trajectories): the command line itself ("run", "view foo.py").
class DebuggerTool : public tools::Tool {
 public:
  static constexpr const char* kName = "debugger";
  explicit DebuggerTool(FileMap files, SessionOptions options = {});

  const tools::ToolDefinition& definition() const override { return definition_; }
  tools::ToolResult Call(const tools::ToolCall& call) override;
  // Accepts a text whose first word is a debugger command.
  std::optional<tools::ToolCall> ParseTextCall(std::string_view text) const override;

  DebugSession& session() { return session_; }

 private:
  tools::ToolDefinition definition_;
  DebugSession session_;
};

}  // namespace tapeloop::debugger

#endif  // TAPELOOP_TOOLS_DEBUGGER_DEBUGGER_H_
