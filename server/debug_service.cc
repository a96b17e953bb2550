#include "server/debug_service.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/utf8.h"
#include "server/grpc_status.h"
#include "tasks/code_debug/code_debug.h"
#include "tools/debugger/debugger.h"

namespace tapeloop::server {
namespace {

namespace v1 = ::tapeloop::v1;
namespace code_debug = ::tapeloop::tasks::code_debug;

absl::Status ValidateFileName(const std::string& field, const std::string& name, size_t max_bytes) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": empty file name"));
  if (name.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": file name longer than ", max_bytes, " bytes"));
  }
  if (!IsValidUtf8(name)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": file name is not valid UTF-8"));
  }
  for (char c : name) {
    if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == ' ') {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": file name '", name,
                       "' must be a flat name (no '/', '\\', spaces or control characters)"));
    }
  }
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat(field, ": file name '", name, "' is invalid"));
  }
  return absl::OkStatus();
}

}  // namespace

struct DebugService::Session {
  std::string id;
  std::string principal;
  Clock::duration idle_timeout;
  // Guarded by DebugService::mu_.
  Clock::time_point last_used;
  bool busy = false;
  bool closed = false;

  // Touched only by the one caller holding `busy` (or by Open before publishing the session).
  std::unique_ptr<debugger::DebugSession> debug;
  std::unique_ptr<code_debug::CodeDebugInstance> task;  // null for a program
  v1::ProgramState state;
  // The files last scored (task sessions) and the verdict.
  debugger::FileMap scored_files;
  bool scored = false;
  bool passes = false;
};

namespace {

void StateFromJson(const nlohmann::json& data, v1::ProgramState* state) {
  if (!data.is_object() || !data.contains("state") || !data["state"].is_string()) return;
  const std::string s = data["state"].get<std::string>();
  state->Clear();
  if (s == "idle") {
    state->set_kind(v1::ProgramState::NOT_STARTED);
  } else if (s == "paused") {
    state->set_kind(v1::ProgramState::STOPPED);
    state->set_file(SanitizeUtf8(data.value("file", "")));
    state->set_line(data.value("line", 0));
    state->set_function(SanitizeUtf8(data.value("function", "")));
  } else if (s == "finished") {
    std::string outcome = data.value("outcome", "");
    bool ok = outcome == debugger::OutcomeName(debugger::Outcome::kOk);
    state->set_kind(ok ? v1::ProgramState::FINISHED : v1::ProgramState::ERROR);
    state->set_exit_status(ok ? 0 : 1);
    state->set_outcome(outcome);
    state->set_exception_type(SanitizeUtf8(data.value("exception_type", "")));
    state->set_exception_message(SanitizeUtf8(data.value("exception_message", "")));
  }
}

}  // namespace

DebugService::DebugService(const ServiceContext* ctx, DebugServiceOptions options)
    : ctx_(ctx), options_(std::move(options)) {
  int n = std::max(1, options_.worker_threads);
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  reaper_ = std::thread([this] { ReaperLoop(); });
}

DebugService::~DebugService() { Shutdown(); }

void DebugService::Shutdown() {
  std::deque<std::function<void(bool)>> dropped;
  std::map<std::string, std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_) return;  // idempotent
    shut_down_ = true;
    dropped.swap(queue_);
    work_cv_.notify_all();
    reaper_cv_.notify_all();
  }
  for (auto& job : dropped) job(false);
  for (auto& t : workers_) t.join();
  if (reaper_.joinable()) reaper_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers_.clear();
    sessions.swap(sessions_);
    per_principal_.clear();
  }
  sessions.clear();  // stops paused programs
}

int DebugService::open_sessions() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(sessions_.size());
}

bool DebugService::Submit(std::function<void(bool)> job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) return false;
  queue_.push_back(std::move(job));
  work_cv_.notify_one();
  return true;
}

void DebugService::WorkerLoop() {
  for (;;) {
    std::function<void(bool)> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return shut_down_ || !queue_.empty(); });
      if (queue_.empty()) return;  // shut down
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job(true);
  }
}

void DebugService::ReaperLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!shut_down_) {
    reaper_cv_.wait_for(lock, options_.reaper_interval);
    if (shut_down_) break;
    auto now = Clock::now();
    std::vector<std::shared_ptr<Session>> expired;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      Session& s = *it->second;
      if (!s.busy && now - s.last_used > s.idle_timeout) {
        s.closed = true;
        if (--per_principal_[s.principal] == 0) per_principal_.erase(s.principal);
        expired.push_back(it->second);
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    // Destroying a session joins its program thread: not under the lock.
    lock.unlock();
    expired.clear();
    lock.lock();
  }
}

