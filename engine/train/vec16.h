// 16-float vectors (GCC vector extensions) for the trainer's hand-vectorized loops: loads,
// stores and a 16 x 16 transpose. Everything here is always inlined into its caller, so it is
// compiled for the caller's target (the AVX-512 / AVX2 / baseline clones) and with its
// floating-point contraction setting; the by-value vector ABI never matters.
#ifndef TAPELOOP_ENGINE_TRAIN_VEC16_H_
#define TAPELOOP_ENGINE_TRAIN_VEC16_H_

#include <cstring>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace tapeloop::engine::train {

typedef float V16 __attribute__((vector_size(16 * sizeof(float))));

__attribute__((always_inline)) inline V16 Load16(const float* p) {
  V16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
__attribute__((always_inline)) inline void Store16(float* p, V16 v) {
  std::memcpy(p, &v, sizeof(v));
}

// r[i][j] <- r[j][i]: a 16 x 16 transpose in registers (4 rounds of two-source shuffles). Only
// moves values, so it is exact.
__attribute__((always_inline)) inline void Transpose16(V16* r) {
  V16 t[16], u[16];
  for (int j = 0; j < 8; ++j) {
    t[2 * j] = __builtin_shufflevector(r[2 * j], r[2 * j + 1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9,
                                       25, 12, 28, 13, 29);
    t[2 * j + 1] = __builtin_shufflevector(r[2 * j], r[2 * j + 1], 2, 18, 3, 19, 6, 22, 7, 23, 10,
                                           26, 11, 27, 14, 30, 15, 31);
  }
  for (int j = 0; j < 4; ++j)
    for (int h = 0; h < 2; ++h) {
      u[4 * j + 2 * h] = __builtin_shufflevector(t[4 * j + h], t[4 * j + h + 2], 0, 1, 16, 17, 4, 5,
                                                 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
      u[4 * j + 2 * h + 1] = __builtin_shufflevector(t[4 * j + h], t[4 * j + h + 2], 2, 3, 18, 19,
                                                     6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
  for (int j = 0; j < 2; ++j)
    for (int h = 0; h < 4; ++h) {
      t[8 * j + h] = __builtin_shufflevector(u[8 * j + h], u[8 * j + h + 4], 0, 1, 2, 3, 16, 17, 18,
                                             19, 8, 9, 10, 11, 24, 25, 26, 27);
      t[8 * j + h + 4] = __builtin_shufflevector(u[8 * j + h], u[8 * j + h + 4], 4, 5, 6, 7, 20, 21,
                                                 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    }
  for (int h = 0; h < 8; ++h) {
    r[h] = __builtin_shufflevector(t[h], t[h + 8], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21,
                                   22, 23);
    r[h + 8] = __builtin_shufflevector(t[h], t[h + 8], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27,
                                       28, 29, 30, 31);
  }
}

}  // namespace tapeloop::engine::train

#pragma GCC diagnostic pop

#endif  // TAPELOOP_ENGINE_TRAIN_VEC16_H_
