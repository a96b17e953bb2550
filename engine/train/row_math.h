// Helpers shared by the trainer's per-layer files (engine/train/*_grad.h) and models: a
// row-major sgemm wrapper and a carver that lays buffers out in a row's workspace.
//
// Thread safety: stateless functions; a Carver is used by one thread.
#ifndef TAPELOOP_ENGINE_TRAIN_ROW_MATH_H_
#define TAPELOOP_ENGINE_TRAIN_ROW_MATH_H_

#include <cblas.h>

#include <cstdint>
#include <vector>

namespace tapeloop::engine::train {

// Row-major C[M, N] = alpha op(A) op(B) + beta C (op = transpose when ta / tb).
inline void Gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
              static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

// Hands out consecutive buffers (each rounded up to 16 floats) from `base`. With base ==
// nullptr it only counts: run a layout once with a counting Carver, size the workspace to
// used(), then run the same layout again over the workspace.
class Carver {
 public:
  explicit Carver(float* base) : base_(base) {}
  float* Take(int64_t n) {
    float* p = base_ ? base_ + used_ : nullptr;
    used_ += (n + 15) & ~int64_t{15};
    return p;
  }
  int64_t used() const { return used_; }

 private:
  float* base_;
  int64_t used_ = 0;
};

// Runs `layout(Carver&)` once counting, grows `buf` to fit (it never shrinks, so a workspace
// reused across rows allocates only for the longest), then again carving `buf`.
template <typename Layout>
void CarveWorkspace(std::vector<float>& buf, Layout&& layout) {
  Carver count(nullptr);
  layout(count);
  if (static_cast<int64_t>(buf.size()) < count.used()) buf.resize(count.used());
  Carver carve(buf.data());
  layout(carve);
}

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_ROW_MATH_H_
