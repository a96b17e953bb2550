#include "common/utf8.h"

#include <gtest/gtest.h>

#include <random>

namespace tapeloop {
namespace {

TEST(Utf8, AcceptsWellFormedAndFindsTheFirstBadByte) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii 123+45="));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));  // é € 😀
  EXPECT_EQ(InvalidUtf8At("ab\xFF"), 2u);
  EXPECT_EQ(InvalidUtf8At("ab\xC3"), 2u);            // truncated
  EXPECT_EQ(InvalidUtf8At("x\xC0\xAF"), 1u);         // overlong '/'
  EXPECT_EQ(InvalidUtf8At("\xED\xA0\x80"), 0u);      // surrogate U+D800
  EXPECT_EQ(InvalidUtf8At("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(InvalidUtf8At("\xE2\x82"), 0u);          // cut in the middle
}

TEST(Utf8, SanitizeReplacesOnlyBadBytesAndAlwaysGivesValidText) {
  EXPECT_EQ(SanitizeUtf8("a\xFF"
                         "b\xC3\xA9"),
            "a\xEF\xBF\xBD"
            "b\xC3\xA9");
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s(rng() % 24, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    std::string clean = SanitizeUtf8(s);
    ASSERT_TRUE(IsValidUtf8(clean)) << trial;
    if (IsValidUtf8(s)) {
      ASSERT_EQ(clean, s);
    }
  }
}

}  // namespace
}  // namespace tapeloop
