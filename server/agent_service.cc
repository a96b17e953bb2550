#include "server/agent_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <deque>
#include <limits>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agents/agent_loop.h"
#include "agents/engine_policy.h"
#include "agents/oracle_policy.h"
#include "common/json.h"
#include "common/tokenizer.h"
#include "common/utf8.h"
#include "engine/session/sampling.h"
#include "eval/code_debug_suite.h"
#include "server/grpc_status.h"
#include "tasks/code_debug/code_debug.h"
#include "tasks/task.h"

namespace tapeloop::server {
namespace v1 = ::tapeloop::v1;
namespace cd = ::tapeloop::tasks::code_debug;
namespace {

constexpr char kOracle[] = "oracle";

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

v1::TokenRole ToProto(tasks::Role role) {
  switch (role) {
    case tasks::Role::kPrompt:
      return v1::TOKEN_ROLE_PROMPT;
    case tasks::Role::kThought:
      return v1::TOKEN_ROLE_THOUGHT;
    case tasks::Role::kCommand:
      return v1::TOKEN_ROLE_COMMAND;
    case tasks::Role::kObservation:
      return v1::TOKEN_ROLE_OBSERVATION;
    case tasks::Role::kOutput:
      return v1::TOKEN_ROLE_OUTPUT;
    case tasks::Role::kEos:
      return v1::TOKEN_ROLE_EOS;
  }
  return v1::TOKEN_ROLE_UNSPECIFIED;
}

// The request, checked: every refusal names its field. Either an arithmetic task (`task`,
// `mode`) or code_debug (`code_debug`, `debug_mode`).
struct EpisodeRequest {
  const tasks::Task* task = nullptr;
  tasks::Mode mode = tasks::Mode::kPointer;
  bool code_debug = false;
  cd::CodeDebugMode debug_mode = cd::CodeDebugMode::kInteractive;

  // The task's and the mode's names as stored and reported.
  std::string TaskName() const {
    return code_debug ? std::string(cd::kTaskName) : std::string(task->name());
  }
  std::string ModeName() const {
    return std::string(code_debug ? cd::CodeDebugModeName(debug_mode) : tasks::ModeName(mode));
  }
};

absl::StatusOr<EpisodeRequest> Validate(const v1::RunEpisodeRequest& r,
                                        const ServiceLimits& limits) {
  EpisodeRequest out;
  if (r.task().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task: required, one of ", absl::StrJoin(tasks::TaskNames(), ", "), ", ", cd::kTaskName));
  }
  if (r.task() == cd::kTaskName) {
    out.code_debug = true;
    if (!r.mode().empty()) {
      auto mode = cd::ParseCodeDebugMode(r.mode());
      if (!mode.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "mode: '", r.mode(), "' is not a code_debug mode (interactive, single-turn)"));
      }
      out.debug_mode = *mode;
    }
    const int64_t max_n = std::min<int64_t>(cd::kMaxFunctions + 1, limits.max_episode_length);
    if (r.length() < cd::kMinFunctions || r.length() > max_n) {
      return absl::InvalidArgumentError(
          absl::StrCat("length: the number of functions (files) of a code_debug program, must be "
                       "in ",
                       cd::kMinFunctions, "..", max_n, ", got ", r.length()));
    }
    if (r.training()) {
      return absl::InvalidArgumentError(
          "training: code_debug episodes are drawn from the test distribution only");
    }
  } else {
    auto task = tasks::FindTask(r.task());
    if (!task.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("task: ", task.status().message(), " (or ", cd::kTaskName, ")"));
    }
    out.task = *task;
    if (!r.mode().empty()) {
      auto mode = tasks::ParseMode(r.mode());
      if (!mode.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("mode: ", mode.status().message()));
      }
      out.mode = *mode;
    }
    if (r.length() < 1 || r.length() > limits.max_episode_length) {
      return absl::InvalidArgumentError(
          absl::StrCat("length: must be in 1..", limits.max_episode_length, ", got ", r.length()));
    }
  }
  if (r.index() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("index: must be >= 0, got ", r.index()));
  }
  if (r.policy().empty()) {
    return absl::InvalidArgumentError("policy: required, a model name served here or \"oracle\"");
  }
  if (r.policy() != kOracle) {
    if (auto s = ValidateModelName(r.policy()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("policy: ", s.message()));
    }
  }
  if (!std::isfinite(r.temperature()) || r.temperature() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature: must be finite and >= 0, got ", r.temperature()));
  }
  if (r.max_generated_tokens() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_generated_tokens: must be >= 0 (0: derived), got ", r.max_generated_tokens()));
  }
  if (r.max_tool_steps() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tool_steps: must be >= 0 (0: derived), got ", r.max_tool_steps()));
  }
  return out;
}

