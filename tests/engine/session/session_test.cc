#include "engine/session/session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/engine/test_util.h"

namespace tapeloop::engine {
namespace {

using ::testing::HasSubstr;
using testing::AllFamilies;
using testing::MaxRelErr;
using testing::RandomTokens;
using testing::TinyConfig;

constexpr double kTol = 1e-5;

// The live KV rows of a cache, in position order (so ring buffers compare with full caches).
std::vector<float> LiveKv(const KvCache& c, int64_t window, int64_t width, bool keys) {
  const std::vector<float>& buf = keys ? c.k : c.v;
  const int64_t n = c.live_rows(window);
  std::vector<float> out;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = c.tokens - n + i;
    const int64_t row = window > 0 ? pos % window : pos;
    out.insert(out.end(), buf.begin() + row * width, buf.begin() + (row + 1) * width);
  }
  return out;
}

void ExpectSameState(const SessionState& a, const SessionState& b, double tol) {
  ASSERT_EQ(a.position(), b.position());
  EXPECT_LE(MaxRelErr(a.recurrent(), b.recurrent()), tol);
  const StateLayout& l = a.layout();
  for (size_t i = 0; i < a.kv_caches().size(); ++i) {
    for (bool keys : {true, false}) {
      auto x = LiveKv(a.kv_caches()[i], l.kv_window[i], l.kv_width[i], keys);
      auto y = LiveKv(b.kv_caches()[i], l.kv_window[i], l.kv_width[i], keys);
      EXPECT_LE(MaxRelErr(x, y), tol) << "kv " << i;
    }
  }
}

class SessionFamilyTest : public ::testing::TestWithParam<Family> {
 protected:
  void SetUp() override {
    auto m = Model::RandomInit(TinyConfig(GetParam()), 11);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
  }
  std::unique_ptr<Model> model_;
};

TEST_P(SessionFamilyTest, PrefillDecodeAndChunkSplitsAgree) {
  const int T = 1000;
  const int V = static_cast<int>(model_->config().vocab_size);
  std::vector<int32_t> toks = RandomTokens(T, V, 5);

  // 1. One prefill (Append chunks internally at kMaxChunk).
  Session prefill(model_.get());
  auto all = prefill.Append(toks, /*all_logits=*/true);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), size_t{T} * V);

  // 2. Token by token.
  Session step(model_.get());
  std::vector<float> stepped;
  for (int t = 0; t < T; ++t) {
    auto l = step.Decode(toks[t]);
    ASSERT_TRUE(l.ok());
    stepped.insert(stepped.end(), l->begin(), l->end());
  }
  EXPECT_LE(MaxRelErr(stepped, *all), kTol);
  ExpectSameState(*step.state(), *prefill.state(), kTol);

  // 3. Random chunk splits (1..70 tokens), through Model::Forward directly.
  std::mt19937 rng(3);
  SessionState chunked = model_->NewState();
  std::vector<float> chunks_logits, l;
  for (int start = 0; start < T;) {
    int n = std::min(T - start, 1 + static_cast<int>(rng() % 70));
    ASSERT_TRUE(model_->Forward(std::span<const int32_t>(toks).subspan(start, n), &chunked, true, &l).ok());
    chunks_logits.insert(chunks_logits.end(), l.begin(), l.end());
    start += n;
  }
  EXPECT_LE(MaxRelErr(chunks_logits, *all), kTol);
  ExpectSameState(chunked, *prefill.state(), kTol);
}