absl::StatusOr<std::shared_ptr<DebugService::Session>> DebugService::Find(
    const std::string& principal, const std::string& session_id, bool busy) {
  if (session_id.empty()) return absl::InvalidArgumentError("session_id: empty");
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) return absl::UnavailableError("server is shutting down");
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || it->second->principal != principal) {
    return absl::NotFoundError(
        absl::StrCat("session_id: no debug session '", SanitizeUtf8(session_id), "'"));
  }
  Session& s = *it->second;
  if (busy) {
    if (s.busy) {
      return absl::FailedPreconditionError(
          absl::StrCat("session_id: another command of session ", session_id, " is still running"));
    }
    s.busy = true;
  }
  s.last_used = Clock::now();
  return it->second;
}

grpc::ServerUnaryReactor* DebugService::Open(grpc::CallbackServerContext* context,
                                             const v1::OpenDebugSessionRequest* request,
                                             v1::OpenDebugSessionResponse* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    const ServiceLimits& limits = ctx_->limits;
    Clock::duration idle = limits.default_idle_timeout;
    if (request->idle_timeout_seconds() > 0) {
      if (request->idle_timeout_seconds() > limits.max_idle_timeout.count()) {
        return absl::InvalidArgumentError(
            absl::StrCat("idle_timeout_seconds: ", request->idle_timeout_seconds(),
                         " is above the server's maximum of ", limits.max_idle_timeout.count()));
      }
      idle = std::chrono::seconds(request->idle_timeout_seconds());
    }
    auto session = std::make_shared<Session>();
    debugger::SessionOptions session_options;
    session_options.limits = options_.run_limits;
    session_options.max_files = options_.max_files;
    session_options.max_file_bytes = static_cast<size_t>(options_.max_file_bytes);
    debugger::FileMap files;
    switch (request->source_case()) {
      case v1::OpenDebugSessionRequest::kProgram: {
        const v1::DebugProgram& p = request->program();
        if (p.files().empty()) return absl::InvalidArgumentError("program.files: no files");
        if (p.files_size() > static_cast<int>(options_.max_files)) {
          return absl::InvalidArgumentError(absl::StrCat("program.files: ", p.files_size(),
                                                         " files, at most ", options_.max_files));
        }
        int64_t total = 0;
        for (const auto& [name, source] : p.files()) {
          if (auto s = ValidateFileName("program.files", name, options_.max_file_name_bytes);
              !s.ok()) {
            return s;
          }
          if (static_cast<int64_t>(source.size()) > options_.max_file_bytes) {
            return absl::InvalidArgumentError(absl::StrCat("program.files[", name,
                                                           "]: ", source.size(), " bytes, at most ",
                                                           options_.max_file_bytes));
          }
          if (!IsValidUtf8(source)) {
            return absl::InvalidArgumentError(
                absl::StrCat("program.files[", name, "]: source is not valid UTF-8"));
          }
          total += static_cast<int64_t>(source.size());
          files[name] = source;
        }
        if (total > options_.max_program_bytes) {
          return absl::InvalidArgumentError(absl::StrCat(
              "program.files: ", total, " bytes in all, at most ", options_.max_program_bytes));
        }
        std::string entry = p.entry_file().empty() ? "main.py" : p.entry_file();
        if (!files.count(entry)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "program.entry_file: '", SanitizeUtf8(entry), "' is not one of program.files"));
        }
        session_options.main_file = entry;
        break;
      }
      case v1::OpenDebugSessionRequest::kTask: {
        const v1::DebugTask& t = request->task();
        if (t.task() != code_debug::kTaskName) {
          return absl::InvalidArgumentError(absl::StrCat("task.task: unknown task '",
                                                         SanitizeUtf8(t.task()),
                                                         "' (tasks: ", code_debug::kTaskName, ")"));
        }
        int max_n = std::min(code_debug::kMaxFunctions + 1, limits.max_episode_length);
        if (t.length() < code_debug::kMinFunctions || t.length() > max_n) {
          return absl::InvalidArgumentError(absl::StrCat("task.length: ", t.length(), " is not in ",
                                                         code_debug::kMinFunctions, "..", max_n));
        }
        auto instance = code_debug::GenerateCodeDebug(t.length(), t.seed());
        if (!instance.ok()) return instance.status();
        files = instance->buggy;
        response->set_instructions(instance->prompt);
        session->task = std::make_unique<code_debug::CodeDebugInstance>(std::move(*instance));
        break;
      }
      default:
        return absl::InvalidArgumentError("source: set program or task");
    }
    for (const auto& [name, source] : files) response->add_files(name);
    session->debug = std::make_unique<debugger::DebugSession>(std::move(files), session_options);
    session->state.set_kind(v1::ProgramState::NOT_STARTED);
    session->id = NewId("dbg");
    session->principal = principal;
    session->idle_timeout = idle;
    session->last_used = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shut_down_) return absl::UnavailableError("server is shutting down");
      int& count = per_principal_[principal];
      if (count >= limits.max_environments_per_principal) {
        if (count == 0) per_principal_.erase(principal);
        return absl::ResourceExhaustedError(
            absl::StrCat("debug sessions: the caller already has ", count,
                         " open (max_environments_per_principal); close one first"));
      }
      ++count;
      sessions_[session->id] = session;
    }
    response->set_session_id(session->id);
    *response->mutable_state() = session->state;
    response->set_idle_timeout_seconds(
        static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(idle).count()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* DebugService::Command(grpc::CallbackServerContext* context,
                                                const v1::DebugCommandRequest* request,
                                                v1::DebugCommandResponse* response) {
  auto* reactor = context->DefaultReactor();
  CallTracker::Scope call(ctx_->calls);
  if (!call.ok()) {
    reactor->Finish(ShuttingDown());
    return reactor;
  }
  auto found = [&]() -> absl::StatusOr<std::shared_ptr<Session>> {
    auto principal = Principal(*ctx_, *context, *request);
    if (!principal.ok()) return principal.status();
    if (static_cast<int64_t>(request->command().size()) > options_.max_command_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "command: ", request->command().size(), " bytes, at most ", options_.max_command_bytes));
    }
    if (!IsValidUtf8(request->command())) {
      return absl::InvalidArgumentError("command: not valid UTF-8");
    }
    return Find(*principal, request->session_id(), /*busy=*/true);
  }();
  if (!found.ok()) {
    reactor->Finish(ToGrpcStatus(found.status()));
    return reactor;
  }
  // The command may run the program: the pool executes it and finishes the reactor. The
  // CallTracker counts the call until then (a Scope cannot outlive this function, so the job
  // enters the tracker itself; draining waits for it).
  std::shared_ptr<Session> session = *std::move(found);
  CallTracker* calls = ctx_->calls;
  bool entered = calls->Enter();
  auto release = [this, session] {
    std::lock_guard<std::mutex> lock(mu_);
    session->busy = false;
    session->last_used = Clock::now();
  };
  if (!entered) {
    release();
    reactor->Finish(ShuttingDown());
    return reactor;
  }
  bool queued = Submit([this, session, request, response, reactor, calls, release](bool run) {
    if (!run) {
      release();
      reactor->Finish(ShuttingDown());
      calls->Exit();
      return;
    }
    debugger::Observation o = session->debug->Execute(request->command());
    StateFromJson(o.data, &session->state);
    response->set_observation(SanitizeUtf8(std::move(o.text)));
    // An edit that leaves a file unparsable is applied, with a warning: flag it as an error.
    response->set_is_error(o.is_error || o.data.contains("syntax_error"));
    *response->mutable_state() = session->state;
    if (session->task != nullptr) {
      if (!session->scored || session->scored_files != session->debug->files()) {
        session->scored_files = session->debug->files();
        session->passes = code_debug::ScoreCodeDebug(*session->task, session->scored_files).passed;
        session->scored = true;
      }
      response->set_passes(session->passes);
    }
    release();
    reactor->Finish(grpc::Status::OK);
    calls->Exit();
  });
  if (!queued) {
    release();
    reactor->Finish(ShuttingDown());
    calls->Exit();
  }
  return reactor;
}

