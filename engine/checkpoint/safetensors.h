// safetensors reading and writing (the tensor file of a Hugging Face checkpoint).
//
// Format: 8-byte little-endian header length n, n bytes of JSON header
//   {"__metadata__": {str: str}, NAME: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ..}
// then the raw little-endian data; offsets are relative to the end of the header.
//
// Reading accepts F32 and BF16 tensors and converts them to f32. It validates strictly: a
// truncated file, a header length beyond the file, malformed or non-object JSON, a missing or
// mistyped field, an unsupported dtype, offsets out of range, overlapping or not matching the
// shape: each is an InvalidArgument error naming the tensor (or the header). Writing produces
// F32 tensors only. All functions are thread-safe (no shared state).
#ifndef TAPELOOP_ENGINE_CHECKPOINT_SAFETENSORS_H_
#define TAPELOOP_ENGINE_CHECKPOINT_SAFETENSORS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tensor.h"

namespace tapeloop::engine {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;           // name -> f32 copy of the data
  std::map<std::string, std::string> dtypes;       // name -> dtype as stored ("F32", "BF16")
  std::map<std::string, std::string> metadata;     // "__metadata__" (string values only)
};

// Largest header accepted (as the reference implementation: 100 MB).
inline constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

// Parses a whole file's bytes. On failure returns InvalidArgument "safetensors: ...".
absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes);

// Reads and parses `path`; NotFound if it cannot be opened.
absl::StatusOr<SafetensorsFile> ReadSafetensorsFile(const std::string& path);

// Serializes tensors (in the given order) as F32 with optional string metadata. Names must be
// unique and not "__metadata__" (programmer error otherwise: TL_CHECK).
std::string SerializeSafetensors(const std::vector<TensorRef>& tensors,
                                 const std::map<std::string, std::string>& metadata = {});

// Writes SerializeSafetensors(...) to `path` (via a temporary file and rename).
absl::Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorRef>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Whole-file helpers shared by the checkpoint code.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);
absl::Status WriteStringToFile(const std::string& path, absl::string_view bytes);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_CHECKPOINT_SAFETENSORS_H_
