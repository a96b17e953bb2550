// One registry of tool instances with their JSON-Schema definitions, e.g. the tools of one
// episode. Every call goes through Call(): the tool is looked up, the arguments are checked
// against the schema, the per-registry call budget is charged, and any failure comes back as
// an error ToolResult carrying the caller's id.
#ifndef TAPELOOP_TOOLS_REGISTRY_H_
#define TAPELOOP_TOOLS_REGISTRY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "tools/tool.h"

namespace tapeloop::tools {

class ToolRegistry {
 public:
  // `max_calls` bounds the calls answered over the registry's lifetime; calls past it get an
  // error result ("call budget exhausted").
  explicit ToolRegistry(int64_t max_calls = 1'000'000) : max_calls_(max_calls) {}
  ToolRegistry(const ToolRegistry&) = delete;
  ToolRegistry& operator=(const ToolRegistry&) = delete;

  // Takes ownership. INVALID_ARGUMENT if the name or schema is invalid, ALREADY_EXISTS if a
  // tool of that name is registered.
  absl::Status Register(std::unique_ptr<Tool> tool);

  // The tool named `name`, or nullptr. The registry keeps ownership.
  Tool* Find(std::string_view name) const;

  // Definitions of every tool, sorted by name.
  std::vector<ToolDefinition> Definitions() const;

  // Runs a JSON call. Unknown tool, invalid arguments and an exhausted budget are error
  // results naming the problem; otherwise the tool's own result, with call_id = call.id.
  ToolResult Call(const ToolCall& call);

  // Runs a text call ("add(1,2)", the form inside [CALL]...[/CALL]): the first tool whose
  // ParseTextCall accepts it runs it; if none does, an error result.
  ToolResult CallText(std::string_view text, const std::string& call_id);

  int64_t calls() const { return calls_; }
  int64_t max_calls() const { return max_calls_; }

 private:
  int64_t max_calls_;
  int64_t calls_ = 0;
  std::map<std::string, std::unique_ptr<Tool>, std::less<>> tools_;
};

}  // namespace tapeloop::tools

#endif  // TAPELOOP_TOOLS_REGISTRY_H_
