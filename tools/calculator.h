// The exact arithmetic calculator: add, sub, mul, compare on decimal strings of any length up
// to a bound. The single-turn tool of the paper's ablation.
//
// JSON form:  {"op": "add"|"sub"|"mul"|"compare", "a": "<decimal>", "b": "<decimal>"}
//             -> text "<decimal>" (compare: "-1", "0" or "1"), structured {"result": "..."}
// Text form:  "add(123,-45)" inside [CALL]...[/CALL] -> the same result text.
// Operands are strings ("-?[0-9]+"), never JSON numbers, so nothing passes through a double.
// Bad operands (not decimal, more than max_digits) are error results naming the argument.
#ifndef TAPELOOP_TOOLS_CALCULATOR_H_
#define TAPELOOP_TOOLS_CALCULATOR_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "tools/tool.h"

namespace tapeloop::tools {

struct CalculatorOptions {
  // Largest operand, in digits. 100,000-digit products take ~0.1 s.
  size_t max_digits = 100'000;
};

class CalculatorTool final : public Tool {
 public:
  static constexpr char kName[] = "calculator";

  explicit CalculatorTool(CalculatorOptions options = {});

  const ToolDefinition& definition() const override { return definition_; }
  ToolResult Call(const ToolCall& call) override;
  // Accepts "add(...)", "sub(...)", "mul(...)", "compare(...)".
  std::optional<ToolCall> ParseTextCall(std::string_view text) const override;

  // The text form of a call, e.g. FormatTextCall("add", "12", "34") == "add(12,34)".
  static std::string FormatTextCall(std::string_view op, std::string_view a,
                                    std::string_view b);

 private:
  CalculatorOptions options_;
  ToolDefinition definition_;
};

}  // namespace tapeloop::tools

#endif  // TAPELOOP_TOOLS_CALCULATOR_H_
