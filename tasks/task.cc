#include "tasks/task.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tasks/addition.h"
#include "tasks/multiplication.h"
#include "tools/calculator.h"

namespace tapeloop::tasks {

uint64_t Rng::Next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int64_t Rng::Uniform(int64_t lo, int64_t hi) {
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  if (span == 0) return static_cast<int64_t>(Next());
  // Rejection sampling keeps the draw exactly uniform.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % span;
  uint64_t x;
  do {
    x = Next();
  } while (x >= limit);
  return lo + static_cast<int64_t>(x % span);
}

std::string Rng::Number(int digits, bool nonzero) {
  std::string s(digits, '0');
  for (int i = 0; i < digits; ++i) s[i] = static_cast<char>('0' + Uniform(0, 9));
  if (digits > 1 || nonzero) s[0] = static_cast<char>('0' + Uniform(1, 9));
  return s;
}

uint64_t MixSeed(uint64_t seed, uint64_t index) {
  Rng a(seed ^ 0x5851F42D4C957F2Dull);
  uint64_t x = a.Next() ^ (index * 0x9E3779B97F4A7C15ull);
  Rng b(x);
  return b.Next();
}

nlohmann::json Instance::ToJson() const {
  return {{"task", task},
          {"operands", operands},
          {"prompt", prompt},
          {"answer", answer},
          {"length", length}};
}

nlohmann::json Score::ToJson() const {
  nlohmann::json j = {{"exact", exact},
                      {"digit_accuracy", digit_accuracy},
                      {"expected", expected},
                      {"produced", produced}};
  if (trajectory_exact.has_value()) j["trajectory_exact"] = *trajectory_exact;
  return j;
}

absl::StatusOr<Trajectory> Task::Expert(const Instance& instance, Mode mode) const {
  if (instance.task != name()) {
    return absl::InvalidArgumentError(absl::StrCat("expert: instance is for task \"",
                                                   instance.task, "\", not \"", std::string(name()),
                                                   "\""));
  }
  if (instance.operands.size() != 2) {
    return absl::InvalidArgumentError("expert: instance needs two operands");
  }
  for (const auto& op : instance.operands) {
    if (op.empty() || !std::all_of(op.begin(), op.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert: operand \"", op.substr(0, 20), "\" is not decimal digits"));
    }
  }
  if (mode == Mode::kPointer || mode == Mode::kCot) {
    auto t = PointerExpert(instance);
    if (t.ok()) t->mode = mode;
    return t;
  }
  Tokenizer tokenizer;
  Trajectory t;
  t.mode = mode;
  auto add = [&](TokenId id, Role role) {
    t.tokens.push_back(id);
    t.roles.push_back(role);
  };
  for (TokenId id : PromptTokens(instance)) add(id, Role::kPrompt);
  if (mode == Mode::kCalculator) {
    add(tokens::kCall, Role::kCommand);
    for (TokenId id : tokenizer.Encode(tools::CalculatorTool::FormatTextCall(
             calculator_op(), instance.operands[0], instance.operands[1]))) {
      add(id, Role::kCommand);
    }
    add(tokens::kCallEnd, Role::kCommand);
    add(tokens::kObs, Role::kObservation);
    for (char c : instance.answer) add(static_cast<unsigned char>(c), Role::kObservation);
    add(tokens::kObsEnd, Role::kObservation);
    add(tokens::kAns, Role::kThought);
  }
  for (TokenId id : ExpectedOutput(instance, mode)) add(id, Role::kOutput);
  add(tokens::kEos, Role::kEos);
  return t;
}

absl::StatusOr<const Task*> FindTask(std::string_view name) {
  static const AdditionTask* addition = new AdditionTask();
  static const MultiplicationTask* mul1 = new MultiplicationTask(1);
  static const MultiplicationTask* mul2 = new MultiplicationTask(2);
  if (name == addition->name()) return addition;
  if (name == mul1->name()) return mul1;
  if (name == mul2->name() || name == "multiplication") return mul2;
  return absl::NotFoundError(absl::StrCat("unknown task \"", std::string(name), "\" (",
                                          absl::StrJoin(TaskNames(), ", "), ")"));
}

std::vector<std::string> TaskNames() {
  return {"addition", "multiplication", "multiplication-n1", "multiplication-n2"};
}

std::vector<TokenId> PromptTokens(const Instance& instance) {
  std::vector<TokenId> ids = {tokens::kBos};
  for (TokenId id : Tokenizer().Encode(instance.prompt)) ids.push_back(id);
  return ids;
}

std::vector<TokenId> ExpectedOutput(const Instance& instance, Mode mode) {
  std::vector<TokenId> out;
  out.reserve(instance.answer.size());
  for (char c : instance.answer) out.push_back(static_cast<unsigned char>(c));
  if (mode == Mode::kDirectReversed) std::reverse(out.begin(), out.end());
  return out;
}

Score ScoreOutput(const Instance& instance, Mode mode, std::span<const TokenId> output,
                  const Trajectory* trajectory, const Trajectory* expert) {
  Score score;
  std::vector<TokenId> want = ExpectedOutput(instance, mode);
  std::vector<TokenId> got(output.begin(), output.end());
  score.exact = got == want;
  Tokenizer tokenizer;
  score.expected = *tokenizer.Decode(want);
  for (TokenId id : got) score.produced += tokenizer.TokenText(id);
  // Align at the least significant digit: the end of the stream, or its start if reversed.
  if (mode != Mode::kDirectReversed) {
    std::reverse(want.begin(), want.end());
    std::reverse(got.begin(), got.end());
  }
  const size_t n = std::max(want.size(), got.size());
  size_t matches = 0;
  for (size_t i = 0; i < std::min(want.size(), got.size()); ++i) matches += want[i] == got[i];
  score.digit_accuracy = n == 0 ? 1.0 : static_cast<double>(matches) / n;
  if (trajectory != nullptr && expert != nullptr) {
    score.trajectory_exact = trajectory->tokens == expert->tokens;
  }
  return score;
}

}  // namespace tapeloop::tasks
