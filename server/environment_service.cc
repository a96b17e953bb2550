#include "server/environment_service.h"

#include <atomic>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agents/agent_loop.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "common/tokenizer.h"
#include "common/utf8.h"
#include "tasks/task.h"
#include "tools/calculator.h"
#include "tools/pointer_memory.h"
#include "tools/registry.h"

namespace tapeloop::server {
namespace v1 = ::tapeloop::v1;
namespace {

using TimePoint = std::chrono::steady_clock::time_point;

constexpr char kSubmit[] = "submit";

// The final-answer tool: {"answer": "<decimal digits>"}. Records the answer; the service
// scores it and ends the episode.
class SubmitTool final : public tools::Tool {
 public:
  explicit SubmitTool(std::optional<std::string>* answer) : answer_(answer) {
    definition_.name = kSubmit;
    definition_.description =
        "Submit the final answer and end the episode: the exact result as decimal digits, "
        "most significant first (e.g. \"168\"). Reward 1 if it is correct, 0 otherwise.";
    definition_.input_schema = {
        {"type", "object"},
        {"properties",
         {{"answer", {{"type", "string"}, {"description", "the final answer, decimal digits"}}}}},
        {"required", {"answer"}},
        {"additionalProperties", false}};
  }
  const tools::ToolDefinition& definition() const override { return definition_; }
  tools::ToolResult Call(const tools::ToolCall& call) override {
    *answer_ = call.arguments["answer"].get<std::string>();
    return tools::ToolResult::Ok(call.id, "submitted");
  }

 private:
  std::optional<std::string>* answer_;
  tools::ToolDefinition definition_;
};

// The tools of a mode, registered into `registry`; pointer mode works on `memory` (the prompt
// without [BOS]).
void RegisterTools(tasks::Mode mode, std::vector<TokenId> memory,
                   std::optional<std::string>* answer, tools::ToolRegistry* registry) {
  if (mode == tasks::Mode::kPointer) {
    (void)registry->Register(std::make_unique<tools::PointerMemoryTool>(std::move(memory)));
  } else if (mode == tasks::Mode::kCalculator) {
    (void)registry->Register(std::make_unique<tools::CalculatorTool>());
  }
  (void)registry->Register(std::make_unique<SubmitTool>(answer));
}

void ToProto(const tools::ToolDefinition& d, v1::EnvToolDefinition* out) {
  out->set_name(d.name);
  out->set_description(d.description);
  out->set_input_schema_json(DumpJson(d.input_schema));
}

absl::StatusOr<const tasks::Task*> ParseTask(const std::string& name) {
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("task: required, one of ", absl::StrJoin(tasks::TaskNames(), ", ")));
  }
  auto task = tasks::FindTask(name);
  if (!task.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("task: ", task.status().message()));
  }
  return *task;
}

absl::StatusOr<tasks::Mode> ParseModeField(const std::string& name) {
  if (name.empty()) return tasks::Mode::kPointer;
  auto mode = tasks::ParseMode(name);
  if (!mode.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("mode: ", mode.status().message()));
  }
  return *mode;
}

}  // namespace

// One open environment. The fields below mu are guarded by it; the rest are fixed at Reset.
class Environment {
 public:
  std::string id;
  std::string principal;
  tasks::Instance instance;
  tasks::Mode mode = tasks::Mode::kPointer;
  int64_t max_steps = 0;
  std::chrono::nanoseconds idle_timeout{0};
  std::atomic<int64_t> last_used_ns{0};  // steady clock, for expiry without mu

  std::mutex mu;
  std::optional<std::string> answer;  // set by submit
  std::unique_ptr<tools::ToolRegistry> registry;
  int64_t steps = 0;
  bool terminated = false;
  bool truncated = false;
  bool closed = false;

  void Touch(TimePoint now) { last_used_ns.store(now.time_since_epoch().count()); }
  bool Expired(TimePoint now) const {
    return now.time_since_epoch().count() - last_used_ns.load() > idle_timeout.count();
  }
};

EnvironmentService::EnvironmentService(const ServiceContext* ctx, Clock clock)
    : ctx_(ctx),
      clock_(clock ? std::move(clock) : [] { return std::chrono::steady_clock::now(); }) {}

EnvironmentService::~EnvironmentService() { Shutdown(); }

