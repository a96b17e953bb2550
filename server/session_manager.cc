#include "server/session_manager.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace tapeloop::server {

namespace {

constexpr char kContainerMagic[4] = {'T', 'L', 'S', 'V'};
constexpr uint32_t kContainerVersion = 1;
constexpr size_t kMaxEvictionRecords = 4096;
constexpr int kMaxTopLogits = 64;
// How long a call waits for a busy session before FAILED_PRECONDITION: long enough to cover a
// client that cancels a Generate and calls again at once (the server learns of the cancel a
// little after the client), short enough that a real conflict is reported promptly.
constexpr auto kBusyGrace = std::chrono::milliseconds(1000);

absl::Status Busy(const std::string& quoted_id, bool generating) {
  return absl::FailedPreconditionError(absl::StrCat(
      "session ", quoted_id,
      " busy: ", generating ? "a Generate is running on it" : "another call is using it"));
}

// Ids come from clients: quote at most this much of one in a message.
std::string Quote(const std::string& id) {
  return absl::StrCat("'", id.size() > 80 ? id.substr(0, 80) + "..." : id, "'");
}

absl::Status SessionNotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("session ", Quote(id), " not found"));
}
absl::Status SnapshotNotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("snapshot ", Quote(id), " not found"));
}

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <typename T>
bool Get(const std::string& in, size_t* at, T* v) {
  if (in.size() - *at < sizeof(T) || *at > in.size()) return false;
  std::memcpy(v, in.data() + *at, sizeof(T));
  *at += sizeof(T);
  return true;
}

// The `state` blob of a snapshots row: magic, version, engine snapshot, logits after the last
// token (little-endian host layout, as the engine snapshot itself).
std::string EncodeContainer(const std::string& engine_bytes, const std::vector<float>& logits) {
  std::string out(kContainerMagic, sizeof kContainerMagic);
  Put<uint32_t>(&out, kContainerVersion);
  Put<uint64_t>(&out, engine_bytes.size());
  out += engine_bytes;
  Put<uint64_t>(&out, logits.size());
  out.append(reinterpret_cast<const char*>(logits.data()), logits.size() * sizeof(float));
  return out;
}

absl::Status DecodeContainer(const std::string& blob, std::string* engine_bytes,
                             std::vector<float>* logits) {
  auto bad = [](const char* what) {
    return absl::DataLossError(absl::StrCat("snapshot: malformed state (", what, ")"));
  };
  if (blob.size() < 4 || std::memcmp(blob.data(), kContainerMagic, 4) != 0) return bad("magic");
  size_t at = 4;
  uint32_t version;
  uint64_t n;
  if (!Get(blob, &at, &version) || version != kContainerVersion) return bad("version");
  if (!Get(blob, &at, &n) || n > blob.size() - at) return bad("engine bytes");
  *engine_bytes = blob.substr(at, n);
  at += n;
  if (!Get(blob, &at, &n) || n > (blob.size() - at) / sizeof(float)) return bad("logits");
  logits->resize(n);
  if (n > 0) std::memcpy(logits->data(), blob.data() + at, n * sizeof(float));
  if (at + n * sizeof(float) != blob.size()) return bad("trailing bytes");
  return absl::OkStatus();
}

}  // namespace

struct SessionManager::Entry {
  std::string id;
  std::string principal;
  std::shared_ptr<const LoadedModel> model;
  std::unique_ptr<engine::Session> session;  // touched only by the holder of `busy`
  std::vector<float> logits;                 // f32 [V] after the last token; empty at 0
  engine::SamplingParams sampling;
  int64_t idle_timeout_seconds = 0;
  bool keep_snapshot_on_evict = false;
  // Guarded by SessionManager::mu_.
  bool busy = false;
  bool generating = false;
  bool closed = false;
  Clock::time_point last_used;
  std::shared_ptr<Job> job;  // the running (or queued) Generate
  // Mirrors for GetSession while busy.
  std::atomic<int64_t> position{0};
  std::atomic<int64_t> state_bytes{0};
};

