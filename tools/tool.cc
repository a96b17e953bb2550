#include "tools/tool.h"

#include <set>

#include "absl/strings/str_cat.h"

namespace tapeloop::tools {

nlohmann::json ToolDefinition::ToJson() const {
  return {{"name", name}, {"description", description}, {"input_schema", input_schema}};
}

nlohmann::json ToolDefinition::ToOpenAiJson() const {
  return {{"type", "function"},
          {"function",
           {{"name", name}, {"description", description}, {"parameters", input_schema}}}};
}

nlohmann::json ToolCall::ToJson() const {
  return {{"id", id}, {"name", name}, {"arguments", arguments}};
}

ToolResult ToolResult::Ok(std::string call_id, std::string text,
                          std::optional<nlohmann::json> structured) {
  ToolResult r;
  r.call_id = std::move(call_id);
  r.text = std::move(text);
  r.structured = std::move(structured);
  return r;
}

ToolResult ToolResult::Error(std::string call_id, std::string message) {
  ToolResult r;
  r.call_id = std::move(call_id);
  r.text = std::move(message);
  r.is_error = true;
  return r;
}

nlohmann::json ToolResult::ToJson() const {
  nlohmann::json j = {{"call_id", call_id}, {"text", text}, {"is_error", is_error}};
  if (structured.has_value()) j["structured"] = *structured;
  return j;
}

absl::Status ValidateToolName(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("tool name must have 1 to 64 characters, got ", name.size()));
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tool name \"", std::string(name), "\" has a character outside [a-zA-Z0-9_-]"));
    }
  }
  return absl::OkStatus();
}

namespace {

const std::set<std::string>& KnownTypes() {
  static const auto* types =
      new std::set<std::string>{"string", "integer", "number", "boolean", "array", "object"};
  return *types;
}

bool HasType(const nlohmann::json& value, const std::string& type) {
  if (type == "string") return value.is_string();
  if (type == "integer") return value.is_number_integer();
  if (type == "number") return value.is_number();
  if (type == "boolean") return value.is_boolean();
  if (type == "array") return value.is_array();
  if (type == "object") return value.is_object();
  return false;
}

}  // namespace

absl::Status ValidateInputSchema(const nlohmann::json& schema) {
  if (!schema.is_object() || schema.value("type", "") != "object") {
    return absl::InvalidArgumentError("input schema: \"type\" must be \"object\"");
  }
  if (!schema.contains("properties") || !schema["properties"].is_object()) {
    return absl::InvalidArgumentError("input schema: \"properties\" must be an object");
  }
  for (const auto& [key, prop] : schema["properties"].items()) {
    if (!prop.is_object() || !prop.contains("type") || !prop["type"].is_string() ||
        !KnownTypes().count(prop["type"].get<std::string>())) {
      return absl::InvalidArgumentError(
          absl::StrCat("input schema: property \"", key, "\" has no supported \"type\""));
    }
  }
  if (schema.contains("required")) {
    if (!schema["required"].is_array()) {
      return absl::InvalidArgumentError("input schema: \"required\" must be an array");
    }
    for (const auto& r : schema["required"]) {
      if (!r.is_string() || !schema["properties"].contains(r.get<std::string>())) {
        return absl::InvalidArgumentError(
            absl::StrCat("input schema: required entry ", r.dump(), " is not a property"));
      }
    }
  }
  if (!schema.contains("additionalProperties") || schema["additionalProperties"] != false) {
    return absl::InvalidArgumentError(
        "input schema: \"additionalProperties\" must be false");
  }
  return absl::OkStatus();
}

absl::Status ValidateArguments(const nlohmann::json& schema, const nlohmann::json& arguments) {
  if (!arguments.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("arguments must be a JSON object, got ", arguments.type_name()));
  }
  const auto& props = schema["properties"];
  if (schema.contains("required")) {
    for (const auto& r : schema["required"]) {
      if (!arguments.contains(r.get<std::string>())) {
        return absl::InvalidArgumentError(
            absl::StrCat("missing required argument \"", r.get<std::string>(), "\""));
      }
    }
  }
  for (const auto& [key, value] : arguments.items()) {
    if (!props.contains(key)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument \"", key, "\""));
    }
    const auto& prop = props[key];
    const std::string type = prop["type"].get<std::string>();
    if (!HasType(value, type)) {
      return absl::InvalidArgumentError(absl::StrCat("argument \"", key, "\" must be of type ",
                                                     type, ", got ", value.type_name()));
    }
    if (prop.contains("enum")) {
      bool found = false;
      for (const auto& e : prop["enum"]) found = found || e == value;
      if (!found) {
        return absl::InvalidArgumentError(absl::StrCat("argument \"", key, "\" is ",
                                                       value.dump(), ", not one of ",
                                                       prop["enum"].dump()));
      }
    }
    if (type == "integer") {
      int64_t v = value.get<int64_t>();
      if (prop.contains("minimum") && v < prop["minimum"].get<int64_t>()) {
        return absl::InvalidArgumentError(absl::StrCat("argument \"", key, "\" is ", v,
                                                       ", below the minimum ",
                                                       prop["minimum"].get<int64_t>()));
      }
      if (prop.contains("maximum") && v > prop["maximum"].get<int64_t>()) {
        return absl::InvalidArgumentError(absl::StrCat("argument \"", key, "\" is ", v,
                                                       ", above the maximum ",
                                                       prop["maximum"].get<int64_t>()));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace tapeloop::tools
