#include "engine/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace tapeloop::engine {
namespace {

thread_local bool in_parallel_region = false;

// Workers wait for a generation counter to change, run their share, and report back.
class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { Loop(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      ++generation_;
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
    {
      std::lock_guard<std::mutex> lock(mu_);
      part_ = &part;
      parts_ = parts;
      pending_ = parts - 1;
      ++generation_;
    }
    cv_.notify_all();
    in_parallel_region = true;
    part(0);
    in_parallel_region = false;
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return pending_ == 0; });
    part_ = nullptr;
    return true;
  }

 private:
  void Loop(int index) {
    in_parallel_region = true;
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* part = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
        if (index >= parts_) continue;
        part = part_;
      }
      (*part)(index);
      {
        std::lock_guard<std::mutex> lock(mu_);
        --pending_;
      }
      done_cv_.notify_one();
    }
  }

  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* part_ = nullptr;
  int parts_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
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
