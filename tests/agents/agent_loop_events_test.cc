// The agent loop's event callback and cancellation flag (agents/agent_loop.h): the callback
// sees exactly the record's tokens, roles and tool calls, in order; records are identical with
// and without it; a set flag stops every episode with "cancelled".
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "agents/agent_loop.h"
#include "agents/oracle_policy.h"
#include "common/json.h"
#include "tasks/task.h"
#include "tools/pointer_memory.h"

namespace tapeloop::agents {
namespace {

using tasks::Mode;

std::vector<EpisodeSpec> Specs(const std::string& task_name, Mode mode, int count, uint64_t seed) {
  const tasks::Task* task = *tasks::FindTask(task_name);
  tasks::Rng rng(seed);
  std::vector<EpisodeSpec> specs;
  for (int i = 0; i < count; ++i) {
    specs.push_back(MakeEpisodeSpec(task, mode, rng.Uniform(1, 60), seed, i, /*training=*/true));
  }
  return specs;
}

// Everything the callback saw, per episode.
struct Seen {
  std::vector<TokenId> tokens;
  std::vector<tasks::Role> roles;
  std::vector<int64_t> positions;
  struct Call {
    std::string id, name, arguments, result_id, text;
    bool is_error = false;
    std::optional<TokenId> observation;
    int64_t position = 0;
    size_t tokens_before = 0;  // tokens seen when the call was reported
  };
  std::vector<Call> calls;
  int results = 0;
};

LoopEventCallback Recorder(std::map<size_t, Seen>* seen) {
  return [seen](const LoopEvent& e) {
    Seen& s = (*seen)[e.episode];
    switch (e.kind) {
      case LoopEvent::Kind::kToken:
        s.tokens.push_back(e.token);
        s.roles.push_back(e.role);
        s.positions.push_back(e.position);
        break;
      case LoopEvent::Kind::kToolCall:
        ASSERT_NE(e.call, nullptr);
        s.calls.push_back({e.call->id, e.call->name, DumpJson(e.call->arguments), "", "", false,
                           std::nullopt, e.position, s.tokens.size()});
        break;
      case LoopEvent::Kind::kToolResult:
        ASSERT_NE(e.result, nullptr);
        ASSERT_FALSE(s.calls.empty());
        s.calls.back().result_id = e.result->call_id;
        s.calls.back().text = e.result->text;
        s.calls.back().is_error = e.result->is_error;
        s.calls.back().observation = e.observation;
        ++s.results;
        break;
    }
  };
}

// The record as JSON without its wall-clock timings.
nlohmann::json Untimed(const EpisodeRecord& r) {
  nlohmann::json j = r.ToJson();
  j.erase("timings");
  for (auto& c : j["calls"]) c.erase("ms");
  return j;
}

void ExpectEventsMatchRecords(const std::vector<EpisodeRecord>& records,
                              const std::map<size_t, Seen>& seen) {
  const Tokenizer tokenizer;
  for (size_t i = 0; i < records.size(); ++i) {
    const EpisodeRecord& r = records[i];
    SCOPED_TRACE(testing::Message() << "episode " << i << " " << r.instance.prompt << " mode "
                                    << tasks::ModeName(r.mode));
    const size_t prompt = r.trajectory.PromptSize();
    const std::vector<TokenId> want(r.trajectory.tokens.begin() + prompt,
                                    r.trajectory.tokens.end());
    const std::vector<tasks::Role> want_roles(r.trajectory.roles.begin() + prompt,
                                              r.trajectory.roles.end());
    auto it = seen.find(i);
    if (want.empty()) {
      EXPECT_TRUE(it == seen.end() || it->second.tokens.empty());
      continue;
    }
    ASSERT_NE(it, seen.end());
    const Seen& s = it->second;
    EXPECT_EQ(s.tokens, want);
    EXPECT_EQ(s.roles, want_roles);
    for (size_t k = 0; k < s.positions.size(); ++k) {
      ASSERT_EQ(s.positions[k], static_cast<int64_t>(prompt + k));
    }
    // Tool calls: pointer commands one call each, text calls as recorded.
    EXPECT_EQ(s.results, static_cast<int>(s.calls.size()));
    int64_t commands = 0;
    for (size_t k = prompt; k < r.trajectory.tokens.size(); ++k) {
      commands += tokens::IsPointerCommand(r.trajectory.tokens[k]);
    }
    if (r.mode == Mode::kPointer) {
      // A command past the step budget ends the episode without running.
      EXPECT_EQ(static_cast<int64_t>(s.calls.size()),
                commands - (r.stop_reason == "step_budget" ? 1 : 0));
      for (const auto& c : s.calls) {
        EXPECT_EQ(c.name, tools::PointerMemoryTool::kName);
        EXPECT_EQ(c.id, c.result_id);
        // The call is reported right after its command token.
        ASSERT_EQ(c.tokens_before, static_cast<size_t>(c.position - prompt + 1));
        const TokenId command = r.trajectory.tokens[c.position];
        ASSERT_TRUE(tokens::IsPointerCommand(command));
        EXPECT_EQ(nlohmann::json::parse(c.arguments)["pointer"], tokens::CommandPointer(command));
        if (c.observation.has_value()) {  // a read: its token follows the command
          ASSERT_LT(static_cast<size_t>(c.position + 1), r.trajectory.tokens.size());
          EXPECT_EQ(r.trajectory.tokens[c.position + 1], *c.observation);
          EXPECT_EQ(c.text, tokenizer.TokenText(*c.observation));
        }
      }
    } else if (r.mode == Mode::kCalculator) {
      ASSERT_EQ(s.calls.size(), r.calls.size());
      for (size_t k = 0; k < s.calls.size(); ++k) {
        EXPECT_EQ(s.calls[k].id, r.calls[k].call.id);
        EXPECT_EQ(s.calls[k].arguments, DumpJson(r.calls[k].call.arguments));
        EXPECT_EQ(s.calls[k].text, r.calls[k].result.text);
        EXPECT_EQ(s.calls[k].position, r.calls[k].token_index);
      }
    } else {
      EXPECT_TRUE(s.calls.empty());
    }
  }
}

TEST(AgentLoopEventsTest, OracleEventsAreTheRecordsTokensInOrderAndChangeNothing) {
  OraclePolicy oracle;
  uint64_t seed = 901;
  for (const char* task : {"addition", "multiplication-n2", "multiplication-n1"}) {
    for (Mode mode : tasks::AllModes()) {
      const auto specs = Specs(task, mode, 7, seed++);
      std::map<size_t, Seen> seen;
      LoopOptions with{.parallel = 3};
      with.on_event = Recorder(&seen);
      auto observed = RunEpisodes(oracle, specs, with);
      auto plain = RunEpisodes(oracle, specs, LoopOptions{.parallel = 3});
      ASSERT_TRUE(observed.ok() && plain.ok());
      ASSERT_EQ(observed->size(), specs.size());
      for (size_t i = 0; i < specs.size(); ++i) {
        EXPECT_EQ(Untimed((*observed)[i]), Untimed((*plain)[i]));
        EXPECT_TRUE((*observed)[i].score.exact);
      }
      ExpectEventsMatchRecords(*observed, seen);
    }
  }
}

// A policy that emits seeded random tokens, biased toward commands, [ANS], [CALL] and digits,
// with an occasional id outside the vocabulary: every path of the loop, roles included.
class RandomPolicy final : public Policy {
 public:
  explicit RandomPolicy(uint64_t seed) : rng_(seed) {}
  std::string name() const override { return "random"; }
  absl::StatusOr<int> Open(const EpisodeContext&, std::span<const TokenId>) override {
    return next_++;
  }
  absl::Status Append(int, std::span<const TokenId>) override { return absl::OkStatus(); }
  absl::StatusOr<std::vector<TokenId>> Step(std::span<const int> slots) override {
    std::vector<TokenId> out;
    for (size_t i = 0; i < slots.size(); ++i) {
      const int64_t kind = rng_.Uniform(0, 99);
      TokenId t;
      if (kind < 40) {
        t = tokens::kFirstPointer + static_cast<TokenId>(rng_.Uniform(0, 11));  // P1..P3 ops
      } else if (kind < 70) {
        t = static_cast<TokenId>('0' + rng_.Uniform(0, 9));
      } else if (kind < 75) {
        t = tokens::kAns;
      } else if (kind < 80) {
        t = tokens::kCall;
      } else if (kind < 85) {
        t = tokens::kCallEnd;
      } else if (kind < 88) {
        t = rng_.Uniform(0, 1) ? tokens::kObs : tokens::kObsEnd;
      } else if (kind < 89) {
        t = tokens::kEos;
      } else if (kind < 90) {
        t = tokens::kVocabSize + 3;  // invalid
      } else {
        t = static_cast<TokenId>(rng_.Uniform(0, tokens::kVocabSize - 1));
      }
      out.push_back(t);
    }
    return out;
  }
  void Close(int) override {}

