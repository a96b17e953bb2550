// SessionManager without gRPC: sessions on the bundled models, the batching scheduler driven
// through fake sinks (paused / released / cancelled by the test), quotas, eviction, snapshots.
#include "server/session_manager.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <random>

#include "service_fixture.h"

namespace tapeloop::server {
namespace {

// Collects a Generate's output. Starts paused (Full) when asked, so a test can line up several
// jobs and release them together.
class FakeSink final : public GenerateSink {
 public:
  explicit FakeSink(bool paused = false) : full_(paused) {}
  void OnTokens(std::span<const int32_t> ids, int64_t position) override {
    std::lock_guard<std::mutex> lock(mu_);
    tokens_.insert(tokens_.end(), ids.begin(), ids.end());
    position_ = position;
  }
  void OnFinish(const absl::Status& status, FinishReason reason, int64_t position) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++finishes_;
    status_ = status;
    reason_ = reason;
    position_ = position;
    cv_.notify_all();
  }
  bool Cancelled() override { return cancelled_; }
  bool Full() override { return full_; }

  void set_full(bool full) { full_ = full; }
  void cancel() { cancelled_ = true; }
  // Waits (up to 60 s) for OnFinish; false if it did not come.
  bool WaitDone() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return finishes_ > 0; });
  }
  std::vector<int32_t> tokens() {
    std::lock_guard<std::mutex> lock(mu_);
    return tokens_;
  }
  absl::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  FinishReason reason() {
    std::lock_guard<std::mutex> lock(mu_);
    return reason_;
  }
  int finishes() {
    std::lock_guard<std::mutex> lock(mu_);
    return finishes_;
  }

 private:
  std::atomic<bool> full_;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> tokens_;
  int64_t position_ = 0;
  absl::Status status_;
  FinishReason reason_ = FinishReason::kCancelled;
  int finishes_ = 0;
};

std::vector<int32_t> RandomTokens(int n, uint32_t seed, int vocab = 285) {
  std::mt19937 rng(seed);
  std::vector<int32_t> out(n);
  for (auto& t : out) t = static_cast<int32_t>(rng() % vocab);
  return out;
}

class SessionManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {}
  std::unique_ptr<SessionManager> Make() {
    auto m = SessionManager::Create(fixture_.context());
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *std::move(m) : nullptr;
  }
  static SessionOptions Opts(float temperature = 0.0f, uint64_t seed = 0) {
    SessionOptions o;
    o.model = "mamba2-pointer";
    o.sampling.temperature = temperature;
    o.seed = seed;
    return o;
  }

  testing::ServiceFixture fixture_;
};

TEST_F(SessionManagerTest, BatchedJobsEqualOneAtATimeAndShareSteps) {
  auto m = Make();
  ASSERT_NE(m, nullptr);
  constexpr int kN = 12;
  std::vector<std::string> ids, twins;
  for (int i = 0; i < kN; ++i) {
    auto s = m->CreateSession("p", Opts(i % 2 == 0 ? 0.0f : 0.9f, 1000 + i));
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE(m->Append("p", s->id, RandomTokens(5 + 3 * i, 50 + i), 0).ok());
    auto twin = m->Fork("p", s->id);
    ASSERT_TRUE(twin.ok()) << twin.status();
    ids.push_back(s->id);
    twins.push_back(twin->id);
  }
  // One at a time on the twins.
  std::vector<std::vector<int32_t>> expected;
  for (int i = 0; i < kN; ++i) {
    auto sink = std::make_shared<FakeSink>();
    GenerateParams p;
    p.max_tokens = 20 + 2 * i;
    ASSERT_TRUE(m->Generate("p", twins[i], p, sink).ok());
    ASSERT_TRUE(sink->WaitDone());
    ASSERT_TRUE(sink->status().ok()) << sink->status();
    EXPECT_EQ(sink->reason(), FinishReason::kMaxTokens);
    expected.push_back(sink->tokens());
    EXPECT_EQ(static_cast<int>(expected.back().size()), p.max_tokens);
  }
  EXPECT_EQ(m->stats().max_batch, 1);
  // All together: queued paused, released at once, so they share steps.
  std::vector<std::shared_ptr<FakeSink>> sinks;
  for (int i = 0; i < kN; ++i) {
    sinks.push_back(std::make_shared<FakeSink>(/*paused=*/true));
    GenerateParams p;
    p.max_tokens = 20 + 2 * i;
    ASSERT_TRUE(m->Generate("p", ids[i], p, sinks.back()).ok());
  }
  for (auto& s : sinks) s->set_full(false);
  m->Wake();
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(sinks[i]->WaitDone());
    EXPECT_EQ(sinks[i]->tokens(), expected[i]) << i;
  }
  EXPECT_EQ(m->stats().max_batch, kN);
  // Both copies are at the same position afterwards (their states agree to float rounding:
  // a batched step multiplies with sgemm, a single one with sgemv).
  for (int i = 0; i < kN; ++i) {
    auto a = m->GetSession("p", ids[i], false), b = m->GetSession("p", twins[i], false);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->position, b->position) << i;
    EXPECT_EQ(a->position, 5 + 3 * i + 20 + 2 * i) << i;
  }
}