// A status with `prefix` put before the message, the code kept.
absl::Status Prefixed(const absl::Status& s, const std::string& prefix) {
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

// A RunEpisode refused before it started.
class RefusedEpisode final : public grpc::ServerWriteReactor<v1::RunEpisodeResponse> {
 public:
  explicit RefusedEpisode(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

// One RunEpisode call: the write reactor and the worker thread that plays the episode.
// Deleted when both gRPC (OnDone) and the worker are done with it (refs_).
class EpisodeCall final : public grpc::ServerWriteReactor<v1::RunEpisodeResponse> {
 public:
  EpisodeCall(AgentService* service, std::unique_ptr<CallTracker::Scope> scope,
              std::string principal, v1::RunEpisodeRequest request, EpisodeRequest checked)
      : service_(service),
        scope_(std::move(scope)),
        principal_(std::move(principal)),
        request_(std::move(request)),
        checked_(checked) {}

  // The worker thread's body.
  void Run() {
    grpc::Status status = Play();
    AgentService* service = service_;
    FinishAfterQueue(status);
    service->Release(this);
    Unref();
  }

  // Stops the episode within a step (client cancelled, deadline, server shutdown).
  void Cancel(bool shutdown) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shutdown) shutdown_ = true;
      cancel_.store(true, std::memory_order_release);
    }
    space_.notify_all();
  }

  void OnCancel() override { Cancel(/*shutdown=*/false); }

  void OnWriteDone(bool ok) override {
    bool write = false, finish = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!ok) {  // the client is gone: stop the episode, drop what is queued
        broken_ = true;
        cancel_.store(true, std::memory_order_release);
        queue_.clear();
      }
      if (!broken_ && !queue_.empty()) {
        FillMessageLocked();
        write = true;
      } else {
        writing_ = false;
        finish = finish_requested_ && !finish_called_;
        if (finish) finish_called_ = true;
      }
    }
    space_.notify_all();
    if (write) StartWrite(&message_);
    if (finish) Finish(final_status_);
  }

  void OnDone() override { Unref(); }

 private:
  grpc::Status Cancelled() {
    std::lock_guard<std::mutex> lock(mu_);
    return shutdown_ ? ShuttingDown()
                     : grpc::Status(grpc::StatusCode::CANCELLED, "episode cancelled");
  }

  grpc::Status Play() {
    const ServiceContext& ctx = *service_->ctx_;
    std::shared_ptr<const LoadedModel> model;  // null for the oracle
    engine::SamplingParams params;
    params.temperature = request_.temperature();
    if (request_.policy() != kOracle) {
      auto loaded = ctx.models->Load(request_.policy());
      if (!loaded.ok()) return ToGrpcStatus(Prefixed(loaded.status(), "policy: "));
      model = std::move(*loaded);
      if (auto s = engine::ValidateSamplingParams(params); !s.ok()) {
        return ToGrpcStatus(Prefixed(s, "temperature: "));
      }
    }
    if (cancel_.load(std::memory_order_acquire)) return Cancelled();
    if (checked_.code_debug) return PlayCodeDebug(model.get(), params);
    std::unique_ptr<agents::Policy> policy;
    if (model == nullptr) {
      policy = std::make_unique<agents::OraclePolicy>();
    } else {
      policy = std::make_unique<agents::EnginePolicy>(model->model.get(), params);
    }

    const agents::EpisodeSpec spec =
        agents::MakeEpisodeSpec(checked_.task, checked_.mode, request_.length(), request_.seed(),
                                request_.index(), request_.training());
    const std::string id = NewId("ep");
    {
      v1::EpisodeEvent event =
          StartedEvent(id, spec.instance.prompt, tasks::PromptTokens(spec.instance));
      for (const auto& operand : spec.instance.operands) {
        event.mutable_started()->add_operands(operand);
      }
      if (!Push(std::move(event))) return Cancelled();
    }

    const Tokenizer tokenizer;
    agents::LoopOptions options;
    options.parallel = 1;
    options.max_generated_tokens = request_.max_generated_tokens();
    options.max_tool_steps = request_.max_tool_steps();
    options.cancel = &cancel_;
    options.on_event = [&](const agents::LoopEvent& e) {
      v1::EpisodeEvent event;
      switch (e.kind) {
        case agents::LoopEvent::Kind::kToken: {
          auto* token = event.mutable_token();
          token->set_position(e.position);
          token->set_id(e.token);
          token->set_text(tokenizer.TokenText(e.token));
          token->set_role(ToProto(e.role));
          break;
        }
        case agents::LoopEvent::Kind::kToolCall: {
          auto* call = event.mutable_tool_call();
          call->set_call_id(e.call->id);
          call->set_name(e.call->name);
          call->set_arguments_json(DumpJson(e.call->arguments));
          call->set_position(e.position);
          break;
        }
        case agents::LoopEvent::Kind::kToolResult: {
          auto* result = event.mutable_tool_result();
          result->set_call_id(e.result->call_id);
          result->set_text(e.result->text);
          result->set_is_error(e.result->is_error);
          result->set_token(e.observation.has_value() ? *e.observation : -1);
          break;
        }
      }
      Push(std::move(event));  // false once cancelled: the loop sees the flag next step
    };
    auto records =
        agents::RunEpisodes(*policy, std::span<const agents::EpisodeSpec>(&spec, 1), options);
    if (!records.ok()) return ToGrpcStatus(records.status());
    const agents::EpisodeRecord& r = records->front();
    if (r.stop_reason == "cancelled" || cancel_.load(std::memory_order_acquire)) {
      return Cancelled();
    }

    // Durable before acknowledged.
    if (auto s = service_->StoreEpisode(id, principal_, request_, checked_.ModeName(),
                                        r.score.exact, DumpJson(r.ToJson()));
        !s.ok()) {
      return ToGrpcStatus(Prefixed(s, "storing the episode: "));
    }
    v1::EpisodeEvent event;
    auto* f = event.mutable_finished();
    f->set_episode_id(id);
    f->set_final_answer(r.OutputText());
    f->set_expected(SanitizeUtf8(r.score.expected));
    f->set_correct(r.score.exact);
    f->set_digit_accuracy(r.score.digit_accuracy);
    f->set_has_trajectory_exact(r.score.trajectory_exact.has_value());
    f->set_trajectory_exact(r.score.trajectory_exact.value_or(false));
    f->set_stop_reason(r.stop_reason);
    f->set_error(SanitizeUtf8(r.error));
    f->set_total_tokens(static_cast<int64_t>(r.trajectory.tokens.size()));
    f->set_generated_tokens(r.generated_tokens);
    f->set_tool_steps(r.tool_steps);
    f->set_wall_ms(r.wall_ms);
    f->set_policy_ms(r.policy_ms);
    f->set_tool_ms(r.tool_ms);
    f->set_peak_session_bytes(r.peak_session_bytes);
    f->set_stored(true);
    if (!Push(std::move(event))) return Cancelled();
    return grpc::Status::OK;
  }

  // Task code_debug: the instance, play and record of eval/code_debug_suite.h (episode `index`
  // of (n, seed) is `tapeloop run --task code_debug --seed S`'s index-th). A model plays
  // through eval::PlayCodeDebugGames, whose hooks stream each token and command as it happens;
  // the oracle's trajectory is replayed through the same hooks. `model` is null for the oracle;
  // `params` (checked) sample the model.
  grpc::Status PlayCodeDebug(const LoadedModel* model, const engine::SamplingParams& params) {
    const int64_t n = request_.length();
    auto instance = cd::GenerateCodeDebug(static_cast<int>(n),
                                          tasks::MixSeed(static_cast<uint64_t>(request_.seed()),
                                                         static_cast<uint64_t>(request_.index())));
    if (!instance.ok()) return ToGrpcStatus(Prefixed(instance.status(), "code_debug: "));
    const std::string id = NewId("ep");
    const std::string mode = checked_.ModeName();
    {
      std::vector<TokenId> prompt = {tokens::kBos};
      for (unsigned char c : instance->prompt) prompt.push_back(c);
      if (!Push(StartedEvent(id, instance->prompt, prompt))) return Cancelled();
    }

    const Tokenizer tokenizer;
    int64_t next_position = 1 + static_cast<int64_t>(instance->prompt.size());
    int64_t generated = 0, calls = 0;
    eval::CodeDebugHooks hooks;
    hooks.cancel = &cancel_;
    hooks.on_token = [&](size_t, int64_t position, TokenId token, bool observation) {
      next_position = position + 1;
      if (!observation) ++generated;
      v1::EpisodeEvent event;
      auto* t = event.mutable_token();
      t->set_position(position);
      t->set_id(token);
      t->set_text(tokenizer.TokenText(token));
      t->set_role(observation             ? v1::TOKEN_ROLE_OBSERVATION
                  : token == tokens::kEos ? v1::TOKEN_ROLE_EOS
                                          : v1::TOKEN_ROLE_COMMAND);
      Push(std::move(event));  // false once cancelled: the play stops at its next token
    };
    hooks.on_step = [&](size_t, int64_t position, const cd::DebugStep& step) {
      const std::string call_id = absl::StrCat("call_", calls++);
      v1::EpisodeEvent call;
      call.mutable_tool_call()->set_call_id(call_id);
      call.mutable_tool_call()->set_name("debugger");
      call.mutable_tool_call()->set_arguments_json(
          DumpJson(nlohmann::json::object({{"command", step.command}})));
      call.mutable_tool_call()->set_position(position);
      Push(std::move(call));
      v1::EpisodeEvent result;
      result.mutable_tool_result()->set_call_id(call_id);
      result.mutable_tool_result()->set_text(step.observation);
      result.mutable_tool_result()->set_is_error(step.is_error);
      result.mutable_tool_result()->set_token(-1);
      Push(std::move(result));
    };

    eval::ModelDebugLimits limits;
    if (request_.max_generated_tokens() > 0) limits.max_tokens = request_.max_generated_tokens();
    if (request_.max_tool_steps() > 0) {
      limits.max_steps = static_cast<int>(
          std::min<int64_t>(request_.max_tool_steps(), std::numeric_limits<int>::max()));
    }
    const eval::CodeDebugGame game{&*instance, checked_.debug_mode, instance->seed};
    absl::StatusOr<eval::CodeDebugEpisode> played = absl::InternalError("not played");
    if (model == nullptr) {
      eval::OracleCodeDebugAgent oracle;
      played = std::move(oracle.SolveAll({&game, 1})[0]);
      if (!played.ok()) return ToGrpcStatus(Prefixed(played.status(), "code_debug oracle: "));
      eval::ReplayCodeDebugEvents(played->trajectory, hooks);
    } else {
      agents::EnginePolicyOptions options;
      options.appends = agents::EnginePolicyOptions::Appends::kPrefill;  // long observations
      agents::EnginePolicy policy(model->model.get(), params, options);
      played = std::move(eval::PlayCodeDebugGames(policy, {&game, 1}, limits, 1, &hooks)[0]);
    }
    if (cancel_.load(std::memory_order_acquire) ||
        (played.ok() && played->trajectory.stop_reason == "cancelled")) {
      return Cancelled();
    }

    const eval::EpisodeKey key{request_.policy(), cd::kTaskName,   mode, n,
                               request_.seed(),   request_.index()};
    const eval::EpisodeRow row = eval::CodeDebugRow(key, &*instance, played, model == nullptr);
    // Durable before acknowledged.
    if (auto s = service_->StoreEpisode(id, principal_, request_, mode, row.correct,
                                        DumpJson(row.record));
        !s.ok()) {
      return ToGrpcStatus(Prefixed(s, "storing the episode: "));
    }
    v1::EpisodeEvent event;
    auto* f = event.mutable_finished();
    f->set_episode_id(id);
    if (row.record.contains("score")) {
      f->set_final_answer(row.record["score"].value("output", std::string()));
    }
    f->set_expected(SanitizeUtf8(instance->expected_output));
    f->set_correct(row.correct);
    f->set_digit_accuracy(row.digit_accuracy);
    f->set_has_trajectory_exact(played.ok());
    f->set_trajectory_exact(played.ok() && row.trajectory_match);
    // The expert's trajectory ends with [EOS] (its record, like `tapeloop run`'s, has no
    // stop_reason).
    f->set_stop_reason(!played.ok()       ? "policy_error"
                       : model == nullptr ? "eos"
                                          : played->trajectory.stop_reason);
    if (!played.ok()) f->set_error(SanitizeUtf8(played.status().ToString()));
    f->set_total_tokens(next_position);
    f->set_generated_tokens(generated);
    f->set_tool_steps(calls);
    f->set_wall_ms(played.ok() ? played->wall_ms : 0.0);
    f->set_peak_session_bytes(played.ok() ? played->peak_session_bytes : 0);
    f->set_stored(true);
    if (!Push(std::move(event))) return Cancelled();
    return grpc::Status::OK;
  }

  // The `started` event of episode `id`: its prompt (text and tokens, [BOS] first) and the
  // checked request's task, mode, policy, length, seed and index.
  v1::EpisodeEvent StartedEvent(const std::string& id, const std::string& prompt,
                                std::span<const TokenId> prompt_tokens) const {
    v1::EpisodeEvent event;
    auto* started = event.mutable_started();
    started->set_episode_id(id);
    started->set_prompt(prompt);
    for (TokenId t : prompt_tokens) started->add_prompt_tokens(t);
    started->set_task(checked_.TaskName());
    started->set_mode(checked_.ModeName());
    started->set_policy(request_.policy());
    started->set_length(request_.length());
    started->set_seed(request_.seed());
    started->set_index(request_.index());
    return event;
  }

  // Queues an event for the client, waiting while the queue is full (back-pressure). False
  // once the call is cancelled or broken (the event is dropped).
  bool Push(v1::EpisodeEvent event) {
    bool write = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      space_.wait(lock, [&] {
        return queue_.size() < service_->options_.max_queued_events || broken_ ||
               cancel_.load(std::memory_order_acquire);
      });
      if (broken_ || cancel_.load(std::memory_order_acquire)) return false;
      queue_.push_back(std::move(event));
      if (!writing_) {
        FillMessageLocked();
        write = true;
      }
    }
    if (write) StartWrite(&message_);
    return true;
  }

  // Moves queued events into message_ and marks a write in flight. REQUIRES mu_ held.
  void FillMessageLocked() {
    message_.Clear();
    const size_t n = std::min(queue_.size(), service_->options_.max_events_per_message);
    for (size_t i = 0; i < n; ++i) {
      *message_.add_events() = std::move(queue_.front());
      queue_.pop_front();
    }
    writing_ = true;
  }

  // Finishes the call once the queued events are written (at once when none is in flight).
  // After this the worker must not touch the reactor except through its own reference.
  void FinishAfterQueue(const grpc::Status& status) {
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      final_status_ = status;
      finish_requested_ = true;
      if (!writing_ && !finish_called_) finish = finish_called_ = true;
    }
    if (finish) Finish(status);
  }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  AgentService* const service_;
  std::unique_ptr<CallTracker::Scope> scope_;  // released when the call is deleted
  const std::string principal_;
  const v1::RunEpisodeRequest request_;
  const EpisodeRequest checked_;
  std::atomic<int> refs_{2};  // gRPC's (OnDone) and the worker's
  std::atomic<bool> cancel_{false};

  std::mutex mu_;
  std::condition_variable space_;  // queue space freed, or cancelled
  std::deque<v1::EpisodeEvent> queue_;
  v1::RunEpisodeResponse message_;  // the write in flight (touched only while writing_)
  bool writing_ = false;
  bool broken_ = false;
  bool shutdown_ = false;
  bool finish_requested_ = false;
  bool finish_called_ = false;
  grpc::Status final_status_;
};

