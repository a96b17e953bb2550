// Addition of two decimal numbers, "a+b=". Pointer-mode expert: the 3-pointer design of the
// reference prototype (output phase on its own pointer), docs/tasks.md has a worked example.
#ifndef TAPELOOP_TASKS_ADDITION_H_
#define TAPELOOP_TASKS_ADDITION_H_

#include "tasks/task.h"

namespace tapeloop::tasks {

class AdditionTask final : public Task {
 public:
  std::string_view name() const override { return "addition"; }
  std::string_view description() const override {
    return "a+b= of two decimal numbers; training draws n1, n2 ~ U{1..n} independently, "
           "evaluation two n-digit numbers";
  }
  int pointers() const override { return 3; }
  Instance Generate(int length, bool training, Rng& rng) const override;
  // An instance from given operands (decimal digit strings).
  static Instance Make(std::string a, std::string b, int length);

 protected:
  absl::StatusOr<Trajectory> PointerExpert(const Instance& instance) const override;
  std::string_view calculator_op() const override { return "add"; }
};

}  // namespace tapeloop::tasks

#endif  // TAPELOOP_TASKS_ADDITION_H_
