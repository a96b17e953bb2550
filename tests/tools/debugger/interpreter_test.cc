#include "tools/debugger/interpreter.h"

#include <gtest/gtest.h>

namespace tapeloop::debugger {
namespace {

TEST(InterpreterTest, RunsImportsAndPrints) {
  FileMap files = {
      {"main.py", "from f0 import f0\n\ndef main(v0, v1=3):\n    v2 = v0 + v1\n    print(v2)\n"
                  "    f0(v2)\n\nmain(1)\n"},
      {"f0.py", "def f0(v3):\n    print(v3, v10)\n"}};
  RunResult r = RunProgram(files, "main.py");
  EXPECT_EQ(r.output, "4\n");
  EXPECT_EQ(r.outcome, Outcome::kException);
  EXPECT_EQ(r.error_text,
            "Traceback (most recent call last):\n"
            "  File \"main.py\", line 8, in <module>\n"
            "    main(1)\n"
            "  File \"main.py\", line 6, in main\n"
            "    f0(v2)\n"
            "  File \"f0.py\", line 2, in f0\n"
            "    print(v3, v10)\n"
            "              ^^^\n"
            "NameError: name 'v10' is not defined\n");
}

}  // namespace
}  // namespace tapeloop::debugger
