#include "server/service_context.h"

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/status.h>
#include <sys/random.h>

#include <cstdio>
#include <stdexcept>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "proto/request_decoding.h"
#include "server/grpc_status.h"

namespace tapeloop::server {

std::string NewId(const char* prefix) {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    // getrandom only fails with EINTR / EAGAIN once the pool is initialised; retry.
  }
  std::string id = prefix;
  id += '_';
  char hex[3];
  for (unsigned char b : bytes) {
    std::snprintf(hex, sizeof hex, "%02x", b);
    id += hex;
  }
  return id;
}

absl::StatusOr<std::string> Principal(const ServiceContext& ctx,
                                      const grpc::ServerContextBase& context,
                                      const google::protobuf::Message& request) {
  absl::StatusOr<std::string> principal = ctx.keys->Authenticate(context);
  if (!principal.ok()) return principal;
  if (std::string error = v1::DecodeError(request); !error.empty()) {
    return absl::InvalidArgumentError(error);
  }
  return principal;
}

absl::StatusOr<Page> ParsePage(int32_t page_size, const std::string& page_token) {
  Page page;
  if (page_size != 0) page.size = page_size;
  if (page.size < 1 || page.size > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be in 0..1000 (0: 100), got ", page_size));
  }
  if (!page_token.empty() && (!absl::SimpleAtoi(page_token, &page.offset) || page.offset < 0)) {
    return absl::InvalidArgumentError("page_token: not a token this server issued");
  }
  return page;
}

grpc::Status ShuttingDown() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down");
}

grpc::ServerUnaryReactor* AnswerUnary(
    const ServiceContext& ctx, grpc::CallbackServerContext* context,
    const google::protobuf::Message& request,
    absl::FunctionRef<absl::Status(const std::string& principal)> handle) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  CallTracker::Scope call(ctx.calls);
  if (!call.ok()) {
    reactor->Finish(ShuttingDown());
    return reactor;
  }
  absl::StatusOr<std::string> principal = Principal(ctx, *context, request);
  reactor->Finish(ToGrpcStatus(principal.ok() ? handle(*principal) : principal.status()));
  return reactor;
}

}  // namespace tapeloop::server
