// SessionManager: the engine sessions a server holds for its principals, and the scheduler that
// advances their Generate calls together (continuous batching). No gRPC here: the Engine
// service (server/engine_service.h) is a thin adapter over it.
//
// Sessions. Each session is an engine::Session on a loaded model, owned by one principal, with
// default sampling, an idle timeout and the logits f32 [V] after its last token. For any other
// principal a session or snapshot does not exist: NOT_FOUND with the same message as an unknown
// id. One operation at a time per session: a call that needs the state while another one is
// working on it (an Append, a Generate, a Fork, a Snapshot) waits up to 1 s for it, then gets
// FAILED_PRECONDITION ("session busy"); the wait covers a client that cancels a Generate and
// calls again at once. GetSession without the state always answers.
//
// Continuous batching. Generate() validates and queues a GenerateJob; one scheduler thread runs
// steps: each step admits the queued jobs, drops the finished / cancelled ones, and for each
// model advances every runnable job by one token with ONE engine::DecodeBatch. A job samples
// with its session's own generator, so the tokens do not depend on which other sessions share
// the step. A job whose sink is full (a slow reader) sits out steps until the sink drains and
// calls Wake(); other jobs continue.
//
// Snapshots are stored in the `snapshots` table (store/migrations.cc, v2): the `state` blob is
// a small container (magic "TLSV", version 1, then the engine snapshot bytes, then the logits
// after the last token, so that Generate can continue right after Restore); `checksum` is
// FNV-1a 64 over the whole blob. Snapshot() returns only after its transaction committed.
//
// Limits (ServiceLimits): open sessions per principal (RESOURCE_EXHAUSTED), tokens in flight
// per principal (sum of max_tokens of running Generates; RESOURCE_EXHAUSTED), tokens per Append
// and per Generate (INVALID_ARGUMENT). A reaper thread evicts sessions idle longer than their
// timeout (a running Generate keeps a session alive); with keep_snapshot_on_evict the state is
// saved as a snapshot first. The owner asking for an evicted session gets NOT_FOUND naming the
// eviction and the snapshot id; ListSessions reports the evictions (the last 4096, in memory).
//
// Thread-safe. Shutdown() stops both threads and finishes every job (UNAVAILABLE); the
// destructor calls it. Not copyable.
#ifndef TAPELOOP_SERVER_SESSION_MANAGER_H_
#define TAPELOOP_SERVER_SESSION_MANAGER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tokenizer.h"
#include "engine/session/sampling.h"
#include "engine/session/session.h"
#include "server/model_registry.h"
#include "server/service_context.h"
#include "store/database.h"

namespace tapeloop::server {

using Clock = std::chrono::steady_clock;

struct SessionOptions {
  std::string model;
  engine::SamplingParams sampling;   // defaults for Generate (stop_tokens unused)
  std::optional<uint64_t> seed;      // seeds (or, on Restore, reseeds) the generator
  int64_t idle_timeout_seconds = 0;  // 0: limits.default_idle_timeout
  bool keep_snapshot_on_evict = false;
};

struct SessionInfo {
  std::string id;
  std::string model;
  int64_t position = 0;
  int64_t state_bytes = 0;
  int64_t idle_timeout_seconds = 0;
  bool keep_snapshot_on_evict = false;
  engine::SamplingParams sampling;
  bool generating = false;
  std::string state;  // engine snapshot bytes, when asked for
};

struct EvictionRecord {
  std::string session_id;
  std::string principal;
  std::string model;
  int64_t position = 0;
  int64_t evicted_unix_ms = 0;
  std::string snapshot_id;  // "" without keep_snapshot_on_evict (or when saving failed)
};

struct AppendResult {
  int64_t position = 0;
  int64_t appended = 0;
  std::vector<std::pair<int32_t, float>> top;  // (id, logit), logit descending
};

struct SnapshotResult {
  std::string snapshot_id;
  int64_t position = 0;
  int64_t size_bytes = 0;
};

enum class FinishReason { kStopToken, kMaxTokens, kCancelled };

// Where a Generate's output goes. Called from the scheduler thread only; OnTokens any number
// of times, then OnFinish exactly once (nothing after it).
class GenerateSink {
 public:
  virtual ~GenerateSink() = default;
  // `ids` were just generated and are in the session; `position` is the session's position.
  virtual void OnTokens(std::span<const int32_t> ids, int64_t position) = 0;
  // OK with a reason when generation ended normally (kCancelled: the session was closed or
  // evicted meanwhile); an error status when the call must fail (CANCELLED after Cancelled(),
  // UNAVAILABLE at shutdown, an engine error).
  virtual void OnFinish(const absl::Status& status, FinishReason reason, int64_t position) = 0;
  // True once the consumer is gone (client cancel / deadline); the job is dropped at the next
  // step. Call SessionManager::Wake() when it becomes true.
  virtual bool Cancelled() = 0;
  // True while the consumer cannot take more tokens; the job sits out steps meanwhile. Call
  // SessionManager::Wake() when it becomes false.
  virtual bool Full() = 0;
};

struct GenerateParams {
  int64_t max_tokens = 0;
  std::vector<int32_t> stop_tokens;
  std::optional<engine::SamplingParams> sampling;  // else the session's default
  std::optional<uint64_t> seed;                    // reseeds the generator first
};

struct SchedulerStats {
  int64_t steps = 0;
  int64_t max_batch = 0;
  int64_t tokens_generated = 0;
  int64_t open_sessions = 0;
  int64_t active_streams = 0;
  int64_t evicted_sessions = 0;
};

class SessionManager {
 public:
  // `ctx` (its models registry and limits) must outlive the manager. Opens a database
  // connection on ctx->db_path (UNAVAILABLE / FAILED_PRECONDITION as store::Database::Open) and
  // starts the scheduler and reaper threads.
  static absl::StatusOr<std::unique_ptr<SessionManager>> Create(const ServiceContext* ctx);
  ~SessionManager();
  SessionManager(const SessionManager&) = delete;
  SessionManager& operator=(const SessionManager&) = delete;

