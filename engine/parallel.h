// A tiny fixed pool for the engine's own data parallelism (heads, sessions). Matrix products
// go through OpenBLAS, which has its own threads; ParallelFor is used only for loops around
// non-BLAS work or small BLAS calls, so the two do not oversubscribe the cores.
#ifndef TAPELOOP_ENGINE_PARALLEL_H_
#define TAPELOOP_ENGINE_PARALLEL_H_

#include <cstdint>
#include <functional>

namespace tapeloop::engine {

// Calls fn(begin, end) over disjoint ranges covering [0, n), on up to EngineThreads() threads
// (the caller's included), and returns when all are done. Runs inline when n < 2 * min_grain
// or when called from inside another ParallelFor. fn must be safe to call concurrently on
// disjoint ranges. Thread-safe.
void ParallelFor(int64_t n, int64_t min_grain, const std::function<void(int64_t, int64_t)>& fn);

// Number of threads ParallelFor uses: TAPELOOP_ENGINE_THREADS if set, else the number of
// hardware threads (at most 8).
int EngineThreads();

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_PARALLEL_H_
