#include "common/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "nlohmann/json.hpp"

namespace tapeloop {
namespace {

using tokens::PointerOp;

TEST(TokenizerTest, FixedIdsOfVersionOne) {
  Tokenizer t;
  EXPECT_EQ(t.vocab_size(), 285);
  EXPECT_EQ(t.special_tokens().size(), 29u);
  EXPECT_EQ(t.FindSpecial("[BOS]"), tokens::kBos);
  EXPECT_EQ(t.FindSpecial("[EOS]"), tokens::kEos);
  EXPECT_EQ(t.FindSpecial("[PAD]"), tokens::kPad);
  EXPECT_EQ(t.FindSpecial("[ANS]"), tokens::kAns);
  EXPECT_EQ(t.FindSpecial("[END]"), tokens::kEnd);
  EXPECT_EQ(t.FindSpecial("[CALL]"), tokens::kCall);
  EXPECT_EQ(t.FindSpecial("[/CALL]"), tokens::kCallEnd);
  EXPECT_EQ(t.FindSpecial("[OBS]"), tokens::kObs);
  EXPECT_EQ(t.FindSpecial("[/OBS]"), tokens::kObsEnd);
  const char* ops[] = {"NEW", "LEFT", "RIGHT", "READ", "WRITE"};
  for (int k = 1; k <= 4; ++k) {
    for (int op = 0; op < 5; ++op) {
      std::string name = "[P" + std::to_string(k) + "." + ops[op] + "]";
      TokenId id = tokens::PointerCommand(k, static_cast<PointerOp>(op));
      EXPECT_EQ(t.FindSpecial(name), id) << name;
      EXPECT_EQ(t.TokenText(id), name);
      EXPECT_TRUE(tokens::IsPointerCommand(id));
      EXPECT_EQ(tokens::CommandPointer(id), k);
      EXPECT_EQ(tokens::CommandOp(id), static_cast<PointerOp>(op));
    }
  }
  EXPECT_FALSE(tokens::IsPointerCommand(tokens::kEnd));
  EXPECT_FALSE(tokens::IsPointerCommand(tokens::kCall));
  EXPECT_EQ(t.FindSpecial("[P5.READ]"), std::nullopt);
}

TEST(TokenizerTest, EncodeRecognisesSpecialSpellings) {
  Tokenizer t;
  auto ids = t.Encode("[BOS]12+3=[P1.NEW][P1.READ]1[ANS]x[EOS]");
  std::vector<TokenId> want = {tokens::kBos, '1', '2', '+', '3', '=',
                               tokens::PointerCommand(1, PointerOp::kNew),
                               tokens::PointerCommand(1, PointerOp::kRead), '1', tokens::kAns,
                               'x', tokens::kEos};
  EXPECT_EQ(ids, want);
  // Near-misses stay bytes.
  EXPECT_EQ(t.Encode("[P9.READ]").size(), 9u);
  EXPECT_EQ(t.Encode("[ANS").size(), 4u);
  EXPECT_EQ(t.Encode("[[ANS]]"), (std::vector<TokenId>{'[', tokens::kAns, ']'}));
}

TEST(TokenizerTest, RandomRoundTrip) {
  Tokenizer t;
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<TokenId> ids;
    int n = rng() % 200;
    for (int i = 0; i < n; ++i) {
      // Mostly digits and specials; no '[' bytes, which could combine with later bytes.
      TokenId id = rng() % 2 ? static_cast<TokenId>('0' + rng() % 10)
                             : static_cast<TokenId>(256 + rng() % 29);
      ids.push_back(id);
    }
    auto text = t.Decode(ids);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(t.Encode(*text), ids);
  }
  // Every byte round-trips alone.
  for (int b = 0; b < 256; ++b) {
    std::vector<TokenId> one = {b};
    EXPECT_EQ(t.Encode(*t.Decode(one)), one);
  }
}

TEST(TokenizerTest, DecodeRejectsBadIds) {
  Tokenizer t;
  std::vector<TokenId> bad = {'1', 285};
  auto text = t.Decode(bad);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(text.status().message().find("285"), std::string::npos);
  std::vector<TokenId> negative = {-1};
  EXPECT_FALSE(t.Decode(negative).ok());
  EXPECT_EQ(t.TokenText(-3), "<invalid:-3>");
}

TEST(TokenizerTest, SaveLoadRoundTrip) {
  Tokenizer t;
  auto path = std::filesystem::temp_directory_path() / "tapeloop_tokenizer_test.json";
  ASSERT_TRUE(t.Save(path.string()).ok());
  auto loaded = Tokenizer::Load(path.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->special_tokens(), t.special_tokens());
  auto j = nlohmann::json::parse(t.ToJson());
  EXPECT_EQ(j["version"], "tapeloop-tokens-v1");
  EXPECT_EQ(j["byte_tokens"], 256);
  std::filesystem::remove(path);
}

TEST(TokenizerTest, LoadRejectsMalformedFiles) {
  auto expect_bad = [](const std::string& text, const std::string& needle) {
    auto r = Tokenizer::FromJson(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status();
  };
  expect_bad("{not json", "not valid JSON");
  expect_bad("[1,2]", "not a JSON object");
  expect_bad("{}", "version");
  expect_bad(R"({"version":"tapeloop-tokens-v9","byte_tokens":256,"special_tokens":[]})",
             "unsupported version");
  expect_bad(R"({"version":"tapeloop-tokens-v1","byte_tokens":255,"special_tokens":[]})",
             "byte_tokens");
  expect_bad(R"({"version":"tapeloop-tokens-v1","byte_tokens":256,"special_tokens":[]})",
             "0 entries");
  auto j = nlohmann::json::parse(Tokenizer().ToJson());
  j["special_tokens"][3] = "[ANSWER]";
  expect_bad(j.dump(), "special_tokens[3]");
  auto missing = Tokenizer::Load("/nonexistent/dir/tokenizer.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tapeloop
