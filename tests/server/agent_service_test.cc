// tapeloop.v1.Agent over real loopback gRPC and a real SQLite file: streamed episodes equal the
// in-process agent loop's (oracle and the bundled mamba2-pointer; code_debug with its oracle and
// the bundled nemotron_h-code-debug), are stored before `finished` and survive a restart;
// cancellation, shutdown, the concurrency limit and malformed requests.
#include "server/agent_service.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "agents/agent_loop.h"
#include "agents/engine_policy.h"
#include "agents/oracle_policy.h"
#include "common/json.h"
#include "engine/models/model.h"
#include "eval/code_debug_suite.h"
#include "tasks/code_debug/code_debug.h"
#include "tasks/task.h"
#include "tests/server/service_fixture.h"

namespace tapeloop::server {
namespace {

namespace v1 = ::tapeloop::v1;
using testing::ServiceFixture;

struct Streamed {
  std::vector<v1::EpisodeEvent> events;
  grpc::Status status;
  int messages = 0;

  const v1::EpisodeStarted* started() const {
    return !events.empty() && events.front().has_started() ? &events.front().started() : nullptr;
  }
  const v1::EpisodeFinished* finished() const {
    return !events.empty() && events.back().has_finished() ? &events.back().finished() : nullptr;
  }
  std::vector<TokenId> tokens() const {
    std::vector<TokenId> out;
    for (const auto& e : events) {
      if (e.has_token()) out.push_back(e.token().id());
    }
    return out;
  }
};

Streamed RunStream(v1::Agent::Stub* stub, const v1::RunEpisodeRequest& request,
                   const std::string& key = "") {
  Streamed s;
  auto ctx = ServiceFixture::Ctx(key, 120);
  auto reader = stub->RunEpisode(ctx.get(), request);
  v1::RunEpisodeResponse message;
  while (reader->Read(&message)) {
    ++s.messages;
    for (const auto& e : message.events()) s.events.push_back(e);
  }
  s.status = reader->Finish();
  return s;
}

v1::RunEpisodeRequest Request(const std::string& task, const std::string& mode, int64_t length,
                              int64_t seed, int64_t index, const std::string& policy) {
  v1::RunEpisodeRequest r;
  r.set_task(task);
  r.set_mode(mode);
  r.set_length(length);
  r.set_seed(seed);
  r.set_index(index);
  r.set_policy(policy);
  return r;
}

nlohmann::json Untimed(nlohmann::json j) {
  j.erase("timings");
  for (auto& c : j["calls"]) c.erase("ms");
  return j;
}

// The stored episode `id` (GetEpisode fails the test unless it answers OK).
v1::GetEpisodeResponse Stored(v1::Agent::Stub* stub, const std::string& id) {
  v1::GetEpisodeRequest get;
  get.set_episode_id(id);
  v1::GetEpisodeResponse got;
  auto ctx = ServiceFixture::Ctx();
  const grpc::Status status = stub->GetEpisode(ctx.get(), get, &got);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return got;
}

// The in-process twin of a streamed episode: the same spec through agents::RunEpisodes.
agents::EpisodeRecord InProcess(agents::Policy& policy, const v1::RunEpisodeRequest& r) {
  const tasks::Task* task = *tasks::FindTask(r.task());
  const tasks::Mode mode = *tasks::ParseMode(r.mode().empty() ? "pointer" : r.mode());
  const agents::EpisodeSpec spec =
      agents::MakeEpisodeSpec(task, mode, r.length(), r.seed(), r.index(), r.training());
  auto records = agents::RunEpisodes(policy, std::span(&spec, 1), {.parallel = 1});
  EXPECT_TRUE(records.ok());
  return records->front();
}

// The streamed episode equals `want`: prompt, every token and role, tool calls paired with
// their results, the final answer and score; the stored record is `want`'s JSON.
void ExpectSameEpisode(const Streamed& s, const agents::EpisodeRecord& want,
                       v1::Agent::Stub* stub) {
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  ASSERT_NE(s.started(), nullptr);
  ASSERT_NE(s.finished(), nullptr);
  const size_t prompt = want.trajectory.PromptSize();
  EXPECT_EQ(s.started()->prompt(), want.instance.prompt);
  EXPECT_EQ(std::vector<TokenId>(s.started()->prompt_tokens().begin(),
                                 s.started()->prompt_tokens().end()),
            std::vector<TokenId>(want.trajectory.tokens.begin(),
                                 want.trajectory.tokens.begin() + prompt));
  EXPECT_EQ(s.tokens(), std::vector<TokenId>(want.trajectory.tokens.begin() + prompt,
                                             want.trajectory.tokens.end()));
  const Tokenizer tokenizer;
  std::string roles;
  int64_t position = static_cast<int64_t>(prompt);
  std::vector<std::string> open_calls;
  int calls = 0;
  for (const auto& e : s.events) {
    if (e.has_token()) {
      ASSERT_EQ(e.token().position(), position++);
      EXPECT_EQ(e.token().text(), tokenizer.TokenText(e.token().id()));
      roles += "?PTCOAE"[e.token().role()];
    } else if (e.has_tool_call()) {
      ++calls;
      open_calls.push_back(e.tool_call().call_id());
      EXPECT_TRUE(nlohmann::json::parse(e.tool_call().arguments_json()).is_object());
    } else if (e.has_tool_result()) {
      ASSERT_FALSE(open_calls.empty());
      EXPECT_EQ(e.tool_result().call_id(), open_calls.back());
      open_calls.pop_back();
    }
  }
  EXPECT_TRUE(open_calls.empty());
  EXPECT_EQ(roles, want.trajectory.RoleString().substr(prompt));
  if (want.mode == tasks::Mode::kCalculator) {
    EXPECT_EQ(calls, static_cast<int>(want.calls.size()));
  }
  if (want.mode == tasks::Mode::kPointer) {
    EXPECT_EQ(calls, want.tool_steps);
  }
  const v1::EpisodeFinished& f = *s.finished();
  EXPECT_EQ(f.episode_id(), s.started()->episode_id());
  EXPECT_EQ(f.final_answer(), want.OutputText());
  EXPECT_EQ(f.expected(), want.score.expected);
  EXPECT_EQ(f.correct(), want.score.exact);
  EXPECT_EQ(f.stop_reason(), want.stop_reason);
  EXPECT_EQ(f.total_tokens(), static_cast<int64_t>(want.trajectory.tokens.size()));
  EXPECT_EQ(f.generated_tokens(), want.generated_tokens);
  EXPECT_TRUE(f.stored());

  const v1::GetEpisodeResponse got = Stored(stub, f.episode_id());
  ASSERT_TRUE(got.has_summary());
  EXPECT_EQ(Untimed(nlohmann::json::parse(got.record_json())), Untimed(want.ToJson()));
  EXPECT_EQ(got.summary().correct(), want.score.exact);
}

TEST(AgentServiceTest, OracleStreamsEqualTheInProcessLoop) {
  ServiceFixture f;
  AgentService service(f.context());
  f.Start({&service});
  auto stub = v1::Agent::NewStub(f.channel());
  agents::OraclePolicy oracle;
  tasks::Rng rng(20240611);
  const std::vector<std::string> task_names = {"addition", "multiplication-n2",
                                               "multiplication-n1"};
  for (int i = 0; i < 12; ++i) {
    const std::string task = task_names[rng.Uniform(0, 2)];
    const auto modes = tasks::AllModes();
    const std::string mode(tasks::ModeName(modes[rng.Uniform(0, modes.size() - 1)]));
    auto request = Request(task, mode, rng.Uniform(1, 120), rng.Uniform(0, 1 << 30),
                           rng.Uniform(0, 20), "oracle");
    SCOPED_TRACE(request.ShortDebugString());
    Streamed s = RunStream(stub.get(), request);
    agents::EpisodeRecord want = InProcess(oracle, request);
    ExpectSameEpisode(s, want, stub.get());
    EXPECT_TRUE(s.finished() != nullptr && s.finished()->correct());
  }
}

TEST(AgentServiceTest, Mamba2PointerStreamEqualsTheInProcessLoopAndIsExact) {
  ServiceFixture f;
  AgentService service(f.context());
  f.Start({&service});
  auto stub = v1::Agent::NewStub(f.channel());
  auto model = engine::Model::Load(std::string(TAPELOOP_SOURCE_DIR) + "/models/mamba2-pointer");
  ASSERT_TRUE(model.ok()) << model.status();
  agents::EnginePolicy policy(model->get());
  for (int64_t index : {0, 3}) {
    auto request = Request("addition", "pointer", 30, 4242, index, "mamba2-pointer");
    SCOPED_TRACE(request.ShortDebugString());
    Streamed s = RunStream(stub.get(), request);
    agents::EpisodeRecord want = InProcess(policy, request);
    ExpectSameEpisode(s, want, stub.get());
    ASSERT_NE(s.finished(), nullptr);
    EXPECT_TRUE(s.finished()->correct()) << s.finished()->final_answer();
    EXPECT_GT(s.messages, 0);
  }
}

// A streamed code_debug episode equals `want` (the same game played in process): the prompt,
// every token with its role and position, each debugger command and answer as a tool call and
// result at its [/CALL], the score, and the stored record (eval::CodeDebugRow's, the one
// `tapeloop run --task code_debug --json` prints).
void ExpectSameCodeDebugEpisode(const Streamed& s, const v1::RunEpisodeRequest& request,
                                const tasks::code_debug::CodeDebugInstance& instance,
                                const eval::CodeDebugEpisode& want, bool expert,
                                v1::Agent::Stub* stub) {
  namespace cd = tasks::code_debug;
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  ASSERT_NE(s.started(), nullptr);
  ASSERT_NE(s.finished(), nullptr);
  EXPECT_EQ(s.started()->task(), "code_debug");
  EXPECT_EQ(s.started()->mode(), std::string(cd::CodeDebugModeName(want.trajectory.mode)));
  EXPECT_EQ(s.started()->prompt(), instance.prompt);
  const tasks::Trajectory t = want.trajectory.ToTrajectory();
  const size_t prompt = t.PromptSize();
  EXPECT_EQ(std::vector<TokenId>(s.started()->prompt_tokens().begin(),
                                 s.started()->prompt_tokens().end()),
            std::vector<TokenId>(t.tokens.begin(), t.tokens.begin() + prompt));
  // A model that stops by solving the program writes no [EOS]; the expert's trajectory ends
  // with one, as does a model's that wrote it.
  std::vector<TokenId> tokens(t.tokens.begin() + prompt, t.tokens.end());
  std::string roles = t.RoleString().substr(prompt);
  if (!expert && want.trajectory.stop_reason != "eos") {
    tokens.pop_back();
    roles.pop_back();
  }
  EXPECT_EQ(s.tokens(), tokens);
  std::string got_roles;
  int64_t position = static_cast<int64_t>(prompt), last_call_end = -1;
  size_t step = 0;
  std::string open_call;
  for (const auto& e : s.events) {
    if (e.has_token()) {
      ASSERT_EQ(e.token().position(), position++);
      if (e.token().id() == tokens::kCallEnd) last_call_end = e.token().position();
      got_roles += "?PTCOAE"[e.token().role()];
    } else if (e.has_tool_call()) {
      ASSERT_LT(step, want.trajectory.steps.size());
      EXPECT_EQ(e.tool_call().name(), "debugger");
      EXPECT_EQ(e.tool_call().position(), last_call_end);
      EXPECT_EQ(nlohmann::json::parse(e.tool_call().arguments_json()).value("command", ""),
                want.trajectory.steps[step].command);
      EXPECT_TRUE(open_call.empty());
      open_call = e.tool_call().call_id();
    } else if (e.has_tool_result()) {
      EXPECT_EQ(e.tool_result().call_id(), open_call);
      EXPECT_EQ(e.tool_result().text(), want.trajectory.steps[step].observation);
      EXPECT_EQ(e.tool_result().is_error(), want.trajectory.steps[step].is_error);
      open_call.clear();
      ++step;
    }
  }
  EXPECT_EQ(step, want.trajectory.steps.size());
  // Roles: the stream's C for every token the policy wrote, O for observations, E for [EOS]
  // (the trajectory's own roles say the same: command / observation / eos).
  EXPECT_EQ(got_roles, roles);
  const eval::EpisodeKey key{request.policy(), "code_debug",   s.started()->mode(),
                             request.length(), request.seed(), request.index()};
  const eval::EpisodeRow row = eval::CodeDebugRow(key, &instance, want, expert);
  const v1::EpisodeFinished& f = *s.finished();
  EXPECT_EQ(f.correct(), row.correct);
  EXPECT_EQ(f.final_answer(), cd::ScoreCodeDebug(instance, want.trajectory.final_files).output);
  EXPECT_EQ(f.expected(), instance.expected_output);
  EXPECT_EQ(f.trajectory_exact(), row.trajectory_match);
  EXPECT_EQ(f.tool_steps(), static_cast<int64_t>(want.trajectory.steps.size()));
  EXPECT_EQ(f.total_tokens(), static_cast<int64_t>(prompt + tokens.size()));
  EXPECT_EQ(f.stop_reason(), expert ? "eos" : want.trajectory.stop_reason);
  EXPECT_TRUE(f.stored());
  const v1::GetEpisodeResponse got = Stored(stub, f.episode_id());
  ASSERT_TRUE(got.has_summary());
  EXPECT_EQ(nlohmann::json::parse(got.record_json()), row.record);
  EXPECT_EQ(got.summary().task(), "code_debug");
  EXPECT_EQ(got.summary().mode(), s.started()->mode());
  EXPECT_EQ(got.summary().correct(), row.correct);
}

tasks::code_debug::CodeDebugInstance CodeDebugInstanceOf(const v1::RunEpisodeRequest& r) {
  auto instance = tasks::code_debug::GenerateCodeDebug(
      static_cast<int>(r.length()),
      tasks::MixSeed(static_cast<uint64_t>(r.seed()), static_cast<uint64_t>(r.index())));
  EXPECT_TRUE(instance.ok()) << instance.status();
  return *instance;
}

TEST(AgentServiceTest, CodeDebugOracleStreamsItsTrajectoryAndIsStored) {
  ServiceFixture f;
  AgentService service(f.context());
  f.Start({&service});
  auto stub = v1::Agent::NewStub(f.channel());
  tasks::Rng rng(777);
  for (int i = 0; i < 6; ++i) {
    const std::string mode = i % 2 ? "single-turn" : (i == 2 ? "" : "interactive");
    auto request = Request("code_debug", mode, rng.Uniform(2, 12), rng.Uniform(0, 1 << 30),
                           rng.Uniform(0, 9), "oracle");
    SCOPED_TRACE(request.ShortDebugString());
    const auto instance = CodeDebugInstanceOf(request);
    auto expert = tasks::code_debug::Oracle(
        instance, *tasks::code_debug::ParseCodeDebugMode(mode.empty() ? "interactive" : mode));
    ASSERT_TRUE(expert.ok()) << expert.status();
    eval::CodeDebugEpisode want;
    want.trajectory = *expert;
    Streamed s = RunStream(stub.get(), request);
    ExpectSameCodeDebugEpisode(s, request, instance, want, /*expert=*/true, stub.get());
    ASSERT_NE(s.finished(), nullptr);
    EXPECT_TRUE(s.finished()->correct());
  }
}

TEST(AgentServiceTest, CodeDebugModelStreamEqualsTheInProcessPlay) {
  ServiceFixture f;
  AgentService service(f.context());
  f.Start({&service});
  auto stub = v1::Agent::NewStub(f.channel());
  auto model =
      engine::Model::Load(std::string(TAPELOOP_SOURCE_DIR) + "/models/nemotron_h-code-debug");
  ASSERT_TRUE(model.ok()) << model.status();
  int correct = 0;
  for (int64_t index : {0, 1, 2}) {
    auto request =
        Request("code_debug", "interactive", 2 + index, 31, index, "nemotron_h-code-debug");
    SCOPED_TRACE(request.ShortDebugString());
    const auto instance = CodeDebugInstanceOf(request);
    agents::EnginePolicyOptions options;
    options.appends = agents::EnginePolicyOptions::Appends::kPrefill;
    agents::EnginePolicy policy(model->get(), {}, options);
    const eval::CodeDebugGame game{&instance, tasks::code_debug::CodeDebugMode::kInteractive,
                                   instance.seed};
    auto played = eval::PlayCodeDebugGames(policy, {&game, 1}, {}, 1);
    ASSERT_TRUE(played[0].ok()) << played[0].status();
    Streamed s = RunStream(stub.get(), request);
    ExpectSameCodeDebugEpisode(s, request, instance, *played[0], /*expert=*/false, stub.get());
    ASSERT_NE(s.finished(), nullptr);
    EXPECT_GT(s.finished()->peak_session_bytes(), 0);
    correct += s.finished()->correct();
  }
  // The bundled model fixes programs of 2-4 files nearly always (its card: 45/48).
  EXPECT_GE(correct, 2);
  // Sampled (temperature 1): seeded by the episode, so the same request plays the same episode.
  auto sampled = Request("code_debug", "interactive", 4, 31, 7, "nemotron_h-code-debug");
  sampled.set_temperature(1.0f);
  Streamed first = RunStream(stub.get(), sampled), second = RunStream(stub.get(), sampled);
  ASSERT_TRUE(first.status.ok() && second.status.ok()) << first.status.error_message();
  EXPECT_GT(first.tokens().size(), 0u);
  EXPECT_EQ(first.tokens(), second.tokens());
}

TEST(AgentServiceTest, StoredEpisodesSurviveARestartAndAreListedNewestFirst) {
  ServiceFixture f;
  auto service = std::make_unique<AgentService>(f.context());
  f.Start({service.get()});
  auto stub = v1::Agent::NewStub(f.channel());
  std::vector<std::string> ids;
  std::vector<std::string> records;
  for (int i = 0; i < 5; ++i) {
    Streamed s = RunStream(
        stub.get(), Request("addition", i % 2 ? "calculator" : "pointer", 10 + i, 77, i, "oracle"));
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    ASSERT_NE(s.finished(), nullptr);
    ids.push_back(s.finished()->episode_id());
    v1::GetEpisodeRequest get;
    get.set_episode_id(ids.back());
    v1::GetEpisodeResponse got;
    auto ctx = ServiceFixture::Ctx();
    ASSERT_TRUE(stub->GetEpisode(ctx.get(), get, &got).ok());
    records.push_back(got.record_json());
  }
  f.Stop();
  service->Shutdown();
  service = std::make_unique<AgentService>(f.context());  // over the same db file
  f.Start({service.get()});
  stub = v1::Agent::NewStub(f.channel());
  for (size_t i = 0; i < ids.size(); ++i) {
    v1::GetEpisodeRequest get;
    get.set_episode_id(ids[i]);
    v1::GetEpisodeResponse got;
    auto ctx = ServiceFixture::Ctx();
    ASSERT_TRUE(stub->GetEpisode(ctx.get(), get, &got).ok());
    EXPECT_EQ(got.record_json(), records[i]);
    EXPECT_EQ(got.summary().length(), 10 + static_cast<int64_t>(i));
    EXPECT_EQ(got.summary().mode(), i % 2 ? "calculator" : "pointer");
    EXPECT_EQ(got.summary().policy(), "oracle");
    EXPECT_TRUE(got.summary().correct());
  }
  // Pages of 2, newest first.
  std::vector<std::string> listed;
  std::string token;
  int pages = 0;
  do {
    v1::ListEpisodesRequest list;
    list.set_page_size(2);
    list.set_page_token(token);
    v1::ListEpisodesResponse page;
    auto ctx = ServiceFixture::Ctx();
    ASSERT_TRUE(stub->ListEpisodes(ctx.get(), list, &page).ok());
    EXPECT_LE(page.episodes_size(), 2);
    for (const auto& e : page.episodes()) listed.push_back(e.episode_id());
    token = page.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(listed, std::vector<std::string>(ids.rbegin(), ids.rend()));
}

TEST(AgentServiceTest, AnotherPrincipalsEpisodeIsNotFound) {
  ServiceFixture f;
  ASSERT_TRUE(f.keys()->Add("alice-key-0123456789", "alice").ok());
  ASSERT_TRUE(f.keys()->Add("bob-key-0123456789ab", "bob").ok());
  AgentService service(f.context());
  f.Start({&service});
  auto stub = v1::Agent::NewStub(f.channel());
  Streamed s = RunStream(stub.get(), Request("addition", "pointer", 8, 1, 0, "oracle"),
                         "alice-key-0123456789");
  ASSERT_NE(s.finished(), nullptr) << s.status.error_message();
  v1::GetEpisodeRequest get;
  get.set_episode_id(s.finished()->episode_id());
  v1::GetEpisodeResponse got;
  auto bob = ServiceFixture::Ctx("bob-key-0123456789ab");
  EXPECT_EQ(stub->GetEpisode(bob.get(), get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  auto alice = ServiceFixture::Ctx("alice-key-0123456789");
  EXPECT_TRUE(stub->GetEpisode(alice.get(), get, &got).ok());
  v1::ListEpisodesResponse list;
  auto bob2 = ServiceFixture::Ctx("bob-key-0123456789ab");
  ASSERT_TRUE(stub->ListEpisodes(bob2.get(), {}, &list).ok());
  EXPECT_EQ(list.episodes_size(), 0);
  Streamed anonymous = RunStream(stub.get(), Request("addition", "pointer", 8, 1, 0, "oracle"));
  EXPECT_EQ(anonymous.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

int StoredEpisodes(AgentService* service, v1::Agent::Stub* stub) {
  v1::ListEpisodesResponse list;
  auto ctx = ServiceFixture::Ctx();
  EXPECT_TRUE(stub->ListEpisodes(ctx.get(), {}, &list).ok());
  return list.episodes_size();
}

// A long episode whose client reads one message and then cancels: the stream ends CANCELLED,
// the worker stops (it would otherwise wait on the full queue for ever) and nothing is stored.
TEST(AgentServiceTest, CancellingMidEpisodeStopsItAndStoresNothing) {
  ServiceFixture f;
  AgentService service(f.context(), {.max_queued_events = 64});
  f.Start({&service});
  auto stub = v1::Agent::NewStub(f.channel());
  for (const std::string policy : {"oracle", "mamba2-pointer", "nemotron_h-code-debug"}) {
    SCOPED_TRACE(policy);
    auto ctx = ServiceFixture::Ctx("", 600);
    // All far from done when cancelled (the code_debug model's episode of 600 files: its first
    // `run` alone answers with a long traceback).
    const bool code_debug = policy == "nemotron_h-code-debug";
    const int64_t length = policy == "oracle" ? 20000 : code_debug ? 600 : 2000;
    auto reader = stub->RunEpisode(
        ctx.get(), Request(code_debug ? "code_debug" : "addition",
                           code_debug ? "interactive" : "pointer", length, 3, 0, policy));
    v1::RunEpisodeResponse message;
    ASSERT_TRUE(reader->Read(&message));
    ASSERT_TRUE(message.events(0).has_started());
    const std::string id = message.events(0).started().episode_id();
    // Wait for a token so the episode is under way.
    bool saw_token = false;
    while (!saw_token && reader->Read(&message)) {
      for (const auto& e : message.events()) saw_token |= e.has_token();
    }
    ASSERT_TRUE(saw_token);
    ctx->TryCancel();
    while (reader->Read(&message)) {
      for (const auto& e : message.events()) ASSERT_FALSE(e.has_finished());
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
    ASSERT_TRUE(service.WaitIdle(std::chrono::seconds(60)));
    EXPECT_EQ(StoredEpisodes(&service, stub.get()), 0);
    v1::GetEpisodeRequest get;
    get.set_episode_id(id);
    v1::GetEpisodeResponse got;
    auto get_ctx = ServiceFixture::Ctx();
    EXPECT_EQ(stub->GetEpisode(get_ctx.get(), get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  }
}

TEST(AgentServiceTest, ConcurrencyLimitAndShutdownCancelRunningEpisodes) {
  ServiceFixture f;
  AgentService service(f.context(), {.max_concurrent_episodes = 1, .max_queued_events = 16});
  f.Start({&service});
  auto stub = v1::Agent::NewStub(f.channel());
  // A long episode that the client stops reading: it holds the one slot.
  auto ctx = ServiceFixture::Ctx("", 600);
  auto reader = stub->RunEpisode(ctx.get(), Request("addition", "pointer", 20000, 9, 0, "oracle"));
  v1::RunEpisodeResponse message;
  ASSERT_TRUE(reader->Read(&message));
  EXPECT_EQ(service.running_episodes(), 1);
  Streamed refused = RunStream(stub.get(), Request("addition", "pointer", 5, 1, 0, "oracle"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.status.error_message();
  EXPECT_NE(refused.status.error_message().find("at once"), std::string::npos);
  // Shutdown cancels it and returns once its worker is gone.
  service.Shutdown();
  EXPECT_EQ(service.running_episodes(), 0);
  while (reader->Read(&message)) {
    for (const auto& e : message.events()) ASSERT_FALSE(e.has_finished());
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  Streamed after = RunStream(stub.get(), Request("addition", "pointer", 5, 1, 0, "oracle"));
  EXPECT_EQ(after.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(StoredEpisodes(&service, stub.get()), 0);
}

TEST(AgentServiceTest, MalformedRequestsGetTheirCodeAndNameTheField) {
  ServiceFixture f;
  f.limits()->max_episode_length = 5000;
  AgentService service(f.context());
  f.Start({&service});
  auto stub = v1::Agent::NewStub(f.channel());
  struct Case {
    std::string name;
    v1::RunEpisodeRequest request;
    grpc::StatusCode code;
    std::string field;
  };
  auto ok = Request("addition", "pointer", 10, 1, 0, "oracle");
  auto with = [&](auto mutate) {
    v1::RunEpisodeRequest r = ok;
    mutate(r);
    return r;
  };
  using R = v1::RunEpisodeRequest;
  const std::vector<Case> cases = {
      {"unknown task", with([](R& r) { r.set_task("division"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "task"},
      {"empty task", with([](R& r) { r.clear_task(); }), grpc::StatusCode::INVALID_ARGUMENT,
       "task"},
      {"zero length", with([](R& r) { r.set_length(0); }), grpc::StatusCode::INVALID_ARGUMENT,
       "length"},
      {"negative length", with([](R& r) { r.set_length(-7); }), grpc::StatusCode::INVALID_ARGUMENT,
       "length"},
      {"huge length", with([](R& r) { r.set_length(int64_t{1} << 40); }),
       grpc::StatusCode::INVALID_ARGUMENT, "length"},
      {"above the server's limit", with([](R& r) { r.set_length(5001); }),
       grpc::StatusCode::INVALID_ARGUMENT, "length"},
      {"unknown mode", with([](R& r) { r.set_mode("telepathy"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "mode"},
      {"negative index", with([](R& r) { r.set_index(-1); }), grpc::StatusCode::INVALID_ARGUMENT,
       "index"},
      {"no policy", with([](R& r) { r.clear_policy(); }), grpc::StatusCode::INVALID_ARGUMENT,
       "policy"},
      {"policy escaping the models dir", with([](R& r) { r.set_policy("../models"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "policy"},
      {"unknown model", with([](R& r) { r.set_policy("no-such-model"); }),
       grpc::StatusCode::NOT_FOUND, "policy"},
      {"negative temperature", with([](R& r) { r.set_temperature(-0.5f); }),
       grpc::StatusCode::INVALID_ARGUMENT, "temperature"},
      {"NaN temperature", with([](R& r) { r.set_temperature(std::nanf("")); }),
       grpc::StatusCode::INVALID_ARGUMENT, "temperature"},
      {"negative token budget", with([](R& r) { r.set_max_generated_tokens(-1); }),
       grpc::StatusCode::INVALID_ARGUMENT, "max_generated_tokens"},
      {"negative step budget", with([](R& r) { r.set_max_tool_steps(-3); }),
       grpc::StatusCode::INVALID_ARGUMENT, "max_tool_steps"},
      {"code_debug with one file",
       with([](R& r) { r.set_task("code_debug"), r.set_mode(""), r.set_length(1); }),
       grpc::StatusCode::INVALID_ARGUMENT, "length"},
      {"code_debug above 1001 files",
       with([](R& r) { r.set_task("code_debug"), r.set_mode(""), r.set_length(1002); }),
       grpc::StatusCode::INVALID_ARGUMENT, "length"},
      {"code_debug in an arithmetic mode", with([](R& r) { r.set_task("code_debug"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "mode"},
      {"code_debug training instances", with([](R& r) {
         r.set_task("code_debug"), r.set_mode("single-turn"), r.set_training(true);
       }),
       grpc::StatusCode::INVALID_ARGUMENT, "training"},
      {"arithmetic in a code_debug mode", with([](R& r) { r.set_mode("interactive"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "mode"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Streamed s = RunStream(stub.get(), c.request);
    EXPECT_EQ(s.status.error_code(), c.code) << s.status.error_message();
    EXPECT_EQ(s.status.error_message().rfind(c.field + ":", 0), 0u) << s.status.error_message();
    EXPECT_TRUE(s.events.empty());
  }
  {
    Streamed s = RunStream(stub.get(), with([](R& r) { r.set_task("division"); }));
    EXPECT_NE(s.status.error_message().find("code_debug"), std::string::npos)
        << s.status.error_message();  // the known tasks are listed
  }
  // GetEpisode / ListEpisodes.
  v1::GetEpisodeResponse got;
  v1::GetEpisodeRequest get;
  auto ctx = ServiceFixture::Ctx();
  EXPECT_EQ(stub->GetEpisode(ctx.get(), get, &got).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  get.set_episode_id("ep_00000000000000000000000000000000");
  ctx = ServiceFixture::Ctx();
  grpc::Status status = stub->GetEpisode(ctx.get(), get, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("episode_id"), std::string::npos);
  v1::ListEpisodesResponse list;
  v1::ListEpisodesRequest bad_size;
  bad_size.set_page_size(5000);
  ctx = ServiceFixture::Ctx();
  status = stub->ListEpisodes(ctx.get(), bad_size, &list);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("page_size"), std::string::npos);
  v1::ListEpisodesRequest bad_token;
  bad_token.set_page_token("not-a-token");
  ctx = ServiceFixture::Ctx();
  status = stub->ListEpisodes(ctx.get(), bad_token, &list);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("page_token"), std::string::npos);
  EXPECT_EQ(StoredEpisodes(&service, stub.get()), 0);
}

}  // namespace
}  // namespace tapeloop::server
