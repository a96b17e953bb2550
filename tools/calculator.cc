#include "tools/calculator.h"

#include "absl/strings/str_cat.h"
#include "tools/decimal.h"

namespace tapeloop::tools {
namespace {

constexpr const char* kOps[] = {"add", "sub", "mul", "compare"};

}  // namespace

CalculatorTool::CalculatorTool(CalculatorOptions options) : options_(options) {
  definition_.name = kName;
  definition_.description = absl::StrCat(
      "Exact integer arithmetic on decimal strings (up to ", options_.max_digits,
      " digits each): add, sub, mul, or compare a with b (compare gives -1, 0 or 1).");
  definition_.input_schema = {
      {"type", "object"},
      {"properties",
       {{"op",
         {{"type", "string"},
          {"enum", {"add", "sub", "mul", "compare"}},
          {"description", "the operation"}}},
        {"a", {{"type", "string"}, {"description", "first operand, decimal digits, optional -"}}},
        {"b",
         {{"type", "string"}, {"description", "second operand, decimal digits, optional -"}}}}},
      {"required", {"op", "a", "b"}},
      {"additionalProperties", false}};
}

ToolResult CalculatorTool::Call(const ToolCall& call) {
  const auto& args = call.arguments;
  if (!args.is_object() || !args.contains("op") || !args["op"].is_string() ||
      !args.contains("a") || !args["a"].is_string() || !args.contains("b") ||
      !args["b"].is_string()) {
    return ToolResult::Error(call.id, "calculator: needs string arguments op, a and b");
  }
  const std::string op = args["op"].get<std::string>();
  auto a = Decimal::Parse(args["a"].get_ref<const std::string&>(), options_.max_digits);
  if (!a.ok()) return ToolResult::Error(call.id, absl::StrCat("calculator: a: ", a.status().message()));
  auto b = Decimal::Parse(args["b"].get_ref<const std::string&>(), options_.max_digits);
  if (!b.ok()) return ToolResult::Error(call.id, absl::StrCat("calculator: b: ", b.status().message()));
  std::string result;
  if (op == "add") {
    result = Decimal::Add(*a, *b).ToString();
  } else if (op == "sub") {
    result = Decimal::Sub(*a, *b).ToString();
  } else if (op == "mul") {
    result = Decimal::Mul(*a, *b).ToString();
  } else if (op == "compare") {
    result = std::to_string(Decimal::Compare(*a, *b));
  } else {
    return ToolResult::Error(call.id, absl::StrCat("calculator: unknown op \"", op,
                                                   "\" (add, sub, mul, compare)"));
  }
  nlohmann::json structured = {{"result", result}};
  return ToolResult::Ok(call.id, std::move(result), std::move(structured));
}

std::optional<ToolCall> CalculatorTool::ParseTextCall(std::string_view text) const {
  for (const char* op : kOps) {
    std::string_view name(op);
    if (text.size() <= name.size() || text.substr(0, name.size()) != name ||
        text[name.size()] != '(') {
      continue;
    }
    ToolCall call;
    call.name = kName;
    std::string_view rest = text.substr(name.size() + 1);
    if (rest.empty() || rest.back() != ')') {
      // Reported by Call(): "b" is not a decimal integer.
      call.arguments = {{"op", op}, {"a", std::string(rest)}, {"b", "(missing closing ')')"}};
      return call;
    }
    rest.remove_suffix(1);
    size_t comma = rest.find(',');
    if (comma == std::string_view::npos) {
      call.arguments = {{"op", op}, {"a", std::string(rest)}, {"b", "(missing ',')"}};
      return call;
    }
    call.arguments = {{"op", op},
                      {"a", std::string(rest.substr(0, comma))},
                      {"b", std::string(rest.substr(comma + 1))}};
    return call;
  }
  return std::nullopt;
}

std::string CalculatorTool::FormatTextCall(std::string_view op, std::string_view a,
                                           std::string_view b) {
  std::string s(op);
  s.reserve(op.size() + a.size() + b.size() + 3);
  s += '(';
  s += a;
  s += ',';
  s += b;
  s += ')';
  return s;
}

}  // namespace tapeloop::tools
