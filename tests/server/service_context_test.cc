// AnswerUnary (server/service_context.h), the prologue every synchronous unary handler of the
// Environment, Agent and Debug services shares, observed through those services on a real
// loopback server: the caller check comes before the handler, the handler's Status reaches the
// client with its code and message, the call is counted only while it runs, and once the server
// drains every such method answers UNAVAILABLE before looking at the caller or the request.
#include "server/service_context.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "server/agent_service.h"
#include "server/debug_service.h"
#include "server/environment_service.h"
#include "server/grpc_status.h"
#include "tests/server/service_fixture.h"

namespace tapeloop::server {
namespace {

using testing::ServiceFixture;

constexpr char kKey[] = "alice-key-0123456789";

class AnswerUnaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fixture_.keys()->Add(kKey, "alice").ok());
    env_ = std::make_unique<EnvironmentService>(fixture_.context());
    agent_ = std::make_unique<AgentService>(fixture_.context());
    debug_ = std::make_unique<DebugService>(fixture_.context());
    fixture_.Start({env_.get(), agent_.get(), debug_.get()});
    env_stub_ = v1::Environment::NewStub(fixture_.channel());
    agent_stub_ = v1::Agent::NewStub(fixture_.channel());
    debug_stub_ = v1::Debug::NewStub(fixture_.channel());
  }
  void TearDown() override { fixture_.Stop(); }

  // Every synchronous unary method of the three services, called as `key` with a request that
  // would be valid for an authenticated caller but names nothing that exists.
  std::vector<std::pair<std::string, std::function<grpc::Status(const std::string&)>>> Calls() {
    using F = ServiceFixture;
    return {
        {"Environment.ListTools",
         [&](const std::string& key) {
           return F::Unary(env_stub_.get(), &v1::Environment::Stub::ListTools, key,
                           [](v1::ListEnvToolsRequest* r) { r->set_mode("pointer"); });
         }},
        {"Environment.Reset",
         [&](const std::string& key) {
           return F::Unary(env_stub_.get(), &v1::Environment::Stub::Reset, key,
                           [](v1::EnvResetRequest* r) {
                             r->set_task("addition");
                             r->set_mode("pointer");
                             r->set_length(3);
                           });
         }},
        {"Environment.Step",
         [&](const std::string& key) {
           return F::Unary(env_stub_.get(), &v1::Environment::Stub::Step, key,
                           [](v1::EnvStepRequest* r) { r->set_env_id("env_missing"); });
         }},
        {"Environment.Close",
         [&](const std::string& key) {
           return F::Unary(env_stub_.get(), &v1::Environment::Stub::Close, key,
                           [](v1::EnvCloseRequest* r) { r->set_env_id("env_missing"); });
         }},
        {"Agent.GetEpisode",
         [&](const std::string& key) {
           return F::Unary(agent_stub_.get(), &v1::Agent::Stub::GetEpisode, key,
                           [](v1::GetEpisodeRequest* r) { r->set_episode_id("ep_missing"); });
         }},
        {"Agent.ListEpisodes",
         [&](const std::string& key) {
           return F::Unary(agent_stub_.get(), &v1::Agent::Stub::ListEpisodes, key,
                           [](v1::ListEpisodesRequest* r) { r->set_page_size(5); });
         }},
        {"Debug.Open",
         [&](const std::string& key) {
           return F::Unary(debug_stub_.get(), &v1::Debug::Stub::Open, key,
                           [](v1::OpenDebugSessionRequest* r) {
                             (*r->mutable_program()->mutable_files())["main.py"] = "print(1)\n";
                           });
         }},
        {"Debug.Files",
         [&](const std::string& key) {
           return F::Unary(debug_stub_.get(), &v1::Debug::Stub::Files, key,
                           [](v1::DebugFilesRequest* r) { r->set_session_id("dbg_missing"); });
         }},
        {"Debug.Close",
         [&](const std::string& key) {
           return F::Unary(
               debug_stub_.get(), &v1::Debug::Stub::Close, key,
               [](v1::CloseDebugSessionRequest* r) { r->set_session_id("dbg_missing"); });
         }},
    };
  }

  ServiceFixture fixture_;
  std::unique_ptr<EnvironmentService> env_;
  std::unique_ptr<AgentService> agent_;
  std::unique_ptr<DebugService> debug_;
  std::unique_ptr<v1::Environment::Stub> env_stub_;
  std::unique_ptr<v1::Agent::Stub> agent_stub_;
  std::unique_ptr<v1::Debug::Stub> debug_stub_;
};

