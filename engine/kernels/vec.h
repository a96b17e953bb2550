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

// The fast paths of the batched decode step (engine/layers/mamba2.cc Mamba2Step); each is
// tested against the plain loop it replaces (tests/engine/kernels/vec_fast_test.cc).

// y[i] = exp(x[i]) by a vectorizable polynomial (Cephes expf): within 2 ulp of std::exp for
// x in [-87.3, 88]; 0 below -87.3 (std::exp gives a denormal or 0 there), exp(88) above 88
// (std::exp overflows to inf past 88.72). y may alias x.
void VecExp(const float* x, float* y, int64_t n);

// y[i] = x[i] / (1 + exp(-x[i])) (SiLU), with VecExp's exp. y may alias x.
void VecSilu(const float* x, float* y, int64_t n);

// y[i] = x[i] * silu(z[i]) (the gate of the Mamba-2 gated norm). y may alias x.
void VecMulSilu(const float* x, const float* z, float* y, int64_t n);

// Softmax of a row of scores over [lo, hi) in place (0 <= lo < hi <= n), with VecExp's exp and
// the sum in float (16 lane sums); s[j] = 0 for j outside [lo, hi). Within ~1e-6 relative of
// the plain loop (std::exp, a sequential double sum). The prefill attention's softmax.
void VecMaskedSoftmax(float* s, int64_t lo, int64_t hi, int64_t n);

// sum_i x[i]^2 in double (eight partial sums; equal to the sequential double sum to rounding).
double VecSumSquares(const float* x, int64_t n);

// y[i] = w[i] * (y[i] * scale)
void VecScaleMul(const float* w, float scale, float* y, int64_t n);

// One head of the Mamba-2 recurrence, every row of its state s [P, N]:
//   s[p, :] = s[p, :] * decay + dx[p] * B;  y[p] = s[p, :] . C
// (SsmRowUpdate for each p, in one call).
void SsmHeadUpdate(float* s, int64_t P, int64_t N, float decay, const float* dx, const float* B,
                   const float* C, float* y);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_KERNELS_VEC_H_
