#include "common/status_macros.h"

#include <gtest/gtest.h>

namespace tapeloop {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckQuarter(int x, int* out) {
  ASSIGN_OR_RETURN(*out, Quarter(x));
  RETURN_IF_ERROR(*out > 100 ? absl::OutOfRangeError("big") : absl::OkStatus());
  return absl::OkStatus();
}

TEST(StatusMacros, PropagatesValuesAndErrors) {
  EXPECT_EQ(*Quarter(12), 3);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  int out = 0;
  EXPECT_TRUE(CheckQuarter(40, &out).ok());
  EXPECT_EQ(out, 10);
  EXPECT_EQ(CheckQuarter(800, &out).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(CheckQuarter(7, &out).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tapeloop
