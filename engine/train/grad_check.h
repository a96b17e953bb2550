// Finite-difference gradient checking for any function of a flat parameter buffer.
#ifndef TAPELOOP_ENGINE_TRAIN_GRAD_CHECK_H_
#define TAPELOOP_ENGINE_TRAIN_GRAD_CHECK_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>

namespace tapeloop::engine::train {

struct GradCheckOptions {
  double eps = 1e-3;         // central difference step, relative to max(1, |x|)
  int64_t max_checks = 200;  // coordinates checked (evenly strided over the buffer)
  double abs_floor = 1e-3;   // errors are relative to max(|analytic|, |numeric|, abs_floor)
};

struct GradCheckResult {
  double max_rel_error = 0;
  int64_t worst_index = -1;
  double worst_analytic = 0, worst_numeric = 0;
  int64_t checked = 0;
  std::string ToString() const;
};

// For each checked coordinate i of `x`, compares analytic[i] with
// (f(x + h e_i) - f(x - h e_i)) / 2h. `f` must read `x` (which is perturbed in place and
// restored bit-exactly afterwards) and return the loss in double.
GradCheckResult CheckGradient(std::span<float> x, std::span<const float> analytic,
                              const std::function<double()>& f, const GradCheckOptions& options = {});

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_GRAD_CHECK_H_
