// AttentionDecode (16-row blocks, polynomial exp, split over threads) against
// AttentionDecodeRef (one head at a time, libm exp) on random queries, keys and values: head dims
// on and off the vectorized sizes, GQA groups, ragged row counts around the 16-row blocks, query
// rows with padding (ldq), and batches big enough to be split over threads; and a GQA group's
// heads, read together, against the same heads alone (bit for bit).
#include "engine/kernels/attention_decode.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace tapeloop::engine {
namespace {

TEST(AttentionDecode, EqualsTheReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  int cases = 0;
  for (int hd : {8, 16, 20, 32, 64, 128}) {
    for (auto [hq, hkv] : {std::pair{1, 1}, std::pair{4, 2}, std::pair{8, 8}, std::pair{6, 2}}) {
      for (int64_t B : {1, 3, 17, 64}) {
        const int64_t qd = int64_t{hq} * hd, kvd = int64_t{hkv} * hd, ldq = qd + 3;
        std::vector<float> q(B * ldq);
        for (auto& v : q) v = 2.0f * nd(rng);  // scores spread over a few units
        std::vector<std::vector<float>> k(B), v(B);
        std::vector<KvRows> kv(B);
        for (int64_t b = 0; b < B; ++b) {
          // Rows 1..~100, ragged around the 16-row blocks; some sessions hold one row.
          const int64_t n = b % 5 == 0 ? 1 : 1 + static_cast<int64_t>(rng() % 100);
          k[b].resize(n * kvd);
          v[b].resize(n * kvd);
          for (auto& x : k[b]) x = nd(rng);
          for (auto& x : v[b]) x = nd(rng);
          kv[b] = {k[b].data(), v[b].data(), n};
        }
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        std::vector<float> got(B * qd, NAN), want(B * qd, NAN);
        AttentionDecode(got.data(), q.data(), ldq, kv.data(), B, hq, hkv, hd, scale);
        AttentionDecodeRef(want.data(), q.data(), ldq, kv.data(), B, hq, hkv, hd, scale);
        for (int64_t i = 0; i < B * qd; ++i) {
          // Outputs are convex combinations of N(0, 1) values: absolute error against 1.
          ASSERT_NEAR(got[i], want[i], 2e-5)
              << "hd " << hd << " heads " << hq << "/" << hkv << " B " << B << " at " << i;
        }
        ++cases;
      }
    }
  }
  EXPECT_EQ(cases, 6 * 4 * 4);
}

// The query heads of a GQA group read their KV head's rows together, block by block; each head's
// result must not depend on that: the grouped layout (Hq / Hkv heads per KV head) gives, bit for
// bit, what the same heads give with a KV head each (the keys and values copied per query head,
// Hkv = Hq: groups of one). Rows across several 256-row blocks with ragged tails; groups of 2, 3
// and 12 (more than the kernel takes at once).
TEST(AttentionDecode, GroupedHeadsEqualTheSameHeadsAloneBitForBit) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  for (int hd : {16, 32, 64, 128, 24}) {
    for (auto [hq, hkv] : {std::pair{4, 2}, std::pair{6, 2}, std::pair{12, 1}}) {
      const int group = hq / hkv;
      const int64_t B = 3, qd = int64_t{hq} * hd, kvd = int64_t{hkv} * hd;
      std::vector<float> q(B * qd);
      for (auto& x : q) x = 2.0f * nd(rng);
      std::vector<std::vector<float>> k(B), v(B), ke(B), ve(B);
      std::vector<KvRows> kv(B), kve(B);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t n = std::vector<int64_t>{1, 517, 771}[b] + static_cast<int64_t>(rng() % 9);
        k[b].resize(n * kvd);
        v[b].resize(n * kvd);
        for (auto& x : k[b]) x = nd(rng);
        for (auto& x : v[b]) x = nd(rng);
        ke[b].resize(n * qd);
        ve[b].resize(n * qd);
        for (int64_t j = 0; j < n; ++j) {
          for (int h = 0; h < hq; ++h) {
            for (int e = 0; e < hd; ++e) {
              ke[b][j * qd + h * hd + e] = k[b][j * kvd + (h / group) * hd + e];
              ve[b][j * qd + h * hd + e] = v[b][j * kvd + (h / group) * hd + e];
            }
          }
        }
        kv[b] = {k[b].data(), v[b].data(), n};
        kve[b] = {ke[b].data(), ve[b].data(), n};
      }
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      std::vector<float> grouped(B * qd), alone(B * qd), ref(B * qd);
      AttentionDecode(grouped.data(), q.data(), qd, kv.data(), B, hq, hkv, hd, scale);
      AttentionDecode(alone.data(), q.data(), qd, kve.data(), B, hq, hq, hd, scale);
      AttentionDecodeRef(ref.data(), q.data(), qd, kv.data(), B, hq, hkv, hd, scale);
      for (int64_t i = 0; i < B * qd; ++i) {
        ASSERT_EQ(grouped[i], alone[i])
            << "hd " << hd << " heads " << hq << "/" << hkv << " at " << i;
        ASSERT_NEAR(grouped[i], ref[i], 2e-5) << "hd " << hd << " at " << i;
      }
    }
  }
}

// Large scores (a near one-hot softmax) and equal scores (a plain average) stay exact.
TEST(AttentionDecode, ExtremeAndUniformScores) {
  const int hd = 32;
  const int64_t n = 37;
  std::vector<float> k(n * hd, 0.0f), v(n * hd);
  for (int64_t j = 0; j < n; ++j) {
    for (int e = 0; e < hd; ++e) v[j * hd + e] = static_cast<float>(j + e);
  }
  KvRows kv{k.data(), v.data(), n};
  std::vector<float> q(hd, 1.0f), out(hd);
  // All keys zero: uniform weights, the mean of the values.
  AttentionDecode(out.data(), q.data(), hd, &kv, 1, 1, 1, hd, 1.0f);
  for (int e = 0; e < hd; ++e) EXPECT_NEAR(out[e], (n - 1) / 2.0 + e, 1e-4);
  // One key far ahead of the others: its value alone.
  for (int e = 0; e < hd; ++e) k[20 * hd + e] = 10.0f;
  AttentionDecode(out.data(), q.data(), hd, &kv, 1, 1, 1, hd, 1.0f);
  for (int e = 0; e < hd; ++e) EXPECT_NEAR(out[e], 20.0 + e, 1e-4);
}

}  // namespace
}  // namespace tapeloop::engine
