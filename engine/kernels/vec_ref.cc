#include "engine/kernels/vec.h"

// The loops below need the vectorizer at full strength (-O2 uses its "very cheap" model).
#pragma GCC optimize("O3")

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TL_MULTIVERSION __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define TL_MULTIVERSION
#endif

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

TL_MULTIVERSION float SsmRowUpdate(float* s, float decay, float dx, const float* B, const float* C, int64_t n) {
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

}  // namespace tapeloop::engine
