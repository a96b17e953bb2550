// API keys and principals.
//
// A server either has no keys (then every caller is the principal "local", and the server only
// listens on loopback addresses) or a set of keys, each mapped to a principal name. A caller
// presents its key in the `authorization: Bearer KEY` or `x-api-key: KEY` metadata. Thread-safe
// after construction (read-only).
#ifndef TAPELOOP_SERVER_AUTH_H_
#define TAPELOOP_SERVER_AUTH_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace grpc {
class ServerContextBase;
}

namespace tapeloop::server {

class ApiKeys {
 public:
  ApiKeys() = default;

  // Parses a keys file: one `KEY PRINCIPAL` per line, blank lines and `#` comments ignored.
  // Keys must be at least 16 characters; principals match [A-Za-z0-9_.@-]{1,64}. Errors name the
  // file and line.
  static absl::StatusOr<ApiKeys> FromFile(const std::string& path);
  // Parses `KEY=PRINCIPAL[,KEY=PRINCIPAL...]` (the --api-key flag form).
  static absl::StatusOr<ApiKeys> FromFlag(const std::string& spec);
  absl::Status Add(const std::string& key, const std::string& principal);
  void Merge(const ApiKeys& other);

  bool empty() const { return principals_.empty(); }
  size_t size() const { return principals_.size(); }

  // The caller's principal: "local" when no keys are configured, else the principal of the
  // presented key; UNAUTHENTICATED when the key is missing or unknown.
  absl::StatusOr<std::string> Authenticate(const grpc::ServerContextBase& context) const;

 private:
  std::map<std::string, std::string> principals_;  // key -> principal
};

// True when `listen` ("host:port") binds only loopback addresses (127.0.0.0/8, ::1,
// localhost).
bool IsLoopbackListen(const std::string& listen);

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_AUTH_H_
