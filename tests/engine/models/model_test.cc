#include "engine/models/model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "engine/checkpoint/safetensors.h"
#include "tests/engine/test_util.h"

namespace tapeloop::engine {
namespace {

using testing::AllFamilies;
using ::testing::HasSubstr;
using testing::TinyConfig;

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/engine_model_" + name + "_" + std::to_string(getpid());
  return dir;
}

std::string nlohmann_json_shape(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

class ModelFamilyTest : public ::testing::TestWithParam<Family> {};

TEST_P(ModelFamilyTest, SaveLoadRoundTripsBitExactly) {
  auto model = Model::RandomInit(TinyConfig(GetParam()), 7);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string dir = TempDir(FamilyName(GetParam()));
  ASSERT_TRUE((*model)->Save(dir).ok());
  auto loaded = Model::Load(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ((*loaded)->num_params(), (*model)->num_params());
  EXPECT_EQ(std::memcmp((*loaded)->param_data(), (*model)->param_data(),
                        sizeof(float) * (*model)->num_params()),
            0);
  EXPECT_EQ((*loaded)->fingerprint(), (*model)->fingerprint());
  // Saving the loaded model again gives identical files.
  const std::string dir2 = dir + "_again";
  ASSERT_TRUE((*loaded)->Save(dir2).ok());
  EXPECT_EQ(*ReadFileToString(dir + "/model.safetensors"),
            *ReadFileToString(dir2 + "/model.safetensors"));
  EXPECT_EQ(*ReadFileToString(dir + "/config.json"), *ReadFileToString(dir2 + "/config.json"));
  // Same logits.
  SessionState a = (*model)->NewState(), b = (*loaded)->NewState();
  std::vector<int32_t> toks = testing::RandomTokens(20, 61, 3);
  std::vector<float> la, lb;
  ASSERT_TRUE((*model)->Forward(toks, &a, true, &la).ok());
  ASSERT_TRUE((*loaded)->Forward(toks, &b, true, &lb).ok());
  EXPECT_EQ(la, lb);
}

TEST_P(ModelFamilyTest, RandomInitIsSeededAndFingerprinted) {
  auto a = Model::RandomInit(TinyConfig(GetParam()), 1);
  auto b = Model::RandomInit(TinyConfig(GetParam()), 1);
  auto c = Model::RandomInit(TinyConfig(GetParam()), 2);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ((*a)->fingerprint(), (*b)->fingerprint());
  EXPECT_NE((*a)->fingerprint(), (*c)->fingerprint());
  (*b)->mutable_param_data()[5] += 1.0f;
  (*b)->RecomputeFingerprint();
  EXPECT_NE((*a)->fingerprint(), (*b)->fingerprint());
}

TEST_P(ModelFamilyTest, TokenIdsOutsideVocabularyAreRejected) {
  auto model = Model::RandomInit(TinyConfig(GetParam()), 1);
  ASSERT_TRUE(model.ok());
  SessionState s = (*model)->NewState();
  std::vector<float> logits;
  std::vector<int32_t> bad = {3, 61, 4};
  auto status = (*model)->Forward(bad, &s, false, &logits);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("token id 61 at index 1"));
  std::vector<int32_t> neg = {-1};
  EXPECT_FALSE((*model)->Forward(neg, &s, false, &logits).ok());
  EXPECT_EQ(s.position(), 0);
}

// One StepBatch of B sessions at different positions against each session's own Forward of the
// same token: the batched products read the packed copies of the weights
// (kernels/linear_packed.h), built on this first batched step.
void ExpectStepBatchEqualsForward(const Model& m, int B, uint32_t seed) {
  const int V = static_cast<int>(m.config().vocab_size);
  std::vector<SessionState> batched, single;
  for (int b = 0; b < B; ++b) {
    batched.push_back(m.NewState());
    std::vector<float> logits;
    ASSERT_TRUE(
        m.Forward(testing::RandomTokens(1 + b % 9, V, seed + b), &batched.back(), false, &logits)
            .ok());
    single.push_back(batched.back());
  }
  std::vector<SessionState*> ptrs;
  for (auto& s : batched) ptrs.push_back(&s);
  const std::vector<int32_t> toks = testing::RandomTokens(B, V, seed + 1000);
  std::vector<float> lb;
  ASSERT_TRUE(m.StepBatch(toks, ptrs, &lb).ok());
  for (int b = 0; b < B; ++b) {
    std::vector<float> l1;
    ASSERT_TRUE(m.Forward(std::span<const int32_t>(&toks[b], 1), &single[b], false, &l1).ok());
    EXPECT_LE(testing::MaxRelErr(std::span<const float>(lb).subspan(b * V, V), l1), 1e-5) << b;
  }
}

TEST_P(ModelFamilyTest, StepBatchOfManySessionsEqualsForward) {
  auto model = Model::RandomInit(TinyConfig(GetParam()), 3);
  ASSERT_TRUE(model.ok());
  EXPECT_GT((*model)->packed_bytes(), 0);
  EXPECT_EQ((*model)->packed_bytes_built(), 0);  // built on first use
  for (int B : {2, 13, 40}) ExpectStepBatchEqualsForward(**model, B, 50 + B);
  EXPECT_EQ((*model)->packed_bytes_built(), (*model)->packed_bytes());
}

TEST_P(ModelFamilyTest, ChangedParametersDropThePackedCopies) {
  auto model = Model::RandomInit(TinyConfig(GetParam()), 4);
  ASSERT_TRUE(model.ok());
  ExpectStepBatchEqualsForward(**model, 20, 7);
  ASSERT_GT((*model)->packed_bytes_built(), 0);
  // Scale every parameter through mutable_param_data: the packed copies are rebuilt from the new
  // values, so batched and single decode still agree.
  float* p = (*model)->mutable_param_data();
  EXPECT_EQ((*model)->packed_bytes_built(), 0);
  for (int64_t i = 0; i < (*model)->num_params(); ++i) p[i] *= 1.25f;
  (*model)->RecomputeFingerprint();
  ExpectStepBatchEqualsForward(**model, 20, 8);
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, ModelFamilyTest, ::testing::ValuesIn(AllFamilies()),
                         [](const auto& info) { return FamilyName(info.param); });

TEST(ModelLoad, ErrorsNameTheTensor) {
  auto model = Model::RandomInit(TinyConfig(Family::kLlama), 1);
  ASSERT_TRUE(model.ok());
  const std::string dir = TempDir("errors");
  ASSERT_TRUE((*model)->Save(dir).ok());
  auto file = ReadSafetensorsFile(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok());

  // Missing tensor.
  {
    auto tensors = file->tensors;
    tensors.erase("model.layers.1.mlp.up_proj.weight");
    auto m = Model::FromTensors((*model)->config(), tensors);
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(std::string(m.status().message()),
                HasSubstr("missing tensor 'model.layers.1.mlp.up_proj.weight'"));
  }
  // Wrong shape.
  {
    auto tensors = file->tensors;
    tensors["model.norm.weight"].shape = {16, 2};
    auto m = Model::FromTensors((*model)->config(), tensors);
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(std::string(m.status().message()),
                HasSubstr("tensor 'model.norm.weight' has shape [16, 2], expected [32]"));
  }
  // Truncated file on disk.
  {
    std::string bytes = *ReadFileToString(dir + "/model.safetensors");
    ASSERT_TRUE(
        WriteStringToFile(dir + "/model.safetensors", bytes.substr(0, bytes.size() / 2)).ok());
    auto m = Model::Load(dir);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(m.status().message()), HasSubstr("out of range"));
  }
  // Bad config.
  {
    ASSERT_TRUE(WriteStringToFile(dir + "/config.json", "{\"model_type\": \"llama\"").ok());
    auto m = Model::Load(dir);
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(std::string(m.status().message()), HasSubstr("config.json"));
  }
  EXPECT_EQ(Model::Load("/nonexistent/dir").status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelLoad, Bf16CheckpointLoads) {
  auto model = Model::RandomInit(TinyConfig(Family::kMamba2), 1);
  ASSERT_TRUE(model.ok());
  // Write a bf16 copy by hand: truncate each float to its top 16 bits.
  std::string header = "{";
  std::string data;
  for (const ParamEntry& p : (*model)->params()) {
    const int64_t n = NumElements(p.shape);
    const size_t begin = data.size();
    for (int64_t i = 0; i < n; ++i) {
      uint32_t bits;
      std::memcpy(&bits, (*model)->param_data() + p.offset + i, 4);
      uint16_t hi = static_cast<uint16_t>(bits >> 16);
      data.append(reinterpret_cast<const char*>(&hi), 2);
    }
    if (header.size() > 1) header += ",";
    header += "\"" + p.name + "\":{\"dtype\":\"BF16\",\"shape\":" + nlohmann_json_shape(p.shape) +
              ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(data.size()) +
              "]}";
  }
  header += "}";
  std::string bytes(8, '\0');
  uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += header + data;
  const std::string dir = TempDir("bf16");
  ASSERT_TRUE((*model)->Save(dir).ok());
  ASSERT_TRUE(WriteStringToFile(dir + "/model.safetensors", bytes).ok());
  auto loaded = Model::Load(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (int64_t i = 0; i < (*model)->num_params(); ++i) {
    const float a = (*model)->param_data()[i], b = (*loaded)->param_data()[i];
    ASSERT_LE(std::abs(a - b), std::abs(a) * (1.0f / 128)) << i;
  }
}

}  // namespace
}  // namespace tapeloop::engine
