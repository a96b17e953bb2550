// tapeloop.v1.Engine over a real loopback gRPC server (tests/server/service_fixture.h) on the
// bundled models: results equal the in-process engine::Session, concurrent streams equal the
// same sessions one at a time (and were batched), forks, snapshots across a restart,
// principals, cancellation, quotas, eviction and a table of malformed requests.
#include "server/engine_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "absl/strings/str_replace.h"
#include "common/tokenizer.h"
#include "engine/models/model.h"
#include "engine/session/session.h"
#include "service_fixture.h"
#include "tapeloop/v1/engine.grpc.pb.h"

namespace tapeloop::server {
namespace {

namespace v1 = tapeloop::v1;
using testing::ServiceFixture;

constexpr char kAlice[] = "alice-key-0123456789";
constexpr char kBob[] = "bob-key-0123456789abc";

std::vector<int32_t> RandomTokens(int n, uint32_t seed, int vocab = 285) {
  std::mt19937 rng(seed);
  std::vector<int32_t> out(n);
  for (auto& t : out) t = static_cast<int32_t>(rng() % vocab);
  return out;
}

struct Generated {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::string text;
  v1::GenerateFinishReason reason = v1::GENERATE_FINISH_REASON_UNSPECIFIED;
  int64_t position = 0;
};

class EngineServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(f_.keys()->Add(kAlice, "alice").ok());
    ASSERT_TRUE(f_.keys()->Add(kBob, "bob").ok());
  }
  void TearDown() override { StopService(); }

  // Builds the service over the fixture's context (set limits first) and serves it.
  void StartService() {
    svc_ = std::make_unique<EngineService>(f_.context());
    ASSERT_TRUE(svc_->init_status().ok()) << svc_->init_status();
    f_.Start({svc_.get()});
    stub_ = v1::Engine::NewStub(f_.channel());
  }
  void StopService() {
    f_.Stop();
    if (svc_ != nullptr) svc_->Shutdown();
    svc_.reset();
  }

  // A unary Engine call as `key` (default alice) on the request `fill` builds.
  template <typename Method, typename Fill>
  grpc::Status Call(Method method, Fill fill, const std::string& key = kAlice) {
    return ServiceFixture::Unary(stub_.get(), method, key, fill);
  }

  // A unary Engine call whose request names only a session.
  template <typename Req, typename Resp>
  grpc::Status OnSession(grpc::Status (v1::Engine::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                  Resp*),
                         const std::string& session_id, const std::string& key = kAlice) {
    return Call(
        method, [&](Req* r) { r->set_session_id(session_id); }, key);
  }

  std::string Create(const std::string& model, float temperature, std::optional<uint64_t> seed,
                     const std::string& key = kAlice, int top_k = 0, float top_p = 0.0f) {
    v1::CreateSessionRequest req;
    req.set_model(model);
    req.mutable_sampling()->set_temperature(temperature);
    req.mutable_sampling()->set_top_k(top_k);
    req.mutable_sampling()->set_top_p(top_p);
    if (seed) req.mutable_sampling()->set_seed(*seed);
    v1::EngineSession resp;
    auto ctx = ServiceFixture::Ctx(key);
    grpc::Status st = stub_->CreateSession(ctx.get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.position(), 0);
    return resp.session_id();
  }
  grpc::Status Append(const std::string& id, const std::vector<int32_t>& ids,
                      const std::string& key = kAlice, v1::AppendResponse* out = nullptr) {
    v1::AppendRequest req;
    req.set_session_id(id);
    req.mutable_tokens()->mutable_ids()->Add(ids.begin(), ids.end());
    v1::AppendResponse resp;
    auto ctx = ServiceFixture::Ctx(key);
    return stub_->Append(ctx.get(), req, out != nullptr ? out : &resp);
  }
  Generated Generate(const std::string& id, int max_tokens, std::vector<int32_t> stops = {},
                     const v1::EngineSampling* sampling = nullptr,
                     const std::string& key = kAlice) {
    v1::GenerateRequest req;
    req.set_session_id(id);
    req.set_max_tokens(max_tokens);
    req.mutable_stop_token_ids()->Add(stops.begin(), stops.end());
    if (sampling != nullptr) *req.mutable_sampling() = *sampling;
    auto ctx = ServiceFixture::Ctx(key, 120);
    auto reader = stub_->Generate(ctx.get(), req);
    Generated g;
    v1::GenerateChunk chunk;
    while (reader->Read(&chunk)) {
      g.tokens.insert(g.tokens.end(), chunk.token_ids().begin(), chunk.token_ids().end());
      g.text += chunk.text();
      g.position = chunk.position();
      if (chunk.finish_reason() != v1::GENERATE_FINISH_REASON_UNSPECIFIED)
        g.reason = chunk.finish_reason();
    }
    g.status = reader->Finish();
    return g;
  }
  v1::EngineStats Stats() {
    v1::EngineStats s;
    auto ctx = ServiceFixture::Ctx(kAlice);
    EXPECT_TRUE(stub_->GetEngineStats(ctx.get(), {}, &s).ok());
    return s;
  }

