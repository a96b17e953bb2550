// Tasks: a seeded instance generator (by length), an expert trajectory for each mode, and a
// scorer. docs/tasks.md describes each task's algorithm with a worked example.
//
//   const Task* task = *FindTask("addition");
//   Rng rng(seed);
//   Instance x = task->Generate(/*length=*/100, /*training=*/false, rng);
//   Trajectory expert = *task->Expert(x, Mode::kPointer);
//   Score s = ScoreOutput(x, Mode::kPointer, model_output_tokens);
//
// Tasks are stateless and thread-safe; FindTask's pointers live for the whole program.
#ifndef TAPELOOP_TASKS_TASK_H_
#define TAPELOOP_TASKS_TASK_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tasks/trajectory.h"

namespace tapeloop::tasks {

// SplitMix64: a small generator whose output is fixed by its seed on every platform (the
// standard distributions are not), so instances are reproducible everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [lo, hi]. REQUIRES lo <= hi.
  int64_t Uniform(int64_t lo, int64_t hi);
  // A decimal number of exactly `digits` digits (leading digit non-zero unless digits == 1,
  // where 0..9 are all possible; with nonzero == true, 1..9).
  std::string Number(int digits, bool nonzero = false);

 private:
  uint64_t state_;
};

// A stateless mix of two 64-bit values (seed, index) into one seed.
uint64_t MixSeed(uint64_t seed, uint64_t index);

struct Instance {
  std::string task;                   // the generating task's name
  std::vector<std::string> operands;  // decimal strings, e.g. {"123", "45"}
  std::string prompt;                 // input text without [BOS], e.g. "123+45="
  std::string answer;                 // the exact answer, e.g. "168"
  int length = 0;                     // the length it was generated for

  nlohmann::json ToJson() const;
};

struct Score {
  bool exact = false;                    // the output stream equals the expected one
  std::optional<bool> trajectory_exact;  // whole trajectory equals the expert's, if compared
  double digit_accuracy = 0;             // matching digits / max(expected, produced) length,
                                         // aligned at the least significant digit
  std::string expected;                  // expected output stream, as text
  std::string produced;                  // produced output stream, as text

  nlohmann::json ToJson() const;
};

class Task {
 public:
  Task() = default;
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  virtual ~Task() = default;

  virtual std::string_view name() const = 0;
  virtual std::string_view description() const = 0;
  // Pointers the pointer-mode expert uses (1..4).
  virtual int pointers() const = 0;

  // A random instance. Evaluation (training == false): operands of exactly `length` digits
  // (for multiplication, the first operand). Training: lengths drawn from U{1..length}
  // (independently per operand for addition). REQUIRES length >= 1.
  virtual Instance Generate(int length, bool training, Rng& rng) const = 0;

  // The expert trajectory for `mode`. INVALID_ARGUMENT if the instance is malformed (not
  // this task's, operands not decimal).
  absl::StatusOr<Trajectory> Expert(const Instance& instance, Mode mode) const;

 protected:
  // The pointer-mode trajectory (the cot trajectory has the same tokens).
  virtual absl::StatusOr<Trajectory> PointerExpert(const Instance& instance) const = 0;
  // The calculator operation ("add", "mul").
  virtual std::string_view calculator_op() const = 0;
};

// "addition", "multiplication" (n x 2), "multiplication-n1", "multiplication-n2".
// NOT_FOUND listing the known tasks otherwise.
absl::StatusOr<const Task*> FindTask(std::string_view name);
std::vector<std::string> TaskNames();

// [BOS] followed by the prompt's tokens.
std::vector<TokenId> PromptTokens(const Instance& instance);
// The output stream the expert produces in `mode`: the answer's digits (reversed for
// kDirectReversed).
std::vector<TokenId> ExpectedOutput(const Instance& instance, Mode mode);
// Scores an output stream (exact match, digit accuracy). `trajectory`, when given, is compared
// with the expert's for trajectory_exact.
Score ScoreOutput(const Instance& instance, Mode mode, std::span<const TokenId> output,
                  const Trajectory* trajectory = nullptr, const Trajectory* expert = nullptr);

}  // namespace tapeloop::tasks

#endif  // TAPELOOP_TASKS_TASK_H_
