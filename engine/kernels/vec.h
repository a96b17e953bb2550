// Small vector loops of the decode path (outside BLAS): dot products, axpy and the Mamba-2
// state update. Each is compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time
// (GCC target_clones); results agree with a plain loop to float rounding. Thread-safe.
#ifndef TAPELOOP_ENGINE_KERNELS_VEC_H_
#define TAPELOOP_ENGINE_KERNELS_VEC_H_

#include <cstdint>

namespace tapeloop::engine {

// sum_i a[i] * b[i]
float VecDot(const float* a, const float* b, int64_t n);

// y[i] += alpha * x[i]
void VecAxpy(float alpha, const float* x, float* y, int64_t n);

// y[i] += a[i] * b[i]
void VecMulAdd(const float* a, const float* b, float* y, int64_t n);

// One row of the Mamba-2 recurrence: s[i] = s[i] * decay + dx * B[i]; returns sum_i s[i] * C[i].
float SsmRowUpdate(float* s, float decay, float dx, const float* B, const float* C, int64_t n);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_KERNELS_VEC_H_
