// tapeloop.v1.Engine: models, sessions, token streams, forks and snapshots over gRPC; a thin
// adapter over SessionManager (server/session_manager.h), which holds the sessions, the
// continuous-batching scheduler and the idle reaper.
//
// Model work never runs on a gRPC thread: unary calls that touch a model (LoadModel,
// CreateSession, Append, Fork, Snapshot, Restore, GetSession with state) run on the service's
// own worker threads and finish their reactor from there; Generate streams are fed by the
// scheduler thread through a bounded per-stream buffer (a slow reader pauses only its own
// session). A client cancel or deadline drops the stream at the next scheduler step.
//
// Construction opens the service's database connection (ctx->db_path); a failure there is
// reported by every call (UNAVAILABLE) and by init_status(). Shutdown() (the server calls it
// before destroying the service) stops the scheduler, reaper and workers and ends every open
// Generate stream with UNAVAILABLE; later calls get UNAVAILABLE. Thread-safe.
#ifndef TAPELOOP_SERVER_ENGINE_SERVICE_H_
#define TAPELOOP_SERVER_ENGINE_SERVICE_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "server/service_context.h"
#include "server/session_manager.h"
#include "tapeloop/v1/engine.grpc.pb.h"

namespace tapeloop::server {

class EngineService final : public tapeloop::v1::Engine::CallbackService {
 public:
  // `ctx` must outlive the service. `workers`: threads for unary model work.
  explicit EngineService(const ServiceContext* ctx, int workers = 4);
  ~EngineService() override;

  const absl::Status& init_status() const { return init_status_; }
  // The session manager (nullptr when init_status() is not OK); for tests and benchmarks.
  SessionManager* sessions() { return sessions_.get(); }
  SchedulerStats stats();
  void Shutdown();

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const tapeloop::v1::ListModelsRequest* request,
                                       tapeloop::v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* context,
                                      const tapeloop::v1::LoadModelRequest* request,
                                      tapeloop::v1::EngineModel* response) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* context,
                                        const tapeloop::v1::UnloadModelRequest* request,
                                        tapeloop::v1::UnloadModelResponse* response) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* context,
                                          const tapeloop::v1::CreateSessionRequest* request,
                                          tapeloop::v1::EngineSession* response) override;
  grpc::ServerUnaryReactor* Append(grpc::CallbackServerContext* context,
                                   const tapeloop::v1::AppendRequest* request,
                                   tapeloop::v1::AppendResponse* response) override;
  grpc::ServerWriteReactor<tapeloop::v1::GenerateChunk>* Generate(
      grpc::CallbackServerContext* context, const tapeloop::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Fork(grpc::CallbackServerContext* context,
                                 const tapeloop::v1::ForkRequest* request,
                                 tapeloop::v1::EngineSession* response) override;
  grpc::ServerUnaryReactor* Snapshot(grpc::CallbackServerContext* context,
                                     const tapeloop::v1::SnapshotRequest* request,
                                     tapeloop::v1::SnapshotResponse* response) override;
  grpc::ServerUnaryReactor* Restore(grpc::CallbackServerContext* context,
                                    const tapeloop::v1::RestoreRequest* request,
                                    tapeloop::v1::EngineSession* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* context,
                                       const tapeloop::v1::GetSessionRequest* request,
                                       tapeloop::v1::EngineSession* response) override;
  grpc::ServerUnaryReactor* CloseSession(grpc::CallbackServerContext* context,
                                         const tapeloop::v1::CloseSessionRequest* request,
                                         tapeloop::v1::CloseSessionResponse* response) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* context,
                                         const tapeloop::v1::ListSessionsRequest* request,
                                         tapeloop::v1::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* GetEngineStats(grpc::CallbackServerContext* context,
                                           const tapeloop::v1::GetEngineStatsRequest* request,
                                           tapeloop::v1::EngineStats* response) override;

 private:
  // Runs `work(principal)` for an authenticated, admitted call carrying a well-decoded `request`
  // (see Principal) on a worker thread and finishes the reactor with its status.
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                  const google::protobuf::Message& request,
                                  std::function<absl::Status(const std::string&)> work,
                                  bool on_worker = true);
  void WorkerLoop();

  const ServiceContext* ctx_;
  absl::Status init_status_;
  std::unique_ptr<SessionManager> sessions_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> work_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_ENGINE_SERVICE_H_
