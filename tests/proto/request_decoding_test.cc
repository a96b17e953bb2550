// proto/request_decoding.h: tapeloop.v1 requests decoded through gRPC's SerializationTraits (the
// path the server's handlers get them by). Clean bytes decode as protobuf decodes them; invalid
// UTF-8 in a string field at any depth decodes with a mark naming the field path and offset;
// bytes that are no message decode to an empty, marked request; a mark the client sent itself
// is dropped. Random inputs: the decoder never fails, and agrees with protobuf whenever protobuf
// accepts the bytes.
#include "proto/request_decoding.h"

#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/support/byte_buffer.h>
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "tapeloop/v1/agent.pb.h"
#include "tapeloop/v1/debug.pb.h"
#include "tapeloop/v1/engine.pb.h"
#include "tapeloop/v1/environment.pb.h"

namespace tapeloop::v1 {
namespace {

// Decodes `bytes` as a T the way the server does.
template <class T>
T Decode(const std::string& bytes) {
  grpc::Slice slice(bytes);
  grpc::ByteBuffer buffer(&slice, 1);
  T msg;
  grpc::Status status = grpc::SerializationTraits<T>::Deserialize(&buffer, &msg);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return msg;
}

const std::string kBad = "ok\xff\xfe";  // invalid from byte 2

class RequestDecodingTest : public ::testing::Test {
  google::protobuf::LogSilencer quiet_;  // the client side logs each invalid string it writes
};

TEST_F(RequestDecodingTest, CleanRequestDecodesUnmarked) {
  AppendRequest in;
  in.set_session_id("ses_0123abcd");
  for (int id : {7, 0, 284, 3}) in.mutable_tokens()->add_ids(id);
  const AppendRequest out = Decode<AppendRequest>(in.SerializeAsString());
  EXPECT_EQ(out.SerializeAsString(), in.SerializeAsString());
  EXPECT_EQ(DecodeError(out), "");
}

TEST_F(RequestDecodingTest, InvalidUtf8IsMarkedWithTheFieldPath) {
  {
    AppendRequest in;
    in.set_session_id("ses_" + kBad);
    in.mutable_tokens()->add_ids(5);
    in.mutable_tokens()->add_ids(9);
    const AppendRequest out = Decode<AppendRequest>(in.SerializePartialAsString());
    EXPECT_EQ(DecodeError(out), "session_id: invalid UTF-8 at byte 6");
    // The rest of the request is intact; the bad bytes became U+FFFD.
    ASSERT_EQ(out.tokens().ids_size(), 2);
    EXPECT_EQ(out.tokens().ids(1), 9);
    EXPECT_EQ(out.session_id(), "ses_ok\xEF\xBF\xBD\xEF\xBF\xBD");
  }
  {
    EnvStepRequest in;
    in.set_env_id("env_1");
    in.mutable_call()->set_id("c1");
    in.mutable_call()->set_name("pointer_memory");
    in.mutable_call()->set_arguments_json(R"({"op":")" + kBad + "\"}");
    const EnvStepRequest out = Decode<EnvStepRequest>(in.SerializePartialAsString());
    EXPECT_EQ(DecodeError(out), "call.arguments_json: invalid UTF-8 at byte 9");
    EXPECT_EQ(out.env_id(), "env_1");
    EXPECT_EQ(out.call().name(), "pointer_memory");
  }
  {
    OpenDebugSessionRequest in;
    (*in.mutable_program()->mutable_files())["main.py"] = "print(1)\n";
    (*in.mutable_program()->mutable_files())[kBad + ".py"] = "x = 1\n";
    const OpenDebugSessionRequest out =
        Decode<OpenDebugSessionRequest>(in.SerializePartialAsString());
    EXPECT_EQ(DecodeError(out), "program.files.key: invalid UTF-8 at byte 2");
    EXPECT_EQ(out.program().files().size(), 2u);
  }
  {  // the first bad field is named, the later ones repaired too
    EnvResetRequest in;
    in.set_task("addition" + kBad);
    in.set_mode(kBad);
    const EnvResetRequest out = Decode<EnvResetRequest>(in.SerializePartialAsString());
    EXPECT_EQ(DecodeError(out), "task: invalid UTF-8 at byte 10");
    EXPECT_EQ(out.mode(), "ok\xEF\xBF\xBD\xEF\xBF\xBD");
  }
}

TEST_F(RequestDecodingTest, BytesThatAreNoMessageDecodeEmptyAndMarked) {
  AppendRequest valid;
  valid.set_session_id("ses_0123abcd");
  valid.mutable_tokens()->add_ids(11);
  const std::string bytes = valid.SerializeAsString();
  for (const std::string& broken :
       {bytes.substr(0, bytes.size() - 1),
        std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11), std::string("\x0a\x7f", 2),
        std::string("\x00\x01", 2), std::string("\x0b", 1)}) {
    const AppendRequest out = Decode<AppendRequest>(broken);
    EXPECT_EQ(DecodeError(out), "request: not a valid tapeloop.v1.AppendRequest message");
    EXPECT_EQ(out.session_id(), "");
    EXPECT_FALSE(out.has_tokens());
  }
}

TEST_F(RequestDecodingTest, MarkSentByTheClientIsDropped) {
  GetSessionRequest in;
  in.set_session_id("ses_1");
  in.GetReflection()->MutableUnknownFields(&in)->AddLengthDelimited(kDecodeErrorField, "forged");
  const GetSessionRequest out = Decode<GetSessionRequest>(in.SerializeAsString());
  EXPECT_EQ(DecodeError(out), "");
  EXPECT_EQ(out.session_id(), "ses_1");
}

TEST_F(RequestDecodingTest, RandomBytesNeverFailAndAgreeWithProtobuf) {
  std::mt19937 rng(20261129);
  RunEpisodeRequest seed_msg;
  seed_msg.set_task("addition");
  seed_msg.set_mode("pointer");
  seed_msg.set_length(12);
  seed_msg.set_seed(77);
  const std::string seed = seed_msg.SerializeAsString();
  int clean = 0, utf8 = 0, malformed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string bytes = seed;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      bytes[rng() % bytes.size()] = static_cast<char>(rng() % 256);
    }
    RunEpisodeRequest reference;
    const bool parses = reference.ParseFromString(bytes);
    const RunEpisodeRequest out = Decode<RunEpisodeRequest>(bytes);
    const std::string error = DecodeError(out);
    if (parses) {
      ++clean;
      EXPECT_EQ(error, "");
      EXPECT_EQ(out.task(), reference.task());
      EXPECT_EQ(out.length(), reference.length());
    } else if (error.find("invalid UTF-8") != std::string::npos) {
      ++utf8;
      EXPECT_EQ(error.find("request:"), std::string::npos);
    } else {
      ++malformed;
      EXPECT_EQ(error, "request: not a valid tapeloop.v1.RunEpisodeRequest message");
    }
  }
  // All three outcomes were exercised.
  EXPECT_GT(clean, 100);
  EXPECT_GT(utf8, 100);
  EXPECT_GT(malformed, 100);
}

}  // namespace
}  // namespace tapeloop::v1