struct SessionManager::Job {
  std::shared_ptr<Entry> entry;
  std::shared_ptr<GenerateSink> sink;
  engine::SamplingParams sampling;  // with stop_tokens
  std::optional<uint64_t> seed;
  int64_t max_tokens = 0;
  int64_t generated = 0;
  bool claimed = false;             // holds entry->busy (guarded by mu_)
  Clock::time_point busy_deadline;  // an unclaimed job fails with "busy" after this
  bool done = false;                // scheduler thread only
};

absl::StatusOr<std::unique_ptr<SessionManager>> SessionManager::Create(const ServiceContext* ctx) {
  std::unique_ptr<SessionManager> m(new SessionManager(ctx));
  ASSIGN_OR_RETURN(m->db_, store::Database::Open(ctx->db_path));
  m->scheduler_ = std::thread([p = m.get()] { p->SchedulerLoop(); });
  m->reaper_ = std::thread([p = m.get()] { p->ReaperLoop(); });
  return m;
}

SessionManager::SessionManager(const ServiceContext* ctx) : ctx_(ctx) {}

SessionManager::~SessionManager() { Shutdown(); }

void SessionManager::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) return;
    shutdown_ = true;
  }
  scheduler_cv_.notify_all();
  reaper_cv_.notify_all();
  entry_cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
  if (reaper_.joinable()) reaper_.join();
}

absl::Status SessionManager::CheckOpen() {
  if (shutdown_) return absl::UnavailableError("server is shutting down");
  return absl::OkStatus();
}

void SessionManager::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  scheduler_cv_.notify_one();
}

SchedulerStats SessionManager::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  SchedulerStats s = stats_;
  s.open_sessions = static_cast<int64_t>(sessions_.size());
  return s;
}

std::shared_ptr<const Tokenizer> SessionManager::TokenizerFor(const LoadedModel& model) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = tokenizers_.find(model.dir); it != tokenizers_.end()) return it->second;
  }
  std::shared_ptr<const Tokenizer> tok;
  const std::string path = (std::filesystem::path(model.dir) / "tokenizer.json").string();
  if (std::filesystem::exists(path)) {
    auto loaded = Tokenizer::Load(path);
    if (loaded.ok()) tok = std::make_shared<const Tokenizer>(*std::move(loaded));
  }
  std::lock_guard<std::mutex> lock(mu_);
  return tokenizers_.emplace(model.dir, tok).first->second;
}

absl::StatusOr<std::shared_ptr<SessionManager::Entry>> SessionManager::Find(
    const std::string& principal, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->principal != principal) {
    for (const EvictionRecord& r : evicted_) {
      if (r.session_id == id && r.principal == principal) {
        return absl::NotFoundError(absl::StrCat(
            "session ", Quote(id), " not found: it was evicted after being idle",
            r.snapshot_id.empty()
                ? " (no snapshot was kept)"
                : absl::StrCat("; its state is snapshot ", r.snapshot_id, " (Restore it)")));
      }
    }
    return SessionNotFound(id);
  }
  it->second->last_used = Clock::now();
  return it->second;
}

absl::StatusOr<std::shared_ptr<SessionManager::Entry>> SessionManager::Acquire(
    const std::string& principal, const std::string& id) {
  ASSIGN_OR_RETURN(auto entry, Find(principal, id));
  std::unique_lock<std::mutex> lock(mu_);
  entry_cv_.wait_for(lock, kBusyGrace, [&] { return !entry->busy || entry->closed || shutdown_; });
  RETURN_IF_ERROR(CheckOpen());
  if (entry->closed) return SessionNotFound(id);
  if (entry->busy) return Busy(Quote(id), entry->generating);
  entry->busy = true;
  return entry;
}

void SessionManager::Release(Entry* entry) {
  entry->position = entry->session->position();
  entry->state_bytes = entry->session->SizeBytes();
  {
    std::lock_guard<std::mutex> lock(mu_);
    entry->busy = false;
    entry->last_used = Clock::now();
    if (!queued_.empty()) wake_ = true;  // a Generate may wait for this session
  }
  entry_cv_.notify_all();
  scheduler_cv_.notify_one();
}

