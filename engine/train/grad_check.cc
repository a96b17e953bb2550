#include "engine/train/grad_check.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/check.h"

namespace tapeloop::engine::train {

std::string GradCheckResult::ToString() const {
  return absl::StrCat("checked ", checked, " max_rel_error ", max_rel_error, " at ", worst_index,
                      " (analytic ", worst_analytic, ", numeric ", worst_numeric, ")");
}

GradCheckResult CheckGradient(std::span<float> x, std::span<const float> analytic,
                              const std::function<double()>& f, const GradCheckOptions& options) {
  TL_CHECK(x.size() == analytic.size());
  GradCheckResult res;
  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t stride = std::max<int64_t>(1, n / std::max<int64_t>(1, options.max_checks));
  for (int64_t i = (n > 1 ? (stride / 2) : 0); i < n; i += stride) {
    const float saved = x[i];
    const float h = static_cast<float>(options.eps * std::max(1.0, std::fabs(double{saved})));
    x[i] = saved + h;
    const double hp = static_cast<double>(x[i]) - saved;  // the step actually taken
    const double fp = f();
    x[i] = saved - h;
    const double hm = saved - static_cast<double>(x[i]);
    const double fm = f();
    x[i] = saved;
    const double numeric = (fp - fm) / (hp + hm);
    const double a = analytic[i];
    const double rel = std::fabs(a - numeric) /
                       std::max({std::fabs(a), std::fabs(numeric), options.abs_floor});
    ++res.checked;
    if (rel > res.max_rel_error || res.worst_index < 0) {
      res.max_rel_error = rel;
      res.worst_index = i;
      res.worst_analytic = a;
      res.worst_numeric = numeric;
    }
  }
  return res;
}

}  // namespace tapeloop::engine::train
