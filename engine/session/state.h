// SessionState: ONE container for all of a session's state, whatever the model family:
//   per Mamba-2 block  a conv state f32 [K-1, conv_dim] and an SSM state f32 [H, P, N]
//                      (fixed size, in one flat buffer `recurrent`),
//   per attention block a KvCache (grows with tokens; a ring of `window` rows when windowed),
//   the position (tokens consumed) and the session's sampling generator state.
// Layers never see the container, only their per-block view (MambaView / Kv). Snapshot,
// restore, fork (copy), reset and size are defined here once.
//
// A SessionState is a value: copying it forks the session. Not thread-safe; one thread at a
// time per state (distinct states may be used concurrently with one const Model).
#ifndef TAPELOOP_ENGINE_SESSION_STATE_H_
#define TAPELOOP_ENGINE_SESSION_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/layers/attention.h"
#include "engine/layers/mamba2.h"

namespace tapeloop::engine {

// Where each block's state lives; built by the Model from its config.
struct StateLayout {
  struct Block {
    bool mamba = false;        // has conv + SSM state
    int64_t conv_offset = 0, conv_size = 0;  // floats in `recurrent`
    int64_t ssm_offset = 0, ssm_size = 0;
    int kv_index = -1;         // index into the KV caches, or -1
  };
  std::vector<Block> blocks;
  int64_t recurrent_floats = 0;
  std::vector<int64_t> kv_width;   // per KV cache: Hkv * hd
  std::vector<int64_t> kv_window;  // per KV cache: 0 (unbounded) or the window
  uint64_t fingerprint = 0;        // of the model the layout belongs to
};

class SessionState {
 public:
  // A fresh state (position 0, zeros) for `layout`; the layout must outlive the state.
  explicit SessionState(const StateLayout* layout);

  int64_t position() const { return position_; }
  void set_position(int64_t p) { position_ = p; }
  uint64_t* rng() { return &rng_; }
  uint64_t rng_state() const { return rng_; }
  const StateLayout& layout() const { return *layout_; }

  // Raw contents (tests, tools): the recurrent buffer and the KV caches.
  const std::vector<float>& recurrent() const { return recurrent_; }
  const std::vector<KvCache>& kv_caches() const { return kv_; }

  // Per-block views. REQUIRES: the block has that kind of state (TL_CHECK).
  Mamba2State MambaView(int block);
  KvCache* Kv(int block);

  // Back to position 0 with zero state; keeps the generator state.
  void Reset();

  // Bytes of live state: the recurrent buffer plus the live rows of every KV cache (what a
  // snapshot stores, excluding its header). Mamba-2 stays flat, attention grows with tokens up
  // to the window.
  int64_t SizeBytes() const;

  // What SizeBytes() is after `tokens` tokens for a session of `layout` (without running them).
  static int64_t SizeBytesAfter(const StateLayout& layout, int64_t tokens);

  // Snapshot: a versioned, checksummed byte string (header: magic "TLSS", version, model
  // fingerprint, position, generator state, sizes; then the data; then an FNV-1a checksum).
  std::string Snapshot() const;

  // Replaces this state with a snapshot. Errors (the state is unchanged on error):
  // FailedPrecondition when the snapshot belongs to another model (fingerprint) or layout;
  // DataLoss when it is truncated or its checksum does not match; InvalidArgument for an
  // unknown magic or version.
  absl::Status Restore(absl::string_view bytes);

 private:
  const StateLayout* layout_;
  int64_t position_ = 0;
  uint64_t rng_ = 0;
  std::vector<float> recurrent_;  // f32 [recurrent_floats]
  std::vector<KvCache> kv_;
};

// FNV-1a over bytes (checksums and fingerprints).
uint64_t Fnv1a64(const void* data, size_t n, uint64_t seed = 1469598103934665603ull);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_SESSION_STATE_H_
