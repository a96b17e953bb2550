// The one place where absl::Status becomes grpc::Status (codes map one to one).
//
// The message is kept, made safe to send: invalid UTF-8 becomes U+FFFD and a message longer than
// kMaxStatusMessageBytes is cut at a character boundary, with the number of bytes cut said at
// the end. Error messages quote request fields, which can be megabytes; gRPC sends the message
// percent-encoded in a header (up to 3 bytes per byte), and a header over the client's limit
// (8 KiB by default) fails the call with an unrelated error and can tear down the connection,
// failing the client's other calls on it.
#ifndef TAPELOOP_SERVER_GRPC_STATUS_H_
#define TAPELOOP_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <cstddef>

#include "absl/status/status.h"

namespace tapeloop::server {

inline constexpr size_t kMaxStatusMessageBytes = 1024;

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_GRPC_STATUS_H_