AgentService::AgentService(const ServiceContext* ctx, AgentServiceOptions options)
    : ctx_(ctx), options_(options) {}

AgentService::~AgentService() { Shutdown(); }

grpc::ServerWriteReactor<v1::RunEpisodeResponse>* AgentService::RunEpisode(
    grpc::CallbackServerContext* context, const v1::RunEpisodeRequest* request) {
  auto scope = std::make_unique<CallTracker::Scope>(ctx_->calls);
  if (!scope->ok()) {
    return new RefusedEpisode(ShuttingDown());
  }
  auto principal = Principal(*ctx_, *context, *request);
  if (!principal.ok()) return new RefusedEpisode(ToGrpcStatus(principal.status()));
  auto checked = Validate(*request, ctx_->limits);
  if (!checked.ok()) return new RefusedEpisode(ToGrpcStatus(checked.status()));

  auto* call = new EpisodeCall(this, std::move(scope), std::move(*principal), *request, *checked);
  std::lock_guard<std::mutex> lock(mu_);
  ReapLocked();
  grpc::Status refused;
  if (shutting_down_) {
    refused = ShuttingDown();
  } else if (static_cast<int>(running_.size()) >= options_.max_concurrent_episodes) {
    refused = grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("episodes: this server runs at most ", options_.max_concurrent_episodes,
                     " episodes at once; retry later"));
  }
  if (!refused.ok()) {
    delete call;
    return new RefusedEpisode(refused);
  }
  running_.emplace(call, std::thread(&EpisodeCall::Run, call));
  return call;
}

