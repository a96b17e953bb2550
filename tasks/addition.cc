#include "tasks/addition.h"

#include "tasks/pointer_trace.h"
#include "tools/decimal.h"

namespace tapeloop::tasks {

Instance AdditionTask::Make(std::string a, std::string b, int length) {
  Instance x;
  x.task = "addition";
  x.prompt = a + "+" + b + "=";
  auto da = tools::Decimal::Parse(a, a.size());
  auto db = tools::Decimal::Parse(b, b.size());
  if (da.ok() && db.ok()) x.answer = tools::Decimal::Add(*da, *db).ToString();
  x.operands = {std::move(a), std::move(b)};
  x.length = length;
  return x;
}

Instance AdditionTask::Generate(int length, bool training, Rng& rng) const {
  const int n1 = training ? static_cast<int>(rng.Uniform(1, length)) : length;
  const int n2 = training ? static_cast<int>(rng.Uniform(1, length)) : length;
  std::string a = rng.Number(n1);
  std::string b = rng.Number(n2);
  return Make(std::move(a), std::move(b), length);
}

// Pointers: 1 walks the first summand, 2 the second, 3 reads the answer back out.
absl::StatusOr<Trajectory> AdditionTask::PointerExpert(const Instance& instance) const {
  PointerTrace t(PromptTokens(instance), pointers());
  t.New(1);
  t.New(2);
  t.New(3);
  // Phase 1: pointer 1 to '+', pointer 2 to '=', each then one step back onto the last digit.
  while (t.Read(1) != '+') t.Right(1);
  t.Left(1);
  while (t.Read(2) != '=') t.Right(2);
  t.Left(2);
  // Phase 2: column sums from the right, written as thoughts (sum digit, carry). A pointer
  // that reads a non-digit has run out and is not read again.
  int carry = 0;
  bool a_on = true, b_on = true;
  while (a_on || b_on || carry) {
    int da = 0, db = 0;
    if (a_on) {
      int d = DigitValue(t.Read(1));
      if (d >= 0) {
        da = d;
        t.Left(1);
      } else {
        a_on = false;
      }
    }
    if (b_on) {
      int d = DigitValue(t.Read(2));
      if (d >= 0) {
        db = d;
        t.Left(2);
      } else {
        b_on = false;
      }
    }
    if (!a_on && !b_on && da == 0 && db == 0 && carry == 0) break;
    const int s = da + db + carry;
    t.Think(DigitToken(s % 10));
    t.Think(DigitToken(s / 10));
    carry = s / 10;
  }
  t.Answer();
  // Phase 3 (pointer 3): right to [ANS], then leftwards in pairs: skip the carry, output the
  // sum digit, until the read lands on '='.
  while (t.Read(3) != tokens::kAns) t.Right(3);
  while (true) {
    t.Left(3);
    if (t.Read(3) == '=') break;
    t.Left(3);
    t.Output(t.Read(3));
  }
  t.Eos();
  return t.Finish();
}

}  // namespace tapeloop::tasks
