// Malformed requests against a real `tapeloop serve` process, over every service: one table,
// each row with the exact status code expected and a word its message must contain (the field,
// or the id that is unknown). After the table the same process still serves a normal request.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <climits>
#include <filesystem>
#include <functional>
#include <regex>

#include "tapeloop/v1/agent.grpc.pb.h"
#include "tapeloop/v1/debug.grpc.pb.h"
#include "tapeloop/v1/engine.grpc.pb.h"
#include "tapeloop/v1/environment.grpc.pb.h"
#include "tapeloop/v1/server.grpc.pb.h"
#include "tests/cli/process.h"

namespace tapeloop {
namespace {

namespace fs = std::filesystem;
namespace v1 = tapeloop::v1;
using grpc::StatusCode;
using testing::Process;
using testing::TapeloopBinary;

constexpr char kAlice[] = "alice-key-0123456789";
constexpr char kBob[] = "bob-key-0123456789abc";
constexpr char kModel[] = "mamba2-pointer";  // vocabulary: ids 0..284

std::unique_ptr<grpc::ClientContext> Ctx(const std::string& key = kAlice) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  if (!key.empty()) ctx->AddMetadata("authorization", "Bearer " + key);
  return ctx;
}

// Reads a server stream to its end; its status.
template <typename Message>
grpc::Status Drain(grpc::ClientContext* ctx, std::unique_ptr<grpc::ClientReader<Message>> reader,
                   std::vector<Message>* messages = nullptr) {
  Message m;
  while (reader->Read(&m)) {
    if (messages != nullptr) messages->push_back(m);
  }
  (void)ctx;
  return reader->Finish();
}

class BadRequestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ =
        (fs::temp_directory_path() / ("tapeloop_bad_" + std::to_string(getpid()) + ".db")).string();
    fs::remove(db_);
    server_ = std::make_unique<Process>(
        std::vector<std::string>{TapeloopBinary(), "serve", "--listen", "127.0.0.1:0", "--db", db_,
                                 "--models-dir", std::string(TAPELOOP_SOURCE_DIR) + "/models",
                                 "--api-key", std::string(kAlice) + "=alice," + kBob + "=bob"});
    std::string line = server_->WaitForLine("listening on", std::chrono::seconds(60));
    ASSERT_FALSE(line.empty()) << server_->stderr_text();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, std::regex(":(\\d+) \\(db"))) << line;
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + m[1].str(),
                                         grpc::InsecureChannelCredentials(), args);
    engine_ = v1::Engine::NewStub(channel_);
    agent_ = v1::Agent::NewStub(channel_);
    env_ = v1::Environment::NewStub(channel_);
    debug_ = v1::Debug::NewStub(channel_);
  }
  void TearDown() override {
    if (server_ != nullptr && server_->Alive()) {
      server_->Signal(SIGTERM);
      EXPECT_EQ(server_->Wait(), 0) << server_->stderr_text();
    }
    for (auto s : {"", "-wal", "-shm"}) fs::remove(db_ + s);
  }

  std::string CreateSession(const std::string& key = kAlice) {
    v1::CreateSessionRequest r;
    r.set_model(kModel);
    v1::EngineSession s;
    grpc::Status st = engine_->CreateSession(Ctx(key).get(), r, &s);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return s.session_id();
  }
  grpc::Status Append(const std::string& id, std::function<void(v1::AppendRequest*)> fill,
                      const std::string& key = kAlice) {
    v1::AppendRequest r;
    r.set_session_id(id);
    fill(&r);
    v1::AppendResponse out;
    return engine_->Append(Ctx(key).get(), r, &out);
  }
  grpc::Status Generate(const std::string& id, std::function<void(v1::GenerateRequest*)> fill,
                        std::vector<v1::GenerateChunk>* chunks = nullptr) {
    v1::GenerateRequest r;
    r.set_session_id(id);
    r.set_max_tokens(4);
    fill(&r);
    auto ctx = Ctx();
    return Drain(ctx.get(), engine_->Generate(ctx.get(), r), chunks);
  }
  static v1::RunEpisodeRequest Episode() {
    v1::RunEpisodeRequest r;
    r.set_task("addition");
    r.set_mode("pointer");
    r.set_length(3);
    r.set_seed(11);
    r.set_policy("oracle");
    return r;
  }
  grpc::Status RunEpisode(const v1::RunEpisodeRequest& r,
                          std::vector<v1::RunEpisodeResponse>* messages = nullptr) {
    auto ctx = Ctx();
    return Drain(ctx.get(), agent_->RunEpisode(ctx.get(), r), messages);
  }
  static v1::EnvResetRequest Reset() {
    v1::EnvResetRequest r;
    r.set_task("addition");
    r.set_mode("pointer");
    r.set_length(3);
    r.set_seed(5);
    return r;
  }
  grpc::Status Step(const std::string& env_id, const std::string& name, const std::string& args,
                    const std::string& key = kAlice, v1::EnvStepResponse* out = nullptr) {
    v1::EnvStepRequest r;
    r.set_env_id(env_id);
    r.mutable_call()->set_id("c1");
    r.mutable_call()->set_name(name);
    r.mutable_call()->set_arguments_json(args);
    v1::EnvStepResponse ignored;
    return env_->Step(Ctx(key).get(), r, out ? out : &ignored);
  }
  static v1::OpenDebugSessionRequest Program(const std::string& main_py) {
    v1::OpenDebugSessionRequest r;
    (*r.mutable_program()->mutable_files())["main.py"] = main_py;
    return r;
  }
  grpc::Status DebugCommand(const std::string& id, const std::string& command,
                            const std::string& key = kAlice) {
    v1::DebugCommandRequest r;
    r.set_session_id(id);
    r.set_command(command);
    v1::DebugCommandResponse out;
    return debug_->Command(Ctx(key).get(), r, &out);
  }

  std::string db_;
  std::unique_ptr<Process> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Engine::Stub> engine_;
  std::unique_ptr<v1::Agent::Stub> agent_;
  std::unique_ptr<v1::Environment::Stub> env_;
  std::unique_ptr<v1::Debug::Stub> debug_;
};