TEST_P(SessionFamilyTest, BatchedDecodeEqualsOneByOne) {
  const int V = static_cast<int>(model_->config().vocab_size);
  const int B = 6;
  std::vector<std::unique_ptr<Session>> batched, single;
  for (int b = 0; b < B; ++b) {
    batched.push_back(std::make_unique<Session>(model_.get()));
    // Different prompt lengths: sessions sit at different positions.
    ASSERT_TRUE(batched.back()->Append(RandomTokens(3 + 5 * b, V, 100 + b)).ok());
    single.push_back(batched.back()->Fork());
  }
  std::vector<Session*> ptrs;
  for (auto& s : batched) ptrs.push_back(s.get());
  for (int step = 0; step < 12; ++step) {
    std::vector<int32_t> toks = RandomTokens(B, V, 1000 + step);
    auto lb = DecodeBatch(ptrs, toks);
    ASSERT_TRUE(lb.ok()) << lb.status();
    for (int b = 0; b < B; ++b) {
      auto l1 = single[b]->Decode(toks[b]);
      ASSERT_TRUE(l1.ok());
      EXPECT_LE(MaxRelErr(std::span<const float>(*lb).subspan(b * V, V), *l1), kTol) << b;
    }
  }
  for (int b = 0; b < B; ++b) ExpectSameState(*batched[b]->state(), *single[b]->state(), kTol);
}

TEST_P(SessionFamilyTest, SnapshotRestoreContinueEqualsUninterrupted) {
  const int V = static_cast<int>(model_->config().vocab_size);
  std::vector<int32_t> prompt = RandomTokens(40, V, 9), rest = RandomTokens(25, V, 10);
  Session a(model_.get(), 77);
  ASSERT_TRUE(a.Append(prompt).ok());
  const std::string snap = a.Snapshot();
  auto la = a.Append(rest, true);
  ASSERT_TRUE(la.ok());

  Session b(model_.get());
  ASSERT_TRUE(b.Append(RandomTokens(13, V, 1)).ok());  // some unrelated state, overwritten
  ASSERT_TRUE(b.Restore(snap).ok());
  EXPECT_EQ(b.position(), 40);
  auto lb = b.Append(rest, true);
  ASSERT_TRUE(lb.ok());
  EXPECT_EQ(*la, *lb);  // bit-exact: same operations on the same bytes
  EXPECT_EQ(a.Snapshot(), b.Snapshot());
}

