#include "engine/session/state.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/check.h"

namespace tapeloop::engine {
namespace {

constexpr uint32_t kMagic = 0x53534c54;  // "TLSS" little-endian
constexpr uint32_t kVersion = 1;

class Writer {
 public:
  template <typename T>
  void Put(T v) { out_.append(reinterpret_cast<const char*>(&v), sizeof(T)); }
  void PutFloats(const float* p, int64_t n) { out_.append(reinterpret_cast<const char*>(p), sizeof(float) * n); }
  std::string& str() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}
  template <typename T>
  bool Get(T* v) {
    if (in_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetFloats(float* p, int64_t n) {
    if (n < 0 || static_cast<uint64_t>(in_.size() - pos_) / sizeof(float) < static_cast<uint64_t>(n)) return false;
    if (n > 0) std::memcpy(p, in_.data() + pos_, sizeof(float) * n);
    pos_ += sizeof(float) * n;
    return true;
  }
  size_t remaining() const { return in_.size() - pos_; }

 private:
  absl::string_view in_;
  size_t pos_ = 0;
};

}  // namespace

uint64_t Fnv1a64(const void* data, size_t n, uint64_t seed) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed;
  // Word-at-a-time variant (FNV-1a applied to 8-byte words) for speed on weight buffers.
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 1099511628211ull;
    h ^= h >> 29;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

SessionState::SessionState(const StateLayout* layout)
    : layout_(layout), recurrent_(layout->recurrent_floats, 0.0f), kv_(layout->kv_width.size()) {}

Mamba2State SessionState::MambaView(int block) {
  const StateLayout::Block& b = layout_->blocks[block];
  TL_CHECK(b.mamba);
  return Mamba2State{recurrent_.data() + b.conv_offset, recurrent_.data() + b.ssm_offset};
}

KvCache* SessionState::Kv(int block) {
  const StateLayout::Block& b = layout_->blocks[block];
  TL_CHECK(b.kv_index >= 0);
  return &kv_[b.kv_index];
}

void SessionState::Reset() {
  position_ = 0;
  std::fill(recurrent_.begin(), recurrent_.end(), 0.0f);
  for (KvCache& c : kv_) c = KvCache{};
}

int64_t SessionState::SizeBytes() const {
  int64_t bytes = static_cast<int64_t>(recurrent_.size() * sizeof(float));
  for (size_t i = 0; i < kv_.size(); ++i) {
    bytes += 2 * kv_[i].live_rows(layout_->kv_window[i]) * layout_->kv_width[i] * static_cast<int64_t>(sizeof(float));
  }
  return bytes;
}

int64_t SessionState::SizeBytesAfter(const StateLayout& layout, int64_t tokens) {
  int64_t bytes = layout.recurrent_floats * static_cast<int64_t>(sizeof(float));
  for (size_t i = 0; i < layout.kv_width.size(); ++i) {
    const int64_t rows = layout.kv_window[i] > 0 ? std::min(tokens, layout.kv_window[i]) : tokens;
    bytes += 2 * rows * layout.kv_width[i] * static_cast<int64_t>(sizeof(float));
  }
  return bytes;
}

std::string SessionState::Snapshot() const {
  Writer w;
  w.Put(kMagic);
  w.Put(kVersion);
  w.Put(layout_->fingerprint);
  w.Put(position_);
  w.Put(rng_);
  w.Put(static_cast<int64_t>(recurrent_.size()));
  w.Put(static_cast<int64_t>(kv_.size()));
  for (size_t i = 0; i < kv_.size(); ++i) {
    w.Put(kv_[i].tokens);
    w.Put(kv_[i].live_rows(layout_->kv_window[i]));
  }
  w.PutFloats(recurrent_.data(), static_cast<int64_t>(recurrent_.size()));
  for (size_t i = 0; i < kv_.size(); ++i) {
    const int64_t n = kv_[i].live_rows(layout_->kv_window[i]) * layout_->kv_width[i];
    w.PutFloats(kv_[i].k.data(), n);
    w.PutFloats(kv_[i].v.data(), n);
  }
  const uint64_t sum = Fnv1a64(w.str().data(), w.str().size());
  w.Put(sum);
  return std::move(w.str());
}

absl::Status SessionState::Restore(absl::string_view bytes) {
  if (bytes.size() < 8 + 4 + 4) return absl::DataLossError("snapshot: truncated (shorter than its header)");
  uint64_t stored_sum;
  std::memcpy(&stored_sum, bytes.data() + bytes.size() - 8, 8);
  Reader r(bytes.substr(0, bytes.size() - 8));
  uint32_t magic = 0, version = 0;
  r.Get(&magic);
  r.Get(&version);
  if (magic != kMagic) return absl::InvalidArgumentError("snapshot: not a tapeloop session snapshot (bad magic)");
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot: unsupported version ", version, " (this build reads ", kVersion, ")"));
  }
  if (Fnv1a64(bytes.data(), bytes.size() - 8) != stored_sum) {
    return absl::DataLossError("snapshot: checksum mismatch (corrupt or truncated)");
  }
  uint64_t fingerprint = 0;
  int64_t position = 0, n_rec = 0, n_kv = 0;
  uint64_t rng = 0;
  if (!r.Get(&fingerprint) || !r.Get(&position) || !r.Get(&rng) || !r.Get(&n_rec) || !r.Get(&n_kv)) {
    return absl::DataLossError("snapshot: truncated header");
  }
  if (fingerprint != layout_->fingerprint) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "snapshot: taken from model %016x, cannot restore into model %016x", fingerprint, layout_->fingerprint));
  }
  if (n_rec != layout_->recurrent_floats || n_kv != static_cast<int64_t>(layout_->kv_width.size()) || position < 0) {
    return absl::FailedPreconditionError("snapshot: state layout does not match this model");
  }
  std::vector<KvCache> kv(n_kv);
  std::vector<int64_t> rows(n_kv);
  for (int64_t i = 0; i < n_kv; ++i) {
    if (!r.Get(&kv[i].tokens) || !r.Get(&rows[i])) return absl::DataLossError("snapshot: truncated header");
    if (kv[i].tokens < 0 || rows[i] != kv[i].live_rows(layout_->kv_window[i]) || kv[i].tokens != position) {
      return absl::InvalidArgumentError(absl::StrCat("snapshot: KV cache ", i, " sizes are inconsistent"));
    }
  }
  std::vector<float> rec(n_rec);
  if (!r.GetFloats(rec.data(), n_rec)) return absl::DataLossError("snapshot: truncated recurrent state");
  for (int64_t i = 0; i < n_kv; ++i) {
    const int64_t n = rows[i] * layout_->kv_width[i];
    const int64_t cap = layout_->kv_window[i] > 0 ? layout_->kv_window[i] * layout_->kv_width[i] : n;
    if (n > static_cast<int64_t>(r.remaining() / sizeof(float))) return absl::DataLossError("snapshot: truncated KV cache");
    kv[i].k.resize(std::max(n, cap));
    kv[i].v.resize(std::max(n, cap));
    if (!r.GetFloats(kv[i].k.data(), n) || !r.GetFloats(kv[i].v.data(), n)) {
      return absl::DataLossError("snapshot: truncated KV cache");
    }
  }
  if (r.remaining() != 0) return absl::InvalidArgumentError("snapshot: trailing bytes after the data");
  position_ = position;
  rng_ = rng;
  recurrent_ = std::move(rec);
  kv_ = std::move(kv);
  return absl::OkStatus();
}

}  // namespace tapeloop::engine
