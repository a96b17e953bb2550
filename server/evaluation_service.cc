#include "server/evaluation_service.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json.h"
#include "common/version.h"
#include "eval/results.h"
#include "eval/runner.h"
#include "server/grpc_status.h"
#include "server/model_registry.h"
#include "tasks/code_debug/code_debug.h"
#include "tasks/task.h"

namespace tapeloop::server {
namespace v1 = ::tapeloop::v1;
namespace fs = std::filesystem;
namespace {

constexpr char kOracle[] = "oracle";
constexpr int kMaxListed = 64;  // models, tasks, modes, lengths, seeds per request, each

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// The request as eval::EvalOptions over `models_dir`; every refusal names its field.
absl::StatusOr<eval::EvalOptions> ToOptions(const v1::StartEvaluationRequest& r,
                                            const std::string& models_dir,
                                            const ServiceLimits& limits,
                                            const EvaluationServiceOptions& service) {
  auto too_many = [](const char* field, int n) -> absl::Status {
    if (n > kMaxListed) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": at most ", kMaxListed, " values, got ", n));
    }
    return absl::OkStatus();
  };
  for (auto [field, n] : {std::pair<const char*, int>{"models", r.models_size()},
                          {"tasks", r.tasks_size()},
                          {"modes", r.modes_size()},
                          {"lengths", r.lengths_size()},
                          {"seeds", r.seeds_size()}}) {
    if (auto s = too_many(field, n); !s.ok()) return s;
  }
  eval::EvalOptions o;
  if (!r.suite().empty()) {
    const auto names = eval::SuiteNames();
    if (std::find(names.begin(), names.end(), r.suite()) == names.end()) {
      return absl::InvalidArgumentError(absl::StrCat("suite: unknown suite \"", r.suite(),
                                                     "\"; suites: ", absl::StrJoin(names, ", ")));
    }
    auto suite = eval::SuiteOptions(r.suite(), models_dir);
    // NOT_FOUND: none of the suite's checkpoints is on this server (unless models replace them).
    if (!suite.ok() && r.models().empty()) {
      return absl::Status(suite.status().code(), absl::StrCat("suite: ", suite.status().message()));
    }
    if (suite.ok()) o = *suite;
  } else {
    if (r.models().empty()) return absl::InvalidArgumentError("models: required without a suite");
    if (r.tasks().empty()) return absl::InvalidArgumentError("tasks: required without a suite");
    if (r.lengths().empty()) return absl::InvalidArgumentError("lengths: required without a suite");
  }
  for (const std::string& t : r.tasks()) {
    if (t != tasks::code_debug::kTaskName) {
      if (auto task = tasks::FindTask(t); !task.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("tasks: ", task.status().message()));
      }
    }
  }
  if (!r.tasks().empty()) o.tasks.assign(r.tasks().begin(), r.tasks().end());
  const bool code_debug_only = o.tasks == std::vector<std::string>{tasks::code_debug::kTaskName};
  std::vector<std::string> modes(r.modes().begin(), r.modes().end());
  if (modes.empty()) {
    modes = code_debug_only ? std::vector<std::string>{"interactive", "single-turn"}
                            : std::vector<std::string>{"pointer"};
  }
  for (const std::string& m : modes) {
    if (m != "interactive" && m != "single-turn") {
      if (auto mode = tasks::ParseMode(m); !mode.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("modes: ", mode.status().message()));
      }
    }
  }
  if (!r.models().empty()) {
    o.entries.clear();
    o.missing.clear();
    for (const std::string& name : r.models()) {
      if (name == kOracle) {
        o.entries.push_back({kOracle, modes});
        continue;
      }
      if (auto s = ValidateModelName(name); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("models: ", s.message()));
      }
      const fs::path dir = fs::path(models_dir) / name;
      if (!fs::exists(dir / "config.json")) {
        return absl::NotFoundError(
            absl::StrCat("models: no model \"", name, "\" in this server's models directory"));
      }
      o.entries.push_back({dir.string(), modes});
    }
  } else if (!r.modes().empty()) {
    for (auto& e : o.entries) e.modes = modes;
  }
  if (!r.lengths().empty()) o.lengths.assign(r.lengths().begin(), r.lengths().end());
  for (int64_t L : o.lengths) {
    if (L < 1 || L > limits.max_episode_length) {
      return absl::InvalidArgumentError(
          absl::StrCat("lengths: each must be in 1..", limits.max_episode_length, ", got ", L));
    }
  }
  if (!r.seeds().empty()) o.seeds.assign(r.seeds().begin(), r.seeds().end());
  if (r.episodes() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("episodes: must be >= 1 (0: the default), got ", r.episodes()));
  }
  if (r.episodes() > 0) o.episodes = r.episodes();
  if (r.parallel() < 0 || r.parallel() > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel: must be in 1..256 (0: 32), got ", r.parallel()));
  }
  if (r.parallel() > 0) o.parallel = r.parallel();
  if (r.stop_after_zero() < -1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stop_after_zero: must be >= 1, 0 (the suite's) or -1 (never), got ", r.stop_after_zero()));
  }
  if (r.stop_after_zero() == -1) o.stop_after_zero = 0;
  if (r.stop_after_zero() > 0) o.stop_after_zero = r.stop_after_zero();
  // Everything is listed: bound the whole run before loading anything.
  int64_t planned = 0;
  for (const auto& e : o.entries) {
    planned +=
        static_cast<int64_t>(e.modes.size() * o.tasks.size() * o.seeds.size() * o.lengths.size()) *
        o.episodes;
  }
  if (o.episodes > service.max_planned_episodes || planned > service.max_planned_episodes) {
    return absl::InvalidArgumentError(absl::StrCat("episodes: the run plans ", planned,
                                                   " episodes; this server allows ",
                                                   service.max_planned_episodes, " per run"));
  }
  o.report_dir.clear();
  return o;
}

