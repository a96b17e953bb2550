// Multiplication "a*b=" of an n-digit number by a 1- or 2-digit number (the paper's n x 1 and
// n x 2). Pointer-mode expert (docs/tasks.md has the algorithm and a worked example):
//   pass 1 (pointers 1, 2): a * b0 column by column from the right, thoughts (digit, carry);
//   at the pass boundary pointer 2 steps left: a digit (b1) starts pass 2 after a '+' thought,
//   '*' starts the output phase;
//   pass 2 (pointers 2, 3, 4): column i = X_i + a_{i-1} * b1 + carry, X_i read back from pass 1
//   by pointer 4, a walked again by pointer 3 from '*', thoughts (digit, carry) again;
//   output (pointer 4, continuing from '+' in n x 2): right to [ANS], then pairs leftwards
//   (skip the carry, output the digit) until a non-digit ('=' or '+').
// Every decision follows from the last command, its observation and the last thought.
#ifndef TAPELOOP_TASKS_MULTIPLICATION_H_
#define TAPELOOP_TASKS_MULTIPLICATION_H_

#include <string>

#include "tasks/task.h"

namespace tapeloop::tasks {

class MultiplicationTask final : public Task {
 public:
  // `multiplier_digits`: 1 (n x 1) or 2 (n x 2).
  explicit MultiplicationTask(int multiplier_digits);

  std::string_view name() const override { return name_; }
  std::string_view description() const override { return description_; }
  int pointers() const override { return 4; }
  // The first operand has `length` digits (U{1..length} in training); the multiplier has
  // exactly multiplier_digits digits, leading digit 1..9.
  Instance Generate(int length, bool training, Rng& rng) const override;
  // An instance from given operands (decimal digit strings).
  Instance Make(std::string a, std::string b, int length) const;

 protected:
  absl::StatusOr<Trajectory> PointerExpert(const Instance& instance) const override;
  std::string_view calculator_op() const override { return "mul"; }

 private:
  int multiplier_digits_;
  std::string name_;
  std::string description_;
};

}  // namespace tapeloop::tasks

#endif  // TAPELOOP_TASKS_MULTIPLICATION_H_
