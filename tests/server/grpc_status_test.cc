// ToGrpcStatus (server/grpc_status.h): codes map one to one; messages are kept when short and
// valid, made valid UTF-8, and cut at a character boundary past kMaxStatusMessageBytes.
#include "server/grpc_status.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "common/utf8.h"

namespace tapeloop::server {
namespace {

TEST(ToGrpcStatus, CodesAndShortMessagesPassThrough) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  for (int code = 1; code <= 16; ++code) {
    const std::string msg = "field x: bad value " + std::to_string(code) + " \xC3\xA9";
    grpc::Status s = ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(code), msg));
    EXPECT_EQ(static_cast<int>(s.error_code()), code);
    EXPECT_EQ(s.error_message(), msg);
  }
}

TEST(ToGrpcStatus, InvalidUtf8IsReplaced) {
  grpc::Status s = ToGrpcStatus(absl::NotFoundError("session 'a\xFF\xFE' not found"));
  EXPECT_EQ(s.error_message(), "session 'a\xEF\xBF\xBD\xEF\xBF\xBD' not found");
}

TEST(ToGrpcStatus, LongMessagesAreCutAtACharacterBoundary) {
  std::mt19937 rng(7);
  const std::string pieces[] = {"a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
  for (int trial = 0; trial < 200; ++trial) {
    std::string value;
    const size_t target = 900 + rng() % 20000;
    while (value.size() < target) value += pieces[rng() % 4];
    const std::string msg = "task: unknown task \"" + value + "\"";
    grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError(msg));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    const std::string& out = s.error_message();
    EXPECT_TRUE(IsValidUtf8(out));
    EXPECT_LE(out.size(), kMaxStatusMessageBytes);
    if (msg.size() <= kMaxStatusMessageBytes) {
      EXPECT_EQ(out, msg);
      continue;
    }
    // A prefix of the original, then how much was cut.
    const size_t kept = out.find("... [");
    ASSERT_NE(kept, std::string::npos);
    EXPECT_EQ(out.substr(0, kept), msg.substr(0, kept));
    EXPECT_GT(kept, kMaxStatusMessageBytes - 60);
    EXPECT_EQ(out.substr(kept), "... [" + std::to_string(msg.size() - kept) + " more bytes]");
  }
}

}  // namespace
}  // namespace tapeloop::server
