#include "server/engine_service.h"

#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/grpc_status.h"

namespace tapeloop::server {

namespace v1 = tapeloop::v1;

namespace {

// Tokens a stream may hold while its client does not read; the session sits out scheduler steps
// while the buffer is this full.
constexpr size_t kMaxBufferedTokens = 1024;

v1::GenerateFinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kStopToken:
      return v1::GENERATE_FINISH_REASON_STOP_TOKEN;
    case FinishReason::kMaxTokens:
      return v1::GENERATE_FINISH_REASON_MAX_TOKENS;
    case FinishReason::kCancelled:
      return v1::GENERATE_FINISH_REASON_CANCELLED;
  }
  return v1::GENERATE_FINISH_REASON_UNSPECIFIED;
}

absl::StatusOr<engine::SamplingParams> FromProto(const v1::EngineSampling& s) {
  engine::SamplingParams p;
  p.temperature = s.temperature();
  p.top_k = s.top_k();
  p.top_p = s.top_p() == 0.0f ? 1.0f : s.top_p();
  RETURN_IF_ERROR(engine::ValidateSamplingParams(p));  // names the field
  return p;
}

void ToProto(const engine::SamplingParams& p, v1::EngineSampling* s) {
  s->set_temperature(p.temperature);
  s->set_top_k(p.top_k);
  s->set_top_p(p.top_p);
}

void ToProto(const SessionInfo& info, v1::EngineSession* s) {
  s->set_session_id(info.id);
  s->set_model(info.model);
  s->set_position(info.position);
  s->set_state_bytes(info.state_bytes);
  s->set_idle_timeout_seconds(info.idle_timeout_seconds);
  s->set_keep_snapshot_on_evict(info.keep_snapshot_on_evict);
  ToProto(info.sampling, s->mutable_sampling());
  s->set_generating(info.generating);
  if (!info.state.empty()) s->set_state(info.state);
}

absl::StatusOr<SessionOptions> Options(const std::string& model, const v1::EngineSampling& s,
                                       int64_t idle_timeout_seconds, bool keep) {
  SessionOptions o;
  o.model = model;
  ASSIGN_OR_RETURN(o.sampling, FromProto(s));
  if (s.has_seed()) o.seed = s.seed();
  o.idle_timeout_seconds = idle_timeout_seconds;
  o.keep_snapshot_on_evict = keep;
  return o;
}

void ModelToProto(const ModelListing& m, v1::EngineModel* out) {
  out->set_name(m.name);
  out->set_arch(m.arch);
  out->set_loaded(m.loaded);
  out->set_num_params(m.num_params);
  out->set_error(m.error);
}

// One Generate stream: the scheduler's sink and the reactor's buffer. At most one write is
// outstanding; tokens that arrive meanwhile are coalesced into the next chunk.
class GenerateStream final : public GenerateSink {
 public:
  GenerateStream(SessionManager* manager, std::shared_ptr<const Tokenizer> tokenizer)
      : manager_(manager), tokenizer_(std::move(tokenizer)) {}

  void Attach(grpc::ServerWriteReactor<v1::GenerateChunk>* reactor) { reactor_ = reactor; }

  void OnTokens(std::span<const int32_t> ids, int64_t position) override {
    std::unique_lock<std::mutex> lock(mu_);
    pending_.insert(pending_.end(), ids.begin(), ids.end());
    position_ = position;
    Pump(lock);
  }
  void OnFinish(const absl::Status& status, FinishReason reason, int64_t position) override {
    std::unique_lock<std::mutex> lock(mu_);
    final_status_ = status;
    reason_ = reason;
    position_ = position;
    Pump(lock);
  }
  bool Cancelled() override { return cancelled_.load(); }
  bool Full() override {
    std::lock_guard<std::mutex> lock(mu_);
    return pending_.size() >= kMaxBufferedTokens;
  }

  // Reactor side.
  void WriteDone(bool ok) {
    std::unique_lock<std::mutex> lock(mu_);
    write_in_flight_ = false;
    if (!ok) cancelled_ = true;
    const bool was_full = pending_.size() >= kMaxBufferedTokens;
    Pump(lock);
    if (lock.owns_lock()) lock.unlock();
    if (was_full || !ok) manager_->Wake();
  }
  void Cancel() {
    cancelled_ = true;
    manager_->Wake();
  }

