// ModelRegistry: the models a server can serve, found as subdirectories of one models
// directory (each with config.json + model.safetensors, optionally tokenizer.json).
//
// Models are loaded on demand and shared: a LoadedModel is handed out as a shared_ptr, so a
// session or episode keeps its model alive after Unload (Unload only stops new users).
// Names are directory names matching [A-Za-z0-9][A-Za-z0-9_.-]{0,63} (no path separators, no
// "..": a name never escapes the models directory). Thread-safe.
#ifndef TAPELOOP_SERVER_MODEL_REGISTRY_H_
#define TAPELOOP_SERVER_MODEL_REGISTRY_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/models/model.h"

namespace tapeloop::server {

struct LoadedModel {
  std::string name;  // directory name under the models directory
  std::string dir;   // full path
  std::unique_ptr<const engine::Model> model;
};

struct ModelListing {
  std::string name;
  std::string arch;  // config's architecture ("mamba2", "llama", ...), "" when unreadable
  bool loaded = false;
  int64_t num_params = 0;  // when loaded
  std::string error;       // why config.json could not be read, when it could not
};

// INVALID_ARGUMENT naming the rule when `name` is not a valid model name.
absl::Status ValidateModelName(const std::string& name);

class ModelRegistry {
 public:
  explicit ModelRegistry(std::string models_dir) : dir_(std::move(models_dir)) {}
  ModelRegistry(const ModelRegistry&) = delete;
  ModelRegistry& operator=(const ModelRegistry&) = delete;

  const std::string& models_dir() const { return dir_; }

  // Every subdirectory holding a config.json, sorted by name. An empty list when the models
  // directory does not exist.
  std::vector<ModelListing> List() const;

  // Loads `name` (idempotent: a loaded model is returned as is). INVALID_ARGUMENT for a bad
  // name, NOT_FOUND when DIR/name has no config.json, the engine's error for a bad checkpoint.
  absl::StatusOr<std::shared_ptr<const LoadedModel>> Load(const std::string& name);
  // The loaded model, or FAILED_PRECONDITION ("not loaded") / NOT_FOUND / INVALID_ARGUMENT.
  absl::StatusOr<std::shared_ptr<const LoadedModel>> Get(const std::string& name) const;
  // Forgets the model; its current users keep it. NOT_FOUND when it was not loaded.
  absl::Status Unload(const std::string& name);

 private:
  const std::string dir_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const LoadedModel>> loaded_;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_MODEL_REGISTRY_H_
