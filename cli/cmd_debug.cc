// tapeloop debug FILE_OR_DIR
// tapeloop debug --task code_debug --length N --seed S
// A terminal debugger (pdb-like commands, tools/debugger/debugger.h) over a Python program held
// in memory: FILE loads every *.py beside it and runs FILE; DIR loads its *.py and runs
// main.py; --task generates a code_debug instance (the v10 bug) and scores every run that
// finishes against the expected output. Reads commands from stdin (a terminal or a pipe);
// `!!` repeats the last command, `history` lists them, `quit` (or end of input) exits.
// Edits stay in memory; nothing on disk is changed.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "tasks/code_debug/code_debug.h"
#include "tools/debugger/debugger.h"

namespace tapeloop::cli {
namespace {

constexpr size_t kMaxFiles = 1000;
constexpr uintmax_t kMaxFileBytes = 1 << 20;

absl::Status LoadPrograms(const std::string& path, debugger::FileMap* files,
                          std::string* main_file) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p(path);
  fs::path dir;
  if (fs::is_directory(p, ec)) {
    dir = p;
    *main_file = "main.py";
  } else if (fs::is_regular_file(p, ec)) {
    dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
    *main_file = p.filename().string();
  } else {
    return absl::NotFoundError("no such file or directory: " + path);
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file() || entry.path().extension() != ".py") continue;
    if (files->size() >= kMaxFiles) {
      return absl::InvalidArgumentError(dir.string() + " has more than " +
                                        std::to_string(kMaxFiles) + " .py files");
    }
    if (entry.file_size() > kMaxFileBytes) {
      return absl::InvalidArgumentError(entry.path().string() + " is larger than 1 MiB");
    }
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    (*files)[entry.path().filename().string()] = text.str();
  }
  if (ec) return absl::InvalidArgumentError("cannot read " + dir.string() + ": " + ec.message());
  if (!files->count(*main_file)) {
    return absl::NotFoundError("no " + *main_file + " in " + dir.string());
  }
  return absl::OkStatus();
}

void PrintUsage(std::ostream& out) {
  out << "usage: tapeloop debug FILE_OR_DIR\n"
         "       tapeloop debug --task code_debug --length N [--seed S]\n"
         "  FILE          run FILE (every *.py beside it can be imported)\n"
         "  DIR           run DIR/main.py\n"
         "  --task        code_debug: a generated program with the v10 bug\n"
         "  --length      number of functions (files) of the generated program\n"
         "  --seed        generator seed (default 1)\n"
         "  --max-steps   instruction budget per run (default 2000000)\n"
         "commands: run, break FILE:LINE, clear, continue, step, next, where, up, down,\n"
         "  print EXPR, list, ls, view FILE [A-B], edit FILE A-B [TEXT] (without TEXT: type\n"
         "  the new lines, end with a line '.'), help, history, !!, !N, quit\n";
}

