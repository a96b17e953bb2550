#include "tools/pointer_memory.h"

#include <gtest/gtest.h>

#include <random>

#include "tools/registry.h"

namespace tapeloop::tools {
namespace {

using tokens::PointerCommand;
using tokens::PointerOp;

TokenId Cmd(int k, PointerOp op) { return PointerCommand(k, op); }

std::vector<TokenId> Ids(const std::string& s) { return Tokenizer().Encode(s); }

TEST(PointerMemoryTest, ReadsMovesAndEnds) {
  PointerMemory mem(Ids("12+3="));
  ASSERT_TRUE(mem.Command(Cmd(1, PointerOp::kNew)).ok());
  EXPECT_EQ(*mem.position(1), 0);
  EXPECT_EQ(**mem.Command(Cmd(1, PointerOp::kRead)), '1');
  EXPECT_EQ(*mem.Command(Cmd(1, PointerOp::kRight)), std::nullopt);
  EXPECT_EQ(**mem.Command(Cmd(1, PointerOp::kRead)), '2');
  ASSERT_TRUE(mem.Command(Cmd(1, PointerOp::kLeft)).ok());
  ASSERT_TRUE(mem.Command(Cmd(1, PointerOp::kLeft)).ok());
  EXPECT_EQ(*mem.position(1), -1);
  EXPECT_EQ(**mem.Command(Cmd(1, PointerOp::kRead)), tokens::kEnd);
  auto past = mem.Command(Cmd(1, PointerOp::kLeft));
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(past.status().message().find("pointer 1 cannot move left"), std::string::npos);
  EXPECT_EQ(*mem.position(1), -1);  // unchanged
  // Right end: position 5 == size is allowed (reads [END]), 6 is not.
  ASSERT_TRUE(mem.Command(Cmd(2, PointerOp::kNew)).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(mem.Command(Cmd(2, PointerOp::kRight)).ok());
  EXPECT_EQ(**mem.Command(Cmd(2, PointerOp::kRead)), tokens::kEnd);
  EXPECT_FALSE(mem.Command(Cmd(2, PointerOp::kRight)).ok());
  // A thought appended makes the cell under pointer 2 real.
  ASSERT_TRUE(mem.Emit('7').ok());
  EXPECT_EQ(**mem.Command(Cmd(2, PointerOp::kRead)), '7');
  EXPECT_EQ(mem.memory().size(), 6u);
}

TEST(PointerMemoryTest, CommandsAndObservationsAreNotStored) {
  PointerMemory mem(Ids("9="));
  ASSERT_TRUE(mem.Command(Cmd(3, PointerOp::kNew)).ok());
  ASSERT_TRUE(mem.Command(Cmd(3, PointerOp::kRead)).ok());
  EXPECT_EQ(mem.memory(), Ids("9="));
  ASSERT_TRUE(mem.Emit(tokens::kAns).ok());
  EXPECT_EQ(mem.memory().back(), tokens::kAns);
  EXPECT_FALSE(mem.Emit(Cmd(1, PointerOp::kRead)).ok());
  EXPECT_FALSE(mem.Emit(9999).ok());
}

TEST(PointerMemoryTest, UnknownAndUncreatedPointers) {
  PointerMemory two(Ids("1+1="), PointerMemoryOptions{.max_pointers = 2});
  auto r = two.Command(Cmd(3, PointerOp::kNew));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("unknown pointer 3"), std::string::npos);
  auto uncreated = two.Command(Cmd(2, PointerOp::kRead));
  EXPECT_EQ(uncreated.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(uncreated.status().message().find("never created"), std::string::npos);
  EXPECT_FALSE(two.Command('5').ok());  // not a command
}

TEST(PointerMemoryTest, WriteOverwritesTheCell) {
  PointerMemory mem(Ids("abc"));
  ASSERT_TRUE(mem.Command(Cmd(4, PointerOp::kNew)).ok());
  ASSERT_TRUE(mem.Command(Cmd(4, PointerOp::kRight)).ok());
  ASSERT_TRUE(mem.Command(Cmd(4, PointerOp::kWrite)).ok());
  EXPECT_TRUE(mem.write_pending());
  EXPECT_EQ(mem.Command(Cmd(4, PointerOp::kRead)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(mem.Emit('X').ok());
  EXPECT_EQ(mem.memory(), Ids("aXc"));
  EXPECT_EQ(**mem.Command(Cmd(4, PointerOp::kRead)), 'X');
  // Past the end there is nothing to write over.
  ASSERT_TRUE(mem.Command(Cmd(1, PointerOp::kNew)).ok());
  ASSERT_TRUE(mem.Command(Cmd(1, PointerOp::kLeft)).ok());
  EXPECT_EQ(mem.Command(Cmd(1, PointerOp::kWrite)).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(PointerMemoryTest, BoundedMemoryAndCommands) {
  PointerMemory mem(Ids("12"), PointerMemoryOptions{.max_memory_tokens = 4, .max_commands = 3});
  EXPECT_TRUE(mem.Emit('a').ok());
  EXPECT_TRUE(mem.Emit('b').ok());
  EXPECT_EQ(mem.Emit('c').code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(mem.Command(Cmd(1, PointerOp::kNew)).ok());
  ASSERT_TRUE(mem.Command(Cmd(1, PointerOp::kRead)).ok());
  ASSERT_TRUE(mem.Command(Cmd(1, PointerOp::kRead)).ok());
  EXPECT_EQ(mem.Command(Cmd(1, PointerOp::kRead)).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// A random walk of valid commands agrees with a plain model of the semantics.
TEST(PointerMemoryTest, RandomWalkMatchesModel) {
  std::mt19937 rng(11);
  std::vector<TokenId> input;
  for (int i = 0; i < 50; ++i) input.push_back('0' + rng() % 10);
  PointerMemory mem(input);
  std::vector<TokenId> model = input;
  int64_t pos[5] = {0, 0, 0, 0, 0};
  for (int k = 1; k <= 4; ++k) ASSERT_TRUE(mem.Command(Cmd(k, PointerOp::kNew)).ok());
  for (int step = 0; step < 20000; ++step) {
    int k = 1 + rng() % 4;
    int what = rng() % 4;
    if (what == 0) {
      auto r = mem.Command(Cmd(k, PointerOp::kLeft));
      EXPECT_EQ(r.ok(), pos[k] - 1 >= -1);
      if (r.ok()) --pos[k];
    } else if (what == 1) {
      auto r = mem.Command(Cmd(k, PointerOp::kRight));
      EXPECT_EQ(r.ok(), pos[k] + 1 <= static_cast<int64_t>(model.size()));
      if (r.ok()) ++pos[k];
    } else if (what == 2) {
      TokenId want = pos[k] < 0 || pos[k] >= static_cast<int64_t>(model.size())
                         ? tokens::kEnd
                         : model[pos[k]];
      EXPECT_EQ(**mem.Command(Cmd(k, PointerOp::kRead)), want);
    } else {
      TokenId t = 'a' + rng() % 26;
      ASSERT_TRUE(mem.Emit(t).ok());
      model.push_back(t);
    }
  }
  EXPECT_EQ(mem.memory(), model);
}

TEST(PointerMemoryToolTest, JsonCalls) {
  ToolRegistry registry;
  ASSERT_TRUE(registry.Register(std::make_unique<PointerMemoryTool>(Ids("42+1="))).ok());
  auto call = [&](nlohmann::json args) {
    return registry.Call(ToolCall{"id7", "pointer_memory", std::move(args)});
  };
  EXPECT_FALSE(call({{"op", "new"}, {"pointer", 2}}).is_error);
  auto read = call({{"op", "read"}, {"pointer", 2}});
  EXPECT_FALSE(read.is_error);
  EXPECT_EQ(read.call_id, "id7");
  EXPECT_EQ(read.text, "4");
  EXPECT_EQ((*read.structured)["token"], '4');
  EXPECT_FALSE(call({{"op", "append"}, {"text", "3[ANS]"}}).is_error);
  auto* tool = static_cast<PointerMemoryTool*>(registry.Find("pointer_memory"));
  EXPECT_EQ(tool->memory().memory(), Ids("42+1=3[ANS]"));
  EXPECT_FALSE(call({{"op", "write"}, {"pointer", 2}, {"text", "7"}}).is_error);
  EXPECT_EQ(call({{"op", "read"}, {"pointer", 2}}).text, "7");
  // Bad calls are error results.
  auto left = call({{"op", "left"}, {"pointer", 2}});
  EXPECT_FALSE(left.is_error);
  auto past = call({{"op", "left"}, {"pointer", 2}});
  EXPECT_TRUE(past.is_error);
  EXPECT_NE(past.text.find("cannot move left"), std::string::npos) << past.text;
  EXPECT_TRUE(call({{"op", "read"}, {"pointer", 3}}).is_error);   // never created
  EXPECT_TRUE(call({{"op", "read"}, {"pointer", 5}}).is_error);   // schema maximum
  EXPECT_TRUE(call({{"op", "read"}, {"pointer", -1}}).is_error);  // schema minimum
  EXPECT_TRUE(call({{"op", "read"}}).is_error);
  EXPECT_TRUE(call({{"op", "jump"}, {"pointer", 1}}).is_error);
  EXPECT_TRUE(call({{"op", "write"}, {"pointer", 2}, {"text", "77"}}).is_error);
  EXPECT_TRUE(call({{"op", "read"}, {"pointer", "1"}}).is_error);
}

}  // namespace
}  // namespace tapeloop::tools
