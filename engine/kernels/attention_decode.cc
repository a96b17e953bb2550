// AttentionDecode: the fast path of a decode step's attention (see attention_decode.h).
#include "engine/kernels/attention_decode.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/check.h"
#include "engine/parallel.h"

// The loops below need the vectorizer at full strength (-O2 uses its "very cheap" model).
#pragma GCC optimize("O3")
#include "engine/kernels/v16.h"
#include "engine/kernels/vec.h"

namespace tapeloop::engine {
namespace {

using v16::ExpShiftSum;
using v16::Load16;
using v16::Max16;
using v16::Store16;
using v16::Sum16;
using v16::Sum16x16;
using v16::V16;

// Query heads per KV head that GroupVec takes at once (larger groups go in slices of this many).
constexpr int kMaxGroupHeads = 8;

// Multiply-adds below which a call runs on the caller's thread (a hand-off costs about as much).
constexpr int64_t kMinParallelWork = int64_t{1} << 15;

// Rows per block of the grouped kernel below: one KV head's keys (or values) for a block stay
// in L1 / L2 while every query head of its group reads them (at hd 32 and two KV heads per row,
// 256 rows of one head are 32 KB). A multiple of 16.
constexpr int64_t kGroupBlock = 256;

// The G query heads of one KV head group (head dim 16 * C) against the same n rows of keys /
// values (rows ld floats apart): o[g], qh[g] per head; s: f32 [G, n] scratch. The scores run
// block by block of kGroupBlock rows and, within a block, head by head, so the group reads each
// key and value row from memory once instead of G times. For every head the operations and
// their order are those of the head alone (16-row blocks of dot products, the running max, the
// values four rows per step into separate accumulators), so the result does not depend on the
// group's size, bit for bit.
template <int C>
__attribute__((always_inline)) inline void GroupVec(float* const* o, const float* const* qh, int G,
                                                    const float* k, const float* v, int64_t n,
                                                    int64_t ld, float scale, float* s) {
  const int64_t n16 = n - n % 16, n4 = n - n % 4;
  // Scores, 16 rows at a time: 16 partial-sum vectors transposed into one vector of sums.
  V16 mxv[kMaxGroupHeads];
  for (int g = 0; g < G; ++g) mxv[g] = V16{} - std::numeric_limits<float>::infinity();
  for (int64_t j0 = 0; j0 < n16; j0 += kGroupBlock) {
    const int64_t j1 = std::min(n16, j0 + kGroupBlock);
    for (int g = 0; g < G; ++g) {
      V16 qv[C];
      for (int c = 0; c < C; ++c) qv[c] = Load16(qh[g] + 16 * c);
      float* sg = s + g * n;
      V16 mx = mxv[g];
      for (int64_t j = j0; j < j1; j += 16) {
        V16 acc[16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; ++r) {
          const float* kr = k + (j + r) * ld;
          V16 a = qv[0] * Load16(kr);
          for (int c = 1; c < C; ++c) a += qv[c] * Load16(kr + 16 * c);
          acc[r] = a;
        }
        const V16 sv = Sum16x16(acc) * scale;
        Store16(sg + j, sv);
        mx = mx > sv ? mx : sv;
      }
      mxv[g] = mx;
    }
  }
  float inv[kMaxGroupHeads];
  for (int g = 0; g < G; ++g) {
    V16 qv[C];
    for (int c = 0; c < C; ++c) qv[c] = Load16(qh[g] + 16 * c);
    float* sg = s + g * n;
    float mx = Max16(mxv[g]);
    for (int64_t j = n16; j < n; ++j) {
      const float* kr = k + j * ld;
      V16 a = qv[0] * Load16(kr);
      for (int c = 1; c < C; ++c) a += qv[c] * Load16(kr + 16 * c);
      sg[j] = Sum16(a) * scale;
      mx = std::max(mx, sg[j]);
    }
    inv[g] = 1.0f / ExpShiftSum(sg, n, mx);
  }
  // Weighted sum of values, four rows per step into separate accumulators (independent
  // chains), kept per head across the blocks.
  V16 acc[kMaxGroupHeads][4][C] = {};
  for (int64_t j0 = 0; j0 < n4; j0 += kGroupBlock) {
    const int64_t j1 = std::min(n4, j0 + kGroupBlock);
    for (int g = 0; g < G; ++g) {
      const float* sg = s + g * n;
      V16 a[4][C];
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < C; ++c) a[r][c] = acc[g][r][c];
      for (int64_t j = j0; j < j1; j += 4) {
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
          const float* vr = v + (j + r) * ld;
          for (int c = 0; c < C; ++c) a[r][c] += sg[j + r] * Load16(vr + 16 * c);
        }
      }
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < C; ++c) acc[g][r][c] = a[r][c];
    }
  }
  for (int g = 0; g < G; ++g) {
    const float* sg = s + g * n;
    for (int64_t j = n4; j < n; ++j) {
      for (int c = 0; c < C; ++c) acc[g][0][c] += sg[j] * Load16(v + j * ld + 16 * c);
    }
    for (int c = 0; c < C; ++c) {
      Store16(o[g] + 16 * c,
              ((acc[g][0][c] + acc[g][1][c]) + (acc[g][2][c] + acc[g][3][c])) * inv[g]);
    }
  }
}

