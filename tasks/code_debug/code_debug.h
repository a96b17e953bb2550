// The paper's code-fixing task (../shared/reference/paper.md, "Code fixing"), played through the
// debugger tool (tools/debugger/debugger.h).
//
// An instance is n Python files, one function each: main (main.py) and functions f0..f999 in
// fK.py, forming a random import DAG rooted at main; the last function added is `foo` (foo.py).
// Functions declare v0..v9, take some as parameters (sometimes one with a default, passed only
// by keyword), print some and pass some to the functions they call. The bug is always the same:
// `v10` is declared in main and used in foo, but never passed down, so the program dies with
// NameError. The fix threads v10 along every path main -> foo: each function on such a path
// gets a parameter v10 (after its last parameter without a default) and every call on such a
// path passes v10 (after the last positional argument).
//
//   CodeDebugInstance x = *GenerateCodeDebug(/*n=*/16, /*seed=*/3);
//   CodeDebugTrajectory t = *InteractiveOracle(x);     // or SingleTurnOracle(x)
//   CodeDebugScore s = ScoreCodeDebug(x, t.final_files);  // s.passed
//
// Everything is a pure function of (n, seed); all functions are thread-safe.
#ifndef TAPELOOP_TASKS_CODE_DEBUG_CODE_DEBUG_H_
#define TAPELOOP_TASKS_CODE_DEBUG_CODE_DEBUG_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tasks/trajectory.h"
#include "tasks/trajectory_source.h"
#include "tools/debugger/debugger.h"
#include "tools/debugger/interpreter.h"

namespace tapeloop::tasks::code_debug {

inline constexpr char kTaskName[] = "code_debug";
inline constexpr int kMinFunctions = 2;
inline constexpr int kMaxFunctions = 1000;  // names f0..f999 (main and foo are extra)

struct CodeDebugInstance {
  int n = 0;  // number of functions (= files)
  uint64_t seed = 0;
  debugger::FileMap buggy;             // what the agent starts from
  debugger::FileMap fixed;             // the reference fix
  std::string expected_output;         // what the fixed program prints
  std::vector<std::string> functions;  // in order of creation: main, ..., foo
  std::vector<std::string> needs_v10;  // functions on a path main -> foo (foo included)
  std::string prompt;                  // the task statement given to the agent

  nlohmann::json ToJson() const;
};

// A random instance with n functions. INVALID_ARGUMENT unless kMinFunctions <= n <=
// kMaxFunctions + 1. INTERNAL if the fixed program does not run cleanly (a generator bug).
absl::StatusOr<CodeDebugInstance> GenerateCodeDebug(int n, uint64_t seed);

enum class CodeDebugMode {
  kInteractive,  // run, read the traceback, fix at most 3 files, rerun, ... until it runs
  kSingleTurn,   // view every file, then every edit at once
};
std::string_view CodeDebugModeName(CodeDebugMode mode);  // "interactive", "single-turn"
absl::StatusOr<CodeDebugMode> ParseCodeDebugMode(std::string_view name);

// One tool call of an episode and the debugger's answer.
struct DebugStep {
  std::string command;      // a debugger command line ("run", "edit foo.py 1-1 def foo(...)")
  std::string observation;  // the DebugSession's text
  bool is_error = false;
};

struct CodeDebugTrajectory {
  CodeDebugMode mode = CodeDebugMode::kInteractive;
  std::string prompt;
  std::vector<DebugStep> steps;
  debugger::FileMap final_files;  // the files after every edit
  int runs = 0;                   // `run` commands issued
  // Why a model's episode ended (eval::PlayCodeDebug): "solved", "eos", "max_steps",
  // "max_tokens", "long_command" or "bad_token ..."; empty for the oracles.
  std::string stop_reason;

