// tapeloop.v1.Debug: interactive debugging sessions (proto/tapeloop/v1/debug.proto), a thin
// adapter over debugger::DebugSession (tools/debugger/debugger.h) and the code_debug task
// (tasks/code_debug/code_debug.h).
//
// Each session owns its program in memory (a FileMap copied from the request or generated from
// the task); the interpreter has no access to the host, so sessions cannot see each other's
// files or the server's. Sessions belong to the principal that opened them: every other caller
// gets NOT_FOUND, as for an unknown id. A principal may hold
// ServiceLimits::max_environments_per_principal sessions (RESOURCE_EXHAUSTED above).
//
// Commands that may run the program (run, continue, step, ...) never run on the gRPC callback
// thread: the call is queued on a small worker pool, which executes it and finishes the
// reactor. Each run is bounded by the instruction budget, the recursion limit and the
// allocation caps of DebugServiceOptions::run_limits, so a bad program (an infinite loop, deep
// recursion, a huge list) ends with an error observation and the pool moves on. One command at
// a time per session: a second one sent while the first is running gets FAILED_PRECONDITION.
//
// Idle sessions (no call for their idle timeout) are closed by a reaper thread. Shutdown()
// stops the reaper, answers every queued command UNAVAILABLE, waits for the commands being
// executed (each bounded by the instruction budget) and closes every session; later calls get
// UNAVAILABLE. The destructor calls Shutdown().
//
// Thread-safety: all methods are thread-safe.
#ifndef TAPELOOP_SERVER_DEBUG_SERVICE_H_
#define TAPELOOP_SERVER_DEBUG_SERVICE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/service_context.h"
#include "tapeloop/v1/debug.grpc.pb.h"
#include "tools/debugger/interpreter.h"

namespace tapeloop::server {

struct DebugServiceOptions {
  int worker_threads = 4;  // commands executed at the same time
  size_t max_files = 256;  // files of one program (also after edits)
  size_t max_file_name_bytes = 128;
  int64_t max_program_bytes = 4 << 20;   // all sources of one Open together
  int64_t max_file_bytes = 1 << 20;      // one file, also after edits
  int64_t max_command_bytes = 64 << 10;  // one command line
  // Every run of a session's program (and each `print`) is bounded by these; tighter memory
  // caps than the interpreter's defaults, since many sessions share the server.
  debugger::RunLimits run_limits = {/*max_steps=*/2'000'000, /*max_output_bytes=*/1 << 20,
                                    /*max_depth=*/1000, /*max_object_size=*/1'000'000,
                                    /*max_allocated=*/5'000'000};
  // How often the reaper looks for idle sessions.
  std::chrono::milliseconds reaper_interval{500};
};

class DebugService final : public tapeloop::v1::Debug::CallbackService {
 public:
  // `ctx` (keys, calls, limits) must outlive the service. Starts the worker pool and the
  // reaper.
  explicit DebugService(const ServiceContext* ctx, DebugServiceOptions options = {});
  ~DebugService() override;
  DebugService(const DebugService&) = delete;
  DebugService& operator=(const DebugService&) = delete;

  // Stops the reaper and the pool (see the file comment). Idempotent.
  void Shutdown();

  // Sessions open now, over all principals (tests and metrics).
  int open_sessions();

  grpc::ServerUnaryReactor* Open(grpc::CallbackServerContext* context,
                                 const tapeloop::v1::OpenDebugSessionRequest* request,
                                 tapeloop::v1::OpenDebugSessionResponse* response) override;
  grpc::ServerUnaryReactor* Command(grpc::CallbackServerContext* context,
                                    const tapeloop::v1::DebugCommandRequest* request,
                                    tapeloop::v1::DebugCommandResponse* response) override;
  grpc::ServerUnaryReactor* Files(grpc::CallbackServerContext* context,
                                  const tapeloop::v1::DebugFilesRequest* request,
                                  tapeloop::v1::DebugFilesResponse* response) override;
  grpc::ServerUnaryReactor* Close(grpc::CallbackServerContext* context,
                                  const tapeloop::v1::CloseDebugSessionRequest* request,
                                  tapeloop::v1::CloseDebugSessionResponse* response) override;

 private:
  struct Session;
  using Clock = std::chrono::steady_clock;

  // The caller's session, marked busy for a command when `busy` is set. NOT_FOUND for an
  // unknown or foreign id; FAILED_PRECONDITION when busy is requested and already held.
  absl::StatusOr<std::shared_ptr<Session>> Find(const std::string& principal,
                                                const std::string& session_id, bool busy);
  // Queues `job` on the pool: it is called with true to run, or with false when the service
  // shuts down first (it must then answer UNAVAILABLE). False once shut down (job not queued).
  bool Submit(std::function<void(bool run)> job);
  void WorkerLoop();
  void ReaperLoop();

  const ServiceContext* ctx_;
  const DebugServiceOptions options_;

  std::mutex mu_;  // guards everything below
  std::condition_variable work_cv_;
  std::condition_variable reaper_cv_;
  bool shut_down_ = false;
  std::map<std::string, std::shared_ptr<Session>> sessions_;  // by id
  std::map<std::string, int> per_principal_;
  std::deque<std::function<void(bool run)>> queue_;
  std::vector<std::thread> workers_;
  std::thread reaper_;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_DEBUG_SERVICE_H_
