#include "engine/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace tapeloop::engine {
namespace {

thread_local bool in_parallel_region = false;

// How long a thread spins (polling with the pause instruction) before it blocks: a worker
// waiting for the next region, the caller waiting for its workers to finish (see parallel.h).
std::chrono::microseconds SpinTime() {
  static const std::chrono::microseconds t = [] {
    if (const char* env = std::getenv("TAPELOOP_ENGINE_SPIN_US")) {
      return std::chrono::microseconds(std::clamp(std::atoi(env), 0, 100000));
    }
    return std::chrono::microseconds(0);
  }();
  return t;
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls done() for up to SpinTime(); true once it holds.
template <typename Done>
bool SpinUntil(const Done& done) {
  const auto deadline = std::chrono::steady_clock::now() + SpinTime();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      CpuRelax();
    }
    if (std::chrono::steady_clock::now() > deadline) return done();
  }
}

// Workers wait (spin, then block) for a generation counter to change, run their share, and
// report back through a count of pending parts.
class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { Loop(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs part(0..parts-1) on the pool and returns true, or returns false at once when another
  // thread's parallel region holds the pool (the caller then runs the work inline).
  bool TryRun(int parts, const std::function<void(int)>& part) {
    std::unique_lock<std::mutex> run_lock(run_mu_, std::try_to_lock);  // one region at a time
    if (!run_lock.owns_lock()) return false;
    pending_.store(parts - 1, std::memory_order_relaxed);
    {
      // Under mu_: a worker reads the generation with the region it belongs to, and one
      // deciding to block sees the new generation or is woken.
      std::lock_guard<std::mutex> lock(mu_);
      part_ = &part;
      parts_ = parts;
      generation_.fetch_add(1, std::memory_order_release);
    }
    if (sleepers_.load(std::memory_order_acquire) > 0) cv_.notify_all();
    in_parallel_region = true;
    part(0);
    in_parallel_region = false;
    auto done = [this] { return pending_.load(std::memory_order_acquire) == 0; };
    if (!SpinUntil(done)) {
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait(lock, done);
    }
    return true;
  }

 private:
  void Loop(int index) {
    in_parallel_region = true;
    uint64_t seen = 0;
    for (;;) {
      auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
      const std::function<void(int)>* part = nullptr;
      {
        const bool spun = SpinUntil(changed);
        std::unique_lock<std::mutex> lock(mu_);
        if (!spun) {
          sleepers_.fetch_add(1, std::memory_order_acq_rel);
          cv_.wait(lock, changed);
          sleepers_.fetch_sub(1, std::memory_order_acq_rel);
        }
        seen = generation_.load(std::memory_order_relaxed);
        if (stop_) return;
        if (index >= parts_) continue;
        part = part_;
      }
      (*part)(index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // The caller checks `done` under mu_ before it blocks.
        std::lock_guard<std::mutex> lock(mu_);
        done_cv_.notify_one();
      }
    }
  }

  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  // Written under mu_ with an advance of generation_; read by workers under mu_.
  const std::function<void(int)>* part_ = nullptr;
  int parts_ = 0;
  bool stop_ = false;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};   // parts not yet finished by workers
  std::atomic<int> sleepers_{0};  // workers blocked on cv_
  std::vector<std::thread> workers_;
};

Pool& GlobalPool() {
  static Pool* pool = new Pool(EngineThreads());
  return *pool;
}

}  // namespace

int EngineThreads() {
  static const int n = [] {
    if (const char* env = std::getenv("TAPELOOP_ENGINE_THREADS")) {
      int v = std::atoi(env);
      if (v >= 1) return std::min(v, 64);
    }
    int hw = static_cast<int>(std::thread::hardware_concurrency());
    return std::clamp(hw, 1, 8);
  }();
  return n;
}

void ParallelFor(int64_t n, int64_t min_grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  int threads = EngineThreads();
  if (in_parallel_region || threads == 1 || n < 2 * std::max<int64_t>(min_grain, 1)) {
    fn(0, n);
    return;
  }
  Pool& pool = GlobalPool();
  int parts = static_cast<int>(std::min<int64_t>(pool.size(), n / std::max<int64_t>(min_grain, 1)));
  parts = std::max(parts, 1);
  std::function<void(int)> part = [&](int p) {
    int64_t begin = n * p / parts, end = n * (p + 1) / parts;
    if (begin < end) fn(begin, end);
  };
  if (!pool.TryRun(parts, part)) fn(0, n);
}

}  // namespace tapeloop::engine
