// A tiny fixed pool: the engine's only source of parallelism (linear layers split over output
// columns, SSD / attention over heads, batched decode over sessions). OpenBLAS runs
// single-threaded inside it (kernels/linear.h), so the cores are never oversubscribed.
#ifndef TAPELOOP_ENGINE_PARALLEL_H_
#define TAPELOOP_ENGINE_PARALLEL_H_

#include <cstdint>
#include <functional>

namespace tapeloop::engine {

// Calls fn(begin, end) over disjoint ranges covering [0, n), on up to EngineThreads() threads
// (the caller's included), and returns when all are done. Runs inline (fn(0, n)) when
// n < 2 * min_grain, when called from inside another ParallelFor, or when another thread's
// region holds the pool (so concurrent sessions never wait for each other). fn must be safe to
// call concurrently on disjoint ranges. Thread-safe.
//
// Waiting threads (idle workers, a caller waiting for its workers) can spin for
// TAPELOOP_ENGINE_SPIN_US microseconds (default 0: block at once) before they block. A batched
// decode step runs tens of regions a few to a few hundred microseconds apart, and waking a
// blocked thread costs a futex call on each side (tens of microseconds under a sandbox such as
// gVisor): with cores of its own (2 cores pinned, otherwise idle) 50 gave 10-15% more b=64
// decode throughput at ~1M; on cores shared with other busy processes (the loaded 2-core VM)
// it halved it, so it is off unless asked for.
void ParallelFor(int64_t n, int64_t min_grain, const std::function<void(int64_t, int64_t)>& fn);

// Number of threads ParallelFor uses: TAPELOOP_ENGINE_THREADS if set, else the number of
// hardware threads (at most 8).
int EngineThreads();

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_PARALLEL_H_
