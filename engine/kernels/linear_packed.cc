// LinearForwardPacked: y = x w^T + b for the many rows of a batched decode step, from w packed
// once into panels of 32 output columns (see linear_packed.h).
#include "engine/kernels/linear_packed.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "engine/check.h"
#include "engine/kernels/linear.h"
#include "engine/parallel.h"

// The loops below need the vectorizer at full strength (-O2 uses its "very cheap" model).
#pragma GCC optimize("O3")
#include "engine/kernels/v16.h"

namespace tapeloop::engine {
namespace {

using v16::Load16;
using v16::Store16;
using v16::V16;

static_assert(kPackedPanel == 32, "the micro-kernel holds a panel row as two 16-wide vectors");

// Rows [0, MR) x the panel's columns [0, ncols) of y: x rows ld ldx, the panel f32 [in, 32],
// y rows ld ldy, b the panel's bias or nullptr. The MR x 32 accumulators stay in registers;
// each input step loads one panel row (two vectors) and broadcasts one x value per row. With
// fewer than 4 rows, even and odd inputs go to separate accumulators (summed at the end), so that
// at least 8 independent chains of multiply-adds hide their latency.
template <int MR>
__attribute__((always_inline)) inline void Micro(const float* x, int64_t ldx, const float* p,
                                                 int64_t in, float* y, int64_t ldy, const float* b,
                                                 int64_t ncols) {
  constexpr int S = MR < 4 ? 2 : 1;  // accumulator sets
  V16 acc[S][MR][2] = {};
  int64_t k = 0;
#pragma GCC unroll 2
  for (; k + S <= in; k += S, p += S * kPackedPanel) {
#pragma GCC unroll 2
    for (int s = 0; s < S; ++s) {
      const V16 w0 = Load16(p + s * kPackedPanel), w1 = Load16(p + s * kPackedPanel + 16);
#pragma GCC unroll 12
      for (int r = 0; r < MR; ++r) {
        const float xv = x[r * ldx + k + s];
        acc[s][r][0] += xv * w0;
        acc[s][r][1] += xv * w1;
      }
    }
  }
  if constexpr (S == 2) {
    if (k < in) {  // an odd input count: the last input into the first set
      const V16 w0 = Load16(p), w1 = Load16(p + 16);
      for (int r = 0; r < MR; ++r) {
        const float xv = x[r * ldx + k];
        acc[0][r][0] += xv * w0;
        acc[0][r][1] += xv * w1;
      }
    }
    for (int r = 0; r < MR; ++r) {
      acc[0][r][0] += acc[1][r][0];
      acc[0][r][1] += acc[1][r][1];
    }
  }
  if (ncols == kPackedPanel) {
    V16 b0 = {}, b1 = {};
    if (b) {
      b0 = Load16(b);
      b1 = Load16(b + 16);
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      Store16(y + r * ldy, acc[0][r][0] + b0);
      Store16(y + r * ldy + 16, acc[0][r][1] + b1);
    }
    return;
  }
  for (int r = 0; r < MR; ++r) {  // a ragged last panel
    float s[kPackedPanel];
    __builtin_memcpy(s, acc[0][r], sizeof(s));
    for (int64_t c = 0; c < ncols; ++c) y[r * ldy + c] = s[c] + (b ? b[c] : 0.0f);
  }
}

// Columns of panels [p0, p1) of y for every row, in row blocks of at most kMaxRows of near-equal
// size; each panel (32 x in floats, at most a few hundred KiB) stays in L2 while the row blocks
// pass over it. (Chunking the inputs so that a panel's chunk stays in L1 measured no faster on
// the decode shapes: 64 rows, in 128..1408.)
template <int kMaxRows>
__attribute__((always_inline)) inline void Slice(float* y, const float* x, const float* packed,
                                                 const float* b, int64_t rows, int64_t in,
                                                 int64_t out, int64_t p0, int64_t p1) {
  const int64_t blocks = (rows + kMaxRows - 1) / kMaxRows;
  for (int64_t p = p0; p < p1; ++p) {
    const float* panel = packed + p * in * kPackedPanel;
    const int64_t c = p * kPackedPanel;
    const int64_t ncols = std::min(kPackedPanel, out - c);
    const float* bp = b ? b + c : nullptr;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t r0 = rows * blk / blocks, r1 = rows * (blk + 1) / blocks;
      const float* xr = x + r0 * in;
      float* yr = y + r0 * out + c;
      switch (r1 - r0) {
#define TL_PACKED_CASE(n)                              \
  case n:                                              \
    if constexpr (n <= kMaxRows) {                     \
      Micro<n>(xr, in, panel, in, yr, out, bp, ncols); \
    }                                                  \
    break;
        TL_PACKED_CASE(1)
        TL_PACKED_CASE(2)
        TL_PACKED_CASE(3)
        TL_PACKED_CASE(4)
        TL_PACKED_CASE(5)
        TL_PACKED_CASE(6)
        TL_PACKED_CASE(7)
        TL_PACKED_CASE(8)
        TL_PACKED_CASE(9)
        TL_PACKED_CASE(10)
        TL_PACKED_CASE(11)
        TL_PACKED_CASE(12)
#undef TL_PACKED_CASE
        default:
          TL_CHECK(false);
      }
    }
  }
}

// 12 x 32 accumulators: 24 of AVX-512's 32 vector registers.
__attribute__((target("avx512f"))) void SliceAvx512(float* y, const float* x, const float* packed,
                                                    const float* b, int64_t rows, int64_t in,
                                                    int64_t out, int64_t p0, int64_t p1) {
  Slice<12>(y, x, packed, b, rows, in, out, p0, p1);
}

// Without AVX-512 (16 vector registers): blocks of 2 rows (2 x 2 sets of 32 accumulators).
__attribute__((target_clones("avx2", "default"))) void SliceNarrow(float* y, const float* x,
                                                                   const float* packed,
                                                                   const float* b, int64_t rows,
                                                                   int64_t in, int64_t out,
                                                                   int64_t p0, int64_t p1) {
  Slice<2>(y, x, packed, b, rows, in, out, p0, p1);
}

void PackedSlice(float* y, const float* x, const float* packed, const float* b, int64_t rows,
                 int64_t in, int64_t out, int64_t p0, int64_t p1) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) {
    SliceAvx512(y, x, packed, b, rows, in, out, p0, p1);
  } else {
    SliceNarrow(y, x, packed, b, rows, in, out, p0, p1);
  }
}

}  // namespace

