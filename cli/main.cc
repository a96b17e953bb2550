// The `tapeloop` binary: dispatches argv[1] to a registered subcommand (cli/command.h).
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "cli/command.h"
#include "common/version.h"
#include "engine/kernels/linear.h"

namespace tapeloop::cli {

std::map<std::string, Command>& Commands() {
  static auto* commands = new std::map<std::string, Command>();
  return *commands;
}

namespace {

void Usage(std::ostream& out) {
  out << "tapeloop " << Version() << ": an execution environment for tool-using agents on\n"
      << "recurrent and hybrid language models.\n\nusage: tapeloop COMMAND [FLAGS]\n\ncommands:\n";
  for (const auto& [name, command] : Commands()) {
    out << "  " << name << std::string(name.size() < 10 ? 10 - name.size() : 1, ' ')
        << command.summary << "\n";
  }
  out << "\n`tapeloop COMMAND --help` describes a command's flags.\n";
}

}  // namespace
}  // namespace tapeloop::cli

int main(int argc, char** argv) {
  using tapeloop::cli::Commands;
  if (argc < 2) {
    tapeloop::cli::Usage(std::cerr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    tapeloop::cli::Usage(std::cout);
    return 0;
  }
  if (name == "--version" || name == "version") {
    std::cout << "tapeloop " << tapeloop::Version() << std::endl;
    return 0;
  }
  // Every subcommand runs matrix products; give OpenBLAS its fast kernels on CPUs it does not
  // recognise (see engine/kernels/linear.h). The process is re-executed once, unchanged.
  if (const char* core = tapeloop::engine::FasterBlasCoreType()) {
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv);
  }
  auto it = Commands().find(name);
  if (it == Commands().end()) {
    std::cerr << "tapeloop: unknown command '" << name << "'\n\n";
    tapeloop::cli::Usage(std::cerr);
    return 2;
  }
  return it->second.run(argc - 1, argv + 1);
}
