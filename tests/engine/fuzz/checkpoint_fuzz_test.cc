// Runs the libFuzzer entry point of checkpoint_fuzz.cc over a few thousand seeded random and
// mutated inputs (valid safetensors files, configs and snapshots with bytes flipped, cut,
// duplicated or the header length changed), so CI exercises it without clang's libFuzzer.
#include "tests/engine/fuzz/checkpoint_fuzz.cc"  // NOLINT: the fuzz target's entry point

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/checkpoint/safetensors.h"

namespace tapeloop::engine {
namespace {

std::string Mutate(std::string s, std::mt19937& rng) {
  const int edits = 1 + rng() % 4;
  for (int e = 0; e < edits; ++e) {
    switch (rng() % 7) {
      case 0:  // flip a byte
        if (!s.empty()) s[rng() % s.size()] ^= static_cast<char>(1 + rng() % 255);
        break;
      case 1:  // truncate
        if (!s.empty()) s.resize(rng() % s.size());
        break;
      case 2:  // duplicate a slice
        if (!s.empty()) {
          size_t a = rng() % s.size(), n = rng() % std::min<size_t>(64, s.size() - a + 1);
          s.insert(rng() % s.size(), s.substr(a, n));
        }
        break;
      case 3:  // random bytes appended
        for (int i = 0; i < 16; ++i) s.push_back(static_cast<char>(rng()));
        break;
      case 4:  // change the header length (first 8 payload bytes)
        if (s.size() > 8) s[1 + rng() % 8] = static_cast<char>(rng());
        break;
      case 5:  // replace a digit (sizes, offsets, shapes in JSON)
        for (int tries = 0; tries < 20 && !s.empty(); ++tries) {
          size_t i = rng() % s.size();
          if (s[i] >= '0' && s[i] <= '9') {
            s[i] = static_cast<char>('0' + rng() % 10);
            break;
          }
        }
        break;
      case 6:  // erase a slice
        if (s.size() > 2) {
          size_t a = 1 + rng() % (s.size() - 1);
          s.erase(a, rng() % 32);
        }
        break;
    }
  }
  return s;
}

TEST(CheckpointFuzz, SeededRandomAndMutatedInputsNeverCrash) {
  const Model& model = fuzz::FuzzModel();
  std::vector<TensorRef> refs;
  for (const ParamEntry& p : model.params()) refs.push_back({p.name, p.shape, model.param_data() + p.offset});
  Session s(&model);
  const int32_t toks[3] = {1, 2, 3};
  ASSERT_TRUE(s.Append(toks).ok());
  std::vector<std::string> seeds = {
      std::string(1, '\0') + SerializeSafetensors(refs, {{"format", "pt"}}),
      std::string(1, '\1') + ModelConfigToJson(model.config()),
      std::string(1, '\1') +
          R"({"model_type":"mamba2","hidden_size":8,"num_hidden_layers":1,"state_size":4,
          "expand":2,"head_dim":4,"num_heads":4,"n_groups":2,"vocab_size":5,"chunk_size":3,
          "time_step_limit":[0.0,{"__float__":"Infinity"}]})",
      std::string(1, '\1') +
          R"({"model_type":"mistral","hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,
          "num_attention_heads":2,"vocab_size":5,"sliding_window":2})",
      std::string(1, '\2') + s.Snapshot(),
      std::string(1, '\3') + s.Snapshot(),
  };
  std::mt19937 rng(20261128);
  int runs = 0;
  for (const std::string& seed : seeds) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(seed.data()), seed.size());
    ++runs;
  }
  for (int i = 0; i < 6000; ++i) {
    std::string input;
    if (i % 10 == 0) {
      input.resize(rng() % 64);
      for (char& c : input) c = static_cast<char>(rng());
    } else {
      input = Mutate(seeds[rng() % seeds.size()], rng);
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    ++runs;
  }
  EXPECT_EQ(runs, 6000 + static_cast<int>(seeds.size()));
}

// The seeds the libFuzzer binary writes for scripts/fuzz.sh are inputs each loader accepts, so
// the coverage-guided run starts past the format checks.
TEST(CheckpointFuzz, WrittenSeedsAreValidInputs) {
  const std::vector<std::string> seeds = fuzz::ValidSeeds();
  ASSERT_EQ(seeds.size(), 4u);
  for (size_t i = 0; i < seeds.size(); ++i) {
    ASSERT_FALSE(seeds[i].empty());
    EXPECT_EQ(seeds[i][0], static_cast<char>(i)) << "seed " << i;
  }
  const Model& model = fuzz::FuzzModel();
  auto file = ParseSafetensors(absl::string_view(seeds[0]).substr(1));
  ASSERT_TRUE(file.ok()) << file.status();
  auto reloaded = Model::FromTensors(model.config(), std::move(file->tensors));
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  ASSERT_EQ((*reloaded)->num_params(), model.num_params());
  EXPECT_EQ(std::memcmp((*reloaded)->param_data(), model.param_data(),
                        model.num_params() * sizeof(float)),
            0);
  auto config = ParseModelConfig(absl::string_view(seeds[1]).substr(1));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->pattern, model.config().pattern);
  for (size_t i : {2u, 3u}) {
    Session s(&model);
    ASSERT_TRUE(s.Restore(absl::string_view(seeds[i]).substr(1)).ok()) << "seed " << i;
    EXPECT_EQ(s.position(), 3);
  }
  // Mode 3 repairs the checksum: a flipped state byte restores there but not in mode 2.
  std::string flipped = seeds[3].substr(1);
  flipped[flipped.size() - 12] ^= 0x40;
  Session s(&model);
  EXPECT_FALSE(s.Restore(flipped).ok());
  const uint64_t sum = Fnv1a64(flipped.data(), flipped.size() - 8);
  std::memcpy(flipped.data() + flipped.size() - 8, &sum, 8);
  EXPECT_TRUE(s.Restore(flipped).ok());
}

}  // namespace
}  // namespace tapeloop::engine
