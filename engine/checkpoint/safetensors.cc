#include "engine/checkpoint/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/check.h"
#include "nlohmann/json.hpp"

namespace tapeloop::engine {
namespace {

using nlohmann::json;

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors: ", what));
}

float Bf16ToFloat(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

struct Entry {
  std::string name;
  std::string dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

}  // namespace

absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes) {
  if (bytes.size() < 8) {
    return Bad(absl::StrCat("file is ", bytes.size(), " bytes, shorter than the 8-byte header length"));
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  if (n > kMaxSafetensorsHeader) {
    return Bad(absl::StrCat("header length ", n, " exceeds the limit of ", kMaxSafetensorsHeader));
  }
  if (n > bytes.size() - 8) {
    return Bad(absl::StrCat("header length ", n, " runs past the end of the file (",
                            bytes.size() - 8, " bytes after the length)"));
  }
  json header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + n, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return Bad("header is not valid JSON");
  if (!header.is_object()) return Bad("header is not a JSON object");
  const uint64_t data_size = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;

  SafetensorsFile file;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Bad("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) return Bad(absl::StrCat("__metadata__ value '", m.key(), "' is not a string"));
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) return Bad(absl::StrCat("tensor '", name, "': entry is not an object"));
    Entry e;
    e.name = name;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) return Bad(absl::StrCat("tensor '", name, "': missing or non-string dtype"));
    e.dtype = dt->get<std::string>();
    if (e.dtype != "F32" && e.dtype != "BF16") {
      return Bad(absl::StrCat("tensor '", name, "': unsupported dtype ", e.dtype, " (F32 and BF16 load)"));
    }
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) return Bad(absl::StrCat("tensor '", name, "': missing or non-array shape"));
    uint64_t numel = 1;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0)) {
        return Bad(absl::StrCat("tensor '", name, "': shape has a non-integer or negative dimension"));
      }
      uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > (uint64_t{1} << 40) / dim) {
        return Bad(absl::StrCat("tensor '", name, "': shape is too large"));
      }
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      return Bad(absl::StrCat("tensor '", name, "': data_offsets must be two non-negative integers"));
    }
    e.begin = (*off)[0].get<uint64_t>();
    e.end = (*off)[1].get<uint64_t>();
    if (e.begin > e.end || e.end > data_size) {
      return Bad(absl::StrCat("tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
                              "] out of range (data section is ", data_size, " bytes)"));
    }
    const uint64_t elem = e.dtype == "F32" ? 4 : 2;
    if (e.end - e.begin != numel * elem) {
      return Bad(absl::StrCat("tensor '", name, "': data_offsets span ", e.end - e.begin,
                              " bytes but shape ", ShapeString(e.shape), " of ", e.dtype, " needs ",
                              numel * elem));
    }
    entries.push_back(std::move(e));
  }
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i]->begin < order[i - 1]->end) {
      return Bad(absl::StrCat("tensor '", order[i]->name, "' overlaps tensor '", order[i - 1]->name, "'"));
    }
  }
  for (const Entry& e : entries) {
    Tensor t;
    t.shape = e.shape;
    const uint64_t numel = static_cast<uint64_t>(NumElements(e.shape));
    t.data.resize(numel);
    const char* src = data + e.begin;
    if (e.dtype == "F32") {
      // The host is little-endian (x86-64, arm64). An empty tensor has no buffer to copy into.
      if (numel > 0) std::memcpy(t.data.data(), src, numel * 4);
    } else {
      for (uint64_t i = 0; i < numel; ++i) {
        uint16_t v;
        std::memcpy(&v, src + 2 * i, 2);
        t.data[i] = Bf16ToFloat(v);
      }
    }
    file.dtypes[e.name] = e.dtype;
    file.tensors.emplace(e.name, std::move(t));
  }
  return file;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading '", path, "'"));
  return ss.str();
}

absl::Status WriteStringToFile(const std::string& path, absl::string_view bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot create '", tmp, "'"));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) return absl::DataLossError(absl::StrCat("error writing '", tmp, "'"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot rename '", tmp, "' to '", path, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsFile> ReadSafetensorsFile(const std::string& path) {
  auto bytes = ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  auto file = ParseSafetensors(*bytes);
  if (!file.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(file.status().message(), " (in '", path, "')"));
  }
  return file;
}

std::string SerializeSafetensors(const std::vector<TensorRef>& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> seen;
  for (const TensorRef& t : tensors) {
    TL_CHECK(t.name != "__metadata__" && seen.insert(t.name).second);
    const uint64_t bytes = static_cast<uint64_t>(NumElements(t.shape)) * 4;
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  std::string out;
  out.reserve(8 + h.size() + offset);
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += h;
  for (const TensorRef& t : tensors) {
    out.append(reinterpret_cast<const char*>(t.data), static_cast<size_t>(NumElements(t.shape)) * 4);
  }
  return out;
}

absl::Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorRef>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  return WriteStringToFile(path, SerializeSafetensors(tensors, metadata));
}

}  // namespace tapeloop::engine
