#include "engine/train/rms_norm_grad.h"

// As mamba2_mixer_grad.cc: let GCC vectorize the elementwise loops (no -ffast-math, so the
// reductions keep their order and results do not depend on the vector width).
#pragma GCC optimize("O3")
// The fast versions below are also compiled for AVX2 and AVX-512 (chosen at load time) without
// contracting a * b + c into fused multiply-adds, so every version rounds exactly as the plain
// baseline loops do (the project's x86-64 baseline has no FMA).
#pragma GCC optimize("fp-contract=off")

#pragma GCC diagnostic ignored "-Wpsabi"

#include <cmath>

#include "engine/train/vec16.h"

namespace tapeloop::engine::train {
namespace {

// Rows whose reductions run side by side. Each row's sum is still accumulated in index order
// (so the results are those of the plain one-row-at-a-time loop, bit for bit), but the rows'
// chains are independent, so they overlap instead of waiting on one add at a time.
constexpr int kRows = 8;

// s[r] = sum_i a[r * D + i] * b[r * D + i] * c[i] (c null: omitted), i in order, r < kRows.
inline void RowDots(const float* a, const float* b, const float* c, int64_t D, float* s) {
  float acc[kRows] = {};
  if (c) {
    for (int64_t i = 0; i < D; ++i)
      for (int r = 0; r < kRows; ++r) acc[r] += a[r * D + i] * c[i] * b[r * D + i];
  } else {
    for (int64_t i = 0; i < D; ++i)
      for (int r = 0; r < kRows; ++r) acc[r] += a[r * D + i] * b[r * D + i];
  }
  for (int r = 0; r < kRows; ++r) s[r] = acc[r];
}

// RowDots for 16 rows, 16 columns at a time: each 16 x 16 block of a (and of b) is transposed in
// registers so that lane r of one vector carries row r's sum; the columns are still added in
// index order, with the same products ((a c) b), so every row's sum is the plain loop's.
constexpr int kRows16 = 16;
__attribute__((always_inline)) inline void RowDots16(const float* a, const float* b, const float* c,
                                                     int64_t D, float* s) {
  V16 acc = {};
  int64_t i = 0;
  for (; i + 16 <= D; i += 16) {
    V16 ra[16], rb[16];
    for (int r = 0; r < 16; ++r) ra[r] = Load16(a + r * D + i);
    Transpose16(ra);
    if (b != a) {
      for (int r = 0; r < 16; ++r) rb[r] = Load16(b + r * D + i);
      Transpose16(rb);
    }
    const V16* tb = b != a ? rb : ra;
    if (c) {
      for (int k = 0; k < 16; ++k) acc += ra[k] * c[i + k] * tb[k];
    } else {
      for (int k = 0; k < 16; ++k) acc += ra[k] * tb[k];
    }
  }
  float out[16];
  Store16(out, acc);
  for (int r = 0; r < 16; ++r) {
    float v = out[r];
    for (int64_t j = i; j < D; ++j)
      v += c ? a[r * D + j] * c[j] * b[r * D + j] : a[r * D + j] * b[r * D + j];
    s[r] = v;
  }
}

}  // namespace

void RmsNormForwardRef(const float* x, const float* w, int64_t T, int64_t D, float eps, float* r,
                       float* y) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float s = 0;
    for (int64_t i = 0; i < D; ++i) s += xr[i] * xr[i];
    const float rr = 1.f / std::sqrt(s / D + eps);
    r[t] = rr;
    float* yr = y + t * D;
    for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * rr * w[i];
  }
}

void RmsNormBackwardRef(const float* x, const float* w, const float* r, const float* dy, int64_t T,
                        int64_t D, float* dx, float* dw) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    const float* dyr = dy + t * D;
    const float rr = r[t];
    float dot = 0;
    for (int64_t i = 0; i < D; ++i) dot += dyr[i] * w[i] * xr[i];
    for (int64_t i = 0; i < D; ++i) dw[i] += dyr[i] * xr[i] * rr;
    const float k = dot * rr * rr * rr / D;
    float* dxr = dx + t * D;
    for (int64_t i = 0; i < D; ++i) dxr[i] += rr * w[i] * dyr[i] - k * xr[i];
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void RmsNormForward(
    const float* x, const float* w, int64_t T, int64_t D, float eps, float* r, float* y) {
  int64_t t0 = 0;
  while (t0 + kRows <= T) {
    const int rows = t0 + kRows16 <= T ? kRows16 : kRows;
    float s[kRows16];
    if (rows == kRows16) {
      RowDots16(x + t0 * D, x + t0 * D, nullptr, D, s);
    } else {
      RowDots(x + t0 * D, x + t0 * D, nullptr, D, s);
    }
    for (int j = 0; j < rows; ++j) {
      const int64_t t = t0 + j;
      const float rr = 1.f / std::sqrt(s[j] / D + eps);
      r[t] = rr;
      const float* xr = x + t * D;
      float* yr = y + t * D;
      for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * rr * w[i];
    }
    t0 += rows;
  }
  RmsNormForwardRef(x + t0 * D, w, T - t0, D, eps, r + t0, y + t0 * D);
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void RmsNormBackward(
    const float* x, const float* w, const float* r, const float* dy, int64_t T, int64_t D,
    float* dx, float* dw) {
  int64_t t0 = 0;
  while (t0 + kRows <= T) {
    const int rows = t0 + kRows16 <= T ? kRows16 : kRows;
    float dot[kRows16];
    if (rows == kRows16) {  // sum dy w x, as the plain loop's order
      RowDots16(dy + t0 * D, x + t0 * D, w, D, dot);
    } else {
      RowDots(dy + t0 * D, x + t0 * D, w, D, dot);
    }
    for (int j = 0; j < rows; ++j) {
      const int64_t t = t0 + j;
      const float* xr = x + t * D;
      const float* dyr = dy + t * D;
      const float rr = r[t];
      for (int64_t i = 0; i < D; ++i) dw[i] += dyr[i] * xr[i] * rr;
      const float k = dot[j] * rr * rr * rr / D;
      float* dxr = dx + t * D;
      for (int64_t i = 0; i < D; ++i) dxr[i] += rr * w[i] * dyr[i] - k * xr[i];
    }
    t0 += rows;
  }
  RmsNormBackwardRef(x + t0 * D, w, r + t0, dy + t0 * D, T - t0, D, dx + t0 * D, dw);
}

}  // namespace tapeloop::engine::train