TEST_F(SessionManagerTest, PausedReaderDoesNotBlockOthersAndHoldsItsQuota) {
  fixture_.limits()->max_tokens_in_flight_per_principal = 1000;
  auto m = Make();
  ASSERT_NE(m, nullptr);
  auto a = m->CreateSession("p", Opts());
  auto b = m->CreateSession("p", Opts(0.7f, 3));
  auto c = m->CreateSession("p", Opts());
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  for (auto* s : {&*a, &*b, &*c}) ASSERT_TRUE(m->Append("p", s->id, RandomTokens(9, 7), 0).ok());

  auto slow = std::make_shared<FakeSink>(/*paused=*/true);
  GenerateParams big;
  big.max_tokens = 900;
  ASSERT_TRUE(m->Generate("p", a->id, big, slow).ok());
  // The paused stream keeps its session busy (a second call waits out the grace period, then
  // fails) and its 900 tokens reserved.
  auto again = std::make_shared<FakeSink>();
  GenerateParams few;
  few.max_tokens = 50;
  ASSERT_TRUE(m->Generate("p", a->id, few, again).ok());
  ASSERT_TRUE(again->WaitDone());
  EXPECT_EQ(again->status().code(), absl::StatusCode::kFailedPrecondition) << again->status();
  EXPECT_NE(again->status().message().find("busy"), std::string::npos) << again->status();
  EXPECT_TRUE(again->tokens().empty());
  EXPECT_EQ(m->Append("p", a->id, RandomTokens(2, 1), 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  GenerateParams over;
  over.max_tokens = 101;
  EXPECT_EQ(m->Generate("p", b->id, over, std::make_shared<FakeSink>()).code(),
            absl::StatusCode::kResourceExhausted);
  // Another principal has its own budget.
  auto other = m->CreateSession("q", Opts());
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(m->Append("q", other->id, RandomTokens(3, 2), 0).ok());
  auto q_sink = std::make_shared<FakeSink>();
  ASSERT_TRUE(m->Generate("q", other->id, over, q_sink).ok());
  ASSERT_TRUE(q_sink->WaitDone());
  EXPECT_EQ(q_sink->tokens().size(), 101u);

  // A session of the same principal within the budget runs to the end meanwhile.
  GenerateParams small;
  small.max_tokens = 100;
  auto fast = std::make_shared<FakeSink>();
  ASSERT_TRUE(m->Generate("p", b->id, small, fast).ok());
  ASSERT_TRUE(fast->WaitDone());
  EXPECT_TRUE(fast->status().ok());
  EXPECT_EQ(fast->tokens().size(), 100u);
  EXPECT_EQ(slow->finishes(), 0);
  EXPECT_TRUE(slow->tokens().empty());

  // Cancelling the paused one ends it with CANCELLED and frees session and budget.
  slow->cancel();
  m->Wake();
  ASSERT_TRUE(slow->WaitDone());
  EXPECT_EQ(slow->status().code(), absl::StatusCode::kCancelled);
  auto after = std::make_shared<FakeSink>();
  ASSERT_TRUE(m->Generate("p", a->id, big, after).ok());
  ASSERT_TRUE(after->WaitDone());
  EXPECT_EQ(after->tokens().size(), 900u);
}

TEST_F(SessionManagerTest, StopTokenEndsGenerationAndEntersTheState) {
  auto m = Make();
  ASSERT_NE(m, nullptr);
  auto s = m->CreateSession("p", Opts(1.0f, 11));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(m->Append("p", s->id, RandomTokens(12, 4), 0).ok());
  auto twin = m->Fork("p", s->id);
  ASSERT_TRUE(twin.ok());
  GenerateParams p;
  p.max_tokens = 64;
  auto free_run = std::make_shared<FakeSink>();
  ASSERT_TRUE(m->Generate("p", twin->id, p, free_run).ok());
  ASSERT_TRUE(free_run->WaitDone());
  const std::vector<int32_t> all = free_run->tokens();
  ASSERT_EQ(all.size(), 64u);
  // Stop at the 10th token's id: generation ends at its first occurrence.
  p.stop_tokens = {all[9]};
  const size_t first = std::find(all.begin(), all.end(), all[9]) - all.begin();
  auto stopped = std::make_shared<FakeSink>();
  ASSERT_TRUE(m->Generate("p", s->id, p, stopped).ok());
  ASSERT_TRUE(stopped->WaitDone());
  EXPECT_EQ(stopped->reason(), FinishReason::kStopToken);
  EXPECT_EQ(stopped->tokens(), std::vector<int32_t>(all.begin(), all.begin() + first + 1));
  auto info = m->GetSession("p", s->id, false);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->position, 12 + static_cast<int64_t>(first) + 1);
}

TEST_F(SessionManagerTest, SessionQuotaPerPrincipal) {
  fixture_.limits()->max_sessions_per_principal = 2;
  auto m = Make();
  ASSERT_NE(m, nullptr);
  auto a = m->CreateSession("p", Opts());
  auto b = m->CreateSession("p", Opts());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(m->CreateSession("p", Opts()).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(m->Fork("p", a->id).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(m->CreateSession("q", Opts()).ok());
  ASSERT_TRUE(m->CloseSession("p", a->id).ok());
  EXPECT_TRUE(m->CreateSession("p", Opts()).ok());
}

TEST_F(SessionManagerTest, IdleEvictionKeepsASnapshotWhenAsked) {
  auto m = Make();
  ASSERT_NE(m, nullptr);
  SessionOptions keep = Opts(0.8f, 5);
  keep.idle_timeout_seconds = 30;
  keep.keep_snapshot_on_evict = true;
  SessionOptions drop = Opts();
  drop.idle_timeout_seconds = 30;
  SessionOptions patient = Opts();
  patient.idle_timeout_seconds = 3600;
  auto k = m->CreateSession("p", keep), d = m->CreateSession("p", drop),
       l = m->CreateSession("p", patient);
  ASSERT_TRUE(k.ok() && d.ok() && l.ok());
  ASSERT_TRUE(m->Append("p", k->id, RandomTokens(17, 8), 0).ok());
  auto twin = m->Fork("p", k->id);
  ASSERT_TRUE(twin.ok());
  ASSERT_TRUE(m->Append("p", d->id, RandomTokens(3, 8), 0).ok());

  EXPECT_EQ(m->EvictIdle(Clock::now()), 0);
  EXPECT_EQ(m->EvictIdle(Clock::now() + std::chrono::seconds(31)), 3);  // k, d and the twin
  EXPECT_TRUE(m->GetSession("p", l->id, false).ok());
  auto gone = m->GetSession("p", k->id, false);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  auto records = m->ListEvicted("p");
  ASSERT_EQ(records.size(), 3u);
  const EvictionRecord* rk = nullptr;
  for (const auto& r : records) {
    if (r.session_id == k->id) rk = &r;
    if (r.session_id == d->id) {
      EXPECT_TRUE(r.snapshot_id.empty());
    }
  }
  ASSERT_NE(rk, nullptr);
  ASSERT_FALSE(rk->snapshot_id.empty());
  EXPECT_EQ(rk->position, 17);
  EXPECT_NE(gone.status().message().find(rk->snapshot_id), std::string::npos) << gone.status();
  // Another principal sees the plain "not found".
  auto foreign = m->GetSession("q", k->id, false);
  EXPECT_EQ(foreign.status().message().find("evicted"), std::string::npos);
  EXPECT_TRUE(m->ListEvicted("q").empty());

  // The snapshot continues exactly where the session was.
  SessionOptions restore_opts = Opts(0.8f);
  restore_opts.seed.reset();  // keep the generator state of the snapshot
  auto restored = m->Restore("p", rk->snapshot_id, restore_opts);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->position, 17);
  auto ref = m->CreateSession("p", Opts(0.8f, 5));  // the same prompt, never evicted
  ASSERT_TRUE(ref.ok());
  ASSERT_TRUE(m->Append("p", ref->id, RandomTokens(17, 8), 0).ok());
  GenerateParams p;
  p.max_tokens = 30;
  auto s1 = std::make_shared<FakeSink>(), s2 = std::make_shared<FakeSink>();
  ASSERT_TRUE(m->Generate("p", restored->id, p, s1).ok());
  ASSERT_TRUE(s1->WaitDone());
  ASSERT_TRUE(m->Generate("p", ref->id, p, s2).ok());
  ASSERT_TRUE(s2->WaitDone());
  EXPECT_EQ(s1->tokens(), s2->tokens());
}

TEST_F(SessionManagerTest, ShutdownEndsRunningJobsWithUnavailable) {
  auto m = Make();
  ASSERT_NE(m, nullptr);
  auto s = m->CreateSession("p", Opts());
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(m->Append("p", s->id, RandomTokens(4, 1), 0).ok());
  auto paused = std::make_shared<FakeSink>(true);
  GenerateParams p;
  p.max_tokens = 50;
  ASSERT_TRUE(m->Generate("p", s->id, p, paused).ok());
  m->Shutdown();
  ASSERT_TRUE(paused->WaitDone());
  EXPECT_EQ(paused->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(paused->finishes(), 1);
  EXPECT_EQ(m->CreateSession("p", Opts()).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tapeloop::server
