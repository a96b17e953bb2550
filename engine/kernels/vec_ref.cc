#include "engine/kernels/vec.h"

#include <cstdint>

// The loops below need the vectorizer at full strength (-O2 uses its "very cheap" model).
#pragma GCC optimize("O3")

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// Feature clones, dispatched on __builtin_cpu_supports. ("arch=skylake-avx512" clones dispatch
// on the CPU model, __builtin_cpu_is, so a newer AVX-512 Xeon such as Sapphire Rapids ran the
// baseline SSE2 clone.)
#define TL_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
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

namespace {

// Cephes expf: exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 in two parts),
// exp(r) by a degree-6 polynomial; 2^n is built in the exponent bits. Plain float operations
// only, and no calls (library templates are compiled without this file's O3 / target options
// and would not be inlined), so the loops that inline it vectorize.
__attribute__((always_inline)) inline float ExpPoly(float x) {
  const bool underflow = x < -87.33654f;
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.0f ? 88.0f : x;
  const float t = x * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: rounds to an integer
  const float fn = t - 12582912.0f;
  const int32_t n = __builtin_bit_cast(int32_t, t) - 0x4B400000;
  float r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const float v = p * __builtin_bit_cast(float, (n + 127) << 23);
  return underflow ? 0.0f : v;
}

// 16 floats as one GCC vector (one zmm register with AVX-512, two ymm with AVX2, four xmm
// otherwise), for loops the vectorizer does not shape well by itself.
// The helpers are always inlined into the clones, so the vector-ABI warning about passing V16
// by value without AVX-512 does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float V16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline V16 Load16(const float* p) {
  V16 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

__attribute__((always_inline)) inline void Store16(float* p, V16 v) { __builtin_memcpy(p, &v, sizeof(v)); }

// Pairwise tree sum of the 16 lanes.
__attribute__((always_inline)) inline float Sum16(V16 v) {
  v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
  v += __builtin_shufflevector(v, v, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
  return v[0];
}

}  // namespace

TL_MULTIVERSION void VecExp(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = ExpPoly(x[i]);
}

TL_MULTIVERSION void VecSilu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + ExpPoly(-x[i]));
}

TL_MULTIVERSION void VecMulSilu(const float* x, const float* z, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * (z[i] / (1.0f + ExpPoly(-z[i])));
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

TL_MULTIVERSION void SsmHeadUpdate(float* s, int64_t P, int64_t N, float decay, const float* dx,
                                   const float* B, const float* C, float* y) {
  if (N % 16 == 0) {  // whole 16-wide vectors (one zmm with AVX-512)
    for (int64_t p = 0; p < P; ++p) {
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

}  // namespace tapeloop::engine
