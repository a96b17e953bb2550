#include "server/auth.h"

#include <grpcpp/server_context.h>

#include <fstream>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace tapeloop::server {

absl::Status ApiKeys::Add(const std::string& key, const std::string& principal) {
  static const std::regex kPrincipal("[A-Za-z0-9_.@-]{1,64}");
  if (key.size() < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("API key for principal '", principal, "' is shorter than 16 characters"));
  }
  if (!std::regex_match(principal, kPrincipal)) {
    return absl::InvalidArgumentError(
        absl::StrCat("principal '", principal, "' must match [A-Za-z0-9_.@-]{1,64}"));
  }
  if (principals_.count(key) > 0) {
    return absl::InvalidArgumentError(absl::StrCat("duplicate API key for '", principal, "'"));
  }
  principals_[key] = principal;
  return absl::OkStatus();
}

void ApiKeys::Merge(const ApiKeys& other) {
  for (const auto& [k, p] : other.principals_) principals_[k] = p;
}

absl::StatusOr<ApiKeys> ApiKeys::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("API keys file ", path, ": cannot open"));
  ApiKeys keys;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    std::vector<std::string> parts = absl::StrSplit(text, ' ', absl::SkipEmpty());
    if (parts.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("API keys file ", path, " line ", number, ": expected `KEY PRINCIPAL`"));
    }
    absl::Status added = keys.Add(parts[0], parts[1]);
    if (!added.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("API keys file ", path, " line ", number, ": ", added.message()));
    }
  }
  return keys;
}

absl::StatusOr<ApiKeys> ApiKeys::FromFlag(const std::string& spec) {
  ApiKeys keys;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    if (kv.second.empty()) {
      return absl::InvalidArgumentError("--api-key: expected KEY=PRINCIPAL[,KEY=PRINCIPAL...]");
    }
    RETURN_IF_ERROR(keys.Add(kv.first, kv.second));
  }
  return keys;
}

absl::StatusOr<std::string> ApiKeys::Authenticate(const grpc::ServerContextBase& context) const {
  if (principals_.empty()) return std::string("local");
  const auto& metadata = context.client_metadata();
  std::string key;
  if (auto it = metadata.find("x-api-key"); it != metadata.end()) {
    key.assign(it->second.data(), it->second.size());
  } else if (auto it = metadata.find("authorization"); it != metadata.end()) {
    absl::string_view value(it->second.data(), it->second.size());
    if (absl::ConsumePrefix(&value, "Bearer ")) key = std::string(value);
  }
  if (key.empty()) {
    return absl::UnauthenticatedError(
        "no API key: send `authorization: Bearer KEY` or `x-api-key: KEY` metadata");
  }
  auto it = principals_.find(key);
  if (it == principals_.end()) return absl::UnauthenticatedError("unknown API key");
  return it->second;
}

bool IsLoopbackListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  if (host == "localhost" || host == "[::1]" || host == "::1") return true;
  if (host.rfind("127.", 0) == 0) return true;
  return false;
}

}  // namespace tapeloop::server
