// tapeloop.v1.Environment over real loopback gRPC: expert trajectories replayed as tool calls
// reach reward 1 on random tasks and lengths, wrong answers get 0, max_steps truncates, bad
// tool arguments are error observations, malformed requests get their exact codes, per-caller
// limits and idle expiry (on a fake clock).
#include "server/environment_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "agents/agent_loop.h"
#include "common/tokenizer.h"
#include "tasks/task.h"
#include "tests/server/service_fixture.h"
#include "tools/tool.h"

namespace tapeloop::server {
namespace {

namespace v1 = ::tapeloop::v1;
using testing::ServiceFixture;
using Json = nlohmann::json;

class Env {
 public:
  explicit Env(ServiceFixture* f, EnvironmentService::Clock clock = nullptr)
      : service_(f->context(), std::move(clock)) {
    f->Start({&service_});
    stub_ = v1::Environment::NewStub(f->channel());
  }
  EnvironmentService& service() { return service_; }
  v1::Environment::Stub* stub() { return stub_.get(); }

  grpc::Status Reset(const v1::EnvResetRequest& r, v1::EnvResetResponse* out,
                     const std::string& key = "") {
    auto ctx = ServiceFixture::Ctx(key);
    return stub_->Reset(ctx.get(), r, out);
  }
  grpc::Status Step(const std::string& env_id, const std::string& name, const std::string& args,
                    v1::EnvStepResponse* out, const std::string& key = "",
                    const std::string& call_id = "c") {
    v1::EnvStepRequest r;
    r.set_env_id(env_id);
    r.mutable_call()->set_id(call_id);
    r.mutable_call()->set_name(name);
    r.mutable_call()->set_arguments_json(args);
    auto ctx = ServiceFixture::Ctx(key);
    return stub_->Step(ctx.get(), r, out);
  }
  grpc::Status Close(const std::string& env_id, const std::string& key = "") {
    v1::EnvCloseRequest r;
    r.set_env_id(env_id);
    v1::EnvCloseResponse out;
    auto ctx = ServiceFixture::Ctx(key);
    return stub_->Close(ctx.get(), r, &out);
  }

