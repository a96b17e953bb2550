// RMSNorm for training, forward and backward side by side (CPU f32, one row of T tokens):
//   y[t] = x[t] * r[t] * w,   r[t] = 1 / sqrt(mean_i(x[t, i]^2) + eps)
// Forward saves r (f32 [T]) for the backward pass. Used for every norm of the trainer's models
// (block norms, the final norm, and the Mamba-2 mixer's gated norm after its gate).
//
// Thread safety: pure functions of their arguments.
#ifndef TAPELOOP_ENGINE_TRAIN_RMS_NORM_GRAD_H_
#define TAPELOOP_ENGINE_TRAIN_RMS_NORM_GRAD_H_

#include <cstdint>

namespace tapeloop::engine::train {

// x, y f32 [T, D]; w f32 [D]; r f32 [T] receives the reciprocal RMS of each row.
void RmsNormForward(const float* x, const float* w, int64_t T, int64_t D, float eps, float* r,
                    float* y);

// Given dy = d loss / d y: ADDS d loss / d x to dx (f32 [T, D]) and d loss / d w to dw (f32
// [D]). x, w, r as in (and from) RmsNormForward.
void RmsNormBackward(const float* x, const float* w, const float* r, const float* dy, int64_t T,
                     int64_t D, float* dx, float* dw);

// The plain one-row-at-a-time loops the two above are checked against (they give the same
// results bit for bit: each row's sums are accumulated in the same order; the fast versions
// only run several rows' sums side by side).
void RmsNormForwardRef(const float* x, const float* w, int64_t T, int64_t D, float eps, float* r,
                       float* y);
void RmsNormBackwardRef(const float* x, const float* w, const float* r, const float* dy, int64_t T,
                        int64_t D, float* dx, float* dw);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_RMS_NORM_GRAD_H_
