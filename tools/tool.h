// The tool protocol shared by every tapeloop tool (pointer memory, calculator, debugger).
//
// Definitions follow the convention every client understands (OpenAI / Anthropic / MCP):
// {name, description, input JSON Schema}, names match [a-zA-Z0-9_-]{1,64}, the schema is an
// object with "properties", "required" and "additionalProperties": false. A call carries an
// id that its result echoes; a result is text plus optional structured JSON and an is_error
// flag. A bad call (unknown tool, bad arguments, exhausted budget) is an error *result*, never
// a crash and never a protocol error.
#ifndef TAPELOOP_TOOLS_TOOL_H_
#define TAPELOOP_TOOLS_TOOL_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace tapeloop::tools {

struct ToolDefinition {
  std::string name;
  std::string description;
  nlohmann::json input_schema;  // {"type":"object","properties":{...},"required":[...],...}

  // {"name", "description", "input_schema"} (Anthropic / MCP spelling; OpenAI calls the
  // schema "parameters", which ToOpenAiJson() writes).
  nlohmann::json ToJson() const;
  nlohmann::json ToOpenAiJson() const;
};

struct ToolCall {
  std::string id;            // chosen by the caller, echoed by the result
  std::string name;          // tool name
  nlohmann::json arguments;  // a JSON object matching the tool's input schema

  nlohmann::json ToJson() const;
};

struct ToolResult {
  std::string call_id;
  std::string text;
  std::optional<nlohmann::json> structured;
  bool is_error = false;

  static ToolResult Ok(std::string call_id, std::string text,
                       std::optional<nlohmann::json> structured = std::nullopt);
  static ToolResult Error(std::string call_id, std::string message);
  nlohmann::json ToJson() const;
};

// A tool instance. Tools may hold per-episode state (the pointer memory does); one instance
// serves one episode. Not thread-safe: one caller at a time.
class Tool {
 public:
  Tool() = default;
  Tool(const Tool&) = delete;
  Tool& operator=(const Tool&) = delete;
  virtual ~Tool() = default;

  virtual const ToolDefinition& definition() const = 0;

  // Runs one call whose arguments already passed ValidateArguments against the schema (the
  // registry checks). Must return an error result, never throw or crash, on any bad input.
  virtual ToolResult Call(const ToolCall& call) = 0;

  // Text-tool form used inside trajectories: "[CALL]<text>[/CALL]". If `text` (e.g.
  // "add(12,34)") is addressed to this tool, returns the equivalent JSON call (with an empty id
  // and possibly invalid arguments, which Call() then reports); otherwise nullopt.
  virtual std::optional<ToolCall> ParseTextCall(std::string_view text) const {
    return std::nullopt;
  }
};

// OK if `name` matches [a-zA-Z0-9_-]{1,64}; INVALID_ARGUMENT naming the problem otherwise.
absl::Status ValidateToolName(std::string_view name);

// OK if `schema` is a supported input schema: type "object", "properties" an object whose
// entries have a "type" of string / integer / number / boolean / array / object,
// "required" listing only declared properties, and "additionalProperties": false.
absl::Status ValidateInputSchema(const nlohmann::json& schema);

// Checks `arguments` against a schema accepted by ValidateInputSchema: an object, every
// required property present, no undeclared property, each value of the declared type, each
// "enum" respected, integer "minimum" / "maximum" respected. INVALID_ARGUMENT naming the first
// offending property otherwise.
absl::Status ValidateArguments(const nlohmann::json& schema, const nlohmann::json& arguments);

}  // namespace tapeloop::tools

#endif  // TAPELOOP_TOOLS_TOOL_H_
