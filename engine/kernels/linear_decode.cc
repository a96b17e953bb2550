// LinearForwardDecode: y = x w^T + b for the few rows of a batched decode step, as register-
// blocked dot products read straight from w's [out, in] rows (see linear.h).
#include <algorithm>
#include <cstdint>

#include "engine/kernels/linear.h"
#include "engine/parallel.h"

// The loops below need the vectorizer at full strength (-O2 uses its "very cheap" model).
#pragma GCC optimize("O3")
#include "engine/kernels/v16.h"

namespace tapeloop::engine {
namespace {

using v16::Load16;
using v16::Sum16;
using v16::Sum16x16;
using v16::V16;

// y[r, c] = x[r, :] . w[c, :] + b[c] for r < RB, c < RC (x rows ld in, w rows ld in, y rows ld
// ldy); the RB x RC accumulators stay in registers.
template <int RB, int RC>
__attribute__((always_inline)) inline void Block(const float* x, const float* w, const float* b,
                                                 int64_t in, float* y, int64_t ldy) {
  V16 acc[RB * RC] = {};
  int64_t i = 0;
  for (; i + 16 <= in; i += 16) {
    V16 xv[RB], wv[RC];
#pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) xv[r] = Load16(x + r * in + i);
#pragma GCC unroll 4
    for (int c = 0; c < RC; ++c) wv[c] = Load16(w + c * in + i);
#pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) {
#pragma GCC unroll 4
      for (int c = 0; c < RC; ++c) acc[r * RC + c] += xv[r] * wv[c];
    }
  }
  float s[RB * RC];
  if constexpr (RB * RC == 16) {
    const V16 sums = Sum16x16(acc);
    __builtin_memcpy(s, &sums, sizeof(s));
  } else {
    for (int k = 0; k < RB * RC; ++k) s[k] = Sum16(acc[k]);
  }
  for (; i < in; ++i) {  // in % 16 tail
    for (int r = 0; r < RB; ++r) {
      for (int c = 0; c < RC; ++c) s[r * RC + c] += x[r * in + i] * w[c * in + i];
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int c = 0; c < RC; ++c) y[r * ldy + c] = s[r * RC + c] + (b ? b[c] : 0.0f);
  }
}

// Rows [0, rows) x columns [c0, c1) of y, in blocks of 4 x 4.
template <int RC>
__attribute__((always_inline)) inline void Columns(float* y, const float* x, const float* w,
                                                   const float* b, int64_t rows, int64_t in,
                                                   int64_t out, int64_t c) {
  const float* wc = w + c * in;
  const float* bc = b ? b + c : nullptr;
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) Block<4, RC>(x + r * in, wc, bc, in, y + r * out + c, out);
  switch (rows - r) {
    case 3:
      Block<3, RC>(x + r * in, wc, bc, in, y + r * out + c, out);
      break;
    case 2:
      Block<2, RC>(x + r * in, wc, bc, in, y + r * out + c, out);
      break;
    case 1:
      Block<1, RC>(x + r * in, wc, bc, in, y + r * out + c, out);
      break;
    default:
      break;
  }
}

// Columns [c0, c1) of y for every row, in tiles of rows, so that each 4-column block of w is
// read once per tile and the tile's x rows are re-read from cache: tiles whose x rows fit in
// 16 KiB (L1) while this slice of w fits in 1 MiB (L2, where the re-reads per tile come from);
// for a larger slice (which the re-reads would fetch from L3 once per tile) tiles of up to
// 256 KiB of x (L2), so that w is fetched about once.
TL_MULTIVERSION void DecodeSlice(float* y, const float* x, const float* w, const float* b,
                                 int64_t rows, int64_t in, int64_t out, int64_t c0, int64_t c1) {
  const int64_t tile_floats = (c1 - c0) * in <= (int64_t{1} << 18) ? 4096 : int64_t{1} << 16;
  const int64_t tile = std::max<int64_t>(4, (tile_floats / std::max<int64_t>(in, 1)) / 4 * 4);
  for (int64_t r0 = 0; r0 < rows; r0 += tile) {
    const int64_t n = std::min(tile, rows - r0);
    const float* xt = x + r0 * in;
    float* yt = y + r0 * out;
    int64_t c = c0;
    for (; c + 4 <= c1; c += 4) Columns<4>(yt, xt, w, b, n, in, out, c);
    switch (c1 - c) {
      case 3:
        Columns<3>(yt, xt, w, b, n, in, out, c);
        break;
      case 2:
        Columns<2>(yt, xt, w, b, n, in, out, c);
        break;
      case 1:
        Columns<1>(yt, xt, w, b, n, in, out, c);
        break;
      default:
        break;
    }
  }
}

}  // namespace

void LinearForwardDecode(float* y, const float* x, const float* w, const float* b, int64_t rows,
                         int64_t in, int64_t out) {
  if (rows <= 0) return;
  // One row: BLAS sgemv packs nothing. Many rows: sgemm's packing is amortized and its kernel
  // is faster than the blocks here (see kMaxDecodeRows).
  if (rows == 1 || rows > kMaxDecodeRows) {
    LinearForwardRef(y, x, w, b, rows, in, out);
    return;
  }
  // Split the output columns across threads in blocks of 16 when the product is big enough to
  // pay for the hand-off (as LinearForwardRef).
  const int64_t work = rows * in * out;
  if (work >= (int64_t{1} << 17) && out >= 32) {
    const int64_t blocks = (out + 15) / 16;
    const int64_t grain =
        std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, rows * in * 16));
    ParallelFor(blocks, grain, [&](int64_t b0, int64_t b1) {
      DecodeSlice(y, x, w, b, rows, in, out, b0 * 16, std::min(out, b1 * 16));
    });
    return;
  }
  DecodeSlice(y, x, w, b, rows, in, out, 0, out);
}

}  // namespace tapeloop::engine