absl::StatusOr<std::shared_ptr<SessionManager::Entry>> SessionManager::NewEntry(
    const std::string& principal, std::shared_ptr<const LoadedModel> model,
    const SessionOptions& options) {
  RETURN_IF_ERROR(engine::ValidateSamplingParams(options.sampling));
  const int64_t max_idle = ctx_->limits.max_idle_timeout.count();
  if (options.idle_timeout_seconds < 0 || options.idle_timeout_seconds > max_idle) {
    return absl::InvalidArgumentError(absl::StrCat(
        "idle_timeout_seconds: ", options.idle_timeout_seconds, " is outside [0, ", max_idle, "]"));
  }
  auto entry = std::make_shared<Entry>();
  entry->id = NewId("ses");
  entry->principal = principal;
  entry->session = std::make_unique<engine::Session>(model->model.get(), options.seed.value_or(0));
  entry->model = std::move(model);
  entry->sampling = options.sampling;
  entry->sampling.stop_tokens.clear();
  entry->idle_timeout_seconds = options.idle_timeout_seconds > 0
                                    ? options.idle_timeout_seconds
                                    : ctx_->limits.default_idle_timeout.count();
  entry->keep_snapshot_on_evict = options.keep_snapshot_on_evict;
  entry->last_used = Clock::now();
  entry->state_bytes = entry->session->SizeBytes();
  return entry;
}

absl::Status SessionManager::Register(const std::shared_ptr<Entry>& entry) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  int& open = sessions_per_principal_[entry->principal];
  if (open >= ctx_->limits.max_sessions_per_principal) {
    return absl::ResourceExhaustedError(
        absl::StrCat("principal '", entry->principal, "' has ", open,
                     " open sessions, the limit (close or snapshot some first)"));
  }
  ++open;
  entry->position = entry->session->position();
  entry->state_bytes = entry->session->SizeBytes();
  entry->last_used = Clock::now();
  sessions_.emplace(entry->id, entry);
  return absl::OkStatus();
}

SessionInfo SessionManager::Info(Entry& entry, bool include_state) {
  SessionInfo info;
  info.id = entry.id;
  info.model = entry.model->name;
  info.position = entry.position;
  info.state_bytes = entry.state_bytes;
  info.idle_timeout_seconds = entry.idle_timeout_seconds;
  info.keep_snapshot_on_evict = entry.keep_snapshot_on_evict;
  info.sampling = entry.sampling;
  if (include_state) info.state = entry.session->Snapshot();
  return info;
}

absl::StatusOr<SessionInfo> SessionManager::CreateSession(const std::string& principal,
                                                          const SessionOptions& options) {
  RETURN_IF_ERROR(ValidateModelName(options.model));
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckOpen());
  }
  ASSIGN_OR_RETURN(auto model, ctx_->models->Load(options.model));
  ASSIGN_OR_RETURN(auto entry, NewEntry(principal, std::move(model), options));
  RETURN_IF_ERROR(Register(entry));
  return Info(*entry, false);
}

absl::StatusOr<AppendResult> SessionManager::Append(const std::string& principal,
                                                    const std::string& id,
                                                    std::span<const int32_t> tokens,
                                                    int top_k_logits) {
  ASSIGN_OR_RETURN(auto found, Find(principal, id));
  if (tokens.empty()) {
    return absl::InvalidArgumentError("tokens: Append needs at least one token (or text)");
  }
  if (static_cast<int64_t>(tokens.size()) > ctx_->limits.max_tokens_per_append) {
    return absl::InvalidArgumentError(absl::StrCat("tokens: ", tokens.size(),
                                                   " tokens in one Append, the limit is ",
                                                   ctx_->limits.max_tokens_per_append));
  }
  if (top_k_logits < 0 || top_k_logits > kMaxTopLogits) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k_logits: ", top_k_logits, " is outside [0, ", kMaxTopLogits, "]"));
  }
  const int64_t V = found->model->model->config().vocab_size;
  if (int64_t i = engine::FirstIdOutsideVocabulary(tokens, V); i >= 0) {
    return absl::InvalidArgumentError(absl::StrCat("tokens.ids[", i, "]: ", tokens[i],
                                                   " is outside the vocabulary [0, ", V, ")"));
  }
  ASSIGN_OR_RETURN(auto entry, Acquire(principal, id));
  auto logits = entry->session->Append(tokens);
  if (!logits.ok()) {
    Release(entry.get());
    return logits.status();
  }
  entry->logits = *std::move(logits);
  AppendResult result;
  result.position = entry->session->position();
  result.appended = static_cast<int64_t>(tokens.size());
  if (top_k_logits > 0) {
    const auto& l = entry->logits;
    std::vector<int32_t> ids(l.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
    const int k = std::min<int>(top_k_logits, static_cast<int>(ids.size()));
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                      [&](int32_t a, int32_t b) { return l[a] != l[b] ? l[a] > l[b] : a < b; });
    for (int i = 0; i < k; ++i) result.top.emplace_back(ids[i], l[ids[i]]);
  }
  Release(entry.get());
  return result;
}