TEST_F(BadRequestsTest, EachMalformedRequestGetsItsCodeAndTheServerKeepsServing) {
  // ---- What the table refers to: alice's live objects, and closed / finished ones. ----
  const std::string live = CreateSession();
  ASSERT_TRUE(Append(live, [](auto* r) {
                for (int id : {1, 2, 3}) r->mutable_tokens()->add_ids(id);
              }).ok());
  const std::string closed = CreateSession();
  {
    v1::CloseSessionRequest r;
    r.set_session_id(closed);
    v1::CloseSessionResponse out;
    ASSERT_TRUE(engine_->CloseSession(Ctx().get(), r, &out).ok());
  }
  v1::SnapshotResponse snapshot;
  {
    v1::SnapshotRequest r;
    r.set_session_id(live);
    ASSERT_TRUE(engine_->Snapshot(Ctx().get(), r, &snapshot).ok());
  }
  std::string episode_id;
  {
    std::vector<v1::RunEpisodeResponse> messages;
    ASSERT_TRUE(RunEpisode(Episode(), &messages).ok());
    for (const auto& m : messages) {
      for (const auto& e : m.events()) {
        if (e.has_finished() && e.finished().stored()) episode_id = e.finished().episode_id();
      }
    }
    ASSERT_FALSE(episode_id.empty());
  }
  v1::EnvResetResponse open_env, closed_env, done_env;
  ASSERT_TRUE(env_->Reset(Ctx().get(), Reset(), &open_env).ok());
  ASSERT_TRUE(env_->Reset(Ctx().get(), Reset(), &closed_env).ok());
  ASSERT_TRUE(env_->Reset(Ctx().get(), Reset(), &done_env).ok());
  {
    v1::EnvCloseRequest r;
    r.set_env_id(closed_env.env_id());
    v1::EnvCloseResponse out;
    ASSERT_TRUE(env_->Close(Ctx().get(), r, &out).ok());
    v1::EnvStepResponse submitted;
    ASSERT_TRUE(Step(done_env.env_id(), "submit", R"({"answer":"0"})", kAlice, &submitted).ok());
    ASSERT_TRUE(submitted.terminated());
  }
  v1::OpenDebugSessionResponse dbg, closed_dbg;
  ASSERT_TRUE(debug_->Open(Ctx().get(), Program("x = 1\nprint(x)\n"), &dbg).ok());
  ASSERT_TRUE(debug_->Open(Ctx().get(), Program("y = 2\n"), &closed_dbg).ok());
  {
    v1::CloseDebugSessionRequest r;
    r.set_session_id(closed_dbg.session_id());
    v1::CloseDebugSessionResponse out;
    ASSERT_TRUE(debug_->Close(Ctx().get(), r, &out).ok());
  }
  const std::string unknown_session = "ses_0123456789abcdef0123456789abcdef";

  struct Case {
    std::string name;
    std::function<grpc::Status()> call;
    StatusCode code;
    std::string mentions;  // a substring of the message: the field, or the id concerned
  };
  const std::vector<Case> cases = {
      // ---- Authentication (every service) ----
      {"engine: no API key",
       [&] {
         v1::ListModelsResponse out;
         return engine_->ListModels(Ctx("").get(), {}, &out);
       },
       StatusCode::UNAUTHENTICATED, "API key"},
      {"server info: unknown API key",
       [&] {
         v1::ServerInfo out;
         return v1::Server::NewStub(channel_)->GetServerInfo(Ctx("not-a-key-of-this-server").get(),
                                                             {}, &out);
       },
       StatusCode::UNAUTHENTICATED, "API key"},
      {"agent: no API key",
       [&] {
         v1::GetEpisodeRequest r;
         r.set_episode_id(episode_id);
         v1::GetEpisodeResponse out;
         return agent_->GetEpisode(Ctx("").get(), r, &out);
       },
       StatusCode::UNAUTHENTICATED, "API key"},
      {"environment: no API key",
       [&] {
         v1::EnvResetResponse out;
         return env_->Reset(Ctx("").get(), Reset(), &out);
       },
       StatusCode::UNAUTHENTICATED, "API key"},
      {"debug: wrong bearer key",
       [&] { return DebugCommand(dbg.session_id(), "ls", "x" + std::string(kAlice)); },
       StatusCode::UNAUTHENTICATED, "API key"},

      // ---- Engine: unknown and foreign ids, calls after close ----
      {"append to an unknown session",
       [&] { return Append(unknown_session, [](auto* r) { r->mutable_tokens()->add_ids(1); }); },
       StatusCode::NOT_FOUND, "session '" + unknown_session + "' not found"},
      {"append to alice's session as bob",
       [&] {
         return Append(
             live, [](auto* r) { r->mutable_tokens()->add_ids(1); }, kBob);
       },
       StatusCode::NOT_FOUND, "session '" + live + "' not found"},
      {"get alice's session as bob",
       [&] {
         v1::GetSessionRequest r;
         r.set_session_id(live);
         v1::EngineSession out;
         return engine_->GetSession(Ctx(kBob).get(), r, &out);
       },
       StatusCode::NOT_FOUND, "session '" + live + "' not found"},
      {"restore alice's snapshot as bob",
       [&] {
         v1::RestoreRequest r;
         r.set_snapshot_id(snapshot.snapshot_id());
         v1::EngineSession out;
         return engine_->Restore(Ctx(kBob).get(), r, &out);
       },
       StatusCode::NOT_FOUND, "snapshot '" + snapshot.snapshot_id() + "' not found"},
      {"append after close",
       [&] { return Append(closed, [](auto* r) { r->mutable_tokens()->add_ids(1); }); },
       StatusCode::NOT_FOUND, closed},
      {"generate after close", [&] { return Generate(closed, [](auto*) {}); },
       StatusCode::NOT_FOUND, closed},
      {"snapshot after close",
       [&] {
         v1::SnapshotRequest r;
         r.set_session_id(closed);
         v1::SnapshotResponse out;
         return engine_->Snapshot(Ctx().get(), r, &out);
       },
       StatusCode::NOT_FOUND, closed},
      {"close twice",
       [&] {
         v1::CloseSessionRequest r;
         r.set_session_id(closed);
         v1::CloseSessionResponse out;
         return engine_->CloseSession(Ctx().get(), r, &out);
       },
       StatusCode::NOT_FOUND, closed},
      // ---- Engine: tokens, sizes, UTF-8 ----
      {"append a token past the vocabulary",
       [&] {
         return Append(live, [](auto* r) {
           for (int id : {7, 285, 9}) r->mutable_tokens()->add_ids(id);
         });
       },
       StatusCode::INVALID_ARGUMENT, "tokens.ids[1]"},
      {"append a negative token",
       [&] { return Append(live, [](auto* r) { r->mutable_tokens()->add_ids(INT_MIN); }); },
       StatusCode::INVALID_ARGUMENT, "tokens.ids[0]"},
      {"append more tokens than max_tokens_per_append",
       [&] {
         return Append(live, [](auto* r) {
           for (int i = 0; i < (1 << 16) + 1; ++i) r->mutable_tokens()->add_ids(i % 256);
         });
       },
       StatusCode::INVALID_ARGUMENT, "tokens"},
      {"append invalid UTF-8 text",
       [&] { return Append(live, [](auto* r) { r->set_text(std::string("12+\xff\xfe=")); }); },
       StatusCode::INVALID_ARGUMENT, "text: invalid UTF-8 at byte offset 3"},
      {"append with no input", [&] { return Append(live, [](auto*) {}); },
       StatusCode::INVALID_ARGUMENT, "input"},
      {"append asks for too many top logits",
       [&] {
         return Append(live, [](auto* r) {
           r->mutable_tokens()->add_ids(1);
           r->set_top_k_logits(1000);
         });
       },
       StatusCode::INVALID_ARGUMENT, "top_k_logits"},
      {"append over the message size limit",
       [&] { return Append(live, [](auto* r) { r->set_text(std::string(9 << 20, '7')); }); },
       StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
      {"generate a negative count",
       [&] { return Generate(live, [](auto* r) { r->set_max_tokens(-5); }); },
       StatusCode::INVALID_ARGUMENT, "max_tokens"},
      {"generate a huge count",
       [&] { return Generate(live, [](auto* r) { r->set_max_tokens(INT_MAX); }); },
       StatusCode::INVALID_ARGUMENT, "max_tokens"},
      {"generate with a stop token past the vocabulary",
       [&] { return Generate(live, [](auto* r) { r->add_stop_token_ids(100000); }); },
       StatusCode::INVALID_ARGUMENT, "stop_token_ids[0]"},
      {"create on an unknown model",
       [&] {
         v1::CreateSessionRequest r;
         r.set_model("no-such-model");
         v1::EngineSession out;
         return engine_->CreateSession(Ctx().get(), r, &out);
       },
       StatusCode::NOT_FOUND, "no-such-model"},
      {"create with a path for a model",
       [&] {
         v1::CreateSessionRequest r;
         r.set_model("../models/mamba2-pointer");
         v1::EngineSession out;
         return engine_->CreateSession(Ctx().get(), r, &out);
       },
       StatusCode::INVALID_ARGUMENT, "model"},
      {"create with a negative idle timeout",
       [&] {
         v1::CreateSessionRequest r;
         r.set_model(kModel);
         r.set_idle_timeout_seconds(-1);
         v1::EngineSession out;
         return engine_->CreateSession(Ctx().get(), r, &out);
       },
       StatusCode::INVALID_ARGUMENT, "idle_timeout_seconds"},

      // ---- Agent ----
      {"episode of an unknown task",
       [&] {
         auto r = Episode();
         r.set_task("division");
         return RunEpisode(r);
       },
       StatusCode::INVALID_ARGUMENT, "task"},
      {"episode of a negative length",
       [&] {
         auto r = Episode();
         r.set_length(-3);
         return RunEpisode(r);
       },
       StatusCode::INVALID_ARGUMENT, "length"},
      {"episode of a huge length",
       [&] {
         auto r = Episode();
         r.set_length(int64_t{1} << 50);
         return RunEpisode(r);
       },
       StatusCode::INVALID_ARGUMENT, "length"},
      {"episode on an unknown model",
       [&] {
         auto r = Episode();
         r.set_policy("no-such-model");
         return RunEpisode(r);
       },
       StatusCode::NOT_FOUND, "policy"},
      {"episode with a negative token budget",
       [&] {
         auto r = Episode();
         r.set_max_generated_tokens(-1);
         return RunEpisode(r);
       },
       StatusCode::INVALID_ARGUMENT, "max_generated_tokens"},
      {"alice's episode as bob",
       [&] {
         v1::GetEpisodeRequest r;
         r.set_episode_id(episode_id);
         v1::GetEpisodeResponse out;
         return agent_->GetEpisode(Ctx(kBob).get(), r, &out);
       },
       StatusCode::NOT_FOUND, "episode_id"},
      {"list episodes with a negative page size",
       [&] {
         v1::ListEpisodesRequest r;
         r.set_page_size(-1);
         v1::ListEpisodesResponse out;
         return agent_->ListEpisodes(Ctx().get(), r, &out);
       },
       StatusCode::INVALID_ARGUMENT, "page_size"},

      // ---- Environment ----
      {"reset an unknown task",
       [&] {
         auto r = Reset();
         r.set_task("division");
         v1::EnvResetResponse out;
         return env_->Reset(Ctx().get(), r, &out);
       },
       StatusCode::INVALID_ARGUMENT, "task"},
      {"reset a huge length",
       [&] {
         auto r = Reset();
         r.set_length(int64_t{1} << 50);
         v1::EnvResetResponse out;
         return env_->Reset(Ctx().get(), r, &out);
       },
       StatusCode::INVALID_ARGUMENT, "length"},
      {"reset with negative max_steps",
       [&] {
         auto r = Reset();
         r.set_max_steps(-1);
         v1::EnvResetResponse out;
         return env_->Reset(Ctx().get(), r, &out);
       },
       StatusCode::INVALID_ARGUMENT, "max_steps"},
      {"step an unknown tool",
       [&] { return Step(open_env.env_id(), "rm_rf", R"({"op":"read","pointer":1})"); },
       StatusCode::INVALID_ARGUMENT, "name"},
      {"step with malformed tool-call JSON",
       [&] { return Step(open_env.env_id(), "pointer_memory", R"({"op": "read", "pointer": )"); },
       StatusCode::INVALID_ARGUMENT, "arguments_json"},
      {"step alice's environment as bob",
       [&] {
         return Step(open_env.env_id(), "pointer_memory", R"({"op":"read","pointer":1})", kBob);
       },
       StatusCode::NOT_FOUND, "env_id"},
      {"step after close",
       [&] { return Step(closed_env.env_id(), "pointer_memory", R"({"op":"read","pointer":1})"); },
       StatusCode::NOT_FOUND, "env_id"},
      {"step after the episode terminated",
       [&] { return Step(done_env.env_id(), "submit", R"({"answer":"1"})"); },
       StatusCode::FAILED_PRECONDITION, "env_id"},
      {"tools of an unknown mode",
       [&] {
         v1::ListEnvToolsRequest r;
         r.set_mode("telepathy");
         v1::ListEnvToolsResponse out;
         return env_->ListTools(Ctx().get(), r, &out);
       },
       StatusCode::INVALID_ARGUMENT, "mode"},

      // ---- Debug ----
      {"debug program with an invalid UTF-8 source",
       [&] {
         v1::OpenDebugSessionResponse out;
         return debug_->Open(Ctx().get(), Program("print('\xc3\x28')\n"), &out);
       },
       StatusCode::INVALID_ARGUMENT, "program.files[main.py]"},
      {"debug task unknown",
       [&] {
         v1::OpenDebugSessionRequest r;
         r.mutable_task()->set_task("addition");
         r.mutable_task()->set_length(4);
         v1::OpenDebugSessionResponse out;
         return debug_->Open(Ctx().get(), r, &out);
       },
       StatusCode::INVALID_ARGUMENT, "task.task"},
      {"debug task of a negative length",
       [&] {
         v1::OpenDebugSessionRequest r;
         r.mutable_task()->set_task("code_debug");
         r.mutable_task()->set_length(-4);
         v1::OpenDebugSessionResponse out;
         return debug_->Open(Ctx().get(), r, &out);
       },
       StatusCode::INVALID_ARGUMENT, "task.length"},
      {"debug command not UTF-8",
       [&] { return DebugCommand(dbg.session_id(), "print '\xc3\x28'"); },
       StatusCode::INVALID_ARGUMENT, "command"},
      {"debug command over 64 KiB",
       [&] { return DebugCommand(dbg.session_id(), "print " + std::string(70000, '1')); },
       StatusCode::INVALID_ARGUMENT, "command"},
      {"debug command on alice's session as bob",
       [&] { return DebugCommand(dbg.session_id(), "ls", kBob); }, StatusCode::NOT_FOUND,
       "session_id"},
      {"debug command after close", [&] { return DebugCommand(closed_dbg.session_id(), "ls"); },
       StatusCode::NOT_FOUND, "session_id"},
  };
  ASSERT_GE(cases.size(), 20u);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    grpc::Status st = c.call();
    EXPECT_EQ(st.error_code(), c.code) << st.error_message();
    EXPECT_NE(st.error_message().find(c.mentions), std::string::npos)
        << "'" << st.error_message() << "' does not mention '" << c.mentions << "'";
    ASSERT_TRUE(server_->Alive()) << "the server died: " << server_->stderr_text();
  }

  // ---- The server still serves, and nothing above changed alice's objects. ----
  ASSERT_TRUE(server_->Alive()) << server_->stderr_text();
  {
    v1::GetSessionRequest r;
    r.set_session_id(live);
    v1::EngineSession out;
    ASSERT_TRUE(engine_->GetSession(Ctx().get(), r, &out).ok());
    EXPECT_EQ(out.position(), 3);
  }
  std::vector<v1::GenerateChunk> chunks;
  grpc::Status st = Generate(
      live, [](auto* r) { r->set_max_tokens(5); }, &chunks);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.back().position(), 8);
  EXPECT_EQ(chunks.back().finish_reason(), v1::GENERATE_FINISH_REASON_MAX_TOKENS);
  v1::EnvStepResponse read;
  st = Step(open_env.env_id(), "pointer_memory", R"({"op":"new","pointer":1})", kAlice, &read);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(read.step(), 1);  // the refused steps above did not count
  // Bob's own work is unaffected by alice's.
  const std::string bobs = CreateSession(kBob);
  EXPECT_TRUE(Append(
                  bobs, [](auto* r) { r->set_text("1+1="); }, kBob)
                  .ok());
}