  // Errors as documented on the Engine RPCs (proto/tapeloop/v1/engine.proto, docs/api.md).
  absl::StatusOr<SessionInfo> CreateSession(const std::string& principal,
                                            const SessionOptions& options);
  // `tokens` are checked against the model's vocabulary (INVALID_ARGUMENT naming the index).
  absl::StatusOr<AppendResult> Append(const std::string& principal, const std::string& id,
                                      std::span<const int32_t> tokens, int top_k_logits);
  // Text through the model's tokenizer.json: INVALID_ARGUMENT naming `text` for invalid UTF-8,
  // FAILED_PRECONDITION when the model has no tokenizer.
  absl::StatusOr<AppendResult> AppendText(const std::string& principal, const std::string& id,
                                          const std::string& text, int top_k_logits);
  // Validates and queues a generation; on OK the sink receives its output (including a "session
  // busy" FAILED_PRECONDITION when the session stays busy for the grace period). On error the
  // sink is never called.
  absl::Status Generate(const std::string& principal, const std::string& id,
                        const GenerateParams& params, std::shared_ptr<GenerateSink> sink);
  absl::StatusOr<SessionInfo> Fork(const std::string& principal, const std::string& id);
  absl::StatusOr<SnapshotResult> Snapshot(const std::string& principal, const std::string& id);
  absl::StatusOr<SessionInfo> Restore(const std::string& principal, const std::string& snapshot_id,
                                      const SessionOptions& options);
  absl::StatusOr<SessionInfo> GetSession(const std::string& principal, const std::string& id,
                                         bool include_state);
  absl::Status CloseSession(const std::string& principal, const std::string& id);
  // The principal's open sessions (by id) and its evictions (oldest first).
  std::vector<SessionInfo> ListSessions(const std::string& principal);
  std::vector<EvictionRecord> ListEvicted(const std::string& principal);

  // The tokenizer of a loaded model's directory, or nullptr when it has none.
  std::shared_ptr<const Tokenizer> TokenizerFor(const LoadedModel& model);

  // Evicts every session idle longer than its timeout at `now` (the reaper calls it with
  // Clock::now(); tests pass a later time). Returns the number evicted.
  int EvictIdle(Clock::time_point now);

  // Wakes the scheduler (a sink became non-full or cancelled).
  void Wake();
  SchedulerStats stats();

  // Stops the scheduler and reaper; every queued or running job finishes with UNAVAILABLE.
  // Later calls fail with UNAVAILABLE. Idempotent.
  void Shutdown();

 private:
  struct Entry;
  struct Job;
  explicit SessionManager(const ServiceContext* ctx);

  // The session if `principal` owns it: NOT_FOUND otherwise (evicted ones say so to the owner).
  absl::StatusOr<std::shared_ptr<Entry>> Find(const std::string& principal, const std::string& id);
  // Takes the session for an operation (FAILED_PRECONDITION "session busy" if taken).
  absl::StatusOr<std::shared_ptr<Entry>> Acquire(const std::string& principal,
                                                 const std::string& id);
  void Release(Entry* entry);
  absl::StatusOr<std::shared_ptr<Entry>> NewEntry(const std::string& principal,
                                                  std::shared_ptr<const LoadedModel> model,
                                                  const SessionOptions& options);
  absl::Status Register(const std::shared_ptr<Entry>& entry);
  absl::Status CheckOpen();
  SessionInfo Info(Entry& entry, bool include_state);
  absl::StatusOr<SnapshotResult> WriteSnapshot(Entry& entry);
  void SchedulerLoop();
  void ReaperLoop();
  void Step(std::vector<std::shared_ptr<Job>>& active);
  void FinishJob(Job& job, const absl::Status& status, FinishReason reason);

  const ServiceContext* ctx_;
  std::unique_ptr<store::Database> db_;
  std::mutex db_mu_;

  std::mutex mu_;  // guards everything below
  std::map<std::string, std::shared_ptr<Entry>> sessions_;
  std::map<std::string, int> sessions_per_principal_;
  std::map<std::string, int64_t> tokens_in_flight_;
  std::deque<EvictionRecord> evicted_;
  std::map<std::string, std::shared_ptr<const Tokenizer>> tokenizers_;  // by model dir
  std::vector<std::shared_ptr<Job>> queued_;
  bool wake_ = false;
  bool shutdown_ = false;
  std::condition_variable scheduler_cv_;
  std::condition_variable entry_cv_;  // a session became free
  std::condition_variable reaper_cv_;
  SchedulerStats stats_;

  std::thread scheduler_;
  std::thread reaper_;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_SESSION_MANAGER_H_
