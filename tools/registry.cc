#include "tools/registry.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tapeloop::tools {

absl::Status ToolRegistry::Register(std::unique_ptr<Tool> tool) {
  if (tool == nullptr) return absl::InvalidArgumentError("register tool: null tool");
  const ToolDefinition& def = tool->definition();
  RETURN_IF_ERROR(ValidateToolName(def.name));
  if (auto status = ValidateInputSchema(def.input_schema); !status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("register tool \"", def.name, "\": ", status.message()));
  }
  if (tools_.count(def.name)) {
    return absl::AlreadyExistsError(
        absl::StrCat("register tool: \"", def.name, "\" is already registered"));
  }
  std::string name = def.name;
  tools_[name] = std::move(tool);
  return absl::OkStatus();
}

Tool* ToolRegistry::Find(std::string_view name) const {
  auto it = tools_.find(name);
  return it == tools_.end() ? nullptr : it->second.get();
}

std::vector<ToolDefinition> ToolRegistry::Definitions() const {
  std::vector<ToolDefinition> defs;
  for (const auto& [name, tool] : tools_) defs.push_back(tool->definition());
  return defs;
}

ToolResult ToolRegistry::Call(const ToolCall& call) {
  Tool* tool = Find(call.name);
  if (tool == nullptr) {
    return ToolResult::Error(call.id, absl::StrCat("unknown tool \"", call.name, "\""));
  }
  if (calls_ >= max_calls_) {
    return ToolResult::Error(
        call.id, absl::StrCat("call budget exhausted (", max_calls_, " calls)"));
  }
  ++calls_;
  if (auto status = ValidateArguments(tool->definition().input_schema, call.arguments);
      !status.ok()) {
    return ToolResult::Error(call.id, absl::StrCat(call.name, ": ", status.message()));
  }
  ToolResult result = tool->Call(call);
  result.call_id = call.id;
  return result;
}

ToolResult ToolRegistry::CallText(std::string_view text, const std::string& call_id) {
  for (const auto& [name, tool] : tools_) {
    if (auto call = tool->ParseTextCall(text)) {
      call->id = call_id;
      return Call(*call);
    }
  }
  constexpr size_t kShown = 40;
  std::string shown(text.substr(0, kShown));
  if (text.size() > kShown) shown += "...";
  return ToolResult::Error(call_id, absl::StrCat("no tool accepts the call \"", shown, "\""));
}

}  // namespace tapeloop::tools