// Any head dim: plain loops (VecDot for the dot products).
__attribute__((always_inline)) inline void HeadAny(float* o, const float* qh, const float* k,
                                                   const float* v, int64_t n, int64_t ld,
                                                   int64_t hd, float scale, float* s) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    s[j] = VecDot(qh, k + j * ld, hd) * scale;
    mx = std::max(mx, s[j]);
  }
  const float inv = 1.0f / ExpShiftSum(s, n, mx);
  std::fill(o, o + hd, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    const float p = s[j];
    const float* vr = v + j * ld;
    for (int64_t e = 0; e < hd; ++e) o[e] += p * vr[e];
  }
  for (int64_t e = 0; e < hd; ++e) o[e] *= inv;
}

// Items [i0, i1) of the B x Hkv (session, KV head) grid; s: f32 [kMaxGroupHeads, max rows]
// scratch.
TL_MULTIVERSION void AttendItems(float* out, const float* q, int64_t ldq, const KvRows* kv,
                                 int64_t i0, int64_t i1, int num_heads, int num_kv_heads,
                                 int head_dim, float scale, float* s) {
  const int64_t hd = head_dim, qd = int64_t{num_heads} * hd, kvd = int64_t{num_kv_heads} * hd;
  const int group = num_heads / num_kv_heads;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t b = i / num_kv_heads, kvh = i % num_kv_heads;
    const float* k = kv[b].k + kvh * hd;
    const float* v = kv[b].v + kvh * hd;
    const int64_t n = kv[b].rows;
    for (int g0 = 0; g0 < group; g0 += kMaxGroupHeads) {
      const int G = std::min(kMaxGroupHeads, group - g0);
      float* o[kMaxGroupHeads];
      const float* qh[kMaxGroupHeads];
      for (int g = 0; g < G; ++g) {
        const int64_t h = kvh * group + g0 + g;
        qh[g] = q + b * ldq + h * hd;
        o[g] = out + b * qd + h * hd;
      }
      switch (head_dim) {
        case 16:
          GroupVec<1>(o, qh, G, k, v, n, kvd, scale, s);
          break;
        case 32:
          GroupVec<2>(o, qh, G, k, v, n, kvd, scale, s);
          break;
        case 64:
          GroupVec<4>(o, qh, G, k, v, n, kvd, scale, s);
          break;
        case 128:
          GroupVec<8>(o, qh, G, k, v, n, kvd, scale, s);
          break;
        default:
          for (int g = 0; g < G; ++g) HeadAny(o[g], qh[g], k, v, n, kvd, hd, scale, s);
          break;
      }
    }
  }
}

}  // namespace

void AttentionDecode(float* out, const float* q, int64_t ldq, const KvRows* kv, int64_t B,
                     int num_heads, int num_kv_heads, int head_dim, float scale) {
  TL_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0 && head_dim >= 1 &&
           ldq >= int64_t{num_heads} * head_dim);
  if (B <= 0) return;
  int64_t max_rows = 0, total_rows = 0;
  for (int64_t b = 0; b < B; ++b) {
    TL_CHECK(kv[b].rows >= 1);
    max_rows = std::max(max_rows, kv[b].rows);
    total_rows += kv[b].rows;
  }
  // Split the (session, KV head) items over threads when there is enough work per thread:
  // about 2 * hd multiply-adds per row and query head (scores and values).
  const int64_t items = B * num_kv_heads;
  const int64_t work = total_rows * num_heads * 2 * head_dim;
  const int64_t grain = std::max<int64_t>(1, kMinParallelWork * items / std::max<int64_t>(work, 1));
  ParallelFor(items, grain, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> scores;  // f32 [kMaxGroupHeads, max rows]
    if (static_cast<int64_t>(scores.size()) < kMaxGroupHeads * max_rows) {
      scores.resize(kMaxGroupHeads * max_rows);
    }
    AttendItems(out, q, ldq, kv, i0, i1, num_heads, num_kv_heads, head_dim, scale, scores.data());
  });
}

}  // namespace tapeloop::engine
