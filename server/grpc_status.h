// The one place where absl::Status becomes grpc::Status (codes map one to one; the message is
// kept).
#ifndef TAPELOOP_SERVER_GRPC_STATUS_H_
#define TAPELOOP_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace tapeloop::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_GRPC_STATUS_H_
