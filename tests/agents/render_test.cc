#include "agents/render.h"

#include <gtest/gtest.h>

#include "tasks/addition.h"

namespace tapeloop::agents {
namespace {

TEST(RenderTest, RolesAreToldApartWithoutColour) {
  const tasks::Task& task = **tasks::FindTask("addition");
  auto x = tasks::AdditionTask::Make("5", "7", 1);
  auto calc = *task.Expert(x, tasks::Mode::kCalculator);
  EXPECT_EQ(RenderTrajectory(calc, false),
            "[BOS]5+7=\n[CALL]add(5,7)[/CALL]{[OBS]12[/OBS]}[ANS]<12>[EOS]\n");
  auto pointer = *task.Expert(x, tasks::Mode::kPointer);
  std::string text = RenderTrajectory(pointer, false);
  EXPECT_EQ(text.rfind("[BOS]5+7=\n[P1.NEW][P2.NEW][P3.NEW][P1.READ]{5}[P1.RIGHT]", 0), 0u)
      << text;
  EXPECT_NE(text.find("[P3.READ]{1}<1>"), std::string::npos) << text;
  std::string coloured = RenderTrajectory(pointer, true);
  EXPECT_NE(coloured.find("\033[36m5\033[0m"), std::string::npos);  // observation in cyan
  EXPECT_EQ(text.find('\033'), std::string::npos);
}

TEST(RenderTest, NonPrintableBytesAreEscaped) {
  EXPECT_EQ(Printable('7'), "7");
  EXPECT_EQ(Printable(0x1b), "\\x1b");
  EXPECT_EQ(Printable(0xe9), "\\xe9");
  EXPECT_EQ(Printable('\n'), "\\n");
  EXPECT_EQ(Printable(tokens::kAns), "[ANS]");
}

}  // namespace
}  // namespace tapeloop::agents
