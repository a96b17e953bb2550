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

// Multiply-adds below which a call runs on the caller's thread (a hand-off costs about as much).
constexpr int64_t kMinParallelWork = int64_t{1} << 15;

// One query head of head dim 16 * C against n rows of keys / values (rows ld floats apart);
// s: f32 [n] scratch. o: f32 [16 * C].
template <int C>
__attribute__((always_inline)) inline void HeadVec(float* o, const float* qh, const float* k,
                                                   const float* v, int64_t n, int64_t ld,
                                                   float scale, float* s) {
  V16 qv[C];
  for (int c = 0; c < C; ++c) qv[c] = Load16(qh + 16 * c);
  auto dot = [&](const float* kr) {
    V16 a = qv[0] * Load16(kr);
    for (int c = 1; c < C; ++c) a += qv[c] * Load16(kr + 16 * c);
    return a;
  };
  // Scores, 16 rows at a time: 16 partial-sum vectors transposed into one vector of sums.
  V16 mxv = V16{} - std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    V16 acc[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) acc[r] = dot(k + (j + r) * ld);
    const V16 sv = Sum16x16(acc) * scale;
    Store16(s + j, sv);
    mxv = mxv > sv ? mxv : sv;
  }
  float mx = Max16(mxv);
  for (; j < n; ++j) {
    s[j] = Sum16(dot(k + j * ld)) * scale;
    mx = std::max(mx, s[j]);
  }
  const float inv = 1.0f / ExpShiftSum(s, n, mx);
  // Weighted sum of values, four rows per step into separate accumulators (independent chains).
  V16 acc[4][C] = {};
  j = 0;
  for (; j + 4 <= n; j += 4) {
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      const float* vr = v + (j + r) * ld;
      for (int c = 0; c < C; ++c) acc[r][c] += s[j + r] * Load16(vr + 16 * c);
    }
  }
  for (; j < n; ++j) {
    for (int c = 0; c < C; ++c) acc[0][c] += s[j] * Load16(v + j * ld + 16 * c);
  }
  for (int c = 0; c < C; ++c) {
    Store16(o + 16 * c, ((acc[0][c] + acc[1][c]) + (acc[2][c] + acc[3][c])) * inv);
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

// Items [i0, i1) of the B x Hkv (session, KV head) grid; s: f32 [max rows] scratch.
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
    for (int g = 0; g < group; ++g) {
      const int64_t h = kvh * group + g;
      const float* qh = q + b * ldq + h * hd;
      float* o = out + b * qd + h * hd;
      switch (head_dim) {
        case 16:
          HeadVec<1>(o, qh, k, v, n, kvd, scale, s);
          break;
        case 32:
          HeadVec<2>(o, qh, k, v, n, kvd, scale, s);
          break;
        case 64:
          HeadVec<4>(o, qh, k, v, n, kvd, scale, s);
          break;
        case 128:
          HeadVec<8>(o, qh, k, v, n, kvd, scale, s);
          break;
        default:
          HeadAny(o, qh, k, v, n, kvd, hd, scale, s);
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
    thread_local std::vector<float> scores;  // f32 [max rows]
    if (static_cast<int64_t>(scores.size()) < max_rows) scores.resize(max_rows);
    AttendItems(out, q, ldq, kv, i0, i1, num_heads, num_kv_heads, head_dim, scale, scores.data());
  });
}

}  // namespace tapeloop::engine
