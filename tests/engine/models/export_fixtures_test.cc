// Not a check: writes checkpoints saved by the engine (plus its logits for fixed ids) for
// tests/engine/fixtures/make_fixtures.py to load in Hugging Face transformers. Runs only with
// TAPELOOP_EXPORT_ENGINE_FIXTURES=DIR set; skipped otherwise.
#include <gtest/gtest.h>

#include <cstdlib>
#include <sys/stat.h>

#include <fstream>

#include "engine/checkpoint/safetensors.h"
#include "engine/models/model.h"
#include "tests/engine/test_util.h"

namespace tapeloop::engine {
namespace {

TEST(ExportEngineFixtures, WritesCheckpointsWhenAsked) {
  const char* root = std::getenv("TAPELOOP_EXPORT_ENGINE_FIXTURES");
  if (root == nullptr) GTEST_SKIP() << "TAPELOOP_EXPORT_ENGINE_FIXTURES not set";
  mkdir(root, 0755);
  for (Family f : testing::AllFamilies()) {
    ModelConfig c = testing::TinyConfig(f);
    c.vocab_size = 64;
    c.initializer_range = 0.2f;
    auto model = Model::RandomInit(c, 123);
    ASSERT_TRUE(model.ok()) << model.status();
    const std::string dir = std::string(root) + "/" + FamilyName(f);
    ASSERT_TRUE((*model)->Save(dir).ok());
    std::vector<int32_t> ids = testing::RandomTokens(40, 64, 55);
    SessionState s = (*model)->NewState();
    std::vector<float> logits;
    ASSERT_TRUE((*model)->Forward(ids, &s, true, &logits).ok());
    ASSERT_TRUE(WriteStringToFile(dir + "/engine_logits.bin",
                                  std::string(reinterpret_cast<const char*>(logits.data()), logits.size() * 4))
                    .ok());
    std::string json = "{\"ids\": [";
    for (size_t i = 0; i < ids.size(); ++i) json += (i ? ", " : "") + std::to_string(ids[i]);
    json += "], \"shape\": [40, 64]}";
    ASSERT_TRUE(WriteStringToFile(dir + "/ids.json", json).ok());
  }
}

}  // namespace
}  // namespace tapeloop::engine