  ServiceFixture f_;
  std::unique_ptr<EngineService> svc_;
  std::unique_ptr<v1::Engine::Stub> stub_;
};

// ---- Equality with the in-process engine ----

struct EqualityCase {
  const char* model;
  float temperature;
  int top_k;
  float top_p;
};

class EngineEqualityTest : public EngineServiceTest,
                           public ::testing::WithParamInterface<EqualityCase> {};

TEST_P(EngineEqualityTest, CreateAppendGenerateEqualsInProcessSession) {
  const EqualityCase c = GetParam();
  StartService();
  auto model = engine::Model::Load(std::string(TAPELOOP_SOURCE_DIR) + "/models/" + c.model);
  ASSERT_TRUE(model.ok()) << model.status();
  const uint64_t seed = 4242;
  engine::SamplingParams params;
  params.temperature = c.temperature;
  params.top_k = c.top_k;
  params.top_p = c.top_p == 0.0f ? 1.0f : c.top_p;

  const std::vector<int32_t> prompt = RandomTokens(37, 9);
  const std::string text = "12345+67890=[ANS]";
  engine::Session ref(model->get(), seed);
  auto logits = ref.Append(prompt);
  ASSERT_TRUE(logits.ok());
  auto first = ref.Generate(*logits, 48, params, &*logits);
  ASSERT_TRUE(first.ok());
  Tokenizer tokenizer;
  const std::vector<int32_t> text_ids = tokenizer.Encode(text);
  logits = ref.Append(text_ids);
  ASSERT_TRUE(logits.ok());
  engine::SamplingParams with_stop = params;
  with_stop.stop_tokens = {tokens::kEos};
  auto second = ref.Generate(*logits, 40, with_stop);
  ASSERT_TRUE(second.ok());

  const std::string id = Create(c.model, c.temperature, seed, kAlice, c.top_k, c.top_p);
  v1::AppendResponse appended;
  ASSERT_TRUE(Append(id, prompt, kAlice, &appended).ok());
  EXPECT_EQ(appended.position(), 37);
  Generated g1 = Generate(id, 48);
  ASSERT_TRUE(g1.status.ok()) << g1.status.error_message();
  EXPECT_EQ(g1.tokens, *first);
  EXPECT_EQ(g1.reason, v1::GENERATE_FINISH_REASON_MAX_TOKENS);
  EXPECT_EQ(g1.position, 37 + 48);
  EXPECT_EQ(g1.text, *tokenizer.Decode(*first));

  v1::AppendRequest req;
  req.set_session_id(id);
  req.set_text(text);
  req.set_top_k_logits(3);
  auto ctx = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->Append(ctx.get(), req, &appended).ok());
  EXPECT_EQ(appended.appended(), static_cast<int64_t>(text_ids.size()));
  EXPECT_EQ(appended.position(), 37 + 48 + static_cast<int64_t>(text_ids.size()));
  ASSERT_EQ(appended.top_size(), 3);
  EXPECT_GE(appended.top(0).logit(), appended.top(1).logit());
  Generated g2 = Generate(id, 40, {tokens::kEos});
  ASSERT_TRUE(g2.status.ok()) << g2.status.error_message();
  EXPECT_EQ(g2.tokens, *second);
  EXPECT_EQ(g2.reason, second->back() == tokens::kEos ? v1::GENERATE_FINISH_REASON_STOP_TOKEN
                                                      : v1::GENERATE_FINISH_REASON_MAX_TOKENS);
  // Same state bytes as the in-process session.
  v1::GetSessionRequest get;
  get.set_session_id(id);
  get.set_include_state(true);
  v1::EngineSession info;
  auto ctx2 = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->GetSession(ctx2.get(), get, &info).ok());
  EXPECT_EQ(info.position(), ref.position());
  EXPECT_EQ(info.state(), ref.Snapshot());
}

