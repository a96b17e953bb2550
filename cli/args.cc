#include "cli/args.h"

#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tapeloop::cli {

Args::Args(int argc, char** argv, std::set<std::string> bool_flags) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      values_[name.substr(0, eq)] = name.substr(eq + 1);
    } else if (bool_flags.count(name) > 0) {
      values_[name] = "true";
    } else if (i + 1 < argc) {
      values_[name] = argv[++i];
    } else if (error_.empty()) {
      error_ = absl::StrCat("flag --", name, " needs a value");
    }
  }
}

std::optional<std::string> Args::Get(const std::string& name) {
  read_.insert(name);
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::String(const std::string& name, const std::string& fallback) {
  return Get(name).value_or(fallback);
}

absl::StatusOr<int64_t> Args::Int(const std::string& name, int64_t fallback) {
  auto v = Get(name);
  if (!v) return fallback;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": not an integer: '", *v, "'"));
  }
  return out;
}

absl::StatusOr<double> Args::Double(const std::string& name, double fallback) {
  auto v = Get(name);
  if (!v) return fallback;
  double out;
  if (!absl::SimpleAtod(*v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": not a number: '", *v, "'"));
  }
  return out;
}

bool Args::Bool(const std::string& name) {
  auto v = Get(name);
  return v && (*v == "true" || *v == "1" || *v == "yes");
}

absl::StatusOr<std::string> Args::Require(const std::string& name) {
  auto v = Get(name);
  if (!v || v->empty()) {
    return absl::InvalidArgumentError(absl::StrCat("missing required flag --", name));
  }
  return *v;
}

absl::Status Args::Finish() const {
  if (!error_.empty()) return absl::InvalidArgumentError(error_);
  for (const auto& [name, value] : values_) {
    if (read_.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
  }
  return absl::OkStatus();
}

int Fail(const std::string& command, const absl::Status& status, int code) {
  std::cerr << "tapeloop " << command << ": " << status.message() << std::endl;
  return code;
}

}  // namespace tapeloop::cli
