#include <cstdint>

#include "engine/kernels/vec.h"

// The loops below need the vectorizer at full strength (-O2 uses its "very cheap" model).
#pragma GCC optimize("O3")

#include "engine/kernels/v16.h"

namespace tapeloop::engine {

// Eight independent partial sums so the compiler can vectorize the reduction without
// reassociating (no -ffast-math).
TL_MULTIVERSION float VecDot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

TL_MULTIVERSION void VecAxpy(float alpha, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) y[i + j] += alpha * x[i + j];
  }
  for (; i < n; ++i) y[i] += alpha * x[i];
}

TL_MULTIVERSION void VecMulAdd(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a[i] * b[i];
}

TL_MULTIVERSION float SsmRowUpdate(float* s, float decay, float dx, const float* B, const float* C,
                                   int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const float v = s[i + j] * decay + dx * B[i + j];
      s[i + j] = v;
      acc[j] += v * C[i + j];
    }
  }
  float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) {
    s[i] = s[i] * decay + dx * B[i];
    sum += s[i] * C[i];
  }
  return sum;
}

using v16::ExpPoly;
using v16::ExpShiftSum;
using v16::Load16;
using v16::Max16;
using v16::Store16;
using v16::Sum16;
using v16::Sum16x16;
using v16::V16;

TL_MULTIVERSION void VecExp(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = ExpPoly(x[i]);
}

TL_MULTIVERSION void VecSilu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + ExpPoly(-x[i]));
}

TL_MULTIVERSION void VecMulSilu(const float* x, const float* z, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * (z[i] / (1.0f + ExpPoly(-z[i])));
}

TL_MULTIVERSION void VecMaskedSoftmax(float* s, int64_t lo, int64_t hi, int64_t n) {
  float* r = s + lo;
  const int64_t m = hi - lo;
  V16 mxv = V16{} - __builtin_inff();
  int64_t j = 0;
  for (; j + 16 <= m; j += 16) {
    const V16 v = Load16(r + j);
    mxv = mxv > v ? mxv : v;
  }
  float mx = Max16(mxv);
  for (; j < m; ++j) mx = r[j] > mx ? r[j] : mx;
  const float inv = 1.0f / ExpShiftSum(r, m, mx);
  for (j = 0; j < m; ++j) r[j] *= inv;
  for (j = 0; j < lo; ++j) s[j] = 0.0f;
  for (j = hi; j < n; ++j) s[j] = 0.0f;
}

TL_MULTIVERSION double VecSumSquares(const float* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += static_cast<double>(x[i + j]) * x[i + j];
  }
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

TL_MULTIVERSION void VecScaleMul(const float* w, float scale, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (y[i] * scale);
}

namespace {

// SsmHeadUpdate for state sizes that are not a multiple of 16: plain loops. GCC compiles them
// into several copies (16-wide, 8-wide, scalar) chosen at run time by N and by checks on the
// buffers' addresses, and with contraction the copies fused different multiply-adds, so a result
// could depend on where the buffers sat in memory. Without contraction every copy rounds each
// product and each sum, in the same order: one answer wherever the buffers are.
__attribute__((noinline, optimize("fp-contract=off"))) void SsmHeadUpdateAnyN(
    float* s, int64_t P, int64_t N, float decay, const float* dx, const float* B, const float* C,
    float* y) {
  for (int64_t p = 0; p < P; ++p) {
    float* sp = s + p * N;
    float sum = 0.0f;
    for (int64_t i = 0; i < N; ++i) {
      sp[i] = sp[i] * decay + dx[p] * B[i];
      sum += sp[i] * C[i];
    }
    y[p] = sum;
  }
}

}  // namespace

TL_MULTIVERSION void SsmHeadUpdate(float* s, int64_t P, int64_t N, float decay, const float* dx,
                                   const float* B, const float* C, float* y) {
  if (N % 16 == 0) {  // whole 16-wide vectors (one zmm with AVX-512)
    int64_t p = 0;
    // Sixteen rows at a time: their lane sums in one transposing tree (Sum16x16 adds in the
    // same order as Sum16, so every y[p] is bit-identical to the row-at-a-time loop below).
    for (; p + 16 <= P; p += 16) {
      V16 acc[16];
      for (int j = 0; j < 16; ++j) {
        float* sp = s + (p + j) * N;
        const V16 xp = V16{} + dx[p + j];
        V16 a = {};
        for (int64_t i = 0; i < N; i += 16) {
          const V16 v = Load16(sp + i) * decay + xp * Load16(B + i);
          Store16(sp + i, v);
          a += v * Load16(C + i);
        }
        acc[j] = a;
      }
      Store16(y + p, Sum16x16(acc));
    }
    for (; p < P; ++p) {
      float* sp = s + p * N;
      const V16 xp = V16{} + dx[p];
      V16 acc = {};
      for (int64_t i = 0; i < N; i += 16) {
        const V16 v = Load16(sp + i) * decay + xp * Load16(B + i);
        Store16(sp + i, v);
        acc += v * Load16(C + i);
      }
      y[p] = Sum16(acc);
    }
    return;
  }
  SsmHeadUpdateAnyN(s, P, N, decay, dx, B, C, y);
}

}  // namespace tapeloop::engine
