// Whole-model gradient check shared by the trainer's model tests: every tensor of a RowModel's
// analytic gradient on one row against central finite differences (engine/train/grad_check.h).
#ifndef TAPELOOP_TESTS_ENGINE_TRAIN_ROW_GRAD_CHECK_H_
#define TAPELOOP_TESTS_ENGINE_TRAIN_ROW_GRAD_CHECK_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "engine/train/grad_check.h"
#include "engine/train/row_model.h"

namespace tapeloop::engine::train {

// ids [T+1], mask [T], init_state as RowModel::RowForwardBackward (null: zeros). For each
// tensor: max relative error (GradCheckOptions: step, coordinates, floor) below max_rel, and,
// when min_gmax > 0, some |gradient| above min_gmax (else the check would be vacuous).
inline void ExpectRowGradientMatchesFiniteDifferences(const RowModel& model, std::vector<float>& p,
                                                      std::span<const int32_t> ids,
                                                      std::span<const float> mask,
                                                      const float* init_state,
                                                      const GradCheckOptions& options,
                                                      double max_rel, float min_gmax) {
  Mamba2Workspace ws;
  std::vector<float> grads(p.size(), 0.f);
  model.RowForwardBackward(p.data(), ids, mask, 1.0, init_state, nullptr, grads.data(), &ws);
  const ParamTable& t = model.table();
  for (int i = 0; i < t.size(); ++i) {
    std::span<float> x(p.data() + t.offset(i), t.numel(i));
    std::span<const float> g(grads.data() + t.offset(i), t.numel(i));
    auto f = [&] {
      Mamba2Workspace w2;
      return model.RowForwardBackward(p.data(), ids, mask, 1.0, init_state, nullptr, nullptr, &w2)
          .loss_sum;
    };
    auto res = CheckGradient(x, g, f, options);
    EXPECT_LT(res.max_rel_error, max_rel) << t.spec(i).name << ": " << res.ToString();
    if (min_gmax > 0) {
      float gmax = 0;
      for (float v : g) gmax = std::max(gmax, std::fabs(v));
      EXPECT_GT(gmax, min_gmax) << t.spec(i).name
                                << " has only tiny gradients: the check is vacuous";
    }
  }
}

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_TESTS_ENGINE_TRAIN_ROW_GRAD_CHECK_H_
