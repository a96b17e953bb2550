// tapeloop.v1.Agent: agent episodes run server-side and streamed (proto/tapeloop/v1/agent.proto).
//
// RunEpisode validates the request in the reaction, then plays the episode on a worker thread
// of its own through agents::RunEpisodes (the same loop, spec and policies as `tapeloop run`:
// episode `index` of (task, mode, length, seed) is agents::MakeEpisodeSpec's), or for task
// code_debug through eval::PlayCodeDebugGames (the model) or the task's oracle, with the
// instance, score and record of `tapeloop run --task code_debug`. The loop's
// event callback pushes events into a bounded per-call queue that the write reactor drains one
// message at a time (a message packs whatever queued up meanwhile); when the queue is full the
// episode waits, so a slow client never grows memory without bound. Cancelling the call (or
// its deadline) sets the episode's cancel flag, which the loop checks every step. A finished,
// not cancelled, episode is written to the `episodes` table in a transaction BEFORE its
// `finished` event is queued: a client that saw `finished` can GetEpisode it, also after a
// restart.
//
// Limits: at most AgentServiceOptions::max_concurrent_episodes episodes run at once
// (RESOURCE_EXHAUSTED beyond); lengths up to ServiceLimits::max_episode_length.
//
// Thread safety: the service is called by gRPC from many threads; everything shared is
// guarded. Shutdown() cancels every running episode and waits until their worker threads are
// gone; the server calls it before destroying the service (the destructor calls it too).
#ifndef TAPELOOP_SERVER_AGENT_SERVICE_H_
#define TAPELOOP_SERVER_AGENT_SERVICE_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/service_context.h"
#include "store/database.h"
#include "tapeloop/v1/agent.grpc.pb.h"

namespace tapeloop::server {

struct AgentServiceOptions {
  // Episodes running at once over the whole server (each holds one worker thread).
  int max_concurrent_episodes = 4;
  // Events queued per call before the episode waits for the client.
  size_t max_queued_events = 4096;
  // Events packed into one RunEpisodeResponse at most.
  size_t max_events_per_message = 512;
};

class EpisodeCall;  // one RunEpisode call (agent_service.cc)

class AgentService final : public tapeloop::v1::Agent::CallbackService {
 public:
  // `ctx` (and everything it points to) must outlive the service.
  explicit AgentService(const ServiceContext* ctx, AgentServiceOptions options = {});
  ~AgentService() override;
  AgentService(const AgentService&) = delete;
  AgentService& operator=(const AgentService&) = delete;

  grpc::ServerWriteReactor<tapeloop::v1::RunEpisodeResponse>* RunEpisode(
      grpc::CallbackServerContext* context,
      const tapeloop::v1::RunEpisodeRequest* request) override;
  grpc::ServerUnaryReactor* GetEpisode(grpc::CallbackServerContext* context,
                                       const tapeloop::v1::GetEpisodeRequest* request,
                                       tapeloop::v1::GetEpisodeResponse* response) override;
  grpc::ServerUnaryReactor* ListEpisodes(grpc::CallbackServerContext* context,
                                         const tapeloop::v1::ListEpisodesRequest* request,
                                         tapeloop::v1::ListEpisodesResponse* response) override;

  // Refuses new episodes (UNAVAILABLE), cancels the running ones and returns once their
  // worker threads have finished (promptly: the loop checks the flag every step). Idempotent.
  void Shutdown();

  // Waits until no episode runs (their worker threads are done with the service); false
  // if `timeout` passed first. For tests and monitoring.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Episodes running now.
  int running_episodes();

 private:
  friend class EpisodeCall;

  // Called by a call's worker thread once it will not touch the service again.
  void Release(EpisodeCall* call);
  void ReapLocked();  // joins released worker threads; REQUIRES mu_ held
  // Stores a finished episode in one transaction (write_db_, under write_mu_); `mode` is the
  // checked mode's name (the request's may be empty: its task's default).
  absl::Status StoreEpisode(const std::string& id, const std::string& principal,
                            const tapeloop::v1::RunEpisodeRequest& request, const std::string& mode,
                            bool correct, const std::string& record_json);
  // Opens *db on first use. REQUIRES the mutex guarding *db held.
  absl::StatusOr<store::Database*> OpenDb(std::unique_ptr<store::Database>* db);

  const ServiceContext* ctx_;
  const AgentServiceOptions options_;

  std::mutex mu_;
  std::condition_variable idle_;
  std::map<EpisodeCall*, std::thread> running_;  // each call's worker
  std::vector<std::thread> finished_;            // released workers, to join
  bool shutting_down_ = false;

  // Two connections: episodes are written by workers, read by unary calls (WAL: readers do
  // not wait for a writer).
  std::mutex write_mu_;
  std::unique_ptr<store::Database> write_db_;
  std::mutex read_mu_;
  std::unique_ptr<store::Database> read_db_;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_AGENT_SERVICE_H_
