#include "tools/decimal.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

namespace tapeloop::tools {
namespace {

std::string RandomNumber(std::mt19937_64& rng, size_t digits, bool allow_negative) {
  std::string s;
  if (allow_negative && rng() % 2) s.push_back('-');
  for (size_t i = 0; i < digits; ++i) s.push_back(static_cast<char>('0' + rng() % 10));
  return s;
}

Decimal D(const std::string& s) { return *Decimal::Parse(s, 1'000'000); }

// Runs python3 on a script and returns its stdout.
std::string Python(const std::string& script) {
  std::string path = testing::TempDir() + "/tapeloop_decimal_test_" + std::to_string(getpid()) + ".py";
  {
    std::ofstream out(path);
    out << "import sys\nsys.set_int_max_str_digits(0) if hasattr(sys, 'set_int_max_str_digits') "
           "else None\n"
        << script;
  }
  std::string output;
  FILE* pipe = popen(("/usr/bin/python3 " + path).c_str(), "r");
  if (pipe == nullptr) return "";
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  pclose(pipe);
  return output;
}

TEST(DecimalTest, ParseAndPrint) {
  EXPECT_EQ(D("0").ToString(), "0");
  EXPECT_EQ(D("-0").ToString(), "0");
  EXPECT_EQ(D("000123").ToString(), "123");
  EXPECT_EQ(D("-000000000001000000000").ToString(), "-1000000000");
  EXPECT_EQ(D("999999999").Digits(), 9u);
  EXPECT_EQ(D("1000000000").Digits(), 10u);
  EXPECT_FALSE(Decimal::Parse("", 10).ok());
  EXPECT_FALSE(Decimal::Parse("-", 10).ok());
  EXPECT_FALSE(Decimal::Parse("+1", 10).ok());
  EXPECT_FALSE(Decimal::Parse("1.5", 10).ok());
  EXPECT_FALSE(Decimal::Parse("1e5", 10).ok());
  EXPECT_FALSE(Decimal::Parse(" 1", 10).ok());
  auto bad = Decimal::Parse("12x4", 10);
  EXPECT_NE(bad.status().message().find("'x' at position 2"), std::string::npos) << bad.status();
  auto big = Decimal::Parse(std::string(11, '7'), 10);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kOutOfRange);
}

TEST(DecimalTest, SmallValuesMatchInt64) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 2000; ++i) {
    int64_t a = static_cast<int64_t>(rng() % 2'000'000'001) - 1'000'000'000;
    int64_t b = static_cast<int64_t>(rng() % 2'000'000'001) - 1'000'000'000;
    if (i % 3 == 0) b = a;
    Decimal da = D(std::to_string(a)), db = D(std::to_string(b));
    EXPECT_EQ(Decimal::Add(da, db).ToString(), std::to_string(a + b));
    EXPECT_EQ(Decimal::Sub(da, db).ToString(), std::to_string(a - b));
    EXPECT_EQ(Decimal::Mul(da, db).ToString(), std::to_string(a * b));
    EXPECT_EQ(Decimal::Compare(da, db), a < b ? -1 : (a == b ? 0 : 1));
  }
}

TEST(DecimalTest, MatchesPythonBigIntegers) {
  std::mt19937_64 rng(2);
  std::vector<std::pair<std::string, std::string>> cases;
  for (size_t digits : {1, 9, 10, 17, 18, 19, 40, 333, 1000, 4567}) {
    for (int k = 0; k < 3; ++k) {
      cases.emplace_back(RandomNumber(rng, digits, true), RandomNumber(rng, digits / 2 + 1 + k, true));
    }
  }
  std::string py = "cases = [\n";
  for (auto& [a, b] : cases) py += "(int('" + a + "'),int('" + b + "')),\n";
  py +=
      "]\nfor a, b in cases:\n"
      "    print(a + b); print(a - b); print(a * b); print((a > b) - (a < b))\n";
  std::string out = Python(py);
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t nl = out.find('\n', pos);
    if (nl == std::string::npos) nl = out.size();
    lines.push_back(out.substr(pos, nl - pos));
    pos = nl + 1;
  }
  ASSERT_EQ(lines.size(), cases.size() * 4) << "python3 output: " << out.substr(0, 200);
  for (size_t i = 0; i < cases.size(); ++i) {
    Decimal a = D(cases[i].first), b = D(cases[i].second);
    EXPECT_EQ(Decimal::Add(a, b).ToString(), lines[4 * i]) << i;
    EXPECT_EQ(Decimal::Sub(a, b).ToString(), lines[4 * i + 1]) << i;
    EXPECT_EQ(Decimal::Mul(a, b).ToString(), lines[4 * i + 2]) << i;
    EXPECT_EQ(std::to_string(Decimal::Compare(a, b)), lines[4 * i + 3]) << i;
  }
}

TEST(DecimalTest, HundredThousandDigitsExact) {
  std::mt19937_64 rng(3);
  std::string a = RandomNumber(rng, 100'000, false), b = RandomNumber(rng, 100'000, false);
  a[0] = '7';
  b[0] = '3';
  Decimal da = D(a), db = D(b);
  std::string product = Decimal::Mul(da, db).ToString();
  std::string sum = Decimal::Add(da, db).ToString();
  std::string difference = Decimal::Sub(db, da).ToString();
  // Cross-check through python3 with a digest of the results (the full strings are 200k
  // digits; python prints hashes of its own results and of ours).
  std::string dir = testing::TempDir() + "/tapeloop_decimal_" + std::to_string(getpid());
  mkdir(dir.c_str(), 0700);
  {
    std::ofstream(dir + "/tapeloop_a.txt") << a;
    std::ofstream(dir + "/tapeloop_b.txt") << b;
    std::ofstream(dir + "/tapeloop_p.txt") << product;
    std::ofstream(dir + "/tapeloop_s.txt") << sum;
    std::ofstream(dir + "/tapeloop_d.txt") << difference;
  }
  std::string out = Python(
      "d = '" + dir + "'\n"
      "a = int(open(d + '/tapeloop_a.txt').read()); b = int(open(d + '/tapeloop_b.txt').read())\n"
      "p = int(open(d + '/tapeloop_p.txt').read()); s = int(open(d + '/tapeloop_s.txt').read())\n"
      "dd = int(open(d + '/tapeloop_d.txt').read())\n"
      "print(a * b == p, a + b == s, b - a == dd)\n");
  EXPECT_EQ(out, "True True True\n");
  EXPECT_GE(product.size(), 199'999u);
  EXPECT_EQ(difference[0], '-');
  // a*b - a*b == 0 and (a*b) compared with itself.
  Decimal dp = Decimal::Mul(da, db);
  EXPECT_TRUE(Decimal::Sub(dp, dp).IsZero());
  EXPECT_EQ(Decimal::Compare(dp, Decimal::Add(dp, D("1"))), -1);
}

}  // namespace
}  // namespace tapeloop::tools
