#include "tasks/multiplication.h"

#include "absl/strings/str_cat.h"
#include "tasks/pointer_trace.h"
#include "tools/decimal.h"

namespace tapeloop::tasks {

MultiplicationTask::MultiplicationTask(int multiplier_digits)
    : multiplier_digits_(multiplier_digits),
      name_(absl::StrCat("multiplication-n", multiplier_digits)),
      description_(absl::StrCat("a*b= with a of n digits (U{1..n} in training) and b of ",
                                multiplier_digits, " digit(s)")) {}

Instance MultiplicationTask::Make(std::string a, std::string b, int length) const {
  Instance x;
  x.task = name_;
  x.prompt = a + "*" + b + "=";
  auto da = tools::Decimal::Parse(a, a.size());
  auto db = tools::Decimal::Parse(b, b.size());
  if (da.ok() && db.ok()) x.answer = tools::Decimal::Mul(*da, *db).ToString();
  x.operands = {std::move(a), std::move(b)};
  x.length = length;
  return x;
}

Instance MultiplicationTask::Generate(int length, bool training, Rng& rng) const {
  const int n = training ? static_cast<int>(rng.Uniform(1, length)) : length;
  std::string a = rng.Number(n, /*nonzero=*/true);
  std::string b = rng.Number(multiplier_digits_, /*nonzero=*/true);
  return Make(std::move(a), std::move(b), length);
}

// Pointers: 1 walks a in pass 1, 2 reads the multiplier digits, 3 walks a in pass 2,
// 4 walks pass 1's digits in pass 2 and then reads the answer out. Each pointer scans once
// (a second scan of the same region by the same pointer would make its stopping decision
// depend on the phase, which only a long memory could tell).
absl::StatusOr<Trajectory> MultiplicationTask::PointerExpert(const Instance& instance) const {
  PointerTrace t(PromptTokens(instance), pointers());
  // Pass 1: pointer 1 onto the last digit of a, pointer 2 onto the last digit of b (b0).
  t.New(1);
  while (t.Read(1) != '*') t.Right(1);
  t.Left(1);
  t.New(2);
  while (t.Read(2) != '=') t.Right(2);
  t.Left(2);
  // Column i: a_i * b0 + carry -> (digit, carry). Past a's first digit pointer 1 reads [END]
  // (and stays there); a non-zero carry is flushed as a last pair.
  int carry = 0;
  while (true) {
    const int da = DigitValue(t.Read(1));
    int s;
    if (da >= 0) {
      t.Left(1);
      s = da * DigitValue(t.Read(2)) + carry;
    } else {
      if (carry == 0) break;
      s = carry;
    }
    t.Think(DigitToken(s % 10));
    t.Think(DigitToken(s / 10));
    carry = s / 10;
  }
  // Pass boundary: pointer 2 steps left; a digit (b1) starts pass 2, '*' the answer.
  t.Left(2);
  bool in_pass_2 = false;
  if (tokens::IsDigit(t.Read(2))) {
    in_pass_2 = true;
    t.Think('+');
    // Pointer 3 onto '*' (column 0 has no a-term), pointer 4 onto pass 1's first digit X_0.
    t.New(3);
    while (t.Read(3) != '*') t.Right(3);
    t.New(4);
    while (t.Read(4) != '=') t.Right(4);
    t.Right(4);
    carry = 0;
    while (true) {
      // X_i, then two steps right over its carry; '+' (the end of pass 1) reads as 0, stays.
      const int x = DigitValue(t.Read(4));
      if (x >= 0) {
        t.Right(4);
        t.Right(4);
      }
      // a_{i-1}: '*' reads as 0 (column 0), [END] means a is used up (the pointer stays).
      const TokenId a_tok = t.Read(3);
      int product = 0;
      if (tokens::IsDigit(a_tok)) {
        t.Left(3);
        product = DigitValue(a_tok) * DigitValue(t.Read(2));
      } else if (a_tok == '*') {
        t.Left(3);
      }
      if (x < 0 && a_tok == tokens::kEnd && carry == 0) break;
      const int s = (x < 0 ? 0 : x) + product + carry;  // <= 9 + 81 + 9: carry stays a digit
      t.Think(DigitToken(s % 10));
      t.Think(DigitToken(s / 10));
      carry = s / 10;
    }
    t.Left(2);
    t.Read(2);  // '*': no third multiplier digit
  }
  t.Answer();
  // Output (pointer 4): right to [ANS] (from '+' in n x 2, from the start in n x 1), then
  // leftwards in pairs: skip the carry, output the digit, until a non-digit ('+' or '=').
  if (in_pass_2) {
    t.Right(4);
  } else {
    t.New(4);
  }
  while (t.Read(4) != tokens::kAns) t.Right(4);
  while (true) {
    t.Left(4);
    if (!tokens::IsDigit(t.Read(4))) break;
    t.Left(4);
    t.Output(t.Read(4));
  }
  t.Eos();
  return t.Finish();
}

}  // namespace tapeloop::tasks