grpc::ServerUnaryReactor* DebugService::Files(grpc::CallbackServerContext* context,
                                              const v1::DebugFilesRequest* request,
                                              v1::DebugFilesResponse* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    // Files are only read while no command runs (the command holds `busy`).
    auto session = Find(principal, request->session_id(), /*busy=*/true);
    if (!session.ok()) return session.status();
    for (const auto& [name, source] : (*session)->debug->files()) {
      (*response->mutable_files())[name] = source;
    }
    std::lock_guard<std::mutex> lock(mu_);
    (*session)->busy = false;
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* DebugService::Close(grpc::CallbackServerContext* context,
                                              const v1::CloseDebugSessionRequest* request,
                                              v1::CloseDebugSessionResponse* /*response*/) {
  // `closing` is destroyed on return, after AnswerUnary finished the call: stopping a paused
  // program joins its thread.
  std::shared_ptr<Session> closing;
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    if (request->session_id().empty()) return absl::InvalidArgumentError("session_id: empty");
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_) return absl::UnavailableError("server is shutting down");
    auto it = sessions_.find(request->session_id());
    if (it == sessions_.end() || it->second->principal != principal) {
      return absl::NotFoundError(
          absl::StrCat("session_id: no debug session '", SanitizeUtf8(request->session_id()), "'"));
    }
    // A command still running keeps its shared_ptr; the session is freed when it finishes.
    closing = it->second;
    closing->closed = true;
    if (--per_principal_[principal] == 0) per_principal_.erase(principal);
    sessions_.erase(it);
    return absl::OkStatus();
  });
}

}  // namespace tapeloop::server
