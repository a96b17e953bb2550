#include <cblas.h>

#include "engine/kernels/linear.h"

namespace tapeloop::engine {

void LinearForwardRef(float* y, const float* x, const float* w, const float* b, int64_t rows,
                      int64_t in, int64_t out) {
  if (rows <= 0) return;
  if (rows == 1) {
    if (b) {
      for (int64_t o = 0; o < out; ++o) y[o] = b[o];
    }
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(out), static_cast<int>(in), 1.0f, w,
                static_cast<int>(in), x, 1, b ? 1.0f : 0.0f, y, 1);
    return;
  }
  if (b) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < out; ++o) y[r * out + o] = b[o];
    }
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(out),
              static_cast<int>(in), 1.0f, x, static_cast<int>(in), w, static_cast<int>(in),
              b ? 1.0f : 0.0f, y, static_cast<int>(out));
}

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

std::string BlasDescription() {
  return std::string("OpenBLAS ") + openblas_get_corename() + ", " + std::to_string(openblas_get_num_threads()) +
         " threads";
}

}  // namespace tapeloop::engine