// A proto3 `string` field that is not UTF-8 makes the request unparseable for protobuf; the
// server still answers INVALID_ARGUMENT naming the field (proto/request_decoding.h; the protos
// use `bytes` for free text, but ids, names and arguments_json are `string`), not the
// UNIMPLEMENTED with an empty message that gRPC's callback API gives for such requests.
TEST_F(BadRequestsTest, InvalidUtf8InAStringFieldIsInvalidArgument) {
  const std::string live = CreateSession();
  v1::EnvResetResponse env;
  ASSERT_TRUE(env_->Reset(Ctx().get(), Reset(), &env).ok());
  struct Case {
    std::string name;
    std::function<grpc::Status()> call;
    std::string field;
  };
  const std::string bad = "\xff\xfe";
  const std::vector<Case> cases = {
      {"Append session_id",
       [&] { return Append(live + bad, [](auto* r) { r->mutable_tokens()->add_ids(1); }); },
       "session_id"},
      {"Step call.arguments_json",
       [&] {
         return Step(env.env_id(), "pointer_memory",
                     R"({"op":"read","pointer":1,"x":")" + bad + "\"}");
       },
       "arguments_json"},
      {"Reset task",
       [&] {
         auto r = Reset();
         r.set_task("addition" + bad);
         v1::EnvResetResponse out;
         return env_->Reset(Ctx().get(), r, &out);
       },
       "task"},
      {"Generate session_id (server-streaming)", [&] { return Generate(live + bad, [](auto*) {}); },
       "session_id"},
      {"RunEpisode mode (server-streaming)",
       [&] {
         auto r = Episode();
         r.set_mode(bad + "pointer");
         return RunEpisode(r);
       },
       "mode"},
      {"Debug.Command session_id",
       [&] {
         v1::DebugCommandRequest r;
         r.set_session_id("dbg_" + bad);
         r.set_command("step");
         v1::DebugCommandResponse out;
         return debug_->Command(Ctx().get(), r, &out);
       },
       "session_id"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    grpc::Status st = c.call();
    ASSERT_TRUE(server_->Alive()) << server_->stderr_text();
    EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_NE(st.error_message().find(c.field), std::string::npos) << st.error_message();
  }
  // The server is unharmed either way.
  v1::GetSessionRequest get;
  get.set_session_id(live);
  v1::EngineSession out;
  EXPECT_TRUE(engine_->GetSession(Ctx().get(), get, &out).ok());
}

}  // namespace
}  // namespace tapeloop