void EnvironmentService::ExpireLocked(TimePoint now) {
  for (auto it = envs_.begin(); it != envs_.end();) {
    if (it->second->Expired(now)) {
      it = envs_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::StatusOr<std::shared_ptr<Environment>> EnvironmentService::Find(const std::string& principal,
                                                                      const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("env_id: required");
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLocked(clock_());
  auto it = envs_.find(id);
  if (it == envs_.end() || it->second->principal != principal) {
    return absl::NotFoundError(
        absl::StrCat("env_id: no open environment \"", id, "\" (closed, expired or unknown)"));
  }
  return it->second;
}

grpc::ServerUnaryReactor* EnvironmentService::ListTools(grpc::CallbackServerContext* context,
                                                        const v1::ListEnvToolsRequest* request,
                                                        v1::ListEnvToolsResponse* response) {
  return AnswerUnary(*ctx_, context, *request,
                     [&](const std::string& /*principal*/) -> absl::Status {
                       if (!request->task().empty())
                         RETURN_IF_ERROR(ParseTask(request->task()).status());
                       ASSIGN_OR_RETURN(tasks::Mode mode, ParseModeField(request->mode()));
                       std::optional<std::string> unused;
                       tools::ToolRegistry registry;
                       RegisterTools(mode, {}, &unused, &registry);
                       for (const auto& d : registry.Definitions())
                         ToProto(d, response->add_tools());
                       return absl::OkStatus();
                     });
}

grpc::ServerUnaryReactor* EnvironmentService::Reset(grpc::CallbackServerContext* context,
                                                    const v1::EnvResetRequest* request,
                                                    v1::EnvResetResponse* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    ASSIGN_OR_RETURN(const tasks::Task* task, ParseTask(request->task()));
    ASSIGN_OR_RETURN(tasks::Mode mode, ParseModeField(request->mode()));
    const ServiceLimits& limits = ctx_->limits;
    if (request->length() < 1 || request->length() > limits.max_episode_length) {
      return absl::InvalidArgumentError(absl::StrCat(
          "length: must be in 1..", limits.max_episode_length, ", got ", request->length()));
    }
    if (request->index() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("index: must be >= 0, got ", request->index()));
    }
    if (request->max_steps() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "max_steps: must be >= 0 (0: derived from the expert), got ", request->max_steps()));
    }
    const int64_t max_idle = limits.max_idle_timeout.count();
    if (request->idle_timeout_seconds() < 0 || request->idle_timeout_seconds() > max_idle) {
      return absl::InvalidArgumentError(absl::StrCat("idle_timeout_seconds: must be in 0..",
                                                     max_idle, " (0: the server's default), got ",
                                                     request->idle_timeout_seconds()));
    }

    auto env = std::make_shared<Environment>();
    env->principal = principal;
    env->mode = mode;
    const agents::EpisodeSpec spec = agents::MakeEpisodeSpec(
        task, mode, request->length(), request->seed(), request->index(), request->training());
    env->instance = spec.instance;
    env->max_steps = request->max_steps();
    if (env->max_steps == 0) {
      ASSIGN_OR_RETURN(tasks::Trajectory expert, task->Expert(env->instance, mode));
      int64_t generated = 0;
      for (size_t k = expert.PromptSize(); k < expert.tokens.size(); ++k) {
        generated += expert.roles[k] != tasks::Role::kObservation;
      }
      env->max_steps = 2 * generated + 64;
    }
    env->idle_timeout = request->idle_timeout_seconds() > 0
                            ? std::chrono::seconds(request->idle_timeout_seconds())
                            : limits.default_idle_timeout;
    const std::vector<TokenId> prompt = tasks::PromptTokens(env->instance);
    env->registry = std::make_unique<tools::ToolRegistry>(std::numeric_limits<int64_t>::max());
    RegisterTools(mode, std::vector<TokenId>(prompt.begin() + 1, prompt.end()), &env->answer,
                  env->registry.get());
    env->id = NewId("env");
    {
      std::lock_guard<std::mutex> lock(mu_);
      const TimePoint now = clock_();
      ExpireLocked(now);
      int open = 0;
      for (const auto& [id, e] : envs_) open += e->principal == principal;
      if (open >= limits.max_environments_per_principal) {
        return absl::ResourceExhaustedError(absl::StrCat("environments: at most ",
                                                         limits.max_environments_per_principal,
                                                         " open per caller; Close some first"));
      }
      env->Touch(now);
      envs_.emplace(env->id, env);
    }

    response->set_env_id(env->id);
    response->set_observation(env->instance.prompt);
    auto* instance = response->mutable_instance();
    instance->set_task(env->instance.task);
    for (const auto& operand : env->instance.operands) instance->add_operands(operand);
    instance->set_prompt(env->instance.prompt);
    instance->set_length(env->instance.length);
    nlohmann::json tool_names = nlohmann::json::array();
    for (const auto& d : env->registry->Definitions()) {
      ToProto(d, response->add_tools());
      tool_names.push_back(d.name);
    }
    nlohmann::json info = {
        {"mode", std::string(tasks::ModeName(mode))},
        {"max_steps", env->max_steps},
        {"tools", tool_names},
        {"idle_timeout_seconds",
         std::chrono::duration_cast<std::chrono::seconds>(env->idle_timeout).count()},
        {"answer", "call submit with {\"answer\": \"<decimal digits>\"}"}};
    if (mode == tasks::Mode::kPointer) {
      info["pointers"] = task->pointers();
      info["memory"] = env->instance.prompt;
    }
    response->set_info_json(DumpJson(info));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EnvironmentService::Step(grpc::CallbackServerContext* context,
                                                   const v1::EnvStepRequest* request,
                                                   v1::EnvStepResponse* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Environment> env, Find(principal, request->env_id()));
    std::lock_guard<std::mutex> lock(env->mu);
    if (env->closed) {
      return absl::NotFoundError(
          absl::StrCat("env_id: no open environment \"", request->env_id(), "\" (closed)"));
    }
    env->Touch(clock_());
    if (env->terminated || env->truncated) {
      return absl::FailedPreconditionError(absl::StrCat(
          "env_id: the episode is over (", env->terminated ? "terminated" : "truncated", " after ",
          env->steps, " steps); Reset a new environment"));
    }
    const v1::EnvToolCall& c = request->call();
    if (env->registry->Find(c.name()) == nullptr) {
      std::vector<std::string> names;
      for (const auto& d : env->registry->Definitions()) names.push_back(d.name);
      return absl::InvalidArgumentError(absl::StrCat("call.name: unknown tool \"", c.name(),
                                                     "\"; this environment has ",
                                                     absl::StrJoin(names, ", ")));
    }
    tools::ToolCall tool_call;
    tool_call.id = c.id();
    tool_call.name = c.name();
    tool_call.arguments = nlohmann::json::parse(c.arguments_json(), nullptr,
                                                /*allow_exceptions=*/false);
    if (tool_call.arguments.is_discarded()) {
      return absl::InvalidArgumentError(
          "call.arguments_json: not valid JSON (expected an object matching the tool's "
          "input schema)");
    }
    ++env->steps;
    const tools::ToolResult result = env->registry->Call(tool_call);
    auto* obs = response->mutable_observation();
    obs->set_call_id(result.call_id);
    obs->set_text(SanitizeUtf8(result.text));
    obs->set_is_error(result.is_error);
    if (result.structured.has_value()) obs->set_structured_json(DumpJson(*result.structured));
    nlohmann::json info = {{"step", env->steps}, {"max_steps", env->max_steps}};
    if (c.name() == kSubmit && !result.is_error && env->answer.has_value()) {
      const tasks::Score score =
          tasks::ScoreOutput(env->instance, tasks::Mode::kDirect, Tokenizer().Encode(*env->answer));
      env->terminated = true;
      response->set_reward(score.exact ? 1.0 : 0.0);
      info["answer"] = *env->answer;
      info["expected"] = env->instance.answer;
      info["correct"] = score.exact;
      info["digit_accuracy"] = score.digit_accuracy;
    } else if (env->steps >= env->max_steps) {
      env->truncated = true;
    }
    response->set_terminated(env->terminated);
    response->set_truncated(env->truncated);
    response->set_step(env->steps);
    response->set_info_json(DumpJson(info));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EnvironmentService::Close(grpc::CallbackServerContext* context,
                                                    const v1::EnvCloseRequest* request,
                                                    v1::EnvCloseResponse* response) {
  return AnswerUnary(*ctx_, context, *request, [&](const std::string& principal) -> absl::Status {
    std::shared_ptr<Environment> env;
    {
      if (request->env_id().empty()) return absl::InvalidArgumentError("env_id: required");
      std::lock_guard<std::mutex> lock(mu_);
      ExpireLocked(clock_());
      auto it = envs_.find(request->env_id());
      if (it == envs_.end() || it->second->principal != principal) {
        return absl::NotFoundError(absl::StrCat("env_id: no open environment \"", request->env_id(),
                                                "\" (closed, expired or unknown)"));
      }
      env = it->second;
      envs_.erase(it);
    }
    std::lock_guard<std::mutex> lock(env->mu);
    env->closed = true;
    response->set_steps(env->steps);
    response->set_terminated(env->terminated);
    response->set_truncated(env->truncated);
    return absl::OkStatus();
  });
}

void EnvironmentService::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  envs_.clear();
}

int EnvironmentService::open_environments() {
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLocked(clock_());
  return static_cast<int>(envs_.size());
}

}  // namespace tapeloop::server
