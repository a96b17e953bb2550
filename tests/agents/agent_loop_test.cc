#include "agents/agent_loop.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>

#include "agents/oracle_policy.h"
#include "tasks/addition.h"
#include "tasks/multiplication.h"

namespace tapeloop::agents {
namespace {

using tasks::Mode;

std::vector<EpisodeSpec> Specs(const std::string& task_name, int length, Mode mode, int count,
                               uint64_t seed, bool training = false) {
  const tasks::Task* task = *tasks::FindTask(task_name);
  std::vector<EpisodeSpec> specs;
  for (int i = 0; i < count; ++i) {
    tasks::Rng rng(tasks::MixSeed(seed, i));
    specs.push_back({task, task->Generate(length, training, rng), mode, seed + i});
  }
  return specs;
}

void ExpectAllExact(const std::vector<EpisodeRecord>& records) {
  for (const auto& r : records) {
    EXPECT_EQ(r.stop_reason, "eos") << r.error;
    EXPECT_TRUE(r.score.exact) << r.task << " " << tasks::ModeName(r.mode) << " "
                               << r.instance.prompt.substr(0, 40) << " -> "
                               << r.score.produced.substr(0, 40);
    EXPECT_EQ(r.score.digit_accuracy, 1.0);
    ASSERT_TRUE(r.score.trajectory_exact.has_value());
    EXPECT_TRUE(*r.score.trajectory_exact);
  }
}

TEST(AgentLoopTest, OracleExactAtTenThousandDigitAddition) {
  OraclePolicy oracle;
  for (Mode mode : tasks::AllModes()) {
    auto specs = Specs("addition", 10'000, mode, 1, 17);
    auto records = RunEpisodes(oracle, specs);
    ASSERT_TRUE(records.ok());
    ExpectAllExact(*records);
    EXPECT_GE((*records)[0].OutputText().size(), 10'000u);
    if (mode == Mode::kPointer) {
      EXPECT_GT((*records)[0].tool_steps, 100'000);
    }
    if (mode == Mode::kCalculator) {
      ASSERT_EQ((*records)[0].calls.size(), 1u);
      EXPECT_FALSE((*records)[0].calls[0].result.is_error);
      EXPECT_EQ((*records)[0].calls[0].call.arguments["op"], "add");
    }
  }
}

TEST(AgentLoopTest, OracleExactAtThousandDigitMultiplication) {
  OraclePolicy oracle;
  for (const char* task : {"multiplication-n2", "multiplication-n1"}) {
    for (Mode mode : tasks::AllModes()) {
      auto records = RunEpisodes(oracle, Specs(task, 1'000, mode, 2, 5));
      ASSERT_TRUE(records.ok());
      ExpectAllExact(*records);
    }
  }
}

TEST(AgentLoopTest, BatchedEqualsOneAtATime) {
  OraclePolicy oracle;
  for (const char* task : {"addition", "multiplication-n2"}) {
    for (Mode mode : {Mode::kPointer, Mode::kCalculator, Mode::kCot}) {
      auto specs = Specs(task, 30, mode, 9, 3, /*training=*/true);
      auto one = *RunEpisodes(oracle, specs, LoopOptions{.parallel = 1});
      auto batched = *RunEpisodes(oracle, specs, LoopOptions{.parallel = 4});
      ASSERT_EQ(one.size(), batched.size());
      for (size_t i = 0; i < one.size(); ++i) {
        EXPECT_EQ(one[i].trajectory.tokens, batched[i].trajectory.tokens);
        EXPECT_EQ(one[i].instance.prompt, batched[i].instance.prompt);
        EXPECT_EQ(one[i].OutputText(), batched[i].OutputText());
        EXPECT_TRUE(batched[i].score.exact);
      }
    }
  }
}

// A scripted policy: emits given tokens, then repeats its last one; records appends.
class ScriptPolicy final : public Policy {
 public:
  explicit ScriptPolicy(std::vector<TokenId> script) : script_(std::move(script)) {}
  std::string name() const override { return "script"; }
  absl::StatusOr<int> Open(const EpisodeContext&, std::span<const TokenId>) override {
    cursor_ = 0;
    return 0;
  }
  absl::Status Append(int, std::span<const TokenId> tokens) override {
    appended_.insert(appended_.end(), tokens.begin(), tokens.end());
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<TokenId>> Step(std::span<const int> slots) override {
    TokenId t = cursor_ < script_.size() ? script_[cursor_++] : script_.back();
    return std::vector<TokenId>(slots.size(), t);
  }
  void Close(int) override {}
  std::vector<TokenId> appended_;

 private:
  std::vector<TokenId> script_;
  size_t cursor_ = 0;
};

TokenId P(int k, tokens::PointerOp op) { return tokens::PointerCommand(k, op); }

EpisodeSpec OneAddition(Mode mode) {
  return {*tasks::FindTask("addition"), tasks::AdditionTask::Make("12", "34", 2), mode, 1};
}

TEST(AgentLoopTest, PointerErrorsEndTheEpisodeWithTheToolsMessage) {
  ScriptPolicy uncreated({P(2, tokens::PointerOp::kRead)});
  auto spec = OneAddition(Mode::kPointer);
  auto r = (*RunEpisodes(uncreated, std::span(&spec, 1)))[0];
  EXPECT_EQ(r.stop_reason, "tool_error");
  EXPECT_NE(r.error.find("never created"), std::string::npos) << r.error;
  EXPECT_FALSE(r.score.exact);

  ScriptPolicy past_end({P(1, tokens::PointerOp::kNew), P(1, tokens::PointerOp::kLeft),
                         P(1, tokens::PointerOp::kRead), P(1, tokens::PointerOp::kLeft)});
  r = (*RunEpisodes(past_end, std::span(&spec, 1)))[0];
  EXPECT_EQ(r.stop_reason, "tool_error");
  EXPECT_EQ(past_end.appended_, std::vector<TokenId>{tokens::kEnd});
  EXPECT_NE(r.error.find("cannot move left"), std::string::npos) << r.error;
}

TEST(AgentLoopTest, BudgetsAndInvalidTokens) {
  auto spec = OneAddition(Mode::kPointer);
  ScriptPolicy chatter({'7'});  // thinks forever
  auto r = (*RunEpisodes(chatter, std::span(&spec, 1),
                         LoopOptions{.max_generated_tokens = 50}))[0];
  EXPECT_EQ(r.stop_reason, "token_budget");
  EXPECT_EQ(r.generated_tokens, 50);

  ScriptPolicy reader({P(1, tokens::PointerOp::kNew), P(1, tokens::PointerOp::kRead)});
  r = (*RunEpisodes(reader, std::span(&spec, 1), LoopOptions{.max_tool_steps = 20}))[0];
  EXPECT_EQ(r.stop_reason, "step_budget");
  EXPECT_EQ(r.tool_steps, 21);
  // Every read was answered by one observation: the first input digit.
  EXPECT_EQ(reader.appended_, std::vector<TokenId>(19, '1'));

  ScriptPolicy junk({4000});
  r = (*RunEpisodes(junk, std::span(&spec, 1)))[0];
  EXPECT_EQ(r.stop_reason, "invalid_token");
}

TEST(AgentLoopTest, MalformedCalculatorCallIsAnErrorObservation) {
  const Tokenizer tok;
  std::vector<TokenId> script = tok.Encode("[CALL]add(12,3x4)[/CALL][ANS]46[EOS]");
  ScriptPolicy policy(script);
  auto spec = OneAddition(Mode::kCalculator);
  auto r = (*RunEpisodes(policy, std::span(&spec, 1)))[0];
  EXPECT_EQ(r.stop_reason, "eos");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_TRUE(r.calls[0].result.is_error);
  std::string appended = *tok.Decode(policy.appended_);
  EXPECT_EQ(appended.rfind("[OBS]error: calculator: b: not a decimal integer", 0), 0u)
      << appended;
  EXPECT_TRUE(r.score.exact);  // 12+34 = 46 regardless
  EXPECT_FALSE(*r.score.trajectory_exact);
}

// The oracle catches a tool that disagrees with its expert.
TEST(AgentLoopTest, OracleReportsDivergenceFromTheTool) {
  OraclePolicy oracle;
  auto spec = OneAddition(Mode::kPointer);
  tasks::Trajectory expert = *spec.task->Expert(spec.instance, Mode::kPointer);
  // Corrupt the first observation of the expert the oracle plays.
  for (size_t i = 0; i < expert.tokens.size(); ++i) {
    if (expert.roles[i] == tasks::Role::kObservation) {
      expert.tokens[i] = '9';
      break;
    }
  }
  EpisodeContext context{&spec.instance, Mode::kPointer, &expert, 0};
  auto prompt = tasks::PromptTokens(spec.instance);
  int slot = *oracle.Open(context, prompt);
  auto first = *oracle.Step(std::vector<int>{slot});  // [P1.NEW]
  EXPECT_EQ(first[0], P(1, tokens::PointerOp::kNew));
  oracle.Step(std::vector<int>{slot}).IgnoreError();  // [P2.NEW]
  oracle.Step(std::vector<int>{slot}).IgnoreError();  // [P3.NEW]
  oracle.Step(std::vector<int>{slot}).IgnoreError();  // [P1.READ]
  std::vector<TokenId> obs = {'1'};
  auto status = oracle.Append(slot, obs);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("where the expert has 9"), std::string::npos) << status;
}

TEST(AgentLoopTest, RecordJson) {
  OraclePolicy oracle;
  auto spec = OneAddition(Mode::kCalculator);
  auto r = (*RunEpisodes(oracle, std::span(&spec, 1)))[0];
  nlohmann::json j = r.ToJson();
  EXPECT_EQ(j["task"], "addition");
  EXPECT_EQ(j["mode"], "calculator");
  EXPECT_EQ(j["policy"], "oracle");
  EXPECT_EQ(j["final_answer"], "46");
  EXPECT_EQ(j["score"]["exact"], true);
  EXPECT_EQ(j["tokens"].size(), j["roles"].get<std::string>().size());
  EXPECT_EQ(j["text"], "[BOS]12+34=[CALL]add(12,34)[/CALL][OBS]46[/OBS][ANS]46[EOS]");
  EXPECT_EQ(j["calls"][0]["result"]["text"], "46");
  EXPECT_EQ(j["calls"][0]["call"]["arguments"]["a"], "12");
  EXPECT_EQ(j["stop_reason"], "eos");
  EXPECT_TRUE(j["timings"].contains("wall_ms"));
  // One JSONL line.
  EXPECT_EQ(j.dump().find('\n'), std::string::npos);
}

TEST(AgentLoopTest, BadArguments) {
  OraclePolicy oracle;
  EpisodeSpec spec;  // no task
  EXPECT_FALSE(RunEpisodes(oracle, std::span(&spec, 1)).ok());
  auto good = OneAddition(Mode::kDirect);
  EXPECT_FALSE(RunEpisodes(oracle, std::span(&good, 1), LoopOptions{.parallel = 0}).ok());
}

}  // namespace
}  // namespace tapeloop::agents