v1::EvaluationCell ToCell(const eval::Aggregate& a) {
  v1::EvaluationCell c;
  c.set_model(a.model);
  c.set_mode(a.mode);
  c.set_task(a.task);
  c.set_length(a.length);
  c.set_episodes(a.episodes);
  c.set_accuracy(a.accuracy);
  c.set_accuracy_min(a.seed_min);
  c.set_accuracy_max(a.seed_max);
  c.set_digit_accuracy(a.digit_accuracy);
  c.set_trajectory_match(a.trajectory_match);
  c.set_mean_wall_ms(a.mean_wall_ms);
  c.set_mean_generated_tokens(a.mean_generated_tokens);
  c.set_mean_peak_state_bytes(a.mean_peak_state_bytes);
  return c;
}

// A status with `prefix` put before the message, the code kept.
absl::Status Prefixed(const absl::Status& s, const std::string& prefix) {
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

}  // namespace

// One run started (or resumed) by this process.
struct EvaluationService::Job {
  std::string id, owner;
  std::optional<eval::PreparedRun> prepared;  // its models loaded; the worker consumes it
  std::vector<std::string> missing;           // the suite's absent checkpoints (names)
  std::atomic<bool> cancel{false};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  std::mutex mu;  // guards the fields below
  v1::EvaluationState state = v1::EVALUATION_STATE_RUNNING;
  eval::Progress progress;
  bool progress_seen = false;
  bool user_cancelled = false;
  std::string error;
};

EvaluationService::EvaluationService(const ServiceContext* ctx, EvaluationServiceOptions options)
    : ctx_(ctx), options_(options) {}

EvaluationService::~EvaluationService() { Shutdown(); }

std::shared_ptr<EvaluationService::Job> EvaluationService::FindJob(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(run_id);
  return it == jobs_.end() ? nullptr : it->second;
}

