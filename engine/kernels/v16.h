// Internal to engine/kernels: 16 floats as one GCC vector (one zmm register with AVX-512, two
// ymm with AVX2, four xmm otherwise) and the always-inlined helpers the decode kernels build on
// (loads, stores, lane sums, a vectorizable exp). Include it only from .cc files that compile
// their loops with `#pragma GCC optimize("O3")` and GCC target_clones (TL_MULTIVERSION): the
// helpers are inlined into each clone, so they take that clone's instruction set.
#ifndef TAPELOOP_ENGINE_KERNELS_V16_H_
#define TAPELOOP_ENGINE_KERNELS_V16_H_

#include <cstdint>

// The helpers are always inlined into the clones, so the vector-ABI warning about passing V16
// by value without AVX-512 does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// Feature clones, dispatched on __builtin_cpu_supports. ("arch=skylake-avx512" clones dispatch
// on the CPU model, __builtin_cpu_is, so a newer AVX-512 Xeon such as Sapphire Rapids ran the
// baseline SSE2 clone.)
#define TL_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TL_MULTIVERSION
#endif

namespace tapeloop::engine::v16 {

typedef float V16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline V16 Load16(const float* p) {
  V16 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

__attribute__((always_inline)) inline void Store16(float* p, V16 v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

// Pairwise tree sum of the 16 lanes.
__attribute__((always_inline)) inline float Sum16(V16 v) {
  v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
  v += __builtin_shufflevector(v, v, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
  return v[0];
}

// Largest of the 16 lanes (same tree).
__attribute__((always_inline)) inline float Max16(V16 v) {
  auto mx = [](V16 a, V16 b) { return a > b ? a : b; };
  v = mx(v, __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  v = mx(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3));
  v = mx(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1));
  v = mx(v, __builtin_shufflevector(v, v, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0));
  return v[0];
}

// Lane j of the result = the sum of the 16 lanes of a[j] (a transposing tree: 15 adds and 30
// two-source shuffles for 16 sums, against 64 + 64 for sixteen Sum16).
__attribute__((always_inline)) inline V16 Sum16x16(const V16* a) {
  V16 u[8], v[4], w[2];
  for (int k = 0; k < 8; ++k) {  // u[k]: lanes 0-7 partial sums of a[k], 8-15 of a[k + 8]
    u[k] = __builtin_shufflevector(a[k], a[k + 8], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21,
                                   22, 23) +
           __builtin_shufflevector(a[k], a[k + 8], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28,
                                   29, 30, 31);
  }
  for (int k = 0; k < 4; ++k) {  // v[k]: groups of 4 lanes for a[k], a[k + 4], a[k + 8], a[k + 12]
    v[k] = __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25,
                                   26, 27) +
           __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28,
                                   29, 30, 31);
  }
  for (int k = 0; k < 2; ++k) {  // w[k]: pairs of lanes for a[k], a[k + 2], ..., a[k + 14]
    w[k] = __builtin_shufflevector(v[k], v[k + 2], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13,
                                   28, 29) +
           __builtin_shufflevector(v[k], v[k + 2], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14,
                                   15, 30, 31);
  }
  return __builtin_shufflevector(w[0], w[1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14,
                                 30) +
         __builtin_shufflevector(w[0], w[1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15,
                                 31);
}

// Cephes expf: exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 in two parts),
// exp(r) by a degree-6 polynomial; 2^n is built in the exponent bits. Within 2 ulp of std::exp
// for x in [-87.3, 88]; 0 below -87.3, exp(88) above 88. Plain float operations only, and no
// calls (library templates are compiled without the kernels' O3 / target options and would not
// be inlined), so the loops that inline it vectorize.
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

// s[j] = exp(s[j] - mx) for j < n (ExpPoly); returns their sum (16 lane sums, then Sum16, then
// the tail in order).
__attribute__((always_inline)) inline float ExpShiftSum(float* s, int64_t n, float mx) {
  for (int64_t j = 0; j < n; ++j) s[j] = ExpPoly(s[j] - mx);
  V16 acc = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) acc += Load16(s + j);
  float sum = Sum16(acc);
  for (; j < n; ++j) sum += s[j];
  return sum;
}

}  // namespace tapeloop::engine::v16

#endif  // TAPELOOP_ENGINE_KERNELS_V16_H_
