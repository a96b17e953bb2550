// Elementwise math over float arrays for the trainer's hot loops: a polynomial expf (max
// relative error ~2e-7 on [-87, 88]; inputs are clamped to that range) written with GCC vector
// extensions, compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load time. The
// AVX-512 versions round slightly differently from the others: GCC contracts a * b + c into
// fused multiply-adds in C++ (even under -std=c++20) where the target has FMA, and only the
// AVX-512 one does. On one machine the results are deterministic.
#ifndef TAPELOOP_ENGINE_TRAIN_VEC_MATH_H_
#define TAPELOOP_ENGINE_TRAIN_VEC_MATH_H_

#include <cstdint>

namespace tapeloop::engine::train {

// x[i] = exp(x[i]).
void ExpInPlace(float* x, int64_t n);
// y[i] = x[i] * sigmoid(x[i]) (SiLU), computed as x / den with den = 1 + exp(-x). x and y may
// not alias. With `den` (f32 [n]) also stores den[i]: the backward functions below take it to
// skip their exp, with results bit for bit those they compute without it.
void SiluArray(const float* x, float* y, int64_t n, float* den = nullptr);
// Backward of g = y * silu(z) at fixed y: dz[i] = dg[i] * y[i] * silu'(z[i]); then
// dg[i] *= silu(z[i]) (so dg becomes d/dy). den: as stored by SiluArray(z, ...), or null.
void SiluGrad(const float* z, float* dz, int64_t n, const float* y, float* dg,
              const float* den = nullptr);
// d[i] *= silu'(x[i]). den: as stored by SiluArray(x, ...), or null.
void SiluGradInPlace(const float* x, float* d, int64_t n, const float* den = nullptr);
// y[i] = relu(x[i])^2 (relu(x) = x > 0 ? x : 0). x and y may not alias.
void Relu2Array(const float* x, float* y, int64_t n);
// Backward of y = relu(x)^2: dx[i] = x[i] > 0 ? dy[i] * 2 * x[i] : 0. dx may alias dy.
void Relu2Grad(const float* x, const float* dy, float* dx, int64_t n);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_VEC_MATH_H_
