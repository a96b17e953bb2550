// Lenient decoding of tapeloop.v1 requests, so that every malformed request reaches its handler
// and is answered INVALID_ARGUMENT with a message naming what was wrong.
//
// Why: protobuf refuses to parse a proto3 `string` field that is not UTF-8, and gRPC 1.51's
// callback API answers any request that fails to parse with UNIMPLEMENTED and an empty message,
// before a handler runs: a client could not tell a bad session id from a missing service.
//
// How: this header gives gRPC's SerializationTraits an explicit specialization for every
// tapeloop.v1 request type. Its Deserialize never fails on the wire bytes themselves:
//   - bytes that parse are decoded exactly as gRPC would;
//   - invalid UTF-8 in a `string` field (at any depth) is replaced by U+FFFD and the request is
//     decoded, marked with "FIELD.PATH: invalid UTF-8 at byte N";
//   - bytes that are not a valid message at all decode to an empty request, marked with
//     "request: not a valid tapeloop.v1.X message".
// The mark travels in the request's unknown fields (field number kDecodeErrorField); a handler
// reads it with DecodeError() before it looks at anything else (server::Principal does).
//
// Contract: every translation unit that can instantiate SerializationTraits for these types
// must see this header first, or two different definitions of the same specialization would be
// linked. proto/CMakeLists.txt force-includes it (-include) into every C++ source that links
// tapeloop_proto. The message types are only declared here, so the header needs no generated
// code.
#ifndef TAPELOOP_PROTO_REQUEST_DECODING_H_
#define TAPELOOP_PROTO_REQUEST_DECODING_H_

#include <grpcpp/impl/codegen/proto_utils.h>

#include <string>

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace tapeloop::v1 {

// Unknown-field number of the decode mark: the largest legal field number, which no .proto of
// ours uses.
inline constexpr int kDecodeErrorField = 536870911;

// Parses `buffer` into `msg` as described above; clears the buffer. Fails (INTERNAL) only when
// there is no payload or gRPC cannot read it, as gRPC's own Deserialize does.
grpc::Status DecodeRequest(grpc::ByteBuffer* buffer, grpc::protobuf::MessageLite* msg);

// The mark DecodeRequest left on `msg` ("" when it decoded cleanly).
std::string DecodeError(const google::protobuf::Message& msg);

}  // namespace tapeloop::v1

#define TAPELOOP_LENIENT_REQUEST(Type)                                                            \
  namespace tapeloop::v1 {                                                                        \
  class Type;                                                                                     \
  }                                                                                               \
  namespace grpc {                                                                                \
  template <>                                                                                     \
  class SerializationTraits<tapeloop::v1::Type, void> {                                           \
   public:                                                                                        \
    static Status Serialize(const protobuf::MessageLite& msg, ByteBuffer* bb, bool* own_buffer) { \
      return GenericSerialize<ProtoBufferWriter, tapeloop::v1::Type>(msg, bb, own_buffer);        \
    }                                                                                             \
    static Status Deserialize(ByteBuffer* buffer, protobuf::MessageLite* msg) {                   \
      return tapeloop::v1::DecodeRequest(buffer, msg);                                            \
    }                                                                                             \
  };                                                                                              \
  }  // namespace grpc

// Every request type of every tapeloop.v1 service (tests/server/handler_fuzz_test.cc checks that
// each method answers an unparseable request INVALID_ARGUMENT, so a missing line shows there).
TAPELOOP_LENIENT_REQUEST(AppendRequest)
TAPELOOP_LENIENT_REQUEST(CancelEvaluationRequest)
TAPELOOP_LENIENT_REQUEST(CloseDebugSessionRequest)
TAPELOOP_LENIENT_REQUEST(CloseSessionRequest)
TAPELOOP_LENIENT_REQUEST(CreateSessionRequest)
TAPELOOP_LENIENT_REQUEST(DebugCommandRequest)
TAPELOOP_LENIENT_REQUEST(DebugFilesRequest)
TAPELOOP_LENIENT_REQUEST(EnvCloseRequest)
TAPELOOP_LENIENT_REQUEST(EnvResetRequest)
TAPELOOP_LENIENT_REQUEST(EnvStepRequest)
TAPELOOP_LENIENT_REQUEST(ForkRequest)
TAPELOOP_LENIENT_REQUEST(GenerateRequest)
TAPELOOP_LENIENT_REQUEST(GetEngineStatsRequest)
TAPELOOP_LENIENT_REQUEST(GetEpisodeRequest)
TAPELOOP_LENIENT_REQUEST(GetEvaluationRequest)
TAPELOOP_LENIENT_REQUEST(GetServerInfoRequest)
TAPELOOP_LENIENT_REQUEST(GetSessionRequest)
TAPELOOP_LENIENT_REQUEST(ListEnvToolsRequest)
TAPELOOP_LENIENT_REQUEST(ListEpisodesRequest)
TAPELOOP_LENIENT_REQUEST(ListEvaluationsRequest)
TAPELOOP_LENIENT_REQUEST(ListModelsRequest)
TAPELOOP_LENIENT_REQUEST(ListSessionsRequest)
TAPELOOP_LENIENT_REQUEST(LoadModelRequest)
TAPELOOP_LENIENT_REQUEST(OpenDebugSessionRequest)
TAPELOOP_LENIENT_REQUEST(RestoreRequest)
TAPELOOP_LENIENT_REQUEST(RunEpisodeRequest)
TAPELOOP_LENIENT_REQUEST(SnapshotRequest)
TAPELOOP_LENIENT_REQUEST(StartEvaluationRequest)
TAPELOOP_LENIENT_REQUEST(UnloadModelRequest)

#undef TAPELOOP_LENIENT_REQUEST

#endif  // TAPELOOP_PROTO_REQUEST_DECODING_H_