  // Token form (tapeloop-tokens-v1): [BOS] prompt, then per step [CALL] command [/CALL]
  // [OBS] observation [/OBS], then [EOS]. Roles: prompt / command / observation / eos, so the
  // loss mask trains the commands only. The Trajectory's mode is Mode::kCalculator (a text
  // tool); the debugger's text calls are the command lines themselves.
  Trajectory ToTrajectory() const;
  // Human-readable transcript ("$ run" / observation ...).
  std::string ToText() const;
};

// An agent policy: given the debugger, issues commands until done. Oracles know nothing but
// what the debugger shows them (tracebacks, `view` output) and the fix rule above.
//
// InteractiveOracle: `run`; on NameError for v10 or TypeError "X() missing 1 required
// positional argument: 'v10'", walks the traceback from the innermost frame outwards and fixes
// at most `max_files_per_round` files (view, then edit: add the v10 parameter, pass v10 in the
// failing call), then runs again; stops when the program exits normally or after max_rounds.
// INTERNAL if the program fails in any other way (not the v10 bug).
absl::StatusOr<CodeDebugTrajectory> InteractiveOracle(const CodeDebugInstance& instance,
                                                      int max_files_per_round = 3,
                                                      int max_rounds = 1000);
// SingleTurnOracle: `ls`, `view` of every file, then every edit (computed from the call graph
// it read), then nothing else.
absl::StatusOr<CodeDebugTrajectory> SingleTurnOracle(const CodeDebugInstance& instance);
absl::StatusOr<CodeDebugTrajectory> Oracle(const CodeDebugInstance& instance, CodeDebugMode mode);

struct CodeDebugScore {
  bool passed = false;  // ran without error and printed exactly expected_output
  std::string outcome;  // debugger::OutcomeName of the run
  std::string output;
  std::string error_text;

  nlohmann::json ToJson() const;
};

// Runs `files` (the agent's edited program) and compares with the instance's expected output.
CodeDebugScore ScoreCodeDebug(const CodeDebugInstance& instance, const debugger::FileMap& files);

// A Gym-like episode for any policy (a trained model, a person, an oracle): the agent sees
// `prompt()`, sends debugger command lines to Step() and gets observations; the episode ends
// (done()) when a `run` exits normally with the expected output, or is truncated after
// `max_steps` commands (debug-gym's default is 50). Score() scores the current files at any
// time. Not thread-safe; one episode per agent.
class CodeDebugEnv {
 public:
  explicit CodeDebugEnv(CodeDebugInstance instance, int max_steps = 50);
  CodeDebugEnv(const CodeDebugEnv&) = delete;
  CodeDebugEnv& operator=(const CodeDebugEnv&) = delete;

  const std::string& prompt() const { return instance_.prompt; }
  const CodeDebugInstance& instance() const { return instance_; }
  // Runs one command. After the episode is over, returns an error observation and does
  // nothing.
  debugger::Observation Step(std::string_view command);
  bool done() const { return solved_ || truncated(); }
  bool solved() const { return solved_; }
  bool truncated() const { return static_cast<int>(steps_.size()) >= max_steps_ && !solved_; }
  CodeDebugScore Score() const;
  const std::vector<DebugStep>& steps() const { return steps_; }
  const debugger::FileMap& files() const { return session_.files(); }

 private:
  CodeDebugInstance instance_;
  int max_steps_;
  debugger::DebugSession session_;
  std::vector<DebugStep> steps_;
  bool solved_ = false;
};

struct CodeDebugSourceConfig {
  CodeDebugMode mode = CodeDebugMode::kInteractive;
  int min_functions = 4;  // the paper trains on n in 4..16
  int max_functions = 16;
  uint64_t seed = 0;
  int64_t max_tokens = 0;  // longer trajectories are skipped (0: no limit)
};

// Expert trajectories as training examples through the common TrajectorySource interface:
// example i comes from GenerateCodeDebug(n, MixSeed(seed, i)) with n drawn from
// U{min_functions..max_functions} by Rng(MixSeed(seed, i)). config() reports task
// "code_debug", max_length = max_functions. INVALID_ARGUMENT for a bad range.
absl::StatusOr<std::unique_ptr<TrajectorySource>> MakeCodeDebugTrajectorySource(
    const CodeDebugSourceConfig& config);

}  // namespace tapeloop::tasks::code_debug

#endif  // TAPELOOP_TASKS_CODE_DEBUG_CODE_DEBUG_H_