TEST_P(SessionFamilyTest, SnapshotErrors) {
  const int V = static_cast<int>(model_->config().vocab_size);
  Session a(model_.get());
  ASSERT_TRUE(a.Append(RandomTokens(20, V, 2)).ok());
  const std::string snap = a.Snapshot();

  auto other = Model::RandomInit(TinyConfig(GetParam()), 12);  // same shapes, other weights
  ASSERT_TRUE(other.ok());
  Session c(other->get());
  absl::Status s = c.Restore(snap);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cannot restore into model"));

  std::string corrupt = snap;
  corrupt[corrupt.size() / 2] ^= 0x10;
  EXPECT_EQ(a.Restore(corrupt).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(a.Restore(snap.substr(0, snap.size() - 3)).code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(a.Restore("").ok());
  std::string bad_magic = snap;
  bad_magic[0] = 'X';
  EXPECT_EQ(a.Restore(bad_magic).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.position(), 20);  // unchanged after the failed restores
}

TEST_P(SessionFamilyTest, ForksDivergeIndependently) {
  const int V = static_cast<int>(model_->config().vocab_size);
  Session root(model_.get());
  ASSERT_TRUE(root.Append(RandomTokens(30, V, 4)).ok());
  auto fork = root.Fork();
  std::vector<int32_t> x = RandomTokens(10, V, 5), y = RandomTokens(10, V, 6);
  auto lx = root.Append(x);
  auto ly = fork->Append(y);
  ASSERT_TRUE(lx.ok() && ly.ok());
  EXPECT_NE(*lx, *ly);
  // Each equals a fresh run of its own history.
  Session ref(model_.get());
  std::vector<int32_t> hist = RandomTokens(30, V, 4);
  hist.insert(hist.end(), y.begin(), y.end());
  auto lref = ref.Append(hist);
  ASSERT_TRUE(lref.ok());
  EXPECT_LE(MaxRelErr(*ly, *lref), kTol);
  auto lroot2 = root.Decode(1);
  auto lfork2 = fork->Decode(1);
  EXPECT_NE(*lroot2, *lfork2);
}

TEST_P(SessionFamilyTest, ResetGivesAFreshSession) {
  const int V = static_cast<int>(model_->config().vocab_size);
  std::vector<int32_t> t = RandomTokens(17, V, 8);
  Session a(model_.get());
  ASSERT_TRUE(a.Append(RandomTokens(50, V, 7)).ok());
  a.Reset();
  EXPECT_EQ(a.position(), 0);
  Session b(model_.get());
  EXPECT_EQ(*a.Append(t), *b.Append(t));
}

TEST_P(SessionFamilyTest, RejectsBadTokensWithoutMoving) {
  Session a(model_.get());
  std::vector<int32_t> bad = {1, 2, 999};
  auto r = a.Append(bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("token id 999 at index 2"));
  EXPECT_FALSE(a.Decode(-3).ok());
  EXPECT_FALSE(a.Append({}).ok());
  EXPECT_EQ(a.position(), 0);
}

TEST_P(SessionFamilyTest, StateSizeFollowsTheFamily) {
  const int V = static_cast<int>(model_->config().vocab_size);
  Session s(model_.get());
  const int64_t empty = s.SizeBytes();
  ASSERT_TRUE(s.Append(RandomTokens(10, V, 1)).ok());
  const int64_t at10 = s.SizeBytes();
  ASSERT_TRUE(s.Append(RandomTokens(90, V, 2)).ok());
  const int64_t at100 = s.SizeBytes();
  EXPECT_EQ(empty, SessionState::SizeBytesAfter(model_->state_layout(), 0));
  EXPECT_EQ(at10, SessionState::SizeBytesAfter(model_->state_layout(), 10));
  EXPECT_EQ(at100, SessionState::SizeBytesAfter(model_->state_layout(), 100));
  switch (GetParam()) {
    case Family::kMamba2:
      EXPECT_EQ(empty, at100);
      EXPECT_GT(empty, 0);
      break;
    case Family::kLlama:
      EXPECT_EQ(at100 - empty, 10 * (at10 - empty));  // linear in tokens
      break;
    case Family::kMistral:
      EXPECT_EQ(at10, at100);  // window of 7 reached
      break;
    case Family::kNemotronH:
      EXPECT_EQ(at100 - empty, 10 * (at10 - empty));
      EXPECT_GT(empty, 0);
      break;
  }
}

TEST_P(SessionFamilyTest, GenerateIsSeededAndStops) {
  const int V = static_cast<int>(model_->config().vocab_size);
  std::vector<int32_t> prompt = RandomTokens(12, V, 1);
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 20;
  p.top_p = 0.95f;
  auto run = [&](uint64_t seed) {
    Session s(model_.get(), seed);
    auto l = s.Append(prompt);
    return *s.Generate(*l, 20, p);
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
  std::vector<int32_t> out = run(5);
  p.stop_tokens = {out[3]};
  Session s(model_.get(), 5);
  auto l = s.Append(prompt);
  auto stopped = s.Generate(*l, 20, p);
  ASSERT_TRUE(stopped.ok());
  ASSERT_LE(stopped->size(), 4u);
  EXPECT_EQ(stopped->back(), out[3]);
  EXPECT_EQ(s.position(), 12 + static_cast<int64_t>(stopped->size()));
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, SessionFamilyTest, ::testing::ValuesIn(AllFamilies()),
                         [](const auto& info) { return FamilyName(info.param); });

TEST(Session, StateOfAnotherModelIsRejected) {
  auto a = Model::RandomInit(TinyConfig(Family::kMamba2), 1);
  auto b = Model::RandomInit(TinyConfig(Family::kMamba2), 2);
  SessionState s = (*a)->NewState();
  std::vector<float> logits;
  std::vector<int32_t> t = {1};
  EXPECT_EQ((*b)->Forward(t, &s, false, &logits).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace tapeloop::engine
