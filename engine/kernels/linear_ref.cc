#include "engine/kernels/linear.h"

#include <cblas.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "engine/parallel.h"

namespace tapeloop::engine {
namespace {

// The engine owns the threading (ParallelFor); OpenBLAS runs single-threaded inside it, so
// BLAS threads and engine threads never compete for the cores.
void EnsureSingleThreadedBlas() {
  static const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

void LinearSlice(float* y, const float* x, const float* w, const float* b, int64_t rows, int64_t in,
                 int64_t out, int64_t o0, int64_t o1) {
  const int64_t n = o1 - o0;
  if (rows == 1) {
    if (b) {
      for (int64_t o = o0; o < o1; ++o) y[o] = b[o];
    }
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(in), 1.0f, w + o0 * in,
                static_cast<int>(in), x, 1, b ? 1.0f : 0.0f, y + o0, 1);
    return;
  }
  if (b) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = o0; o < o1; ++o) y[r * out + o] = b[o];
    }
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(n),
              static_cast<int>(in), 1.0f, x, static_cast<int>(in), w + o0 * in, static_cast<int>(in),
              b ? 1.0f : 0.0f, y + o0, static_cast<int>(out));
}

}  // namespace

void LinearForwardRef(float* y, const float* x, const float* w, const float* b, int64_t rows,
                      int64_t in, int64_t out) {
  if (rows <= 0) return;
  EnsureSingleThreadedBlas();
  // Split the output columns (weight rows) across threads in blocks of 16 when the product is
  // big enough to pay for the hand-off (~64K multiply-adds per thread).
  const int64_t work = rows * in * out;
  if (work >= (int64_t{1} << 17) && out >= 32) {
    const int64_t blocks = (out + 15) / 16;
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, rows * in * 16));
    ParallelFor(blocks, grain, [&](int64_t b0, int64_t b1) {
      LinearSlice(y, x, w, b, rows, in, out, b0 * 16, std::min(out, b1 * 16));
    });
    return;
  }
  LinearSlice(y, x, w, b, rows, in, out, 0, out);
}

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  EnsureSingleThreadedBlas();
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

const char* FasterBlasCoreType() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return nullptr;
  std::string core = openblas_get_corename();
  for (char& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (core != "prescott" && core != "core2" && core != "unknown") return nullptr;
  if (__builtin_cpu_supports("avx512f")) return "SkylakeX";
  if (__builtin_cpu_supports("avx2")) return "Haswell";
  return nullptr;
}

std::string BlasDescription() {
  EnsureSingleThreadedBlas();
  return std::string("OpenBLAS ") + openblas_get_corename() + " (" + std::to_string(openblas_get_num_threads()) +
         " BLAS thread; the engine's ParallelFor splits the work)";
}

}  // namespace tapeloop::engine