int RunDebug(int argc, char** argv) {
  Args args(argc, argv, {"help"});
  if (args.Bool("help")) {
    PrintUsage(std::cout);
    return 0;
  }
  std::string task = args.String("task", "");
  auto length = args.Int("length", 0);
  auto seed = args.Int("seed", 1);
  auto max_steps = args.Int("max-steps", 2'000'000);
  if (!length.ok()) return Fail("debug", length.status(), 2);
  if (!seed.ok()) return Fail("debug", seed.status(), 2);
  if (!max_steps.ok()) return Fail("debug", max_steps.status(), 2);
  if (auto status = args.Finish(); !status.ok()) return Fail("debug", status, 2);
  if (*max_steps < 1) {
    return Fail("debug", absl::InvalidArgumentError("--max-steps must be >= 1"), 2);
  }

  debugger::FileMap files;
  debugger::SessionOptions options;
  options.limits.max_steps = *max_steps;
  std::optional<tasks::code_debug::CodeDebugInstance> instance;
  if (!task.empty()) {
    if (task != tasks::code_debug::kTaskName) {
      return Fail("debug", absl::InvalidArgumentError("unknown --task '" + task +
                                                      "' (known: code_debug)"),
                  2);
    }
    if (!args.positional().empty()) {
      return Fail("debug", absl::InvalidArgumentError("give either a program or --task"), 2);
    }
    if (*length == 0) {
      return Fail("debug", absl::InvalidArgumentError("--task code_debug needs --length N"), 2);
    }
    auto x = tasks::code_debug::GenerateCodeDebug(static_cast<int>(*length),
                                                  static_cast<uint64_t>(*seed));
    if (!x.ok()) return Fail("debug", x.status(), 2);
    instance = std::move(*x);
    files = instance->buggy;
  } else {
    if (args.positional().size() != 1) {
      PrintUsage(std::cerr);
      return 2;
    }
    auto status = LoadPrograms(args.positional()[0], &files, &options.main_file);
    if (!status.ok()) return Fail("debug", status, 2);
  }

  debugger::DebugSession session(files, options);
  bool tty = isatty(0);
  std::cout << "tapeloop debug: " << files.size() << " file" << (files.size() == 1 ? "" : "s")
            << ", running " << options.main_file << ". `help` lists the commands.\n";
  if (instance) {
    std::cout << "task code_debug (n=" << instance->n << ", seed=" << instance->seed
              << "): " << instance->prompt;
  }
  std::vector<std::string> history;
  std::string line;
  while (true) {
    std::cout << "(tdb) " << std::flush;
    if (!std::getline(std::cin, line)) {
      if (tty) std::cout << "\n";
      break;
    }
    if (!tty) std::cout << line << "\n";  // echo piped commands so transcripts read well
    std::string command = line;
    while (!command.empty() && (command.back() == '\r' || command.back() == ' '))
      command.pop_back();
    if (command.empty()) continue;
    if (command == "!!" || (command.size() > 1 && command[0] == '!')) {
      size_t index = history.size();
      if (command != "!!") {
        char* end = nullptr;
        long n = std::strtol(command.c_str() + 1, &end, 10);
        if (*end != '\0' || n < 1 || static_cast<size_t>(n) > history.size()) {
          std::cout << "*** no command " << command << " in history\n";
          continue;
        }
        index = static_cast<size_t>(n);
      }
      if (history.empty()) {
        std::cout << "*** history is empty\n";
        continue;
      }
      command = history[index - 1];
      std::cout << command << "\n";
    }
    if (command == "quit" || command == "q" || command == "exit") break;
    if (command == "history") {
      for (size_t i = 0; i < history.size(); ++i) {
        std::cout << "  " << i + 1 << "  " << history[i] << "\n";
      }
      continue;
    }
    // `edit FILE A-B` without TEXT: read the new lines until ".".
    {
      std::istringstream words(command);
      std::string w0, w1, w2, w3;
      words >> w0 >> w1 >> w2;
      std::getline(words, w3);
      if (w0 == "edit" && !w2.empty() && w3.empty()) {
        std::string text, more;
        bool first = true;
        while (std::getline(std::cin, more) && more != ".") {
          if (!tty) std::cout << more << "\n";
          text += (first ? "" : "\n") + more;
          first = false;
        }
        command = "edit " + w1 + " " + w2 + (text.empty() ? "" : "\n" + text);
      }
    }
    history.push_back(command);
    debugger::Observation o = session.Execute(command);
    std::cout << o.text;
    if (!o.text.empty() && o.text.back() != '\n') std::cout << "\n";
    if (instance && o.data.value("state", "") == "finished" &&
        o.data.value("outcome", "") == "ok") {
      auto score = tasks::code_debug::ScoreCodeDebug(*instance, session.files());
      std::cout << (score.passed ? "[task] PASS: the program runs and prints the expected output\n"
                                 : "[task] FAIL: the program runs but its output differs from "
                                   "the expected output\n");
    }
  }
  std::cout << std::flush;
  return 0;
}

}  // namespace

TAPELOOP_REGISTER_COMMAND("debug", "debug a Python program or a code_debug task (pdb-like)",
                          RunDebug);

}  // namespace tapeloop::cli