TEST_F(AnswerUnaryTest, CallerIsCheckedBeforeTheHandler) {
  for (const auto& [name, call] : Calls()) {
    SCOPED_TRACE(name);
    for (const std::string& key : {std::string(), std::string("not-a-key-0123456789")}) {
      grpc::Status s = call(key);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
    }
  }
  EXPECT_EQ(fixture_.context()->calls->in_flight(), 0);
}

TEST_F(AnswerUnaryTest, HandlerStatusReachesTheClient) {
  // Successes: a tool list, a new environment, a page of episodes, a debug session.
  const std::vector<std::pair<std::string, grpc::StatusCode>> expected = {
      {"Environment.ListTools", grpc::StatusCode::OK},
      {"Environment.Reset", grpc::StatusCode::OK},
      {"Environment.Step", grpc::StatusCode::NOT_FOUND},
      {"Environment.Close", grpc::StatusCode::NOT_FOUND},
      {"Agent.GetEpisode", grpc::StatusCode::NOT_FOUND},
      {"Agent.ListEpisodes", grpc::StatusCode::OK},
      {"Debug.Open", grpc::StatusCode::OK},
      {"Debug.Files", grpc::StatusCode::NOT_FOUND},
      {"Debug.Close", grpc::StatusCode::NOT_FOUND},
  };
  auto calls = Calls();
  ASSERT_EQ(calls.size(), expected.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    SCOPED_TRACE(calls[i].first);
    ASSERT_EQ(calls[i].first, expected[i].first);
    grpc::Status s = calls[i].second(kKey);
    EXPECT_EQ(s.error_code(), expected[i].second) << s.error_message();
    if (!s.ok()) {
      // The message names the id the handler did not find, as the handler wrote it.
      EXPECT_NE(s.error_message().find("_missing"), std::string::npos) << s.error_message();
    }
  }
  // A handler's own INVALID_ARGUMENT keeps its message.
  grpc::Status empty_id = ServiceFixture::Unary(agent_stub_.get(), &v1::Agent::Stub::GetEpisode,
                                                kKey, [](v1::GetEpisodeRequest*) {});
  EXPECT_EQ(empty_id.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(empty_id.error_message(), "episode_id: required");
  EXPECT_EQ(fixture_.context()->calls->in_flight(), 0);
}

// Error messages quote request fields; a long non-ASCII one would be a header of up to 3x its
// size once percent-encoded, over the client's 8 KiB limit, failing the call with an unrelated
// error and closing the connection under the client's other calls. ToGrpcStatus cuts it.
TEST_F(AnswerUnaryTest, LongQuotedValuesAreCutAndTheConnectionSurvives) {
  std::string task;
  while (task.size() < 20000) task += "\xC3\xA9\xE2\x82\xAC";  // 2- and 3-byte characters
  for (int i = 0; i < 3; ++i) {
    grpc::Status s = ServiceFixture::Unary(env_stub_.get(), &v1::Environment::Stub::Reset, kKey,
                                           [&](v1::EnvResetRequest* r) {
                                             r->set_task(task);
                                             r->set_length(3);
                                           });
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_EQ(s.error_message().rfind("task: ", 0), 0u) << s.error_message().substr(0, 80);
    EXPECT_LE(s.error_message().size(), kMaxStatusMessageBytes);
    EXPECT_NE(s.error_message().find(" more bytes]"), std::string::npos);
    // The same channel still answers.
    grpc::Status list =
        ServiceFixture::Unary(env_stub_.get(), &v1::Environment::Stub::ListTools, kKey,
                              [](v1::ListEnvToolsRequest* r) { r->set_mode("pointer"); });
    EXPECT_TRUE(list.ok()) << list.error_message();
  }
}

TEST_F(AnswerUnaryTest, DrainingAnswersUnavailableBeforeAnythingElse) {
  EXPECT_EQ(fixture_.context()->calls->Drain(std::chrono::steady_clock::now()), 0);
  for (const auto& [name, call] : Calls()) {
    SCOPED_TRACE(name);
    for (const std::string& key : {std::string(kKey), std::string()}) {
      grpc::Status s = call(key);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
      EXPECT_EQ(s.error_message(), "server is shutting down");
    }
  }
  EXPECT_EQ(fixture_.context()->calls->in_flight(), 0);
}

}  // namespace
}  // namespace tapeloop::server