absl::StatusOr<AppendResult> SessionManager::AppendText(const std::string& principal,
                                                        const std::string& id,
                                                        const std::string& text, int top_k_logits) {
  ASSIGN_OR_RETURN(auto entry, Find(principal, id));
  if (text.empty()) return absl::InvalidArgumentError("text: Append needs non-empty text");
  if (size_t bad = InvalidUtf8At(text); bad != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("text: invalid UTF-8 at byte offset ", bad));
  }
  auto tokenizer = TokenizerFor(*entry->model);
  if (tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("text: model '", entry->model->name,
                                                      "' has no tokenizer.json; append token ids"));
  }
  std::vector<TokenId> ids = tokenizer->Encode(text);
  return Append(principal, id, ids, top_k_logits);
}

absl::Status SessionManager::Generate(const std::string& principal, const std::string& id,
                                      const GenerateParams& params,
                                      std::shared_ptr<GenerateSink> sink) {
  ASSIGN_OR_RETURN(auto entry, Find(principal, id));
  if (params.max_tokens < 1 || params.max_tokens > ctx_->limits.max_tokens_per_generate) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens: ", params.max_tokens,
                                                   " is outside [1, ",
                                                   ctx_->limits.max_tokens_per_generate, "]"));
  }
  const int64_t V = entry->model->model->config().vocab_size;
  if (int64_t i = engine::FirstIdOutsideVocabulary(params.stop_tokens, V); i >= 0) {
    return absl::InvalidArgumentError(absl::StrCat("stop_token_ids[", i, "]: ",
                                                   params.stop_tokens[i],
                                                   " is outside the vocabulary [0, ", V, ")"));
  }
  auto job = std::make_shared<Job>();
  job->entry = entry;
  job->sink = std::move(sink);
  job->sampling = params.sampling.value_or(entry->sampling);
  job->sampling.stop_tokens = params.stop_tokens;
  job->seed = params.seed;
  job->max_tokens = params.max_tokens;
  RETURN_IF_ERROR(engine::ValidateSamplingParams(job->sampling));
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckOpen());
    if (entry->closed) return SessionNotFound(id);
    if (!entry->busy && entry->logits.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session ", Quote(id), " has no token yet: Append at least one before Generate"));
    }
    int64_t& in_flight = tokens_in_flight_[principal];
    if (in_flight + params.max_tokens > ctx_->limits.max_tokens_in_flight_per_principal) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "principal '", principal, "' has ", in_flight, " tokens being generated; max_tokens ",
          params.max_tokens, " would exceed the limit ",
          ctx_->limits.max_tokens_in_flight_per_principal));
    }
    in_flight += params.max_tokens;
    if (!entry->busy) {
      entry->busy = true;
      entry->generating = true;
      entry->job = job;
      job->claimed = true;
    } else {
      job->busy_deadline = Clock::now() + kBusyGrace;  // the scheduler claims it or fails it
    }
    queued_.push_back(job);
    ++stats_.active_streams;
    wake_ = true;
  }
  scheduler_cv_.notify_one();
  return absl::OkStatus();
}

absl::StatusOr<SessionInfo> SessionManager::Fork(const std::string& principal,
                                                 const std::string& id) {
  ASSIGN_OR_RETURN(auto src, Acquire(principal, id));
  auto fork = std::make_shared<Entry>();
  fork->id = NewId("ses");
  fork->principal = principal;
  fork->model = src->model;
  fork->session = src->session->Fork();
  fork->logits = src->logits;
  fork->sampling = src->sampling;
  fork->idle_timeout_seconds = src->idle_timeout_seconds;
  fork->keep_snapshot_on_evict = src->keep_snapshot_on_evict;
  Release(src.get());
  RETURN_IF_ERROR(Register(fork));
  return Info(*fork, false);
}

