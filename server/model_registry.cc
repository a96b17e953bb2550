#include "server/model_registry.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/models/config.h"

namespace tapeloop::server {

namespace fs = std::filesystem;

absl::Status ValidateModelName(const std::string& name) {
  auto ok_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  };
  bool valid = !name.empty() && name.size() <= 64 &&
               std::all_of(name.begin(), name.end(), ok_char) && name[0] != '.' && name[0] != '-' &&
               name[0] != '_' && name.find("..") == std::string::npos;
  if (!valid) {
    return absl::InvalidArgumentError(
        absl::StrCat("model '", name.substr(0, 80),
                     "': a model name is 1-64 of [A-Za-z0-9_.-], starting with a letter or digit"));
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::vector<ModelListing> ModelRegistry::List() const {
  std::vector<ModelListing> out;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (!entry.is_directory() || !fs::exists(entry.path() / "config.json")) continue;
    ModelListing m;
    m.name = entry.path().filename().string();
    if (!ValidateModelName(m.name).ok()) continue;
    auto text = ReadText(entry.path() / "config.json");
    auto config = text.ok() ? engine::ParseModelConfig(*text) : text.status();
    if (config.ok()) {
      m.arch = engine::FamilyName(config->family);
    } else {
      m.error = std::string(config.status().message());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = loaded_.find(m.name); it != loaded_.end()) {
        m.loaded = true;
        m.num_params = it->second->model->num_params();
      }
    }
    out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(),
            [](const ModelListing& a, const ModelListing& b) { return a.name < b.name; });
  return out;
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> ModelRegistry::Load(const std::string& name) {
  RETURN_IF_ERROR(ValidateModelName(name));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = loaded_.find(name); it != loaded_.end()) return it->second;
  }
  const fs::path dir = fs::path(dir_) / name;
  if (!fs::exists(dir / "config.json")) {
    return absl::NotFoundError(
        absl::StrCat("model '", name, "': no ", (dir / "config.json").string()));
  }
  // Loading takes a while; do it unlocked, then keep the first of two racing loads.
  ASSIGN_OR_RETURN(auto model, engine::Model::Load(dir.string()));
  auto loaded = std::make_shared<LoadedModel>();
  loaded->name = name;
  loaded->dir = dir.string();
  loaded->model = std::move(model);
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = loaded_.emplace(name, std::move(loaded));
  return it->second;
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> ModelRegistry::Get(
    const std::string& name) const {
  RETURN_IF_ERROR(ValidateModelName(name));
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = loaded_.find(name); it != loaded_.end()) return it->second;
  if (!fs::exists(fs::path(dir_) / name / "config.json")) {
    return absl::NotFoundError(absl::StrCat("model '", name, "': not in ", dir_));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("model '", name, "' is not loaded (LoadModel it first)"));
}

absl::Status ModelRegistry::Unload(const std::string& name) {
  RETURN_IF_ERROR(ValidateModelName(name));
  std::lock_guard<std::mutex> lock(mu_);
  if (loaded_.erase(name) == 0) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
  }
  return absl::OkStatus();
}

}  // namespace tapeloop::server
