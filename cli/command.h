// Subcommands of the `tapeloop` binary. Each cli/cmd_*.cc registers one with
// TAPELOOP_REGISTER_COMMAND; main() dispatches on argv[1].
#ifndef TAPELOOP_CLI_COMMAND_H_
#define TAPELOOP_CLI_COMMAND_H_

#include <map>
#include <string>

namespace tapeloop::cli {

// Runs the subcommand; argv[0] is the subcommand's name. Returns the process exit code:
// 0 success, 1 failure at run time, 2 bad usage or bad input.
using CommandFn = int (*)(int argc, char** argv);

struct Command {
  std::string summary;
  CommandFn run;
};

std::map<std::string, Command>& Commands();

struct Registrar {
  Registrar(const char* name, const char* summary, CommandFn run) {
    Commands()[name] = Command{summary, run};
  }
};

}  // namespace tapeloop::cli

#define TAPELOOP_REGISTER_COMMAND(name, summary, fn) \
  static ::tapeloop::cli::Registrar tapeloop_command_registrar_(name, summary, fn)

#endif  // TAPELOOP_CLI_COMMAND_H_
