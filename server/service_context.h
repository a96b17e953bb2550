// What every tapeloop.v1 service is built over: the caller check, the call tracker used for
// draining, the database file, the model registry and the server's limits.
//
// Services open their own store::Database connection(s) on db_path (WAL mode lets several
// connections of one process share the file; a connection is used by one thread at a time).
// Everything pointed to is owned by the Server and outlives its services.
#ifndef TAPELOOP_SERVER_SERVICE_CONTEXT_H_
#define TAPELOOP_SERVER_SERVICE_CONTEXT_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/auth.h"
#include "server/call_tracker.h"
#include "server/model_registry.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace grpc {
class CallbackServerContext;
class ServerContextBase;
class ServerUnaryReactor;
class Status;
}  // namespace grpc

namespace tapeloop::server {

struct ServiceLimits {
  int64_t max_message_bytes = 8 << 20;        // gRPC receive limit (RESOURCE_EXHAUSTED above)
  int64_t max_tokens_per_append = 1 << 16;    // tokens in one Append
  int64_t max_tokens_per_generate = 1 << 14;  // max_tokens of one Generate
  int max_sessions_per_principal = 1024;      // open engine sessions
  int64_t max_tokens_in_flight_per_principal = 1 << 20;  // generation budget being worked on
  int max_episode_length = 100000;                 // task length of one agent / environment episode
  int max_environments_per_principal = 256;        // open environments and debug sessions, each
  std::chrono::seconds default_idle_timeout{600};  // sessions idle longer are evicted
  std::chrono::seconds max_idle_timeout{86400};
};

struct ServiceContext {
  const ApiKeys* keys = nullptr;
  CallTracker* calls = nullptr;
  std::string db_path;
  ModelRegistry* models = nullptr;
  ServiceLimits limits;
};

// 128 random bits (getrandom) as 32 lower-case hex characters, prefixed, e.g. "ses_3f9a...".
// Unguessable: ids are the only thing that names a session, and they are never sequential.
std::string NewId(const char* prefix);

// The principal of a caller sending `request`: the caller's authentication error first (see
// ApiKeys::Authenticate), then INVALID_ARGUMENT when the request did not decode cleanly (invalid
// UTF-8 in a string field, or not a message at all; the message names the field: see
// proto/request_decoding.h). Every handler calls this before it reads the request. Draining is
// not checked here: hold a CallTracker::Scope for the call and answer UNAVAILABLE when it is
// not ok().
absl::StatusOr<std::string> Principal(const ServiceContext& ctx,
                                      const grpc::ServerContextBase& context,
                                      const google::protobuf::Message& request);

// A List call's page: `page_size` (0: 100, else 1..1000) rows from `offset`, the position
// encoded in the previous response's next_page_token (empty: 0). INVALID_ARGUMENT naming
// page_size or page_token otherwise.
struct Page {
  int size = 100;
  int64_t offset = 0;
};
absl::StatusOr<Page> ParsePage(int32_t page_size, const std::string& page_token);

// UNAVAILABLE "server is shutting down": the answer to a call that arrives while the server
// drains (CallTracker refused it).
grpc::Status ShuttingDown();

// Answers a unary call on the calling thread, the shared prologue of the synchronous handlers:
// UNAVAILABLE (ShuttingDown) when the server drains; else the caller's authentication or
// request decoding error (Principal); else handle(principal), its Status mapped by ToGrpcStatus
// (the response is what handle filled in). The call counts in ctx.calls until the reactor is
// finished. Returns context->DefaultReactor(), already finished, for the handler to return. Work
// that outlives the handler (a job on a pool) cannot use this: it must enter the CallTracker
// itself.
grpc::ServerUnaryReactor* AnswerUnary(
    const ServiceContext& ctx, grpc::CallbackServerContext* context,
    const google::protobuf::Message& request,
    absl::FunctionRef<absl::Status(const std::string& principal)> handle);

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_SERVICE_CONTEXT_H_