const float* PackedLinear::panels() const {
  std::call_once(once_, [this] {
    const int64_t panels = num_panels();
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(this->bytes(), 64) + 63) / 64 * 64;
    float* d = static_cast<float*>(std::aligned_alloc(64, bytes));
    TL_CHECK(d != nullptr);
    for (int64_t p = 0; p < panels; ++p) {
      float* dp = d + p * in_ * kPackedPanel;  // f32 [in, 32]
      const int64_t c0 = p * kPackedPanel, n = std::min(kPackedPanel, out_ - c0);
      for (int64_t k = 0; k < in_; ++k) {
        for (int64_t j = 0; j < kPackedPanel; ++j) {
          dp[k * kPackedPanel + j] = j < n ? w_[(c0 + j) * in_ + k] : 0.0f;
        }
      }
    }
    data_.reset(d);
    built_.store(true, std::memory_order_release);
  });
  return data_.get();
}

void LinearForwardPacked(float* y, const float* x, const PackedLinear& w, const float* b,
                         int64_t rows) {
  if (rows <= 0) return;
  const int64_t in = w.in(), out = w.out(), panels = w.num_panels();
  const float* packed = w.panels();
  // Split the panels across threads when the product is big enough to pay for the hand-off (as
  // LinearForwardRef: ~64K multiply-adds per thread at least).
  const int64_t work = rows * in * out;
  if (work >= (int64_t{1} << 17) && panels >= 2) {
    const int64_t grain =
        std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, rows * in * kPackedPanel));
    ParallelFor(panels, grain, [&](int64_t p0, int64_t p1) {
      PackedSlice(y, x, packed, b, rows, in, out, p0, p1);
    });
    return;
  }
  PackedSlice(y, x, packed, b, rows, in, out, 0, panels);
}

void LinearForwardPackedNarrowForTest(float* y, const float* x, const PackedLinear& w,
                                      const float* b, int64_t rows) {
  if (rows <= 0) return;
  SliceNarrow(y, x, w.panels(), b, rows, w.in(), w.out(), 0, w.num_panels());
}

void LinearForwardDecode(float* y, const float* x, const float* w, const PackedLinear* packed,
                         const float* b, int64_t rows, int64_t in, int64_t out) {
  if (packed != nullptr && rows >= kMinPackedRows) {
    TL_CHECK(packed->source() == w && packed->in() == in && packed->out() == out);
    LinearForwardPacked(y, x, *packed, b, rows);
    return;
  }
  LinearForwardDecode(y, x, w, b, rows, in, out);
}

}  // namespace tapeloop::engine