 private:
  // Starts the next write or the Finish, if one is due. Unlocks before calling the reactor.
  void Pump(std::unique_lock<std::mutex>& lock) {
    if (finished_ || write_in_flight_) return;
    auto* reactor = reactor_;
    if (final_status_.has_value() && (!final_status_->ok() || cancelled_)) {
      finished_ = true;
      grpc::Status status = final_status_->ok()
                                ? grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")
                                : ToGrpcStatus(*final_status_);
      lock.unlock();
      reactor->Finish(status);
      return;
    }
    if (final_written_) {
      finished_ = true;
      lock.unlock();
      reactor->Finish(grpc::Status::OK);
      return;
    }
    if (pending_.empty() && !final_status_.has_value()) return;
    chunk_.Clear();
    chunk_.mutable_token_ids()->Add(pending_.begin(), pending_.end());
    if (tokenizer_ != nullptr && !pending_.empty()) {
      auto text = tokenizer_->Decode(pending_);
      if (text.ok()) chunk_.set_text(*text);
    }
    pending_.clear();
    chunk_.set_position(position_);
    if (final_status_.has_value()) {
      chunk_.set_finish_reason(ToProto(*reason_));
      final_written_ = true;
    }
    write_in_flight_ = true;
    lock.unlock();
    reactor->StartWrite(&chunk_);
  }

  SessionManager* const manager_;
  const std::shared_ptr<const Tokenizer> tokenizer_;
  grpc::ServerWriteReactor<v1::GenerateChunk>* reactor_ = nullptr;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::vector<int32_t> pending_;
  int64_t position_ = 0;
  std::optional<absl::Status> final_status_;
  std::optional<FinishReason> reason_;
  bool write_in_flight_ = false;
  bool final_written_ = false;
  bool finished_ = false;
  v1::GenerateChunk chunk_;  // the chunk being written
};

class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateChunk> {
 public:
  GenerateReactor(std::shared_ptr<GenerateStream> stream, CallTracker* calls)
      : stream_(std::move(stream)), calls_(calls) {}
  void OnWriteDone(bool ok) override { stream_->WriteDone(ok); }
  void OnCancel() override { stream_->Cancel(); }
  void OnDone() override {
    calls_->Exit();
    delete this;
  }

 private:
  std::shared_ptr<GenerateStream> stream_;
  CallTracker* calls_;
};

// A stream that fails before it starts.
class FailedWriteReactor final : public grpc::ServerWriteReactor<v1::GenerateChunk> {
 public:
  FailedWriteReactor(const grpc::Status& status, CallTracker* calls) : calls_(calls) {
    Finish(status);
  }
  void OnDone() override {
    if (calls_ != nullptr) calls_->Exit();
    delete this;
  }

 private:
  CallTracker* calls_;
};

}  // namespace

EngineService::EngineService(const ServiceContext* ctx, int workers) : ctx_(ctx) {
  auto manager = SessionManager::Create(ctx);
  if (manager.ok()) {
    sessions_ = *std::move(manager);
  } else {
    init_status_ = absl::UnavailableError(
        absl::StrCat("engine service: cannot open the database: ", manager.status().message()));
  }
  for (int i = 0; i < std::max(1, workers); ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

EngineService::~EngineService() { Shutdown(); }

void EngineService::Shutdown() {
  if (sessions_ != nullptr) sessions_->Shutdown();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  std::lock_guard<std::mutex> lock(mu_);
  workers_.clear();
}

SchedulerStats EngineService::stats() {
  return sessions_ != nullptr ? sessions_->stats() : SchedulerStats{};
}

void EngineService::WorkerLoop() {
  for (;;) {
    std::function<void()> item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !work_.empty(); });
      if (work_.empty()) return;  // stopping, and everything queued has run
      item = std::move(work_.front());
      work_.pop_front();
    }
    item();
  }
}

grpc::ServerUnaryReactor* EngineService::Unary(grpc::CallbackServerContext* context,
                                               const google::protobuf::Message& request,
                                               std::function<absl::Status(const std::string&)> work,
                                               bool on_worker) {
  auto* reactor = context->DefaultReactor();
  CallTracker* calls = ctx_->calls;
  if (!calls->Enter()) {
    reactor->Finish(ShuttingDown());
    return reactor;
  }
  auto principal = Principal(*ctx_, *context, request);
  absl::Status early = principal.ok() ? init_status_ : principal.status();
  if (!early.ok()) {
    reactor->Finish(ToGrpcStatus(early));
    calls->Exit();
    return reactor;
  }
  auto run = [reactor, calls, work = std::move(work), p = *principal] {
    reactor->Finish(ToGrpcStatus(work(p)));
    calls->Exit();
  };
  if (!on_worker) {
    run();
    return reactor;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      work_.push_back(std::move(run));
      cv_.notify_one();
      return reactor;
    }
  }
  reactor->Finish(ShuttingDown());
  calls->Exit();
  return reactor;
}