INSTANTIATE_TEST_SUITE_P(Models, EngineEqualityTest,
                         ::testing::Values(EqualityCase{"mamba2-pointer", 0.0f, 0, 0.0f},
                                           EqualityCase{"mamba2-pointer", 1.0f, 40, 0.95f},
                                           EqualityCase{"llama-pointer", 0.0f, 0, 0.0f},
                                           EqualityCase{"llama-pointer", 0.8f, 0, 0.0f}),
                         [](const auto& info) {
                           std::string name = info.param.model;
                           name += info.param.temperature > 0 ? "_sampled" : "_greedy";
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

// ---- Continuous batching ----

TEST_F(EngineServiceTest, ConcurrentStreamsEqualOneAtATimeAndAreBatched) {
  StartService();
  constexpr int kStreams = 20;
  std::vector<std::string> ids, twins;
  std::vector<int> max_tokens;
  for (int i = 0; i < kStreams; ++i) {
    const char* model = i % 4 == 3 ? "llama-pointer" : "mamba2-pointer";
    ids.push_back(Create(model, i % 2 == 0 ? 0.0f : 0.9f, 100 + i));
    ASSERT_TRUE(Append(ids.back(), RandomTokens(4 + 5 * i, 300 + i)).ok());
    v1::ForkRequest fork;
    fork.set_session_id(ids.back());
    v1::EngineSession twin;
    auto ctx = ServiceFixture::Ctx(kAlice);
    ASSERT_TRUE(stub_->Fork(ctx.get(), fork, &twin).ok());
    EXPECT_EQ(twin.position(), 4 + 5 * i);
    twins.push_back(twin.session_id());
    max_tokens.push_back(40 + 7 * i);
  }
  std::vector<std::vector<int32_t>> sequential;
  for (int i = 0; i < kStreams; ++i) {
    Generated g = Generate(twins[i], max_tokens[i], {tokens::kEos});
    ASSERT_TRUE(g.status.ok()) << g.status.error_message();
    sequential.push_back(g.tokens);
  }
  std::vector<Generated> concurrent(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back(
        [&, i] { concurrent[i] = Generate(ids[i], max_tokens[i], {tokens::kEos}); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(concurrent[i].status.ok()) << i << ": " << concurrent[i].status.error_message();
    EXPECT_EQ(concurrent[i].tokens, sequential[i]) << "stream " << i;
  }
  v1::EngineStats stats = Stats();
  EXPECT_GT(stats.max_batch(), 1);
  EXPECT_EQ(stats.active_streams(), 0);
  EXPECT_EQ(svc_->stats().max_batch, stats.max_batch());
}

TEST_F(EngineServiceTest, SecondGenerateOnOneSessionIsBusy) {
  f_.limits()->max_tokens_per_generate = 1 << 20;
  f_.limits()->max_tokens_in_flight_per_principal = 1 << 22;
  StartService();
  const std::string id = Create("mamba2-pointer", 0.5f, 1);
  ASSERT_TRUE(Append(id, RandomTokens(8, 1)).ok());
  v1::GenerateRequest req;
  req.set_session_id(id);
  req.set_max_tokens(1 << 20);
  auto ctx = ServiceFixture::Ctx(kAlice);
  auto reader = stub_->Generate(ctx.get(), req);
  v1::GenerateChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));  // running now
  Generated second = Generate(id, 5);
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(second.status.error_message().find("busy"), std::string::npos);
  v1::AppendResponse ignored;
  EXPECT_EQ(Append(id, {1, 2}, kAlice, &ignored).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  ctx->TryCancel();
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// ---- Fork ----

TEST_F(EngineServiceTest, ForkThenDiverge) {
  StartService();
  auto model = engine::Model::Load(std::string(TAPELOOP_SOURCE_DIR) + "/models/mamba2-pointer");
  ASSERT_TRUE(model.ok());
  engine::SamplingParams params;
  params.temperature = 1.0f;
  const std::vector<int32_t> prompt = RandomTokens(20, 5), a_more = RandomTokens(6, 6),
                             b_more = RandomTokens(9, 7);
  engine::Session ref(model->get(), 77);
  ASSERT_TRUE(ref.Append(prompt).ok());
  auto ref_fork = ref.Fork();
  auto la = ref.Append(a_more), lb = ref_fork->Append(b_more);
  auto ga = ref.Generate(*la, 30, params), gb = ref_fork->Generate(*lb, 30, params);

  const std::string a = Create("mamba2-pointer", 1.0f, 77);
  ASSERT_TRUE(Append(a, prompt).ok());
  v1::ForkRequest fork;
  fork.set_session_id(a);
  v1::EngineSession forked;
  auto ctx = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->Fork(ctx.get(), fork, &forked).ok());
  const std::string b = forked.session_id();
  EXPECT_NE(a, b);
  EXPECT_EQ(forked.position(), 20);
  ASSERT_TRUE(Append(b, b_more).ok());
  ASSERT_TRUE(Append(a, a_more).ok());
  Generated gen_b = Generate(b, 30), gen_a = Generate(a, 30);
  EXPECT_EQ(gen_a.tokens, *ga);
  EXPECT_EQ(gen_b.tokens, *gb);
  EXPECT_NE(gen_a.tokens, gen_b.tokens);
  // The fork belongs to the same principal only.
  v1::GetSessionRequest get;
  get.set_session_id(b);
  v1::EngineSession info;
  auto bob = ServiceFixture::Ctx(kBob);
  EXPECT_EQ(stub_->GetSession(bob.get(), get, &info).error_code(), grpc::StatusCode::NOT_FOUND);
}

// ---- Snapshot across a restart ----

TEST_F(EngineServiceTest, SnapshotSurvivesRestartAndContinuesExactly) {
  StartService();
  const std::string id = Create("mamba2-pointer", 0.9f, 31, kAlice, 50, 0.9f);
  ASSERT_TRUE(Append(id, RandomTokens(25, 3)).ok());
  ASSERT_TRUE(Generate(id, 10).status.ok());
  v1::SnapshotRequest snap_req;
  snap_req.set_session_id(id);
  v1::SnapshotResponse snap;
  auto ctx = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->Snapshot(ctx.get(), snap_req, &snap).ok());
  EXPECT_EQ(snap.position(), 35);
  ASSERT_EQ(snap.snapshot_id().rfind("snap_", 0), 0u);
  // The uninterrupted continuation.
  Generated cont = Generate(id, 40);
  ASSERT_TRUE(cont.status.ok());
  ASSERT_TRUE(Append(id, {1, 2, 3}).ok());
  Generated cont2 = Generate(id, 20);

  StopService();
  StartService();
  v1::RestoreRequest restore;
  restore.set_snapshot_id(snap.snapshot_id());
  restore.mutable_sampling()->set_temperature(0.9f);
  restore.mutable_sampling()->set_top_k(50);
  restore.mutable_sampling()->set_top_p(0.9f);
  v1::EngineSession restored;
  // Another principal cannot restore it.
  auto bob = ServiceFixture::Ctx(kBob);
  grpc::Status foreign = stub_->Restore(bob.get(), restore, &restored);
  EXPECT_EQ(foreign.error_code(), grpc::StatusCode::NOT_FOUND);
  auto ctx2 = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->Restore(ctx2.get(), restore, &restored).ok());
  EXPECT_EQ(restored.position(), 35);
  EXPECT_NE(restored.session_id(), id);
  Generated after = Generate(restored.session_id(), 40);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.tokens, cont.tokens);
  ASSERT_TRUE(Append(restored.session_id(), {1, 2, 3}).ok());
  EXPECT_EQ(Generate(restored.session_id(), 20).tokens, cont2.tokens);
  // The old session did not survive the restart.
  v1::GetSessionRequest get;
  get.set_session_id(id);
  auto ctx3 = ServiceFixture::Ctx(kAlice);
  EXPECT_EQ(stub_->GetSession(ctx3.get(), get, &restored).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

// ---- Principals ----

TEST_F(EngineServiceTest, ForeignPrincipalGetsTheSameNotFoundAsAnUnknownId) {
  StartService();
  const std::string id = Create("mamba2-pointer", 0.0f, 1);
  ASSERT_TRUE(Append(id, RandomTokens(5, 1)).ok());
  v1::SnapshotRequest snap_req;
  snap_req.set_session_id(id);
  v1::SnapshotResponse snap;
  auto ctx = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->Snapshot(ctx.get(), snap_req, &snap).ok());
  const std::string unknown = "ses_00000000000000000000000000000000";
  const std::string unknown_snap = "snap_00000000000000000000000000000000";

  // Each call for (key, id) -> its status.
  std::vector<
      std::pair<const char*, std::function<grpc::Status(const std::string&, const std::string&)>>>
      calls = {
          {"GetSession",
           [&](const std::string& key, const std::string& sid) {
             return OnSession(&v1::Engine::Stub::GetSession, sid, key);
           }},
          {"Append",
           [&](const std::string& key, const std::string& sid) {
             return Append(sid, {1, 2}, key);
           }},
          {"Generate",
           [&](const std::string& key, const std::string& sid) {
             return Generate(sid, 3, {}, nullptr, key).status;
           }},
          {"Fork",
           [&](const std::string& key, const std::string& sid) {
             return OnSession(&v1::Engine::Stub::Fork, sid, key);
           }},
          {"Snapshot",
           [&](const std::string& key, const std::string& sid) {
             return OnSession(&v1::Engine::Stub::Snapshot, sid, key);
           }},
          {"CloseSession",
           [&](const std::string& key, const std::string& sid) {
             return OnSession(&v1::Engine::Stub::CloseSession, sid, key);
           }},
      };
  for (const auto& [name, call] : calls) {
    grpc::Status foreign = call(kBob, id);
    grpc::Status missing = call(kBob, unknown);
    EXPECT_EQ(foreign.error_code(), grpc::StatusCode::NOT_FOUND) << name;
    EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND) << name;
    EXPECT_EQ(foreign.error_message(),
              absl::StrReplaceAll(missing.error_message(), {{unknown, id}}))
        << name;
  }
  auto restore = [&](const std::string& key, const std::string& snap_id) {
    return Call(
        &v1::Engine::Stub::Restore, [&](v1::RestoreRequest* r) { r->set_snapshot_id(snap_id); },
        key);
  };
  grpc::Status foreign = restore(kBob, snap.snapshot_id()), missing = restore(kBob, unknown_snap);
  EXPECT_EQ(foreign.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(foreign.error_message(),
            absl::StrReplaceAll(missing.error_message(), {{unknown_snap, snap.snapshot_id()}}));
  // Bob lists nothing of Alice's; Alice still has her session (Bob's Close did nothing).
  v1::ListSessionsResponse list;
  auto bob = ServiceFixture::Ctx(kBob);
  ASSERT_TRUE(stub_->ListSessions(bob.get(), {}, &list).ok());
  EXPECT_EQ(list.sessions_size(), 0);
  auto alice = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->ListSessions(alice.get(), {}, &list).ok());
  ASSERT_EQ(list.sessions_size(), 1);
  EXPECT_EQ(list.sessions(0).session_id(), id);
  // No key at all.
  v1::ListSessionsResponse none;
  grpc::ClientContext anonymous;
  EXPECT_EQ(stub_->ListSessions(&anonymous, {}, &none).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

// ---- Cancellation ----

TEST_F(EngineServiceTest, CancelAndDeadlineFreeTheSessionPromptly) {
  f_.limits()->max_tokens_per_generate = 1 << 24;  // never reached
  f_.limits()->max_tokens_in_flight_per_principal = 1 << 26;
  StartService();
  const std::string id = Create("mamba2-pointer", 0.7f, 9);
  ASSERT_TRUE(Append(id, RandomTokens(11, 2)).ok());
  for (int round = 0; round < 3; ++round) {
    v1::GenerateRequest req;
    req.set_session_id(id);
    req.set_max_tokens(1 << 24);
    auto ctx = ServiceFixture::Ctx(kAlice);
    auto reader = stub_->Generate(ctx.get(), req);
    v1::GenerateChunk chunk;
    int64_t received = 0;
    while (received < 50 && reader->Read(&chunk)) received += chunk.token_ids_size();
    ctx->TryCancel();
    while (reader->Read(&chunk)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
    // The session takes the next call at once.
    Generated next = Generate(id, 5);
    ASSERT_TRUE(next.status.ok()) << round << ": " << next.status.error_message();
    EXPECT_EQ(next.tokens.size(), 5u);
  }
  // A deadline ends an endless stream the same way.
  v1::GenerateRequest req;
  req.set_session_id(id);
  req.set_max_tokens(1 << 24);
  auto ctx = ServiceFixture::Ctx(kAlice);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  auto reader = stub_->Generate(ctx.get(), req);
  v1::GenerateChunk chunk;
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  Generated next = Generate(id, 5);
  ASSERT_TRUE(next.status.ok()) << next.status.error_message();
  // Closing the session ends a running stream with finish reason CANCELLED.
  req.set_max_tokens(1 << 24);
  auto ctx2 = ServiceFixture::Ctx(kAlice);
  auto running = stub_->Generate(ctx2.get(), req);
  ASSERT_TRUE(running->Read(&chunk));
  v1::CloseSessionRequest close;
  close.set_session_id(id);
  v1::CloseSessionResponse closed;
  auto ctx3 = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->CloseSession(ctx3.get(), close, &closed).ok());
  v1::GenerateFinishReason reason = v1::GENERATE_FINISH_REASON_UNSPECIFIED;
  while (running->Read(&chunk)) reason = chunk.finish_reason();
  EXPECT_TRUE(running->Finish().ok());
  EXPECT_EQ(reason, v1::GENERATE_FINISH_REASON_CANCELLED);
  EXPECT_EQ(Stats().active_streams(), 0);
}

TEST_F(EngineServiceTest, ShutdownEndsOpenStreamsWithUnavailable) {
  f_.limits()->max_tokens_per_generate = 1 << 24;
  f_.limits()->max_tokens_in_flight_per_principal = 1 << 26;
  StartService();
  const std::string id = Create("mamba2-pointer", 0.0f, 1);
  ASSERT_TRUE(Append(id, RandomTokens(4, 4)).ok());
  v1::GenerateRequest req;
  req.set_session_id(id);
  req.set_max_tokens(1 << 24);
  auto ctx = ServiceFixture::Ctx(kAlice);
  auto reader = stub_->Generate(ctx.get(), req);
  v1::GenerateChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  svc_->Shutdown();
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Generate(id, 3).status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

// ---- Quotas and eviction ----

TEST_F(EngineServiceTest, SessionQuotaAndIdleEviction) {
  f_.limits()->max_sessions_per_principal = 3;
  StartService();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Create("mamba2-pointer", 0.0f, i));
  v1::CreateSessionRequest req;
  req.set_model("mamba2-pointer");
  v1::EngineSession resp;
  auto ctx = ServiceFixture::Ctx(kAlice);
  grpc::Status over = stub_->CreateSession(ctx.get(), req, &resp);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << over.error_message();
  Create("mamba2-pointer", 0.0f, 0, kBob);  // bob has his own quota

  // Evict: one session keeps a snapshot.
  v1::CloseSessionRequest close;
  close.set_session_id(ids[2]);
  v1::CloseSessionResponse closed;
  auto ctx2 = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->CloseSession(ctx2.get(), close, &closed).ok());
  req.set_idle_timeout_seconds(5);
  req.set_keep_snapshot_on_evict(true);
  req.mutable_sampling()->set_temperature(0.6f);
  req.mutable_sampling()->set_seed(8);
  auto ctx3 = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->CreateSession(ctx3.get(), req, &resp).ok());
  const std::string kept = resp.session_id();
  EXPECT_EQ(resp.idle_timeout_seconds(), 5);
  ASSERT_TRUE(Append(kept, RandomTokens(14, 14)).ok());
  EXPECT_EQ(svc_->sessions()->EvictIdle(Clock::now() + std::chrono::seconds(6)), 1);

  v1::GetSessionRequest get;
  get.set_session_id(kept);
  auto ctx4 = ServiceFixture::Ctx(kAlice);
  grpc::Status gone = stub_->GetSession(ctx4.get(), get, &resp);
  EXPECT_EQ(gone.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::ListSessionsResponse list;
  auto ctx5 = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->ListSessions(ctx5.get(), {}, &list).ok());
  EXPECT_EQ(list.sessions_size(), 2);
  ASSERT_EQ(list.evicted_size(), 1);
  EXPECT_EQ(list.evicted(0).session_id(), kept);
  EXPECT_EQ(list.evicted(0).position(), 14);
  const std::string snap = list.evicted(0).snapshot_id();
  EXPECT_NE(gone.error_message().find(snap), std::string::npos) << gone.error_message();
  // The quota counts the eviction as a close; the snapshot restores.
  v1::RestoreRequest restore;
  restore.set_snapshot_id(snap);
  restore.mutable_sampling()->set_temperature(0.6f);
  auto ctx6 = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->Restore(ctx6.get(), restore, &resp).ok());
  EXPECT_EQ(resp.position(), 14);
  EXPECT_EQ(Stats().evicted_sessions(), 1);
}

