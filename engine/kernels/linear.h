// Linear layer kernel: y[r, :] = x[r, :] @ w^T + b, the layout of torch.nn.Linear.
//
// LinearForwardRef is the CPU backend (OpenBLAS sgemm / sgemv); a CUDA version (cuBLAS) can sit
// beside it with the same signature. Thread-safe. The engine owns the threading: on first use
// OpenBLAS is set to one thread (process-wide), and large products are split over output
// columns with ParallelFor, so BLAS threads and engine threads never oversubscribe the cores.
#ifndef TAPELOOP_ENGINE_KERNELS_LINEAR_H_
#define TAPELOOP_ENGINE_KERNELS_LINEAR_H_

#include <cstdint>
#include <string>

namespace tapeloop::engine {

// y: f32 [rows, out] (must not alias x); x: f32 [rows, in]; w: f32 [out, in];
// b: f32 [out] or nullptr. rows may be 0.
void LinearForwardRef(float* y, const float* x, const float* w, const float* b, int64_t rows,
                      int64_t in, int64_t out);

// The decode step's product (rows = sessions of a batched step, a few to a few hundred): same
// contract and threading as LinearForwardRef, computed as register-blocked dot products (4 rows
// x 4 outputs, 16-wide vectors) read straight from w's [out, in] rows. OpenBLAS sgemm copies
// (packs) all of w on every call, which at these sizes costs about half as much as the
// multiplications. rows == 1 and rows > kMaxDecodeRows go to LinearForwardRef (sgemv packs
// nothing; for many rows sgemm's packing is amortized). Equal to LinearForwardRef to float
// rounding (tests/engine/kernels/linear_decode_test.cc). The decode step's layers call the
// overload in linear_packed.h, which reads a packed copy of w for two rows or more.
void LinearForwardDecode(float* y, const float* x, const float* w, const float* b, int64_t rows,
                         int64_t in, int64_t out);
// Measured on the project's Xeon, 2 threads, the decode step's shapes of the ~1M and ~25M bench
// models (in 128..1408, out 128..2816): these blocks reach 1.0-2.0x sgemm's rate at 16 rows,
// 1.0-1.5x at 32, and 0.67-1.1x at 64 (sgemm 1.2-1.5x faster for every ~25M shape).
inline constexpr int64_t kMaxDecodeRows = 32;

// General row-major C[M, N] (single-threaded; callers parallelize around it) = alpha * op(A) @ op(B) + beta * C with leading dimensions, for the
// layers' inner products (attention scores, SSD chunks). op = transpose when trans_* is true.
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// The BLAS backend in use, e.g. "OpenBLAS SkylakeX, 2 threads" (for benchmark reports).
std::string BlasDescription();

// OpenBLAS 0.3.21 (Debian 12) does not recognise some recent Xeons and falls back to its
// Prescott (SSE3) kernels, 2-6x slower. Its core type can only be chosen before the library
// initialises (OPENBLAS_CORETYPE), so this returns the core type a process should be
// re-executed with ("SkylakeX" with AVX-512, "Haswell" with AVX2), or nullptr when OpenBLAS
// already chose a good one, the variable is already set, or the CPU has neither.
const char* FasterBlasCoreType();

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_KERNELS_LINEAR_H_
