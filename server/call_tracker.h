// Counts the calls a server is working on, so shutdown can let them finish.
//
// gRPC's own Server::Shutdown(deadline) waits for the whole deadline while any client holds an
// idle connection open, even with no call in flight. So shutdown drains here instead: Drain()
// refuses new calls (Enter() returns false; the service answers UNAVAILABLE) and waits until
// the calls in flight have finished or the deadline passes; then the gRPC server is shut down
// with an immediate deadline, which cancels whatever is left. Thread-safe.
#ifndef TAPELOOP_SERVER_CALL_TRACKER_H_
#define TAPELOOP_SERVER_CALL_TRACKER_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace tapeloop::server {

class CallTracker {
 public:
  CallTracker() = default;
  CallTracker(const CallTracker&) = delete;
  CallTracker& operator=(const CallTracker&) = delete;

  // Registers a call; false once draining has begun (the call must not start).
  bool Enter() {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) return false;
    ++in_flight_;
    return true;
  }
  void Exit() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--in_flight_ == 0) idle_.notify_all();
  }
  // Stops new calls and waits until none is in flight or the deadline passes. Returns the
  // number of calls still in flight (they will be cancelled).
  int Drain(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    draining_ = true;
    idle_.wait_until(lock, deadline, [&] { return in_flight_ == 0; });
    return in_flight_;
  }
  int in_flight() {
    std::lock_guard<std::mutex> lock(mu_);
    return in_flight_;
  }

  // RAII registration; check ok() before working.
  class Scope {
   public:
    explicit Scope(CallTracker* tracker) : tracker_(tracker), ok_(tracker->Enter()) {}
    ~Scope() {
      if (ok_) tracker_->Exit();
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    bool ok() const { return ok_; }

   private:
    CallTracker* tracker_;
    bool ok_;
  };

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  int in_flight_ = 0;
  bool draining_ = false;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_CALL_TRACKER_H_
