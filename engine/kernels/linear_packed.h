// Pre-packed weights for the batched decode step's products: y[r, :] = x[r, :] @ w^T + b for the
// many rows (sessions) of a batched step, with w (the layout of torch.nn.Linear, f32 [out, in])
// kept a second time as contiguous panels of kPackedPanel output columns, so that the product
// reads the panels straight instead of copying (packing) all of w on every call as OpenBLAS
// sgemm does (about 40% of sgemm's time at a b=64 ~25M step).
//
// PackedLinear borrows w and builds its panels once, on first use (std::call_once: safe when
// several sessions decode concurrently); the weights must not change after that (a Model's
// weights are immutable while it serves; see Model::mutable_param_data). The panels cost
// 4 * in * round_up(out, kPackedPanel) bytes beside w.
//
// LinearForwardPacked is register-blocked (up to 12 rows x 32 outputs of accumulators on 16-wide
// vectors, with AVX-512; 2 rows without) and splits the panels over the engine's threads with
// one hand-off per product. Equal to LinearForwardRef to float rounding
// (tests/engine/kernels/linear_packed_test.cc). Measured on the GPU host's Xeon, 2 threads
// pinned, the decode shapes of the ~1M and ~25M bench models (`engine_bench --products 1`, two
// leases): 1.25-1.65x sgemm's rate at 64 rows for every ~25M shape (180-325 GFLOP/s), 1.0-1.3x
// at 256; at 2-32 rows mostly 1.0-1.6x the register blocks of LinearForwardDecode (which read
// w's rows; a few shapes at 2-16 rows 0.7-0.95x). At one row it is 1.0-2.0x sgemv, but the
// decode step keeps sgemv there (kMinPackedRows), so that a model that never batches never
// builds the packed copies.
#ifndef TAPELOOP_ENGINE_KERNELS_LINEAR_PACKED_H_
#define TAPELOOP_ENGINE_KERNELS_LINEAR_PACKED_H_

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>

namespace tapeloop::engine {

// Output columns per panel.
inline constexpr int64_t kPackedPanel = 32;

class PackedLinear {
 public:
  // w: f32 [out, in], borrowed (must outlive this object and not change once packed).
  PackedLinear(const float* w, int64_t in, int64_t out) : w_(w), in_(in), out_(out) {}
  PackedLinear(const PackedLinear&) = delete;
  PackedLinear& operator=(const PackedLinear&) = delete;

  // f32 [panels, in, kPackedPanel], panels = ceil(out / kPackedPanel): column o of w at panel
  // o / kPackedPanel, lane o % kPackedPanel; lanes past `out` are zero. Packs on the first call
  // (thread-safe; later calls cost one atomic load).
  const float* panels() const;

  const float* source() const { return w_; }
  int64_t in() const { return in_; }
  int64_t out() const { return out_; }
  int64_t num_panels() const { return (out_ + kPackedPanel - 1) / kPackedPanel; }
  // Bytes of the packed copy (whether built yet or not).
  int64_t bytes() const { return 4 * in_ * num_panels() * kPackedPanel; }
  // Whether the packed copy has been built (safe to ask while other threads pack or read it).
  bool built() const { return built_.load(std::memory_order_acquire); }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  const float* w_;
  int64_t in_, out_;
  mutable std::once_flag once_;
  mutable std::unique_ptr<float[], Free> data_;  // 64-byte aligned
  mutable std::atomic<bool> built_{false};
};

// y: f32 [rows, w.out()] (must not alias x); x: f32 [rows, w.in()]; b: f32 [w.out()] or
// nullptr. rows may be 0. Same threading as LinearForwardRef (ParallelFor over output panels
// when the product is big enough to pay for the hand-off).
void LinearForwardPacked(float* y, const float* x, const PackedLinear& w, const float* b,
                         int64_t rows);

// LinearForwardPacked on one thread through the blocks for CPUs without AVX-512 (2 rows; AVX2 or
// the SSE2 baseline), whatever this CPU has: for tests of that path.
void LinearForwardPackedNarrowForTest(float* y, const float* x, const PackedLinear& w,
                                      const float* b, int64_t rows);

// The decode product with an optional packed copy (the decode step's entry point): LinearForward-
// Packed when `packed` is given and rows >= kMinPackedRows, else LinearForwardDecode (linear.h:
// sgemv for one row). packed, when given, must be a packing of w [out, in].
void LinearForwardDecode(float* y, const float* x, const float* w, const PackedLinear* packed,
                         const float* b, int64_t rows, int64_t in, int64_t out);
inline constexpr int64_t kMinPackedRows = 2;

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_KERNELS_LINEAR_PACKED_H_