absl::StatusOr<SnapshotResult> SessionManager::WriteSnapshot(Entry& entry) {
  const std::string blob = EncodeContainer(entry.session->Snapshot(), entry.logits);
  const uint64_t checksum = engine::Fnv1a64(blob.data(), blob.size());
  SnapshotResult result;
  result.snapshot_id = NewId("snap");
  result.position = entry.session->position();
  result.size_bytes = static_cast<int64_t>(blob.size());
  std::lock_guard<std::mutex> lock(db_mu_);
  store::Transaction txn(db_.get());
  RETURN_IF_ERROR(txn.status());
  ASSIGN_OR_RETURN(auto insert, db_->Prepare("INSERT INTO snapshots (id, principal, model, "
                                             "model_fingerprint, position, state, checksum, "
                                             "created_unix_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  insert.Bind(1, result.snapshot_id)
      .Bind(2, entry.principal)
      .Bind(3, entry.model->name)
      .Bind(4, Hex64(entry.model->model->fingerprint()))
      .Bind(5, result.position)
      .BindBlob(6, blob)
      .Bind(7, static_cast<int64_t>(checksum))
      .Bind(8, UnixMs());
  RETURN_IF_ERROR(insert.Run());
  RETURN_IF_ERROR(txn.Commit());
  return result;
}

absl::StatusOr<SnapshotResult> SessionManager::Snapshot(const std::string& principal,
                                                        const std::string& id) {
  ASSIGN_OR_RETURN(auto entry, Acquire(principal, id));
  auto result = WriteSnapshot(*entry);
  Release(entry.get());
  return result;
}

absl::StatusOr<SessionInfo> SessionManager::Restore(const std::string& principal,
                                                    const std::string& snapshot_id,
                                                    const SessionOptions& options) {
  std::string model_name, fingerprint, blob;
  int64_t checksum = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckOpen());
  }
  {
    std::lock_guard<std::mutex> lock(db_mu_);
    ASSIGN_OR_RETURN(auto select, db_->Prepare("SELECT principal, model, model_fingerprint, "
                                               "state, checksum FROM snapshots WHERE id = ?"));
    select.Bind(1, snapshot_id);
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row || select.ColumnText(0) != principal) return SnapshotNotFound(snapshot_id);
    model_name = select.ColumnText(1);
    fingerprint = select.ColumnText(2);
    blob = select.ColumnBlob(3);
    checksum = select.ColumnInt(4);
  }
  if (static_cast<int64_t>(engine::Fnv1a64(blob.data(), blob.size())) != checksum) {
    return absl::DataLossError(absl::StrCat("snapshot ", Quote(snapshot_id),
                                            ": checksum mismatch (stored state is corrupt)"));
  }
  ASSIGN_OR_RETURN(auto model, ctx_->models->Load(model_name));
  if (Hex64(model->model->fingerprint()) != fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshot ", Quote(snapshot_id), " was taken with another version of model '", model_name,
        "' (fingerprint ", fingerprint, ", loaded ", Hex64(model->model->fingerprint()), ")"));
  }
  std::string engine_bytes;
  std::vector<float> logits;
  RETURN_IF_ERROR(DecodeContainer(blob, &engine_bytes, &logits));
  SessionOptions opts = options;
  opts.model = model_name;
  opts.seed.reset();
  ASSIGN_OR_RETURN(auto entry, NewEntry(principal, model, opts));
  RETURN_IF_ERROR(entry->session->Restore(engine_bytes));
  if (options.seed.has_value()) entry->session->Reseed(*options.seed);
  if (!logits.empty() && static_cast<int64_t>(logits.size()) != model->model->config().vocab_size) {
    return absl::DataLossError(absl::StrCat("snapshot ", Quote(snapshot_id), ": logits of ",
                                            logits.size(), " entries for a vocabulary of ",
                                            model->model->config().vocab_size));
  }
  entry->logits = std::move(logits);
  RETURN_IF_ERROR(Register(entry));
  return Info(*entry, false);
}