grpc::ServerUnaryReactor* EngineService::ListModels(grpc::CallbackServerContext* context,
                                                    const v1::ListModelsRequest* request,
                                                    v1::ListModelsResponse* response) {
  return Unary(
      context, *request,
      [this, response](const std::string&) {
        for (const ModelListing& m : ctx_->models->List()) {
          v1::EngineModel* out = response->add_models();
          ModelToProto(m, out);
          out->set_has_tokenizer(std::filesystem::exists(
              std::filesystem::path(ctx_->models->models_dir()) / m.name / "tokenizer.json"));
          if (auto loaded = ctx_->models->Get(m.name); loaded.ok()) {
            out->set_vocab_size((*loaded)->model->config().vocab_size);
          }
        }
        return absl::OkStatus();
      },
      /*on_worker=*/false);
}

grpc::ServerUnaryReactor* EngineService::LoadModel(grpc::CallbackServerContext* context,
                                                   const v1::LoadModelRequest* request,
                                                   v1::EngineModel* response) {
  return Unary(context, *request, [this, request, response](const std::string&) -> absl::Status {
    ASSIGN_OR_RETURN(auto loaded, ctx_->models->Load(request->name()));
    response->set_name(loaded->name);
    response->set_arch(engine::FamilyName(loaded->model->config().family));
    response->set_loaded(true);
    response->set_num_params(loaded->model->num_params());
    response->set_vocab_size(loaded->model->config().vocab_size);
    response->set_has_tokenizer(
        std::filesystem::exists(std::filesystem::path(loaded->dir) / "tokenizer.json"));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EngineService::UnloadModel(grpc::CallbackServerContext* context,
                                                     const v1::UnloadModelRequest* request,
                                                     v1::UnloadModelResponse* response) {
  return Unary(
      context, *request,
      [this, request](const std::string&) { return ctx_->models->Unload(request->name()); },
      /*on_worker=*/false);
}

grpc::ServerUnaryReactor* EngineService::CreateSession(grpc::CallbackServerContext* context,
                                                       const v1::CreateSessionRequest* request,
                                                       v1::EngineSession* response) {
  return Unary(context, *request, [this, request, response](const std::string& p) -> absl::Status {
    ASSIGN_OR_RETURN(SessionOptions options,
                     Options(request->model(), request->sampling(), request->idle_timeout_seconds(),
                             request->keep_snapshot_on_evict()));
    ASSIGN_OR_RETURN(SessionInfo info, sessions_->CreateSession(p, options));
    ToProto(info, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EngineService::Append(grpc::CallbackServerContext* context,
                                                const v1::AppendRequest* request,
                                                v1::AppendResponse* response) {
  return Unary(context, *request, [this, request, response](const std::string& p) -> absl::Status {
    absl::StatusOr<AppendResult> result;
    switch (request->input_case()) {
      case v1::AppendRequest::kTokens:
        result = sessions_->Append(
            p, request->session_id(),
            std::span<const int32_t>(request->tokens().ids().data(), request->tokens().ids_size()),
            request->top_k_logits());
        break;
      case v1::AppendRequest::kText:
        result = sessions_->AppendText(p, request->session_id(), request->text(),
                                       request->top_k_logits());
        break;
      default:
        // Unknown / foreign sessions are NOT_FOUND before anything else.
        result = sessions_->Append(p, request->session_id(), {}, request->top_k_logits());
        if (result.ok() || result.status().code() == absl::StatusCode::kInvalidArgument) {
          return absl::InvalidArgumentError("input: set tokens or text");
        }
        break;
    }
    RETURN_IF_ERROR(result.status());
    response->set_position(result->position);
    response->set_appended(result->appended);
    for (const auto& [id, logit] : result->top) {
      auto* t = response->add_top();
      t->set_id(id);
      t->set_logit(logit);
    }
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::GenerateChunk>* EngineService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  CallTracker* calls = ctx_->calls;
  if (!calls->Enter()) {
    return new FailedWriteReactor(ShuttingDown(), nullptr);
  }
  auto principal = Principal(*ctx_, *context, *request);
  absl::Status early = principal.ok() ? init_status_ : principal.status();
  GenerateParams params;
  if (early.ok()) {
    params.max_tokens = request->max_tokens();
    params.stop_tokens.assign(request->stop_token_ids().begin(), request->stop_token_ids().end());
    if (request->has_sampling()) {
      auto sampling = FromProto(request->sampling());
      if (sampling.ok()) {
        params.sampling = *sampling;
        if (request->sampling().has_seed()) params.seed = request->sampling().seed();
      } else {
        early = sampling.status();
      }
    }
  }
  std::shared_ptr<GenerateStream> stream;
  if (early.ok()) {
    // The tokenizer (for text) comes from the session's model; a failed lookup here is
    // reported by Generate below.
    std::shared_ptr<const Tokenizer> tokenizer;
    if (auto info = sessions_->GetSession(*principal, request->session_id(), false); info.ok()) {
      if (auto model = ctx_->models->Get(info->model); model.ok()) {
        tokenizer = sessions_->TokenizerFor(**model);
      }
    }
    stream = std::make_shared<GenerateStream>(sessions_.get(), std::move(tokenizer));
    auto* reactor = new GenerateReactor(stream, calls);
    stream->Attach(reactor);
    early = sessions_->Generate(*principal, request->session_id(), params, stream);
    if (early.ok()) return reactor;
    reactor->Finish(ToGrpcStatus(early));  // the sink was never handed to the scheduler
    return reactor;
  }
  return new FailedWriteReactor(ToGrpcStatus(early), calls);
}

grpc::ServerUnaryReactor* EngineService::Fork(grpc::CallbackServerContext* context,
                                              const v1::ForkRequest* request,
                                              v1::EngineSession* response) {
  return Unary(context, *request, [this, request, response](const std::string& p) -> absl::Status {
    ASSIGN_OR_RETURN(SessionInfo info, sessions_->Fork(p, request->session_id()));
    ToProto(info, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EngineService::Snapshot(grpc::CallbackServerContext* context,
                                                  const v1::SnapshotRequest* request,
                                                  v1::SnapshotResponse* response) {
  return Unary(context, *request, [this, request, response](const std::string& p) -> absl::Status {
    ASSIGN_OR_RETURN(SnapshotResult r, sessions_->Snapshot(p, request->session_id()));
    response->set_snapshot_id(r.snapshot_id);
    response->set_position(r.position);
    response->set_size_bytes(r.size_bytes);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EngineService::Restore(grpc::CallbackServerContext* context,
                                                 const v1::RestoreRequest* request,
                                                 v1::EngineSession* response) {
  return Unary(context, *request, [this, request, response](const std::string& p) -> absl::Status {
    ASSIGN_OR_RETURN(SessionOptions options,
                     Options("", request->sampling(), request->idle_timeout_seconds(),
                             request->keep_snapshot_on_evict()));
    ASSIGN_OR_RETURN(SessionInfo info, sessions_->Restore(p, request->snapshot_id(), options));
    ToProto(info, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EngineService::GetSession(grpc::CallbackServerContext* context,
                                                    const v1::GetSessionRequest* request,
                                                    v1::EngineSession* response) {
  return Unary(
      context, *request,
      [this, request, response](const std::string& p) -> absl::Status {
        ASSIGN_OR_RETURN(SessionInfo info,
                         sessions_->GetSession(p, request->session_id(), request->include_state()));
        ToProto(info, response);
        return absl::OkStatus();
      },
      /*on_worker=*/request->include_state());
}

grpc::ServerUnaryReactor* EngineService::CloseSession(grpc::CallbackServerContext* context,
                                                      const v1::CloseSessionRequest* request,
                                                      v1::CloseSessionResponse* response) {
  return Unary(
      context, *request,
      [this, request](const std::string& p) {
        return sessions_->CloseSession(p, request->session_id());
      },
      /*on_worker=*/false);
}

grpc::ServerUnaryReactor* EngineService::ListSessions(grpc::CallbackServerContext* context,
                                                      const v1::ListSessionsRequest* request,
                                                      v1::ListSessionsResponse* response) {
  return Unary(
      context, *request,
      [this, response](const std::string& p) {
        for (const SessionInfo& info : sessions_->ListSessions(p)) {
          ToProto(info, response->add_sessions());
        }
        for (const EvictionRecord& r : sessions_->ListEvicted(p)) {
          auto* e = response->add_evicted();
          e->set_session_id(r.session_id);
          e->set_model(r.model);
          e->set_position(r.position);
          e->set_evicted_unix_ms(r.evicted_unix_ms);
          e->set_snapshot_id(r.snapshot_id);
        }
        return absl::OkStatus();
      },
      /*on_worker=*/false);
}

grpc::ServerUnaryReactor* EngineService::GetEngineStats(grpc::CallbackServerContext* context,
                                                        const v1::GetEngineStatsRequest* request,
                                                        v1::EngineStats* response) {
  return Unary(
      context, *request,
      [this, response](const std::string&) {
        SchedulerStats s = stats();
        response->set_steps(s.steps);
        response->set_max_batch(s.max_batch);
        response->set_tokens_generated(s.tokens_generated);
        response->set_open_sessions(s.open_sessions);
        response->set_active_streams(s.active_streams);
        response->set_evicted_sessions(s.evicted_sessions);
        return absl::OkStatus();
      },
      /*on_worker=*/false);
}

}  // namespace tapeloop::server
