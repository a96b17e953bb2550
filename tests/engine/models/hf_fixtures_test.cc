// Golden test against Hugging Face transformers: tiny random-init checkpoints saved by HF
// (tests/engine/fixtures/hf/<family>/, made by make_fixtures.py) with HF's logits for fixed
// ids. Our logits must match within 1e-4 (max abs), by prefill and by token-by-token decode.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "engine/checkpoint/safetensors.h"
#include "engine/session/session.h"
#include "nlohmann/json.hpp"
#include "tests/engine/test_util.h"

namespace tapeloop::engine {
namespace {

constexpr double kTol = 1e-4;

class HfFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfFixtureTest, LogitsMatchTransformers) {
  const std::string dir = std::string(TAPELOOP_SOURCE_DIR) + "/tests/engine/fixtures/hf/" + GetParam();
  auto model = Model::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  auto meta_text = ReadFileToString(dir + "/ids.json");
  ASSERT_TRUE(meta_text.ok());
  auto meta = nlohmann::json::parse(*meta_text);
  std::vector<int32_t> ids = meta["ids"].get<std::vector<int32_t>>();
  auto raw = ReadFileToString(dir + "/logits.bin");
  ASSERT_TRUE(raw.ok());
  std::vector<float> want(raw->size() / 4);
  std::memcpy(want.data(), raw->data(), raw->size());
  ASSERT_EQ(want.size(), ids.size() * (*model)->config().vocab_size);

  Session prefill(model->get());
  auto got = prefill.Append(ids, /*all_logits=*/true);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LE(testing::MaxAbsErr(*got, want), kTol);

  Session step(model->get());
  std::vector<float> stepped;
  for (int32_t id : ids) {
    auto l = step.Decode(id);
    ASSERT_TRUE(l.ok());
    stepped.insert(stepped.end(), l->begin(), l->end());
  }
  EXPECT_LE(testing::MaxAbsErr(stepped, want), kTol);
  std::printf("%s: max abs err vs HF: prefill %.3g, decode %.3g\n", GetParam().c_str(),
              testing::MaxAbsErr(*got, want), testing::MaxAbsErr(stepped, want));
  // Sanity: the logits are not trivially small, so the tolerance means something.
  double mx = 0;
  for (float v : want) mx = std::max(mx, std::abs(static_cast<double>(v)));
  EXPECT_GT(mx, 0.1);
}

INSTANTIATE_TEST_SUITE_P(Families, HfFixtureTest,
                         ::testing::Values("mamba2", "llama", "mistral", "nemotron_h"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tapeloop::engine