absl::StatusOr<SessionInfo> SessionManager::GetSession(const std::string& principal,
                                                       const std::string& id, bool include_state) {
  if (!include_state) {
    ASSIGN_OR_RETURN(auto entry, Find(principal, id));
    SessionInfo info = Info(*entry, false);
    std::lock_guard<std::mutex> lock(mu_);
    info.generating = entry->generating;
    return info;
  }
  ASSIGN_OR_RETURN(auto entry, Acquire(principal, id));
  SessionInfo info = Info(*entry, true);
  Release(entry.get());
  return info;
}

absl::Status SessionManager::CloseSession(const std::string& principal, const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckOpen());
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second->principal != principal) return SessionNotFound(id);
    it->second->closed = true;
    --sessions_per_principal_[principal];
    sessions_.erase(it);
    wake_ = true;
  }
  entry_cv_.notify_all();
  scheduler_cv_.notify_one();
  return absl::OkStatus();
}

std::vector<SessionInfo> SessionManager::ListSessions(const std::string& principal) {
  std::vector<std::shared_ptr<Entry>> mine;
  std::vector<bool> generating;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, e] : sessions_) {
      if (e->principal == principal) {
        mine.push_back(e);
        generating.push_back(e->generating);
      }
    }
  }
  std::vector<SessionInfo> out;
  for (size_t i = 0; i < mine.size(); ++i) {
    out.push_back(Info(*mine[i], false));
    out.back().generating = generating[i];
  }
  return out;
}

std::vector<EvictionRecord> SessionManager::ListEvicted(const std::string& principal) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<EvictionRecord> out;
  for (const EvictionRecord& r : evicted_) {
    if (r.principal == principal) out.push_back(r);
  }
  return out;
}

int SessionManager::EvictIdle(Clock::time_point now) {
  std::vector<std::shared_ptr<Entry>> victims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) return 0;
    for (const auto& [id, e] : sessions_) {
      if (!e->busy && now - e->last_used > std::chrono::seconds(e->idle_timeout_seconds)) {
        e->busy = true;  // nothing else touches it from now on
        victims.push_back(e);
      }
    }
  }
  for (const auto& e : victims) {
    EvictionRecord r;
    r.session_id = e->id;
    r.principal = e->principal;
    r.model = e->model->name;
    r.position = e->session->position();
    if (e->keep_snapshot_on_evict) {
      auto snap = WriteSnapshot(*e);
      if (snap.ok()) r.snapshot_id = snap->snapshot_id;
    }
    r.evicted_unix_ms = UnixMs();
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = sessions_.find(e->id); it != sessions_.end() && it->second == e) {
      sessions_.erase(it);
      --sessions_per_principal_[e->principal];
    }
    e->closed = true;
    evicted_.push_back(std::move(r));
    if (evicted_.size() > kMaxEvictionRecords) evicted_.pop_front();
    ++stats_.evicted_sessions;
  }
  if (!victims.empty()) entry_cv_.notify_all();
  return static_cast<int>(victims.size());
}

void SessionManager::ReaperLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!shutdown_) {
    reaper_cv_.wait_for(lock, std::chrono::milliseconds(250));
    if (shutdown_) break;
    lock.unlock();
    EvictIdle(Clock::now());
    lock.lock();
  }
}

void SessionManager::FinishJob(Job& job, const absl::Status& status, FinishReason reason) {
  job.done = true;
  Entry& e = *job.entry;
  if (job.claimed) {  // this thread holds the session until `busy` is cleared below
    e.position = e.session->position();
    e.state_bytes = e.session->SizeBytes();
  }
  const int64_t position = e.position;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tokens_in_flight_[e.principal] -= job.max_tokens;
    if (job.claimed) {
      e.busy = false;
      e.generating = false;
      e.last_used = Clock::now();
      if (e.job.get() == &job) e.job.reset();
    }
    --stats_.active_streams;
  }
  entry_cv_.notify_all();
  job.sink->OnFinish(status, reason, position);
}

