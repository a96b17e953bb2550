#include "server/model_registry.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "server/service_context.h"

namespace tapeloop::server {
namespace {

const std::string kModels = std::string(TAPELOOP_SOURCE_DIR) + "/models";

TEST(ModelRegistry, ListsBundledModelsAndLoadsOnDemand) {
  ModelRegistry registry(kModels);
  auto list = registry.List();
  ASSERT_GE(list.size(), 2u);
  bool saw_mamba = false;
  for (const auto& m : list) {
    EXPECT_FALSE(m.loaded) << m.name;
    if (m.name == "mamba2-pointer") {
      saw_mamba = true;
      EXPECT_EQ(m.arch, "mamba2");
    }
  }
  ASSERT_TRUE(saw_mamba);
  EXPECT_EQ(registry.Get("mamba2-pointer").status().code(), absl::StatusCode::kFailedPrecondition);
  auto a = registry.Load("mamba2-pointer");
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = registry.Load("mamba2-pointer");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->get(), b->get());  // loaded once
  EXPECT_GT((*a)->model->num_params(), 0);
  ASSERT_TRUE(registry.Get("mamba2-pointer").ok());
  ASSERT_TRUE(registry.Unload("mamba2-pointer").ok());
  EXPECT_EQ(registry.Unload("mamba2-pointer").code(), absl::StatusCode::kNotFound);
  EXPECT_GT((*a)->model->num_params(), 0);  // users keep the model after Unload
}

TEST(ModelRegistry, RejectsNamesThatEscapeTheDirectory) {
  ModelRegistry registry(kModels);
  for (const std::string& bad :
       std::vector<std::string>{"", "..", "../models/mamba2-pointer", "a/b", ".hidden", "-x",
                                std::string(65, 'a'), std::string("a\0b", 3)}) {
    EXPECT_EQ(registry.Load(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(registry.Load("no-such-model").status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelRegistry, BrokenCheckpointIsAnErrorNotACrash) {
  auto dir = std::filesystem::temp_directory_path() / ("tapeloop_reg_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir / "broken");
  std::ofstream(dir / "broken" / "config.json") << "{\"model_type\": \"mamba2\"";
  ModelRegistry registry(dir.string());
  auto list = registry.List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_FALSE(list[0].error.empty());
  EXPECT_FALSE(registry.Load("broken").ok());
  std::filesystem::remove_all(dir);
}

TEST(NewId, IsLongRandomAndPrefixed) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewId("ses");
    ASSERT_EQ(id.size(), 4u + 32u);
    ASSERT_EQ(id.substr(0, 4), "ses_");
    ASSERT_TRUE(seen.insert(id).second);
  }
}

}  // namespace
}  // namespace tapeloop::server