void EvaluationService::Work(std::shared_ptr<Job> job) {
  absl::StatusOr<eval::RunResult> result =
      eval::RunEvaluation(std::move(*job->prepared), [&](const eval::Progress& p) {
        std::lock_guard<std::mutex> lock(job->mu);
        job->progress = p;
        job->progress_seen = true;
      });
  {
    std::lock_guard<std::mutex> lock(job->mu);
    if (result.ok()) {
      job->state = v1::EVALUATION_STATE_SUCCEEDED;
    } else if (result.status().code() == absl::StatusCode::kCancelled) {
      job->state =
          job->user_cancelled ? v1::EVALUATION_STATE_CANCELLED : v1::EVALUATION_STATE_INTERRUPTED;
    } else {
      job->state = v1::EVALUATION_STATE_FAILED;
      job->error = std::string(result.status().message());
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workers_.find(job->id);
  if (it != workers_.end()) {
    finished_.push_back(std::move(it->second));
    workers_.erase(it);
  }
  changed_.notify_all();
}

void EvaluationService::ReapLocked() {
  for (auto& t : finished_) t.join();  // past Work's last lock: they never take mu_ again
  finished_.clear();
}

absl::Status EvaluationService::OpenReadDbLocked() {
  if (read_db_ != nullptr) return absl::OkStatus();
  auto opened = store::Database::Open(ctx_->db_path);
  if (!opened.ok()) return opened.status();
  read_db_ = std::move(*opened);
  return absl::OkStatus();
}

absl::Status EvaluationService::Describe(const std::string& principal, const std::string& run_id,
                                         bool details, v1::EvaluationRun* out) {
  nlohmann::json config;
  int64_t created = 0, finished = 0, done = 0;
  std::vector<eval::Aggregate> cells;
  {
    std::lock_guard<std::mutex> lock(read_mu_);
    if (auto s = OpenReadDbLocked(); !s.ok()) return s;
    auto st = read_db_->Prepare(
        "SELECT config, created_unix_ms, COALESCE(finished_unix_ms, 0),"
        " (SELECT COUNT(*) FROM eval_episodes e WHERE e.run_id = r.id)"
        " FROM eval_runs r WHERE id = ?");
    if (!st.ok()) return st.status();
    st->Bind(1, std::string_view(run_id));
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (*row) {
      config = nlohmann::json::parse(st->ColumnText(0), nullptr, /*allow_exceptions=*/false);
      created = st->ColumnInt(1);
      finished = st->ColumnInt(2);
      done = st->ColumnInt(3);
    }
    if (!*row || !config.is_object() || config.value("owner", "") != principal) {
      return absl::NotFoundError(absl::StrCat("evaluation_id: no evaluation \"", run_id, "\""));
    }
    if (details) {
      eval::ResultsStore results(read_db_.get());
      auto aggregates = results.Aggregates(run_id);
      if (!aggregates.ok()) return aggregates.status();
      cells = std::move(*aggregates);
    }
  }
  out->set_evaluation_id(run_id);
  out->set_config_json(DumpJson(config));
  out->set_created_unix_ms(created);
  out->set_finished_unix_ms(finished);
  out->set_episodes_done(done);
  int64_t planned = finished > 0 ? done : eval::PlannedEpisodes(config);
  v1::EvaluationState state =
      finished > 0 ? v1::EVALUATION_STATE_SUCCEEDED : v1::EVALUATION_STATE_INTERRUPTED;
  if (std::shared_ptr<Job> job = FindJob(run_id)) {
    std::lock_guard<std::mutex> lock(job->mu);
    // The database says succeeded as soon as the run is finished, a moment before the job.
    if (finished == 0) state = job->state;
    out->set_error(job->error);
    for (const auto& m : job->missing) out->add_missing_models(m);
    if (job->progress_seen && finished == 0) {
      planned = job->progress.total;  // early stops already taken out
      out->set_current(job->progress.current);
      const double elapsed = Seconds(job->started);
      if (elapsed > 0) out->set_episodes_per_second(job->progress.done / elapsed);
    }
  }
  out->set_state(state);
  out->set_episodes_planned(planned);
  if (details) {
    for (const auto& a : cells) *out->add_cells() = ToCell(a);
    eval::EvalOptions report;
    report.db_path = ctx_->db_path;
    auto markdown = eval::ReportOnly(report, run_id);
    if (!markdown.ok()) return markdown.status();
    out->set_report_markdown(markdown->markdown);
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* EvaluationService::StartEvaluation(
    grpc::CallbackServerContext* context, const v1::StartEvaluationRequest* request,
    v1::EvaluationRun* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    auto options = ToOptions(*request, ctx_->models->models_dir(), ctx_->limits, options_);
    if (!options.ok()) return options.status();
    options->owner = principal;
    options->db_path = ctx_->db_path;
    auto job = std::make_shared<Job>();
    job->owner = principal;
    for (const auto& m : options->missing) {
      job->missing.push_back(fs::path(m).lexically_normal().filename().string());
    }
    options->cancel = &job->cancel;
    // Loads the models, once: their fingerprints are part of the run's identity, and the worker
    // runs on them. Checks the rest of the configuration.
    auto prepared = eval::PrepareRun(*options);
    if (!prepared.ok()) return Prefixed(prepared.status(), "request: ");
    const nlohmann::json& config = prepared->config();
    // The run exists in the database before the answer names it (the worker's own BeginRun
    // then finds it: INSERT OR IGNORE).
    std::string run_id;
    {
      auto db = store::Database::Open(ctx_->db_path);
      if (!db.ok()) return db.status();
      eval::ResultsStore results(db->get());
      auto begun = results.BeginRun(config, std::string(Version()));
      if (!begun.ok()) return begun.status();
      run_id = *begun;
    }
    job->id = run_id;
    job->prepared.emplace(std::move(*prepared));
    {
      std::lock_guard<std::mutex> lock(mu_);
      ReapLocked();
      if (shutting_down_) return absl::UnavailableError("server is shutting down");
      if (workers_.count(run_id) == 0) {
        if (static_cast<int>(workers_.size()) >= options_.max_running) {
          return absl::ResourceExhaustedError(absl::StrCat("evaluations: this server runs at most ",
                                                           options_.max_running,
                                                           " at once; retry later"));
        }
        jobs_[run_id] = job;
        workers_.emplace(run_id, std::thread(&EvaluationService::Work, this, job));
      }
      // else: already running; answer with its progress.
    }
    return Describe(principal, run_id, /*details=*/false, response);
  });
}

grpc::ServerUnaryReactor* EvaluationService::GetEvaluation(grpc::CallbackServerContext* context,
                                                           const v1::GetEvaluationRequest* request,
                                                           v1::EvaluationRun* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    if (request->evaluation_id().empty()) {
      return absl::InvalidArgumentError("evaluation_id: required");
    }
    return Describe(principal, request->evaluation_id(), /*details=*/true, response);
  });
}

