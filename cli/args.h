// A small flag parser for one subcommand: `--name value`, `--name=value`, boolean `--name`,
// and positional arguments. Each subcommand declares what it reads; Finish() rejects anything
// else, so a typo is an error rather than silently ignored.
#ifndef TAPELOOP_CLI_ARGS_H_
#define TAPELOOP_CLI_ARGS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tapeloop::cli {

class Args {
 public:
  // argv[0] is the subcommand name and is skipped. `bool_flags` take no value.
  Args(int argc, char** argv, std::set<std::string> bool_flags = {});

  std::optional<std::string> Get(const std::string& name);
  std::string String(const std::string& name, const std::string& fallback);
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback);
  absl::StatusOr<double> Double(const std::string& name, double fallback);
  bool Bool(const std::string& name);
  // Required string flag.
  absl::StatusOr<std::string> Require(const std::string& name);
  const std::vector<std::string>& positional() const { return positional_; }

  // Error naming the first flag that was given but never read, or a malformed argument.
  absl::Status Finish() const;

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> read_;
  std::vector<std::string> positional_;
  std::string error_;
};

// Prints "tapeloop CMD: message" to stderr and returns `code`.
int Fail(const std::string& command, const absl::Status& status, int code);

}  // namespace tapeloop::cli

#endif  // TAPELOOP_CLI_ARGS_H_