 private:
  EnvironmentService service_;
  std::unique_ptr<v1::Environment::Stub> stub_;
};

v1::EnvResetRequest ResetRequest(const std::string& task, const std::string& mode, int64_t length,
                                 int64_t seed, int64_t index, int64_t max_steps = 0) {
  v1::EnvResetRequest r;
  r.set_task(task);
  r.set_mode(mode);
  r.set_length(length);
  r.set_seed(seed);
  r.set_index(index);
  r.set_max_steps(max_steps);
  return r;
}

// The expert's answer in reading order (the output stream is most significant first except
// in direct-reversed mode).
std::string AnswerOf(const tasks::Trajectory& expert) {
  const Tokenizer tokenizer;
  std::string out;
  for (TokenId t : expert.Output()) out += tokenizer.TokenText(t);
  if (expert.mode == tasks::Mode::kDirectReversed) std::reverse(out.begin(), out.end());
  return out;
}

// Replays the expert trajectory of (task, mode, length, seed, index) as tool calls: pointer
// commands become pointer_memory calls (each read must observe the expert's token), runs of
// thoughts and outputs become appends, the calculator call a calculator call, and [EOS] a
// submit of the expert's answer. Returns the last step.
v1::EnvStepResponse PlayExpert(Env& env, const v1::EnvResetRequest& request, int* steps) {
  const tasks::Task* task = *tasks::FindTask(request.task());
  const tasks::Mode mode = *tasks::ParseMode(request.mode());
  const agents::EpisodeSpec spec = agents::MakeEpisodeSpec(
      task, mode, request.length(), request.seed(), request.index(), request.training());
  const tasks::Trajectory expert = *task->Expert(spec.instance, mode);
  v1::EnvResetResponse reset;
  EXPECT_TRUE(env.Reset(request, &reset).ok());
  EXPECT_EQ(reset.observation(), spec.instance.prompt);
  EXPECT_EQ(reset.instance().prompt(), spec.instance.prompt);
  EXPECT_EQ(reset.instance().operands_size(), static_cast<int>(spec.instance.operands.size()));
  const Tokenizer tokenizer;
  static constexpr const char* kOps[] = {"new", "left", "right", "read", "write"};
  v1::EnvStepResponse last;
  std::string pending;  // thoughts / outputs not yet appended
  int call = 0;
  auto step = [&](const std::string& name, const Json& args) {
    const std::string id = "call-" + std::to_string(++call);
    EXPECT_TRUE(env.Step(reset.env_id(), name, args.dump(), &last, "", id).ok());
    EXPECT_EQ(last.observation().call_id(), id);
    EXPECT_FALSE(last.observation().is_error())
        << name << " " << args.dump() << ": " << last.observation().text();
    ++*steps;
  };
  auto flush = [&] {
    if (mode == tasks::Mode::kPointer && !pending.empty()) {
      step("pointer_memory", {{"op", "append"}, {"text", pending}});
    }
    pending.clear();
  };
  for (size_t k = expert.PromptSize(); k < expert.tokens.size(); ++k) {
    const TokenId t = expert.tokens[k];
    const tasks::Role role = expert.roles[k];
    if (mode == tasks::Mode::kPointer && tokens::IsPointerCommand(t)) {
      flush();
      step("pointer_memory", {{"op", kOps[static_cast<int>(tokens::CommandOp(t))]},
                              {"pointer", tokens::CommandPointer(t)}});
      if (tokens::CommandOp(t) == tokens::PointerOp::kRead) {
        EXPECT_EQ(last.observation().text(), tokenizer.TokenText(expert.tokens[k + 1]));
        ++k;  // the observation token
      }
    } else if (mode == tasks::Mode::kCalculator && t == tokens::kCall) {
      step("calculator", {{"op", std::string(task->name()).rfind("mult", 0) == 0 ? "mul" : "add"},
                          {"a", spec.instance.operands[0]},
                          {"b", spec.instance.operands[1]}});
      EXPECT_EQ(last.observation().text(), spec.instance.answer);
      while (expert.tokens[k] != tokens::kObsEnd) ++k;  // the call and its observation
    } else if (t == tokens::kEos) {
      flush();
      step("submit", {{"answer", AnswerOf(expert)}});
    } else if (role == tasks::Role::kThought || role == tasks::Role::kOutput) {
      pending += tokenizer.TokenText(t);
    }
    if (last.terminated() || last.truncated()) break;
  }
  return last;
}

TEST(EnvironmentServiceTest, ExpertToolCallsReachRewardOneOnRandomTasksAndLengths) {
  ServiceFixture f;
  Env env(&f);
  tasks::Rng rng(777);
  const std::vector<std::string> task_names = {"addition", "multiplication-n2",
                                               "multiplication-n1"};
  int episodes = 0, total_steps = 0;
  for (int i = 0; i < 15; ++i) {
    for (const std::string mode : {"pointer", "calculator", "direct"}) {
      auto request = ResetRequest(task_names[rng.Uniform(0, 2)], mode, rng.Uniform(1, 50),
                                  rng.Uniform(0, 1 << 20), rng.Uniform(0, 9));
      request.set_training(rng.Uniform(0, 1) == 1);
      SCOPED_TRACE(request.ShortDebugString());
      int steps = 0;
      v1::EnvStepResponse last = PlayExpert(env, request, &steps);
      EXPECT_TRUE(last.terminated());
      EXPECT_FALSE(last.truncated());
      EXPECT_EQ(last.reward(), 1.0);
      EXPECT_EQ(last.step(), steps);
      const Json info = Json::parse(last.info_json());
      EXPECT_EQ(info["correct"], true);
      EXPECT_EQ(info["answer"], info["expected"]);
      total_steps += steps;
      ++episodes;
    }
  }
  EXPECT_EQ(episodes, 45);
  EXPECT_GT(total_steps, 45 * 10);
}

TEST(EnvironmentServiceTest, WrongAnswerGetsRewardZeroAndEndsTheEpisode) {
  ServiceFixture f;
  Env env(&f);
  v1::EnvResetResponse reset;
  ASSERT_TRUE(env.Reset(ResetRequest("addition", "pointer", 300, 5, 1), &reset).ok());
  const tasks::Instance instance =
      agents::MakeEpisodeSpec(*tasks::FindTask("addition"), tasks::Mode::kPointer, 300, 5, 1)
          .instance;
  std::string wrong = instance.answer;
  wrong.back() = wrong.back() == '9' ? '0' : wrong.back() + 1;
  v1::EnvStepResponse step;
  ASSERT_TRUE(env.Step(reset.env_id(), "submit", Json{{"answer", wrong}}.dump(), &step).ok());
  EXPECT_TRUE(step.terminated());
  EXPECT_EQ(step.reward(), 0.0);
  const Json info = Json::parse(step.info_json());
  EXPECT_EQ(info["expected"], instance.answer);  // 300+ digits, as a digit string
  EXPECT_EQ(info["correct"], false);
  EXPECT_GT(info["digit_accuracy"].get<double>(), 0.99);
  grpc::Status after =
      env.Step(reset.env_id(), "submit", Json{{"answer", instance.answer}}.dump(), &step);
  EXPECT_EQ(after.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST(EnvironmentServiceTest, MaxStepsTruncates) {
  ServiceFixture f;
  Env env(&f);
  v1::EnvResetResponse reset;
  ASSERT_TRUE(env.Reset(ResetRequest("multiplication-n2", "pointer", 12, 8, 0, 4), &reset).ok());
  EXPECT_EQ(Json::parse(reset.info_json())["max_steps"], 4);
  v1::EnvStepResponse step;
  ASSERT_TRUE(
      env.Step(reset.env_id(), "pointer_memory", R"({"op":"new","pointer":1})", &step).ok());
  for (int i = 2; i <= 4; ++i) {
    ASSERT_TRUE(
        env.Step(reset.env_id(), "pointer_memory", R"({"op":"read","pointer":1})", &step).ok());
    EXPECT_EQ(step.step(), i);
    EXPECT_EQ(step.truncated(), i == 4);
    EXPECT_FALSE(step.terminated());
    EXPECT_EQ(step.reward(), 0.0);
  }
  EXPECT_EQ(env.Step(reset.env_id(), "submit", R"({"answer":"1"})", &step).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // The derived default: larger than the expert's episode.
  ASSERT_TRUE(env.Reset(ResetRequest("addition", "pointer", 20, 8, 0), &reset).ok());
  EXPECT_GT(Json::parse(reset.info_json())["max_steps"].get<int64_t>(), 20 * 20);
}

TEST(EnvironmentServiceTest, BadToolArgumentsAreErrorObservationsNotRpcErrors) {
  ServiceFixture f;
  Env env(&f);
  v1::EnvResetResponse reset;
  ASSERT_TRUE(env.Reset(ResetRequest("addition", "pointer", 3, 1, 0), &reset).ok());
  const std::string id = reset.env_id();
  struct Case {
    std::string name, args, message;  // message: a piece of the observation text
  };
  const std::vector<Case> cases = {
      {"pointer_memory", R"({"op":"read"})", "pointer"},  // missing field
      {"pointer_memory", R"({"op":"read","pointer":2})", "never created"},
      {"pointer_memory", R"({"op":"fly","pointer":1})", "op"},       // not in the enum
      {"pointer_memory", R"({"op":"new","pointer":9})", "pointer"},  // above maximum
      {"pointer_memory", R"({"op":"new","pointer":1,"x":1})", "x"},  // undeclared property
      {"pointer_memory", R"([1,2])", ""},                            // not an object
      {"submit", R"({"answer":123})", "answer"},                     // a number, not a string
      {"submit", R"({})", "answer"},
  };
  v1::EnvStepResponse step;
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name + " " + c.args);
    ASSERT_TRUE(env.Step(id, c.name, c.args, &step, "", "id-" + std::to_string(n)).ok());
    EXPECT_EQ(step.observation().call_id(), "id-" + std::to_string(n++));
    EXPECT_TRUE(step.observation().is_error());
    EXPECT_NE(step.observation().text().find(c.message), std::string::npos)
        << step.observation().text();
    EXPECT_FALSE(step.terminated());
  }
  // Moving off the tape: one position past the start is allowed, two are not.
  ASSERT_TRUE(env.Step(id, "pointer_memory", R"({"op":"new","pointer":1})", &step).ok());
  ASSERT_TRUE(env.Step(id, "pointer_memory", R"({"op":"left","pointer":1})", &step).ok());
  EXPECT_FALSE(step.observation().is_error()) << step.observation().text();
  ASSERT_TRUE(env.Step(id, "pointer_memory", R"({"op":"read","pointer":1})", &step).ok());
  EXPECT_EQ(step.observation().text(), "[END]");
  ASSERT_TRUE(env.Step(id, "pointer_memory", R"({"op":"left","pointer":1})", &step).ok());
  EXPECT_TRUE(step.observation().is_error());
  // The state is unchanged by the refused move: the pointer reads the first token again
  // after one step right.
  ASSERT_TRUE(env.Step(id, "pointer_memory", R"({"op":"right","pointer":1})", &step).ok());
  ASSERT_TRUE(env.Step(id, "pointer_memory", R"({"op":"read","pointer":1})", &step).ok());
  const tasks::Instance instance =
      agents::MakeEpisodeSpec(*tasks::FindTask("addition"), tasks::Mode::kPointer, 3, 1, 0)
          .instance;
  EXPECT_EQ(step.observation().text(), instance.prompt.substr(0, 1));
  EXPECT_EQ(Json::parse(step.observation().structured_json())["position"], 0);
  // Calculator errors too.
  ASSERT_TRUE(env.Reset(ResetRequest("addition", "calculator", 3, 1, 0), &reset).ok());
  ASSERT_TRUE(
      env.Step(reset.env_id(), "calculator", R"({"op":"add","a":"12x","b":"3"})", &step).ok());
  EXPECT_TRUE(step.observation().is_error());
  ASSERT_TRUE(
      env.Step(reset.env_id(), "calculator", R"({"op":"mul","a":"-12","b":"3"})", &step).ok());
  EXPECT_EQ(step.observation().text(), "-36");
}

TEST(EnvironmentServiceTest, MalformedRequestsGetTheirExactCodes) {
  ServiceFixture f;
  ASSERT_TRUE(f.keys()->Add("alice-key-0123456789", "alice").ok());
  ASSERT_TRUE(f.keys()->Add("bob-key-0123456789ab", "bob").ok());
  f.limits()->max_episode_length = 2000;
  Env env(&f);
  const std::string alice = "alice-key-0123456789", bob = "bob-key-0123456789ab";
  v1::EnvResetResponse open, done, closed;
  ASSERT_TRUE(env.Reset(ResetRequest("addition", "pointer", 5, 1, 0), &open, alice).ok());
  ASSERT_TRUE(env.Reset(ResetRequest("addition", "direct", 5, 1, 0), &done, alice).ok());
  ASSERT_TRUE(env.Reset(ResetRequest("addition", "pointer", 5, 1, 0), &closed, alice).ok());
  v1::EnvStepResponse step;
  ASSERT_TRUE(env.Step(done.env_id(), "submit", R"({"answer":"0"})", &step, alice).ok());
  ASSERT_TRUE(step.terminated());
  ASSERT_TRUE(env.Close(closed.env_id(), alice).ok());

  struct Case {
    std::string name;
    std::function<grpc::Status()> call;
    grpc::StatusCode code;
    std::string field;  // the message names it
  };
  auto reset = [&](v1::EnvResetRequest r, const std::string& key = "alice-key-0123456789") {
    return [&env, r, key] {
      v1::EnvResetResponse out;
      return env.Reset(r, &out, key);
    };
  };
  auto step_call = [&](std::string id, std::string name, std::string args,
                       std::string key = "alice-key-0123456789") {
    return [&env, id, name, args, key] {
      v1::EnvStepResponse out;
      return env.Step(id, name, args, &out, key);
    };
  };
  const std::string read = R"({"op":"read","pointer":1})";
  const std::vector<Case> cases = {
      {"unknown task", reset(ResetRequest("division", "pointer", 5, 1, 0)),
       grpc::StatusCode::INVALID_ARGUMENT, "task"},
      {"empty task", reset(ResetRequest("", "pointer", 5, 1, 0)),
       grpc::StatusCode::INVALID_ARGUMENT, "task"},
      {"zero length", reset(ResetRequest("addition", "pointer", 0, 1, 0)),
       grpc::StatusCode::INVALID_ARGUMENT, "length"},
      {"negative length", reset(ResetRequest("addition", "pointer", -4, 1, 0)),
       grpc::StatusCode::INVALID_ARGUMENT, "length"},
      {"huge length", reset(ResetRequest("addition", "pointer", int64_t{1} << 50, 1, 0)),
       grpc::StatusCode::INVALID_ARGUMENT, "length"},
      {"unknown mode", reset(ResetRequest("addition", "abacus", 5, 1, 0)),
       grpc::StatusCode::INVALID_ARGUMENT, "mode"},
      {"negative index", reset(ResetRequest("addition", "pointer", 5, 1, -2)),
       grpc::StatusCode::INVALID_ARGUMENT, "index"},
      {"negative max_steps", reset(ResetRequest("addition", "pointer", 5, 1, 0, -1)),
       grpc::StatusCode::INVALID_ARGUMENT, "max_steps"},
      {"no key", reset(ResetRequest("addition", "pointer", 5, 1, 0), ""),
       grpc::StatusCode::UNAUTHENTICATED, ""},
      {"unknown env id", step_call("env_ffffffffffffffffffffffffffffffff", "pointer_memory", read),
       grpc::StatusCode::NOT_FOUND, "env_id"},
      {"empty env id", step_call("", "pointer_memory", read), grpc::StatusCode::INVALID_ARGUMENT,
       "env_id"},
      {"another caller's env", step_call(open.env_id(), "pointer_memory", read, bob),
       grpc::StatusCode::NOT_FOUND, "env_id"},
      {"malformed arguments JSON", step_call(open.env_id(), "pointer_memory", R"({"op": "re)"),
       grpc::StatusCode::INVALID_ARGUMENT, "arguments_json"},
      {"empty arguments", step_call(open.env_id(), "pointer_memory", ""),
       grpc::StatusCode::INVALID_ARGUMENT, "arguments_json"},
      {"unknown tool", step_call(open.env_id(), "rm_rf", read), grpc::StatusCode::INVALID_ARGUMENT,
       "name"},
      {"calculator in pointer mode", step_call(open.env_id(), "calculator", read),
       grpc::StatusCode::INVALID_ARGUMENT, "name"},
      {"step after close", step_call(closed.env_id(), "pointer_memory", read),
       grpc::StatusCode::NOT_FOUND, "env_id"},
      {"step after termination", step_call(done.env_id(), "submit", R"({"answer":"1"})"),
       grpc::StatusCode::FAILED_PRECONDITION, "env_id"},
      {"close twice", [&] { return env.Close(closed.env_id(), alice); },
       grpc::StatusCode::NOT_FOUND, "env_id"},
      {"close another caller's env", [&] { return env.Close(open.env_id(), bob); },
       grpc::StatusCode::NOT_FOUND, "env_id"},
      {"tools of an unknown mode",
       [&] {
         v1::ListEnvToolsRequest r;
         r.set_mode("abacus");
         v1::ListEnvToolsResponse out;
         auto ctx = ServiceFixture::Ctx(alice);
         return env.stub()->ListTools(ctx.get(), r, &out);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "mode"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    grpc::Status s = c.call();
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_NE(s.error_message().find(c.field), std::string::npos) << s.error_message();
  }
  // The malformed calls did not count as steps, and the open env still works for its owner.
  ASSERT_TRUE(
      env.Step(open.env_id(), "pointer_memory", R"({"op":"new","pointer":1})", &step, alice).ok());
  EXPECT_EQ(step.step(), 1);
}

TEST(EnvironmentServiceTest, PerCallerLimitOfOpenEnvironments) {
  ServiceFixture f;
  ASSERT_TRUE(f.keys()->Add("alice-key-0123456789", "alice").ok());
  ASSERT_TRUE(f.keys()->Add("bob-key-0123456789ab", "bob").ok());
  f.limits()->max_environments_per_principal = 3;
  Env env(&f);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    v1::EnvResetResponse r;
    ASSERT_TRUE(
        env.Reset(ResetRequest("addition", "pointer", 5, i, 0), &r, "alice-key-0123456789").ok());
    ids.push_back(r.env_id());
  }
  v1::EnvResetResponse r;
  grpc::Status full =
      env.Reset(ResetRequest("addition", "pointer", 5, 9, 0), &r, "alice-key-0123456789");
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(
      env.Reset(ResetRequest("addition", "pointer", 5, 9, 0), &r, "bob-key-0123456789ab").ok());
  ASSERT_TRUE(env.Close(ids[1], "alice-key-0123456789").ok());
  EXPECT_TRUE(
      env.Reset(ResetRequest("addition", "pointer", 5, 9, 0), &r, "alice-key-0123456789").ok());
  EXPECT_EQ(env.service().open_environments(), 4);
}

TEST(EnvironmentServiceTest, IdleEnvironmentsExpire) {
  ServiceFixture f;
  f.limits()->default_idle_timeout = std::chrono::seconds(600);
  std::atomic<int64_t> now_s{1000};
  Env env(&f, [&] {
    return std::chrono::steady_clock::time_point(std::chrono::seconds(now_s.load()));
  });
  v1::EnvResetResponse a, b;
  ASSERT_TRUE(env.Reset(ResetRequest("addition", "pointer", 5, 1, 0), &a).ok());
  auto short_lived = ResetRequest("addition", "pointer", 5, 2, 0);
  short_lived.set_idle_timeout_seconds(30);
  ASSERT_TRUE(env.Reset(short_lived, &b).ok());
  v1::EnvStepResponse step;
  // Used every 500 s, `a` stays open past its 600 s timeout.
  for (int i = 0; i < 3; ++i) {
    now_s += 500;
    ASSERT_TRUE(env.Step(a.env_id(), "pointer_memory", R"({"op":"new","pointer":1})", &step).ok())
        << i;
  }
  EXPECT_EQ(
      env.Step(b.env_id(), "pointer_memory", R"({"op":"new","pointer":1})", &step).error_code(),
      grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(env.service().open_environments(), 1);
  now_s += 601;
  EXPECT_EQ(
      env.Step(a.env_id(), "pointer_memory", R"({"op":"read","pointer":1})", &step).error_code(),
      grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(env.service().open_environments(), 0);
  // Out-of-range timeouts are refused.
  auto too_long = ResetRequest("addition", "pointer", 5, 2, 0);
  too_long.set_idle_timeout_seconds(f.limits()->max_idle_timeout.count() + 1);
  EXPECT_EQ(env.Reset(too_long, &b).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(EnvironmentServiceTest, ToolDefinitionsFollowTheConvention) {
  ServiceFixture f;
  Env env(&f);
  const std::vector<std::pair<std::string, std::vector<std::string>>> want = {
      {"pointer", {"pointer_memory", "submit"}},
      {"calculator", {"calculator", "submit"}},
      {"cot", {"submit"}},
      {"direct", {"submit"}},
      {"direct-reversed", {"submit"}}};
  for (const auto& [mode, names] : want) {
    v1::ListEnvToolsRequest r;
    r.set_task("multiplication");
    r.set_mode(mode);
    v1::ListEnvToolsResponse out;
    auto ctx = ServiceFixture::Ctx();
    ASSERT_TRUE(env.stub()->ListTools(ctx.get(), r, &out).ok());
    std::vector<std::string> got;
    for (const auto& t : out.tools()) {
      got.push_back(t.name());
      EXPECT_TRUE(tools::ValidateToolName(t.name()).ok());
      EXPECT_FALSE(t.description().empty());
      const Json schema = Json::parse(t.input_schema_json());
      EXPECT_TRUE(tools::ValidateInputSchema(schema).ok()) << t.input_schema_json();
      EXPECT_EQ(schema["type"], "object");
      EXPECT_EQ(schema["additionalProperties"], false);
      EXPECT_TRUE(schema["required"].is_array());
    }
    EXPECT_EQ(got, names) << mode;
  }
}

}  // namespace
}  // namespace tapeloop::server
