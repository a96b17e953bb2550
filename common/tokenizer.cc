#include "common/tokenizer.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tapeloop {
namespace {

std::vector<std::string> V1Specials() {
  std::vector<std::string> specials = {"[BOS]", "[EOS]", "[PAD]", "[ANS]", "[END]"};
  const char* ops[] = {"NEW", "LEFT", "RIGHT", "READ", "WRITE"};
  for (int k = 1; k <= tokens::kMaxPointers; ++k) {
    for (const char* op : ops) specials.push_back(absl::StrCat("[P", k, ".", op, "]"));
  }
  for (const char* s : {"[CALL]", "[/CALL]", "[OBS]", "[/OBS]"}) specials.push_back(s);
  return specials;
}

// The longest special spelling, bounding the look-ahead in Encode.
constexpr size_t kMaxSpecialLength = 10;

}  // namespace

Tokenizer::Tokenizer() : specials_(V1Specials()) {}

absl::StatusOr<Tokenizer> Tokenizer::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("tokenizer load: cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto tokenizer = FromJson(buffer.str());
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<Tokenizer> Tokenizer::FromJson(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("tokenizer load: not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("tokenizer load: not a JSON object");
  Tokenizer tokenizer;
  if (!j.contains("version") || !j["version"].is_string()) {
    return absl::InvalidArgumentError("tokenizer load: missing string field \"version\"");
  }
  const std::string version = j["version"].get<std::string>();
  if (version != tokens::kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer load: unsupported version \"",
                                                   version, "\" (this build reads \"",
                                                   tokens::kVersion, "\")"));
  }
  if (!j.contains("byte_tokens") || !j["byte_tokens"].is_number_integer() ||
      j["byte_tokens"].get<int64_t>() != tokens::kByteTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer load: \"byte_tokens\" must be ", tokens::kByteTokens));
  }
  if (j.contains("vocab_size") && (!j["vocab_size"].is_number_integer() ||
                                   j["vocab_size"].get<int64_t>() != tokens::kVocabSize)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer load: \"vocab_size\" must be ", tokens::kVocabSize));
  }
  if (!j.contains("special_tokens") || !j["special_tokens"].is_array()) {
    return absl::InvalidArgumentError("tokenizer load: missing array field \"special_tokens\"");
  }
  const auto& list = j["special_tokens"];
  if (list.size() != tokenizer.specials_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer load: \"special_tokens\" has ", list.size(), " entries, ",
                     tokens::kVersion, " has ", tokenizer.specials_.size()));
  }
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_string() || list[i].get<std::string>() != tokenizer.specials_[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer load: special_tokens[", i, "] is ", list[i].dump(), ", expected \"",
          tokenizer.specials_[i], "\" (id ", tokens::kByteTokens + i, ")"));
    }
  }
  return tokenizer;
}

std::string Tokenizer::ToJson() const {
  nlohmann::json j;
  j["version"] = tokens::kVersion;
  j["byte_tokens"] = tokens::kByteTokens;
  j["vocab_size"] = tokens::kVocabSize;
  j["special_tokens"] = specials_;
  return j.dump(2) + "\n";
}

absl::Status Tokenizer::Save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("tokenizer save: cannot open ", path));
  out << ToJson();
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("tokenizer save: write failed for ", path));
  return absl::OkStatus();
}

std::optional<TokenId> Tokenizer::FindSpecial(std::string_view spelling) const {
  for (size_t i = 0; i < specials_.size(); ++i) {
    if (specials_[i] == spelling) return static_cast<TokenId>(tokens::kByteTokens + i);
  }
  return std::nullopt;
}

std::vector<TokenId> Tokenizer::Encode(std::string_view text) const {
  std::vector<TokenId> ids;
  ids.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '[') {
      size_t close = text.find(']', i + 1);
      if (close != std::string_view::npos && close - i + 1 <= kMaxSpecialLength) {
        if (auto id = FindSpecial(text.substr(i, close - i + 1))) {
          ids.push_back(*id);
          i = close + 1;
          continue;
        }
      }
    }
    ids.push_back(static_cast<unsigned char>(text[i]));
    ++i;
  }
  return ids;
}

std::string Tokenizer::TokenText(TokenId id) const {
  if (tokens::IsByte(id)) return std::string(1, static_cast<char>(id));
  if (tokens::IsValid(id)) return specials_[id - tokens::kByteTokens];
  return absl::StrCat("<invalid:", id, ">");
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const TokenId> ids) const {
  std::string text;
  text.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!tokens::IsValid(ids[i])) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer decode: id ", ids[i],
                                                     " at position ", i, " is outside [0, ",
                                                     tokens::kVocabSize, ")"));
    }
    text += TokenText(ids[i]);
  }
  return text;
}

}  // namespace tapeloop
