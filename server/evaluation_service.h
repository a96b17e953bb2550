// tapeloop.v1.Evaluation: batch evaluation runs in the background (proto/tapeloop/v1/
// evaluation.proto), the runs of `tapeloop eval` (eval/runner.h) over the server's models
// directory and database.
//
// StartEvaluation checks the request (every refusal names its field), builds eval::EvalOptions
// with the caller as the run's owner, loads the models once (eval::PrepareRun) and computes the
// run's id (a hash of the configuration, the models' fingerprints and the owner), then runs
// eval::RunEvaluation on those models on a worker thread of its own; it answers at once. The runner
// stores finished episodes in batches, each in one transaction, in the server's SQLite file (tables
// eval_runs / eval_episodes), so progress, cells and report are always read back from the database,
// and a run that was cancelled, failed or interrupted by a restart resumes when started again.
//
// Ownership: a run is visible only to the principal that started it (NOT_FOUND for anyone
// else); its owner is part of its stored configuration.
//
// Limits: at most EvaluationServiceOptions::max_running runs at once over the server
// (RESOURCE_EXHAUSTED beyond); lengths up to ServiceLimits::max_episode_length; at most
// max_planned_episodes episodes per run.
//
// Thread safety: called by gRPC from many threads; shared state is guarded. Shutdown() cancels
// every running evaluation (they read the flag every step of their episodes) and joins their
// threads; the server calls it before destroying the service (the destructor calls it too).
#ifndef TAPELOOP_SERVER_EVALUATION_SERVICE_H_
#define TAPELOOP_SERVER_EVALUATION_SERVICE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/service_context.h"
#include "store/database.h"
#include "tapeloop/v1/evaluation.grpc.pb.h"

namespace tapeloop::server {

struct EvaluationServiceOptions {
  // Evaluations running at once over the whole server (each holds one worker thread and its
  // own copy of its models).
  int max_running = 1;
  // Episodes one run may plan (models x modes x tasks x lengths x seeds x episodes).
  int64_t max_planned_episodes = 1'000'000;
};

class EvaluationService final : public tapeloop::v1::Evaluation::CallbackService {
 public:
  // `ctx` (and everything it points to) must outlive the service.
  explicit EvaluationService(const ServiceContext* ctx, EvaluationServiceOptions options = {});
  ~EvaluationService() override;
  EvaluationService(const EvaluationService&) = delete;
  EvaluationService& operator=(const EvaluationService&) = delete;

  grpc::ServerUnaryReactor* StartEvaluation(grpc::CallbackServerContext* context,
                                            const tapeloop::v1::StartEvaluationRequest* request,
                                            tapeloop::v1::EvaluationRun* response) override;
  grpc::ServerUnaryReactor* GetEvaluation(grpc::CallbackServerContext* context,
                                          const tapeloop::v1::GetEvaluationRequest* request,
                                          tapeloop::v1::EvaluationRun* response) override;
  grpc::ServerUnaryReactor* CancelEvaluation(grpc::CallbackServerContext* context,
                                             const tapeloop::v1::CancelEvaluationRequest* request,
                                             tapeloop::v1::EvaluationRun* response) override;
  grpc::ServerUnaryReactor* ListEvaluations(
      grpc::CallbackServerContext* context, const tapeloop::v1::ListEvaluationsRequest* request,
      tapeloop::v1::ListEvaluationsResponse* response) override;

  // Refuses new runs (UNAVAILABLE), cancels the running ones (they become INTERRUPTED, and
  // resume when started again) and returns once their threads are done. Idempotent.
  void Shutdown();
  // Waits until no evaluation runs; false if `timeout` passed first. For tests and monitoring.
  bool WaitIdle(std::chrono::milliseconds timeout);
  int running();

 private:
  struct Job;  // one run started by this process (evaluation_service.cc)

  // Fills `out` from the database (and the job, when this process started the run): state,
  // progress, configuration; with `details`, cells and the report too. NOT_FOUND when the run
  // does not exist or is not `principal`'s.
  absl::Status Describe(const std::string& principal, const std::string& run_id, bool details,
                        tapeloop::v1::EvaluationRun* out);
  std::shared_ptr<Job> FindJob(const std::string& run_id);
  void Work(std::shared_ptr<Job> job);
  void ReapLocked();                // joins finished workers; REQUIRES mu_ held
  absl::Status OpenReadDbLocked();  // opens read_db_ on first use; REQUIRES read_mu_ held

  const ServiceContext* ctx_;
  const EvaluationServiceOptions options_;

  std::mutex mu_;
  std::condition_variable changed_;                   // a job finished
  std::map<std::string, std::shared_ptr<Job>> jobs_;  // run id -> the latest job of that run
  std::vector<std::thread> finished_;                 // workers done, to join
  std::map<std::string, std::thread> workers_;        // run id -> its running worker
  bool shutting_down_ = false;

  // Reads (the runner writes through its own connection; WAL: readers do not wait).
  std::mutex read_mu_;
  std::unique_ptr<store::Database> read_db_;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_EVALUATION_SERVICE_H_
