#include "tools/tool.h"

#include <gtest/gtest.h>

#include "tools/registry.h"

namespace tapeloop::tools {
namespace {

TEST(ToolTest, NamesFollowTheCommonConvention) {
  EXPECT_TRUE(ValidateToolName("pointer_memory").ok());
  EXPECT_TRUE(ValidateToolName("a-B_9").ok());
  EXPECT_TRUE(ValidateToolName(std::string(64, 'x')).ok());
  EXPECT_FALSE(ValidateToolName("").ok());
  EXPECT_FALSE(ValidateToolName(std::string(65, 'x')).ok());
  EXPECT_FALSE(ValidateToolName("has space").ok());
  EXPECT_FALSE(ValidateToolName("dot.name").ok());
}

TEST(ToolTest, SchemaValidation) {
  nlohmann::json good = {{"type", "object"},
                         {"properties", {{"n", {{"type", "integer"}, {"minimum", 0}}}}},
                         {"required", {"n"}},
                         {"additionalProperties", false}};
  EXPECT_TRUE(ValidateInputSchema(good).ok());
  auto open = good;
  open.erase("additionalProperties");
  EXPECT_FALSE(ValidateInputSchema(open).ok());
  auto bad_required = good;
  bad_required["required"] = {"m"};
  EXPECT_FALSE(ValidateInputSchema(bad_required).ok());
  auto bad_type = good;
  bad_type["properties"]["n"]["type"] = "complex";
  EXPECT_FALSE(ValidateInputSchema(bad_type).ok());
  EXPECT_TRUE(ValidateArguments(good, {{"n", 3}}).ok());
  EXPECT_FALSE(ValidateArguments(good, {{"n", -3}}).ok());
  EXPECT_FALSE(ValidateArguments(good, {{"n", 1.5}}).ok());
  EXPECT_FALSE(ValidateArguments(good, nlohmann::json::object()).ok());
}

class EchoTool final : public Tool {
 public:
  explicit EchoTool(std::string name) {
    def_.name = std::move(name);
    def_.description = "echo";
    def_.input_schema = {{"type", "object"},
                         {"properties", {{"s", {{"type", "string"}}}}},
                         {"required", {"s"}},
                         {"additionalProperties", false}};
  }
  const ToolDefinition& definition() const override { return def_; }
  ToolResult Call(const ToolCall& call) override {
    return ToolResult::Ok("ignored", call.arguments["s"].get<std::string>());
  }

 private:
  ToolDefinition def_;
};

TEST(ToolRegistryTest, RegisterFindCall) {
  ToolRegistry registry;
  ASSERT_TRUE(registry.Register(std::make_unique<EchoTool>("echo")).ok());
  EXPECT_EQ(registry.Register(std::make_unique<EchoTool>("echo")).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.Register(std::make_unique<EchoTool>("bad name")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_NE(registry.Find("echo"), nullptr);
  EXPECT_EQ(registry.Find("nope"), nullptr);
  auto r = registry.Call(ToolCall{"abc", "echo", {{"s", "hi"}}});
  EXPECT_EQ(r.call_id, "abc");  // the registry echoes the caller's id
  EXPECT_EQ(r.text, "hi");
  auto j = r.ToJson();
  EXPECT_EQ(j["call_id"], "abc");
  EXPECT_EQ(j["is_error"], false);
  EXPECT_EQ(registry.Definitions()[0].ToJson()["input_schema"]["type"], "object");
}

}  // namespace
}  // namespace tapeloop::tools
