#include "engine/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace tapeloop::engine {
namespace {

TEST(ParallelFor, CoversTheRangeOnceFromConcurrentCallersAndNested) {
  auto run = [](int64_t n) {
    std::vector<std::atomic<int>> hits(n);
    ParallelFor(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        hits[i]++;
        // Nested regions run inline.
        ParallelFor(3, 1, [&](int64_t, int64_t) {});
      }
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  };
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      for (int r = 0; r < 50; ++r) run(1 + r * 7);
    });
  }
  for (auto& c : callers) c.join();
  ParallelFor(0, 1, [](int64_t, int64_t) { FAIL(); });
}

}  // namespace
}  // namespace tapeloop::engine