void AgentService::Release(EpisodeCall* call) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = running_.find(call);
  if (it == running_.end()) return;
  finished_.push_back(std::move(it->second));
  running_.erase(it);
  idle_.notify_all();
}

void AgentService::ReapLocked() {
  for (auto& t : finished_) t.join();  // past Release: they never take mu_ again
  finished_.clear();
}

void AgentService::Shutdown() {
  std::unique_lock<std::mutex> lock(mu_);
  shutting_down_ = true;
  for (auto& [call, thread] : running_) call->Cancel(/*shutdown=*/true);
  idle_.wait(lock, [&] { return running_.empty(); });
  ReapLocked();
}

bool AgentService::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool idle = idle_.wait_for(lock, timeout, [&] { return running_.empty(); });
  ReapLocked();
  return idle;
}

int AgentService::running_episodes() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(running_.size());
}

absl::StatusOr<store::Database*> AgentService::OpenDb(std::unique_ptr<store::Database>* db) {
  if (*db == nullptr) {
    auto opened = store::Database::Open(ctx_->db_path);
    if (!opened.ok()) return opened.status();
    *db = std::move(*opened);
  }
  return db->get();
}

absl::Status AgentService::StoreEpisode(const std::string& id, const std::string& principal,
                                        const v1::RunEpisodeRequest& request,
                                        const std::string& mode, bool correct,
                                        const std::string& record_json) {
  std::lock_guard<std::mutex> lock(write_mu_);
  auto db = OpenDb(&write_db_);
  if (!db.ok()) return db.status();
  store::Transaction tx(*db);
  if (!tx.status().ok()) return tx.status();
  auto st = (*db)->Prepare(
      "INSERT INTO episodes (id, principal, task, mode, length, seed, model, correct, record, "
      "created_unix_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!st.ok()) return st.status();
  st->Bind(1, id)
      .Bind(2, principal)
      .Bind(3, request.task())
      .Bind(4, mode)
      .Bind(5, static_cast<int64_t>(request.length()))
      .Bind(6, static_cast<int64_t>(request.seed()))
      .Bind(7, request.policy())
      .Bind(8, static_cast<int64_t>(correct ? 1 : 0))
      .Bind(9, record_json)
      .Bind(10, NowUnixMs());
  if (auto s = st->Run(); !s.ok()) return s;
  return tx.Commit();
}

namespace {

constexpr char kSummaryColumns[] = "id, task, mode, length, seed, model, correct, created_unix_ms";

void ReadSummary(const store::Statement& st, v1::EpisodeSummary* s) {
  s->set_episode_id(st.ColumnText(0));
  s->set_task(st.ColumnText(1));
  s->set_mode(st.ColumnText(2));
  s->set_length(st.ColumnInt(3));
  s->set_seed(st.ColumnInt(4));
  s->set_policy(st.ColumnText(5));
  s->set_correct(st.ColumnInt(6) != 0);
  s->set_created_unix_ms(st.ColumnInt(7));
}

}  // namespace

grpc::ServerUnaryReactor* AgentService::GetEpisode(grpc::CallbackServerContext* context,
                                                   const v1::GetEpisodeRequest* request,
                                                   v1::GetEpisodeResponse* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    if (request->episode_id().empty()) return absl::InvalidArgumentError("episode_id: required");
    std::lock_guard<std::mutex> lock(read_mu_);
    auto db = OpenDb(&read_db_);
    if (!db.ok()) return db.status();
    auto st = (*db)->Prepare(absl::StrCat("SELECT ", kSummaryColumns,
                                          ", record FROM episodes WHERE id = ? AND principal = ?"));
    if (!st.ok()) return st.status();
    st->Bind(1, request->episode_id()).Bind(2, principal);
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) {
      return absl::NotFoundError(
          absl::StrCat("episode_id: no stored episode \"", request->episode_id(), "\""));
    }
    ReadSummary(*st, response->mutable_summary());
    response->set_record_json(st->ColumnText(8));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AgentService::ListEpisodes(grpc::CallbackServerContext* context,
                                                     const v1::ListEpisodesRequest* request,
                                                     v1::ListEpisodesResponse* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    auto page = ParsePage(request->page_size(), request->page_token());
    if (!page.ok()) return page.status();
    const int page_size = page->size;
    const int64_t offset = page->offset;
    std::lock_guard<std::mutex> lock(read_mu_);
    auto db = OpenDb(&read_db_);
    if (!db.ok()) return db.status();
    auto st = (*db)->Prepare(
        absl::StrCat("SELECT ", kSummaryColumns,
                     " FROM episodes WHERE principal = ? ORDER BY created_unix_ms DESC, rowid DESC "
                     "LIMIT ? OFFSET ?"));
    if (!st.ok()) return st.status();
    st->Bind(1, principal).Bind(2, static_cast<int64_t>(page_size) + 1).Bind(3, offset);
    int rows = 0;
    while (true) {
      auto row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      if (++rows > page_size) {
        response->set_next_page_token(absl::StrCat(offset + page_size));
        break;
      }
      ReadSummary(*st, response->add_episodes());
    }
    return absl::OkStatus();
  });
}

}  // namespace tapeloop::server
