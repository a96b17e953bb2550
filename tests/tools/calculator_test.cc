#include "tools/calculator.h"

#include <gtest/gtest.h>

#include <random>

#include "tools/registry.h"

namespace tapeloop::tools {
namespace {

ToolCall Calc(const std::string& op, const std::string& a, const std::string& b) {
  return ToolCall{"c1", CalculatorTool::kName, {{"op", op}, {"a", a}, {"b", b}}};
}

class CalculatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_.Register(std::make_unique<CalculatorTool>()).ok());
  }
  ToolRegistry registry_;
};

TEST_F(CalculatorTest, DefinitionIsSchemaCompatible) {
  auto defs = registry_.Definitions();
  ASSERT_EQ(defs.size(), 1u);
  EXPECT_EQ(defs[0].name, "calculator");
  EXPECT_TRUE(ValidateInputSchema(defs[0].input_schema).ok());
  EXPECT_EQ(defs[0].input_schema["additionalProperties"], false);
  EXPECT_EQ(defs[0].ToOpenAiJson()["function"]["parameters"]["type"], "object");
}

TEST_F(CalculatorTest, ExactResultsAndCallIdEchoed) {
  auto r = registry_.Call(Calc("add", "99999999999999999999", "1"));
  EXPECT_FALSE(r.is_error) << r.text;
  EXPECT_EQ(r.call_id, "c1");
  EXPECT_EQ(r.text, "100000000000000000000");
  EXPECT_EQ((*r.structured)["result"], "100000000000000000000");
  EXPECT_EQ(registry_.Call(Calc("sub", "5", "12")).text, "-7");
  EXPECT_EQ(registry_.Call(Calc("mul", "-123456789123456789", "1000000000")).text,
            "-123456789123456789000000000");
  EXPECT_EQ(registry_.Call(Calc("compare", "10", "9")).text, "1");
  EXPECT_EQ(registry_.Call(Calc("compare", "-10", "9")).text, "-1");
  EXPECT_EQ(registry_.Call(Calc("compare", "007", "7")).text, "0");
}

TEST_F(CalculatorTest, MalformedCallsAreErrorResults) {
  struct Case {
    nlohmann::json args;
    std::string needle;
  };
  std::vector<Case> cases = {
      {{{"op", "add"}, {"a", "1.5"}, {"b", "2"}}, "a: not a decimal integer"},
      {{{"op", "add"}, {"a", "1"}, {"b", "two"}}, "b: not a decimal integer"},
      {{{"op", "add"}, {"a", ""}, {"b", "2"}}, "empty"},
      {{{"op", "div"}, {"a", "1"}, {"b", "2"}}, "not one of"},
      {{{"op", "add"}, {"a", 1}, {"b", "2"}}, "must be of type string"},
      {{{"op", "add"}, {"a", "1"}}, "missing required argument \"b\""},
      {{{"op", "add"}, {"a", "1"}, {"b", "2"}, {"c", "3"}}, "unknown argument \"c\""},
      {nlohmann::json::array({1, 2}), "must be a JSON object"},
  };
  for (const auto& c : cases) {
    auto r = registry_.Call(ToolCall{"x", "calculator", c.args});
    EXPECT_TRUE(r.is_error) << c.args.dump();
    EXPECT_EQ(r.call_id, "x");
    EXPECT_NE(r.text.find(c.needle), std::string::npos) << r.text;
  }
  auto unknown = registry_.Call(ToolCall{"y", "abacus", nlohmann::json::object()});
  EXPECT_TRUE(unknown.is_error);
  EXPECT_NE(unknown.text.find("unknown tool \"abacus\""), std::string::npos);
}

TEST_F(CalculatorTest, OperandSizeIsBoundedAndExactAtTheBound) {
  std::mt19937 rng(5);
  std::string a(100'000, '9'), b(100'000, '0');
  b[0] = '1';  // 10^99999
  auto r = registry_.Call(Calc("mul", a, b));
  ASSERT_FALSE(r.is_error) << r.text.substr(0, 100);
  // (10^100000 - 1) * 10^99999 = 99..9 (100000 nines) followed by 99999 zeros.
  EXPECT_EQ(r.text, std::string(100'000, '9') + std::string(99'999, '0'));
  auto sum = registry_.Call(Calc("add", a, "1"));
  EXPECT_EQ(sum.text, "1" + std::string(100'000, '0'));
  auto too_big = registry_.Call(Calc("add", a + "9", "1"));
  EXPECT_TRUE(too_big.is_error);
  EXPECT_NE(too_big.text.find("100001 digits, more than the limit of 100000"),
            std::string::npos)
      << too_big.text;
}

TEST_F(CalculatorTest, TextCalls) {
  auto r = registry_.CallText("add(123,989)", "t1");
  EXPECT_FALSE(r.is_error);
  EXPECT_EQ(r.text, "1112");
  EXPECT_EQ(r.call_id, "t1");
  EXPECT_EQ(registry_.CallText("mul(12,-3)", "t").text, "-36");
  EXPECT_EQ(CalculatorTool::FormatTextCall("mul", "7", "8"), "mul(7,8)");
  EXPECT_TRUE(registry_.CallText("add(1,2", "t").is_error);
  EXPECT_TRUE(registry_.CallText("add(12)", "t").is_error);
  EXPECT_TRUE(registry_.CallText("add(1, 2)", "t").is_error);
  auto none = registry_.CallText("pow(2,3)", "t");
  EXPECT_TRUE(none.is_error);
  EXPECT_NE(none.text.find("no tool accepts"), std::string::npos);
}

TEST(CalculatorBudgetTest, CallsPastTheBudgetAreErrors) {
  ToolRegistry registry(/*max_calls=*/2);
  ASSERT_TRUE(registry.Register(std::make_unique<CalculatorTool>()).ok());
  EXPECT_FALSE(registry.Call(Calc("add", "1", "1")).is_error);
  EXPECT_FALSE(registry.Call(Calc("add", "1", "1")).is_error);
  auto r = registry.Call(Calc("add", "1", "1"));
  EXPECT_TRUE(r.is_error);
  EXPECT_NE(r.text.find("budget"), std::string::npos);
}

}  // namespace
}  // namespace tapeloop::tools
