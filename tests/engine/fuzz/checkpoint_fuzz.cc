// libFuzzer target over the checkpoint and config loaders (and session snapshots).
//
// Not part of the normal test glob (the name does not end in _test.cc); the lead wires it into
// CMake for clang builds with -fsanitize=fuzzer. checkpoint_fuzz_test.cc includes this file to
// run the same entry point over seeded random and mutated inputs in every build.
//
// Input layout: byte 0 selects the target (modulo 4), the rest is the payload:
//   0: ParseSafetensors; if it parses, the tensors are also offered to a tiny model (FromTensors)
//   1: ParseModelConfig; if it parses and is small, RandomInit + one forward pass
//   2: SessionState::Restore into a tiny model's session, then one decode step if it succeeds
//   3: as 2, but the payload's trailing 8 bytes are first replaced by its correct checksum, so
//      mutations reach the layout checks and the state data behind the checksum
// Every input must come back as OK or a Status; any crash, hang or sanitizer report is a bug.
//
// With TAPELOOP_FUZZ_SEED_DIR set, the libFuzzer binary first writes one valid input per target
// (the tiny model's safetensors, its config, a snapshot of a session) into that folder, for
// scripts/fuzz.sh to seed the corpus with, then fuzzes as usual.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "engine/checkpoint/safetensors.h"
#include "engine/models/config.h"
#include "engine/models/model.h"
#include "engine/session/session.h"
#include "engine/session/state.h"

namespace tapeloop::engine::fuzz {

// A tiny fixed llama+mamba hybrid to feed parsed tensors and snapshots to.
inline const Model& FuzzModel() {
  static const Model* model = [] {
    ModelConfig c;
    c.family = Family::kNemotronH;
    c.pattern = "M*-";
    c.num_hidden_layers = 3;
    c.vocab_size = 8;
    c.hidden_size = 8;
    c.mamba_num_heads = 2;
    c.mamba_head_dim = 4;
    c.ssm_state_size = 4;
    c.n_groups = 1;
    c.conv_kernel = 3;
    c.chunk_size = 4;
    c.gated_norm_group_size = 8;
    c.dt_max = 1e30f;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 4;
    c.intermediate_size = 8;
    c.mlp_kind = MlpKind::kRelu2;
    return Model::RandomInit(c, 1)->release();
  }();
  return *model;
}

inline void FuzzOne(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const absl::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto file = ParseSafetensors(payload);
      if (file.ok()) {
        auto m = Model::FromTensors(FuzzModel().config(), std::move(file->tensors));
        (void)m;
      }
      break;
    }
    case 1: {
      auto config = ParseModelConfig(payload);
      if (!config.ok()) break;
      // Only run configs small enough to be cheap.
      for (int64_t v : {config->vocab_size, config->hidden_size, config->intermediate_size, config->mamba_inner(),
                        int64_t{config->num_hidden_layers}, int64_t{config->ssm_state_size},
                        int64_t{config->num_attention_heads} * config->head_dim}) {
        if (v > 512) return;
      }
      int64_t budget = config->vocab_size * config->hidden_size +
                       int64_t{config->num_hidden_layers} * config->hidden_size *
                           (config->hidden_size + config->intermediate_size + config->mamba_inner() * 3 +
                            int64_t{config->num_attention_heads} * config->head_dim * 4 +
                            int64_t{config->n_groups} * config->ssm_state_size * 2);
      if (budget <= 0 || budget > 200000 || config->conv_kernel > 16 || config->chunk_size > 4096) break;
      auto model = Model::RandomInit(*config, 3);
      if (!model.ok()) break;
      Session s(model->get());
      const int32_t tokens[2] = {0, static_cast<int32_t>(config->vocab_size - 1)};
      (void)s.Append(tokens);
      break;
    }
    case 2: {
      Session s(&FuzzModel());
      if (s.Restore(payload).ok()) (void)s.Decode(1);
      break;
    }
    case 3: {
      if (payload.size() < 8) break;
      std::string bytes(payload);
      const uint64_t sum = Fnv1a64(bytes.data(), bytes.size() - 8);
      std::memcpy(bytes.data() + bytes.size() - 8, &sum, 8);
      Session s(&FuzzModel());
      if (s.Restore(bytes).ok()) (void)s.Decode(1);
      break;
    }
  }
}

// One valid input per target for FuzzModel(), each prefixed with its selector byte.
inline std::vector<std::string> ValidSeeds() {
  const Model& model = FuzzModel();
  std::vector<TensorRef> refs;
  for (const ParamEntry& p : model.params()) {
    refs.push_back({p.name, p.shape, model.param_data() + p.offset});
  }
  Session s(&model);
  const int32_t tokens[3] = {1, 2, 3};
  (void)s.Append(tokens);
  return {std::string(1, '\0') + SerializeSafetensors(refs, {{"format", "pt"}}),
          std::string(1, '\1') + ModelConfigToJson(model.config()),
          std::string(1, '\2') + s.Snapshot(), std::string(1, '\3') + s.Snapshot()};
}

}  // namespace tapeloop::engine::fuzz

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const char* dir = std::getenv("TAPELOOP_FUZZ_SEED_DIR");
  if (dir == nullptr || *dir == '\0') return 0;
  const std::vector<std::string> seeds = tapeloop::engine::fuzz::ValidSeeds();
  for (size_t i = 0; i < seeds.size(); ++i) {
    std::ofstream(std::string(dir) + "/valid_" + std::to_string(i), std::ios::binary) << seeds[i];
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tapeloop::engine::fuzz::FuzzOne(data, size);
  return 0;
}