// ---- Malformed requests ----

TEST_F(EngineServiceTest, MalformedRequestsGetTheRightCodes) {
  f_.limits()->max_tokens_per_append = 64;
  f_.limits()->max_tokens_per_generate = 100;
  StartService();
  const std::string fresh = Create("mamba2-pointer", 0.0f, 1);  // position 0
  const std::string live = Create("mamba2-pointer", 0.0f, 1);
  ASSERT_TRUE(Append(live, {1, 2, 3}).ok());
  const std::string closed = Create("mamba2-pointer", 0.0f, 1);
  ASSERT_TRUE(OnSession(&v1::Engine::Stub::CloseSession, closed).ok());
  auto append_req = [&](const std::string& sid, std::function<void(v1::AppendRequest*)> fill) {
    return Call(&v1::Engine::Stub::Append, [&](v1::AppendRequest* r) {
      r->set_session_id(sid);
      fill(r);
    });
  };
  auto generate_req = [&](std::function<void(v1::GenerateRequest*)> fill) {
    v1::GenerateRequest r;
    r.set_session_id(live);
    r.set_max_tokens(5);
    fill(&r);
    auto c = ServiceFixture::Ctx(kAlice);
    auto reader = stub_->Generate(c.get(), r);
    v1::GenerateChunk chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish();
  };
  auto create_req = [&](std::function<void(v1::CreateSessionRequest*)> fill) {
    return Call(&v1::Engine::Stub::CreateSession, [&](v1::CreateSessionRequest* r) {
      r->set_model("mamba2-pointer");
      fill(r);
    });
  };
  struct Case {
    const char* name;
    std::function<grpc::Status()> call;
    grpc::StatusCode code;
    const char* mentions;  // a substring of the message
  };
  const std::vector<Case> cases = {
      {"append to unknown session",
       [&] { return append_req("ses_nope", [](auto* r) { r->mutable_tokens()->add_ids(1); }); },
       grpc::StatusCode::NOT_FOUND, "ses_nope"},
      {"append with no input", [&] { return append_req(live, [](auto*) {}); },
       grpc::StatusCode::INVALID_ARGUMENT, "input"},
      {"append empty ids", [&] { return append_req(live, [](auto* r) { r->mutable_tokens(); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "tokens"},
      {"append empty text", [&] { return append_req(live, [](auto* r) { r->set_text(""); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "text"},
      {"append invalid UTF-8",
       [&] { return append_req(live, [](auto* r) { r->set_text("ok\xc3\x28 bad"); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "text"},
      {"append overlong UTF-8",
       [&] { return append_req(live, [](auto* r) { r->set_text("\xc0\xaf"); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "text"},
      {"append id past the vocabulary",
       [&] {
         return append_req(live, [](auto* r) {
           for (int id : {5, 6, 285, 7}) r->mutable_tokens()->add_ids(id);
         });
       },
       grpc::StatusCode::INVALID_ARGUMENT, "ids[2]"},
      {"append negative id",
       [&] { return append_req(live, [](auto* r) { r->mutable_tokens()->add_ids(-1); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "ids[0]"},
      {"append over max_tokens_per_append",
       [&] {
         return append_req(live, [](auto* r) {
           for (int i = 0; i < 65; ++i) r->mutable_tokens()->add_ids(i);
         });
       },
       grpc::StatusCode::INVALID_ARGUMENT, "65"},
      {"append negative top_k_logits",
       [&] {
         return append_req(live, [](auto* r) {
           r->mutable_tokens()->add_ids(1);
           r->set_top_k_logits(-3);
         });
       },
       grpc::StatusCode::INVALID_ARGUMENT, "top_k_logits"},
      {"generate max_tokens 0", [&] { return generate_req([](auto* r) { r->set_max_tokens(0); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "max_tokens"},
      {"generate negative max_tokens",
       [&] { return generate_req([](auto* r) { r->set_max_tokens(-7); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "max_tokens"},
      {"generate max_tokens over the limit",
       [&] { return generate_req([](auto* r) { r->set_max_tokens(101); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "max_tokens"},
      {"generate huge max_tokens",
       [&] { return generate_req([](auto* r) { r->set_max_tokens(2147483647); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "max_tokens"},
      {"generate stop id past the vocabulary",
       [&] { return generate_req([](auto* r) { r->add_stop_token_ids(4000); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "stop_token_ids[0]"},
      {"generate top_p above 1",
       [&] { return generate_req([](auto* r) { r->mutable_sampling()->set_top_p(1.5f); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "top_p"},
      {"generate negative top_k",
       [&] { return generate_req([](auto* r) { r->mutable_sampling()->set_top_k(-1); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "top_k"},
      {"generate before any token",
       [&] { return generate_req([&](auto* r) { r->set_session_id(fresh); }); },
       grpc::StatusCode::FAILED_PRECONDITION, "Append"},
      {"generate on unknown session",
       [&] { return generate_req([](auto* r) { r->set_session_id("whatever"); }); },
       grpc::StatusCode::NOT_FOUND, "whatever"},
      {"create with a path as model",
       [&] { return create_req([](auto* r) { r->set_model("../etc"); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "model"},
      {"create with an unknown model",
       [&] { return create_req([](auto* r) { r->set_model("no-such-model"); }); },
       grpc::StatusCode::NOT_FOUND, "no-such-model"},
      {"create with an empty model", [&] { return create_req([](auto* r) { r->set_model(""); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "model"},
      {"create with a negative idle timeout",
       [&] { return create_req([](auto* r) { r->set_idle_timeout_seconds(-1); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "idle_timeout_seconds"},
      {"create with a huge idle timeout",
       [&] { return create_req([](auto* r) { r->set_idle_timeout_seconds(int64_t{1} << 40); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "idle_timeout_seconds"},
      {"create with NaN temperature",
       [&] { return create_req([](auto* r) { r->mutable_sampling()->set_temperature(NAN); }); },
       grpc::StatusCode::INVALID_ARGUMENT, "temperature"},
      {"append after close",
       [&] { return append_req(closed, [](auto* r) { r->mutable_tokens()->add_ids(1); }); },
       grpc::StatusCode::NOT_FOUND, "not found"},
      {"generate after close",
       [&] { return generate_req([&](auto* r) { r->set_session_id(closed); }); },
       grpc::StatusCode::NOT_FOUND, "not found"},
      {"get after close", [&] { return OnSession(&v1::Engine::Stub::GetSession, closed); },
       grpc::StatusCode::NOT_FOUND, "not found"},
      {"fork after close", [&] { return OnSession(&v1::Engine::Stub::Fork, closed); },
       grpc::StatusCode::NOT_FOUND, "not found"},
      {"snapshot after close", [&] { return OnSession(&v1::Engine::Stub::Snapshot, closed); },
       grpc::StatusCode::NOT_FOUND, "not found"},
      {"close twice", [&] { return OnSession(&v1::Engine::Stub::CloseSession, closed); },
       grpc::StatusCode::NOT_FOUND, "not found"},
      {"restore unknown snapshot",
       [&] {
         return Call(&v1::Engine::Stub::Restore,
                     [&](v1::RestoreRequest* r) { r->set_snapshot_id("snap_0123"); });
       },
       grpc::StatusCode::NOT_FOUND, "snap_0123"},
      {"load a model with a bad name",
       [&] {
         return Call(&v1::Engine::Stub::LoadModel,
                     [&](v1::LoadModelRequest* r) { r->set_name("a/b"); });
       },
       grpc::StatusCode::INVALID_ARGUMENT, "model"},
      {"unload a model that is not loaded",
       [&] {
         return Call(&v1::Engine::Stub::UnloadModel,
                     [&](v1::UnloadModelRequest* r) { r->set_name("llama-pointer"); });
       },
       grpc::StatusCode::NOT_FOUND, "llama-pointer"},
      {"unknown API key",
       [&] {
         v1::ListModelsResponse out;
         auto c = ServiceFixture::Ctx("not-a-real-key-at-all");
         return stub_->ListModels(c.get(), {}, &out);
       },
       grpc::StatusCode::UNAUTHENTICATED, "key"},
  };
  ASSERT_GE(cases.size(), 12u);
  for (const Case& c : cases) {
    grpc::Status st = c.call();
    EXPECT_EQ(st.error_code(), c.code) << c.name << ": " << st.error_message();
    EXPECT_NE(st.error_message().find(c.mentions), std::string::npos)
        << c.name << ": '" << st.error_message() << "' does not mention '" << c.mentions << "'";
  }
  // The live session is untouched by all of the above.
  v1::GetSessionRequest get;
  get.set_session_id(live);
  v1::EngineSession info;
  auto c = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->GetSession(c.get(), get, &info).ok());
  EXPECT_EQ(info.position(), 3);
}

TEST_F(EngineServiceTest, ListLoadUnloadModels) {
  StartService();
  v1::ListModelsResponse list;
  auto c1 = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->ListModels(c1.get(), {}, &list).ok());
  std::map<std::string, v1::EngineModel> by_name;
  for (const auto& m : list.models()) by_name[m.name()] = m;
  ASSERT_EQ(by_name.count("mamba2-pointer"), 1u);
  EXPECT_EQ(by_name["mamba2-pointer"].arch(), "mamba2");
  EXPECT_EQ(by_name["llama-pointer"].arch(), "llama");
  EXPECT_FALSE(by_name["mamba2-pointer"].loaded());
  EXPECT_TRUE(by_name["mamba2-pointer"].has_tokenizer());
  v1::LoadModelRequest load;
  load.set_name("mamba2-pointer");
  v1::EngineModel loaded;
  auto c2 = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->LoadModel(c2.get(), load, &loaded).ok());
  EXPECT_TRUE(loaded.loaded());
  EXPECT_GT(loaded.num_params(), 100000);
  EXPECT_EQ(loaded.vocab_size(), 285);
  auto c3 = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->ListModels(c3.get(), {}, &list).ok());
  for (const auto& m : list.models()) {
    if (m.name() == "mamba2-pointer") {
      EXPECT_TRUE(m.loaded());
    }
  }
  v1::UnloadModelRequest unload;
  unload.set_name("mamba2-pointer");
  v1::UnloadModelResponse unloaded;
  auto c4 = ServiceFixture::Ctx(kAlice);
  EXPECT_TRUE(stub_->UnloadModel(c4.get(), unload, &unloaded).ok());
}

}  // namespace
}  // namespace tapeloop::server