void SessionManager::Step(std::vector<std::shared_ptr<Job>>& active) {
  // Admit queued jobs whose session is free (a job queued behind a cancelled one waits).
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = queued_.begin(); it != queued_.end();) {
      Job& job = **it;
      Entry& e = *job.entry;
      if (!job.claimed && !e.busy && !e.closed) {
        e.busy = true;
        e.generating = true;
        e.job = *it;
        job.claimed = true;
      }
      if (job.claimed || e.closed || job.sink->Cancelled() || Clock::now() >= job.busy_deadline) {
        active.push_back(*it);
        it = queued_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Drop jobs whose client left or whose session was closed; pick the runnable ones.
  std::map<const engine::Model*, std::vector<Job*>> groups;
  for (auto& job : active) {
    bool closed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed = job->entry->closed;
    }
    if (job->sink->Cancelled()) {
      FinishJob(*job, absl::CancelledError("Generate cancelled by the client"),
                FinishReason::kCancelled);
    } else if (closed) {
      FinishJob(*job, absl::OkStatus(), FinishReason::kCancelled);
    } else if (!job->claimed) {
      FinishJob(*job, Busy(Quote(job->entry->id), job->entry->generating),
                FinishReason::kCancelled);
    } else if (job->entry->logits.empty()) {
      FinishJob(*job,
                absl::FailedPreconditionError("session has no token yet: Append at least one"),
                FinishReason::kCancelled);
    } else if (!job->sink->Full()) {
      if (job->seed.has_value()) {
        job->entry->session->Reseed(*job->seed);
        job->seed.reset();
      }
      groups[job->entry->model->model.get()].push_back(job.get());
    }
  }
  for (auto& [model, jobs] : groups) {
    const size_t B = jobs.size();
    const int64_t V = model->config().vocab_size;
    std::vector<engine::Session*> sessions(B);
    std::vector<int32_t> tokens(B);
    for (size_t b = 0; b < B; ++b) {
      Entry& e = *jobs[b]->entry;
      sessions[b] = e.session.get();
      tokens[b] = engine::SampleToken(e.logits, jobs[b]->sampling, e.session->state()->rng());
    }
    auto logits = engine::DecodeBatch(sessions, tokens);
    if (!logits.ok()) {
      for (Job* job : jobs) FinishJob(*job, logits.status(), FinishReason::kCancelled);
      continue;
    }
    for (size_t b = 0; b < B; ++b) {
      Job& job = *jobs[b];
      Entry& e = *job.entry;
      e.logits.assign(logits->begin() + b * V, logits->begin() + (b + 1) * V);
      e.position = e.session->position();
      ++job.generated;
      job.sink->OnTokens(std::span<const int32_t>(&tokens[b], 1), e.session->position());
      const auto& stops = job.sampling.stop_tokens;
      if (std::find(stops.begin(), stops.end(), tokens[b]) != stops.end()) {
        FinishJob(job, absl::OkStatus(), FinishReason::kStopToken);
      } else if (job.generated >= job.max_tokens) {
        FinishJob(job, absl::OkStatus(), FinishReason::kMaxTokens);
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.steps;
    stats_.max_batch = std::max<int64_t>(stats_.max_batch, static_cast<int64_t>(B));
    stats_.tokens_generated += static_cast<int64_t>(B);
  }
  active.erase(std::remove_if(active.begin(), active.end(),
                              [](const std::shared_ptr<Job>& j) { return j->done; }),
               active.end());
}

void SessionManager::SchedulerLoop() {
  std::vector<std::shared_ptr<Job>> active;
  bool runnable = false;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto ready = [&] { return shutdown_ || wake_ || runnable; };
      // Jobs waiting for a busy session fail at their deadline unless woken before.
      std::optional<Clock::time_point> deadline;
      for (const auto& job : queued_) {
        if (!job->claimed && (!deadline || job->busy_deadline < *deadline)) {
          deadline = job->busy_deadline;
        }
      }
      if (deadline) {
        scheduler_cv_.wait_until(lock, *deadline, ready);
      } else {
        scheduler_cv_.wait(lock, ready);
      }
      wake_ = false;
      if (shutdown_) {
        for (auto& job : queued_) active.push_back(job);
        queued_.clear();
        break;
      }
    }
    Step(active);
    runnable = false;
    for (auto& job : active) {
      if (!job->sink->Full() || job->sink->Cancelled()) runnable = true;
    }
    // A queued job whose session this step released is admitted at the next step.
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& job : queued_) {
      if (!job->entry->busy || job->entry->closed || job->sink->Cancelled()) runnable = true;
    }
  }
  for (auto& job : active) {
    FinishJob(*job, absl::UnavailableError("server is shutting down"), FinishReason::kCancelled);
  }
}

}  // namespace tapeloop::server