grpc::ServerUnaryReactor* EvaluationService::CancelEvaluation(
    grpc::CallbackServerContext* context, const v1::CancelEvaluationRequest* request,
    v1::EvaluationRun* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    if (request->evaluation_id().empty()) {
      return absl::InvalidArgumentError("evaluation_id: required");
    }
    const std::string& id = request->evaluation_id();
    // Ownership first: another caller's run is NOT_FOUND, and stays running.
    if (auto s = Describe(principal, id, /*details=*/false, response); !s.ok()) return s;
    if (std::shared_ptr<Job> job = FindJob(id)) {
      {
        std::lock_guard<std::mutex> lock(job->mu);
        if (job->state == v1::EVALUATION_STATE_RUNNING) job->user_cancelled = true;
      }
      job->cancel.store(true, std::memory_order_release);
      // The runner reads the flag every step of its episodes: wait for it, briefly.
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait_for(lock, std::chrono::seconds(10), [&] { return workers_.count(id) == 0; });
    }
    response->Clear();
    return Describe(principal, id, /*details=*/false, response);
  });
}

grpc::ServerUnaryReactor* EvaluationService::ListEvaluations(
    grpc::CallbackServerContext* context, const v1::ListEvaluationsRequest* request,
    v1::ListEvaluationsResponse* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    auto page = ParsePage(request->page_size(), request->page_token());
    if (!page.ok()) return page.status();
    const int page_size = page->size;
    const int64_t offset = page->offset;
    std::vector<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(read_mu_);
      if (auto s = OpenReadDbLocked(); !s.ok()) return s;
      auto st = read_db_->Prepare(
          "SELECT id FROM eval_runs WHERE json_extract(config, '$.owner') = ?"
          " ORDER BY created_unix_ms DESC, rowid DESC LIMIT ? OFFSET ?");
      if (!st.ok()) return st.status();
      st->Bind(1, std::string_view(principal))
          .Bind(2, static_cast<int64_t>(page_size) + 1)
          .Bind(3, offset);
      while (true) {
        auto row = st->Step();
        if (!row.ok()) return row.status();
        if (!*row) break;
        ids.push_back(st->ColumnText(0));
      }
    }
    if (static_cast<int>(ids.size()) > page_size) {
      ids.resize(page_size);
      response->set_next_page_token(absl::StrCat(offset + page_size));
    }
    for (const std::string& id : ids) {
      if (auto s = Describe(principal, id, /*details=*/false, response->add_evaluations());
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  });
}

void EvaluationService::Shutdown() {
  std::unique_lock<std::mutex> lock(mu_);
  shutting_down_ = true;
  for (auto& [id, job] : jobs_) job->cancel.store(true, std::memory_order_release);
  changed_.wait(lock, [&] { return workers_.empty(); });
  ReapLocked();
}

bool EvaluationService::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool idle = changed_.wait_for(lock, timeout, [&] { return workers_.empty(); });
  ReapLocked();
  return idle;
}

int EvaluationService::running() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(workers_.size());
}

}  // namespace tapeloop::server
