// An in-process, tree-walking interpreter for the Python subset of docs/debugger.md.
//
// Programs are a map of file name -> source text; nothing on the host is ever read or written
// (imports resolve only inside the map; there is no open/input/os). Every run is bounded: an
// instruction budget (deterministic: the same program always stops at the same step), a cap on
// printed output, a recursion limit and a cap on allocated list elements / string bytes.
// Uncaught errors are reported the way CPython 3.11 prints them (traceback, carets, "Did you
// mean" suggestions), so a run here and `python3 main.py` print the same thing for the programs
// the code_debug task generates (tests/tools/debugger/cpython_crosscheck_test.cc checks this).
//
// Thread safety: an Interpreter is used by one thread at a time. The debugger runs it on a
// worker thread and only touches it (Stack(), EvalInFrame()) while the worker is parked in the
// LineHook, which is a happens-before handshake.
#ifndef TAPELOOP_TOOLS_DEBUGGER_INTERPRETER_H_
#define TAPELOOP_TOOLS_DEBUGGER_INTERPRETER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tools/debugger/ast.h"
#include "tools/debugger/parser.h"

namespace tapeloop::debugger {

// File name ("main.py", "f3.py") -> source text.
using FileMap = std::map<std::string, std::string>;

struct RunLimits {
  int64_t max_steps = 2'000'000;        // statements + calls + loop iterations (+ big-op costs)
  int64_t max_output_bytes = 1 << 20;   // printed text
  int max_depth = 1000;                 // Python frames, like sys.getrecursionlimit()
  int64_t max_object_size = 10'000'000; // elements of one list / bytes of one string
  int64_t max_allocated = 50'000'000;   // list elements + string bytes created in one run
};

enum class Outcome {
  kOk,               // ran to the end
  kException,        // an uncaught Python exception (error_text is CPython's traceback)
  kSyntaxError,      // the main file, or an imported one, does not parse
  kBudgetExhausted,  // the instruction budget ran out (likely an infinite loop)
  kOutputLimit,      // printed more than max_output_bytes
  kStopped,          // stopped by the LineHook (debugger restart / quit)
};

const char* OutcomeName(Outcome outcome);

// One line of a traceback.
struct TraceFrame {
  std::string filename;
  int line = 0;
  std::string function;  // "<module>" for module code
};

struct RunResult {
  Outcome outcome = Outcome::kOk;
  std::string output;          // what the program printed (stdout)
  std::string error_text;      // what CPython would print to stderr (empty when kOk)
  std::string exception_type;  // "NameError", "SyntaxError", ... (empty when kOk)
  std::string exception_message;  // "name 'v10' is not defined" (without the suggestion)
  std::vector<TraceFrame> frames;  // outermost first
  int64_t steps = 0;
};

// Heap objects live in a per-run arena owned by the Interpreter; Values point into it.
struct Object {
  virtual ~Object() = default;
};
struct FunctionObject;
struct ModuleObject;

struct Value {
  enum class Type : uint8_t {
    kNone, kBool, kInt, kStr, kList, kRange, kFunction, kBuiltin, kModule, kMethod
  };
  Type type = Type::kNone;
  int64_t i = 0;           // kBool, kInt; builtin index for kBuiltin
  Object* obj = nullptr;   // everything else
};

struct Frame {
  int64_t id = 0;
  const FunctionDef* def = nullptr;  // null for module code
  ModuleObject* module = nullptr;
  std::unordered_map<std::string, Value> locals;  // function frames only
  int line = 0;                                    // line being executed
  std::string name() const;                        // "<module>" or the function name
  const std::string& filename() const;
};

// Called before every statement (CPython's "line" event). Return false to stop the run at once
// (the run ends with Outcome::kStopped). Runs on the interpreter's thread.
class LineHook {
 public:
  virtual ~LineHook() = default;
  virtual bool OnLine(const std::vector<std::shared_ptr<Frame>>& stack) = 0;
};

class Interpreter {
 public:
  Interpreter(FileMap files, RunLimits limits = {});
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Runs `main_file` as __main__. May be called once per Interpreter. `hook` may be null.
  // Never fails: every problem of the program is an Outcome with its text. Needs a deep stack
  // for deeply recursive programs: call it through RunOnLargeStack (or use RunProgram).
  RunResult Run(const std::string& main_file, LineHook* hook = nullptr);

  // The frames of the current run, outermost first (while paused in the hook), or after a run
  // that ended in an exception, the frames as they were when it was raised (post-mortem).
  std::vector<std::shared_ptr<Frame>> Stack() const;

  // Evaluates `expression` in frame `frame_index` of Stack() and returns repr(value), or the
  // exception line ("NameError: name 'x' is not defined"). Output printed by the expression is
  // returned before the value. Runs with its own small budget; breakpoints do not fire.
  // `*ok` (if given) is false when the text is an error.
  std::string EvalInFrame(const std::string& expression, size_t frame_index, bool* ok = nullptr);

  // What the program printed so far (while paused) or in total (after the run).
  std::string output() const;

  const FileMap& files() const { return files_; }

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  FileMap files_;
};

// Stack of the threads that run programs (RunOnLargeStack, the debugger's worker).
inline constexpr size_t kInterpreterStackBytes = size_t{64} << 20;

// Runs `fn` on a fresh thread with a stack of `stack_bytes` and waits for it.
// 1000 Python frames need about 2 MiB in an optimised build; 64 MiB leaves room for sanitizer
// and debug builds.
void RunOnLargeStack(const std::function<void()>& fn,
                     size_t stack_bytes = kInterpreterStackBytes);

// Convenience: a fresh Interpreter running `main_file` on a large stack.
RunResult RunProgram(const FileMap& files, const std::string& main_file, RunLimits limits = {});

}  // namespace tapeloop::debugger

#endif  // TAPELOOP_TOOLS_DEBUGGER_INTERPRETER_H_