 private:
  tasks::Rng rng_;
  int next_ = 0;
};

TEST(AgentLoopEventsTest, RandomPoliciesRolesAgreeWithTheTrajectoryRules) {
  int episodes = 0, with_calls = 0;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    for (Mode mode : tasks::AllModes()) {
      const auto specs = Specs("addition", mode, 4, seed * 7);
      RandomPolicy policy(seed);
      std::map<size_t, Seen> seen;
      LoopOptions options{.parallel = 2, .max_generated_tokens = 300, .max_tool_steps = 200};
      options.on_event = Recorder(&seen);
      auto records = RunEpisodes(policy, specs, options);
      ASSERT_TRUE(records.ok());
      RandomPolicy again(seed);
      auto plain = RunEpisodes(again, specs,
                               {.parallel = 2, .max_generated_tokens = 300, .max_tool_steps = 200});
      ASSERT_TRUE(plain.ok());
      for (size_t i = 0; i < specs.size(); ++i) {
        EXPECT_EQ(Untimed((*records)[i]), Untimed((*plain)[i]));
        with_calls += !seen[i].calls.empty();
      }
      ExpectEventsMatchRecords(*records, seen);
      episodes += static_cast<int>(specs.size());
    }
  }
  EXPECT_EQ(episodes, 30 * 5 * 4);
  EXPECT_GT(with_calls, 100);  // the random policy does reach the tools
}

TEST(AgentLoopEventsTest, CancelStopsLiveAndPendingEpisodes) {
  OraclePolicy oracle;
  const tasks::Task* task = *tasks::FindTask("addition");
  std::vector<EpisodeSpec> specs;
  for (int i = 0; i < 6; ++i) specs.push_back(MakeEpisodeSpec(task, Mode::kPointer, 200, 5, i));
  std::atomic<bool> cancel{false};
  int64_t tokens_seen = 0, after_cancel = 0;
  LoopOptions options{.parallel = 2};
  options.cancel = &cancel;
  options.on_event = [&](const LoopEvent& e) {
    if (e.kind != LoopEvent::Kind::kToken) return;
    if (cancel.load()) ++after_cancel;
    if (++tokens_seen == 500) cancel.store(true);
  };
  auto records = RunEpisodes(oracle, specs, options);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 6u);
  for (const auto& r : *records) {
    EXPECT_EQ(r.stop_reason, "cancelled");
    EXPECT_FALSE(r.score.exact);
  }
  // Pending episodes never started; the live ones stopped within the step that saw the flag
  // (2 episodes: at most a generated token and an observation each).
  EXPECT_EQ((*records)[5].trajectory.tokens.size(), (*records)[5].trajectory.PromptSize());
  EXPECT_LE(after_cancel, 4);
  // Without the flag the same episodes finish exactly.
  cancel.store(false);
  options.on_event = nullptr;
  auto full = RunEpisodes(oracle, specs, options);
  for (const auto& r : *full) EXPECT_EQ(r.stop_reason, "eos");
}

}  // namespace
}  // namespace tapeloop::agents
