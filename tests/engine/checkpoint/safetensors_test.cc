#include "engine/checkpoint/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

namespace tapeloop::engine {
namespace {

using ::testing::HasSubstr;

std::string Build(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::string Floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

TEST(Safetensors, RoundTripsF32WithMetadata) {
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  std::vector<float> b = {42.0f};
  std::string bytes = SerializeSafetensors({{"a", {2, 3}, a.data()}, {"b.x", {1}, b.data()}}, {{"format", "pt"}});
  EXPECT_EQ((bytes.size() - 8) % 4, 0u);
  auto file = ParseSafetensors(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->tensors.at("a").shape, (Shape{2, 3}));
  EXPECT_EQ(file->tensors.at("a").data, a);
  EXPECT_EQ(file->tensors.at("b.x").data, b);
  EXPECT_EQ(file->metadata.at("format"), "pt");
  EXPECT_EQ(file->dtypes.at("a"), "F32");
}

TEST(Safetensors, LoadsBf16) {
  // bf16 of 1.0 = 0x3f80, -2.5 = 0xc020.
  std::string data("\x80\x3f\x20\xc0", 4);
  auto file = ParseSafetensors(Build(R"({"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", data));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->tensors.at("w").data, (std::vector<float>{1.0f, -2.5f}));
  EXPECT_EQ(file->dtypes.at("w"), "BF16");
}

TEST(Safetensors, ScalarAndEmptyTensors) {
  auto file = ParseSafetensors(Build(
      R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]}})",
      Floats({3.0f})));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->tensors.at("s").data, std::vector<float>{3.0f});
  EXPECT_TRUE(file->tensors.at("e").data.empty());
}

struct BadCase {
  std::string name;
  std::string bytes;
  std::string message;
};

TEST(Safetensors, RejectsBadInputWithClearErrors) {
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::string huge(8, '\0');
  uint64_t big = 1ull << 40;
  std::memcpy(huge.data(), &big, 8);
  std::string beyond(8, '\0');
  uint64_t n = 100;
  std::memcpy(beyond.data(), &n, 8);
  beyond += "{}";
  std::vector<BadCase> cases = {
      {"empty", "", "shorter than the 8-byte header length"},
      {"short", "abc", "shorter than the 8-byte header length"},
      {"huge header", huge, "exceeds the limit"},
      {"header beyond file", beyond, "runs past the end of the file"},
      {"malformed json", Build("{\"w\": [", ""), "not valid JSON"},
      {"not object", Build("[1,2]", ""), "not a JSON object"},
      {"wrong dtype", Build(R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", std::string(8, '\0')),
       "tensor 'w': unsupported dtype I64"},
      {"missing dtype", Build(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", Floats({1})), "tensor 'w': missing"},
      {"negative dim", Build(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", Floats({1})),
       "tensor 'w': shape"},
      {"shape mismatch", Build(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", Floats({1, 2})),
       "tensor 'w': data_offsets span 8 bytes but shape [3]"},
      {"offsets out of range", Build("{" + ok_entry + "}", Floats({1})), "tensor 'w': data_offsets [0, 8] out of range"},
      {"offsets reversed", Build(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", Floats({1})),
       "tensor 'w': data_offsets [4, 0]"},
      {"overlap", Build("{" + ok_entry + R"(,"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", Floats({1, 2})),
       "overlaps"},
      {"bad offsets type", Build(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":"x"}})", Floats({1})),
       "tensor 'w': data_offsets must be"},
      {"bad metadata", Build(R"({"__metadata__":{"a":1}})", ""), "__metadata__ value 'a'"},
  };
  for (const BadCase& c : cases) {
    auto file = ParseSafetensors(c.bytes);
    ASSERT_FALSE(file.ok()) << c.name;
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(file.status().message()), HasSubstr(c.message)) << c.name;
  }
}

TEST(Safetensors, TruncatedFileIsAnError) {
  std::vector<float> a(100, 1.0f);
  std::string bytes = SerializeSafetensors({{"a", {100}, a.data()}});
  for (size_t cut : {bytes.size() - 1, bytes.size() - 200, size_t{20}, size_t{7}}) {
    auto file = ParseSafetensors(absl::string_view(bytes).substr(0, cut));
    EXPECT_FALSE(file.ok()) << cut;
  }
}

TEST(Safetensors, MissingFileIsNotFound) {
  auto file = ReadSafetensorsFile("/nonexistent/model.safetensors");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tapeloop::engine
