// agent_bench: what a tool step costs the engine as an episode grows, for a Mamba-2 session
// (fixed-size state) and a Transformer (Llama) session (KV cache grows with every token).
//
//   build/bin/agent_bench [--quick] [--real-only] [--real-mamba-digits N]
//
// A tool step of the pointer-addition output phase is `[P3.LEFT] [P3.READ]` decoded by the
// model and the observation token appended (a 1-token prefill), exactly what the agent loop
// does. Measured for sessions standing where a d-digit episode's output phase runs
// (d = 10, 100, 1,000, 10,000; ~38d tokens in): the decode cost depends on the state's size,
// not its values, so the sessions are brought there synthetically (KV caches filled with
// random keys/values of that many rows, the position set). A real check beside it: the whole
// d-digit expert trajectory teacher-forced token by token through a real Mamba-2 session (no
// synthetic state), comparing tool steps on its real state near its start and near its end.
//
// Prints markdown tables (docs/performance.md, "Tools and agent loop").
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/tokenizer.h"
#include "engine/models/model.h"
#include "engine/session/session.h"
#include "tasks/addition.h"
#include "tasks/task.h"

namespace tapeloop {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Models of the size the reference prototype found to length-generalize (~450k parameters).
engine::ModelConfig Config(engine::Family family) {
  engine::ModelConfig c;
  c.family = family;
  c.vocab_size = tokens::kVocabSize;
  c.hidden_size = 128;
  c.num_hidden_layers = 4;
  c.tie_word_embeddings = true;
  if (family == engine::Family::kMamba2) {
    c.mamba_num_heads = 8;
    c.mamba_head_dim = 32;
    c.ssm_state_size = 16;
    c.n_groups = 1;
    c.conv_kernel = 4;
    c.chunk_size = 64;
    c.gated_norm_group_size = 256;
    c.dt_max = INFINITY;
  } else {
    c.num_attention_heads = 4;
    c.num_key_value_heads = 4;
    c.head_dim = 32;
    c.intermediate_size = 344;
    c.use_rope = true;
  }
  return c;
}

// The expert pointer trajectory of a d-digit evaluation addition.
tasks::Trajectory Expert(int digits) {
  const tasks::Task& task = **tasks::FindTask("addition");
  tasks::Rng rng(digits);
  return *task.Expert(task.Generate(digits, /*training=*/false, rng), tasks::Mode::kPointer);
}

// Brings `session` to `position` with synthetic state: every KV cache gets `position` rows of
// random keys and values.
void FastForward(engine::Session* session, int64_t position) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.f, 1.f);
  engine::SessionState* state = session->state();
  const auto& layout = state->layout();
  for (size_t b = 0; b < layout.blocks.size(); ++b) {
    if (layout.blocks[b].kv_index < 0) continue;
    engine::KvCache* kv = state->Kv(static_cast<int>(b));
    const int64_t width = layout.kv_width[layout.blocks[b].kv_index];
    kv->k.resize(position * width);
    kv->v.resize(position * width);
    for (auto& x : kv->k) x = normal(rng);
    for (auto& x : kv->v) x = normal(rng);
    kv->tokens = position;
  }
  state->set_position(position);
}

// One output-phase tool step: decode [P3.LEFT], decode [P3.READ], append one observation
// token. Returns its ms.
double ToolStep(engine::Session* session, int i) {
  const TokenId left = tokens::PointerCommand(3, tokens::PointerOp::kLeft);
  const TokenId read = tokens::PointerCommand(3, tokens::PointerOp::kRead);
  const auto start = Clock::now();
  (void)session->Decode(left);
  (void)session->Decode(read);
  const int32_t obs = '0' + i % 10;
  (void)session->Append(std::span<const int32_t>(&obs, 1));
  return Ms(start, Clock::now());
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void SyntheticTable(bool quick) {
  std::cout << "### Tool step cost by episode length (synthetic state at the output phase)\n\n"
            << "| model | params | digits | tokens in | median ms / tool step | vs 10 digits | "
               "session bytes at the end |\n|---|---|---|---|---|---|---|\n";
  const std::vector<int> lengths = {10, 100, 1000, 10000};
  for (engine::Family family : {engine::Family::kMamba2, engine::Family::kLlama}) {
    auto model = *engine::Model::RandomInit(Config(family), 1);
    std::vector<std::unique_ptr<engine::Session>> sessions;
    std::vector<int64_t> ins, end_bytes;
    for (int digits : lengths) {
      tasks::Trajectory t = Expert(digits);
      int64_t ans = 0;  // the output phase starts after [ANS]; the episode ends at its size
      while (t.tokens[ans] != tokens::kAns) ++ans;
      sessions.push_back(std::make_unique<engine::Session>(model.get()));
      FastForward(sessions.back().get(), ans);
      ins.push_back(ans);
      engine::Session at_end(model.get());
      FastForward(&at_end, static_cast<int64_t>(t.tokens.size()));
      end_bytes.push_back(at_end.SizeBytes());
    }
    // Rounds interleave the lengths, so a shared machine's load shifts hit all of them alike.
    const int rounds = quick ? 5 : (family == engine::Family::kLlama ? 9 : 400);
    std::vector<std::vector<double>> ms(lengths.size());
    for (size_t l = 0; l < lengths.size(); ++l) ToolStep(sessions[l].get(), 0);  // warm up
    for (int r = 0; r < rounds; ++r) {
      for (size_t l = 0; l < lengths.size(); ++l) ms[l].push_back(ToolStep(sessions[l].get(), r));
    }
    const double base = Median(ms[0]);
    for (size_t l = 0; l < lengths.size(); ++l) {
      const double m = Median(ms[l]);
      std::cout << absl::StrFormat("| %s | %d | %d | %d | %.3f | %.2fx | %d |\n",
                                   engine::FamilyName(family), model->num_params(), lengths[l],
                                   ins[l], m, m / base, end_bytes[l]);
    }
    std::cout.flush();
  }
  std::cout << "\n";
}

// The whole expert trajectory through a real Mamba-2 session, token by token as the agent
// loop feeds it: generated tokens by Decode, observations by a 1-token Append. Every 50th read
// step, a fork of the real session (its real state at that point) and a reference session at
// the start of an episode each take one timed tool step, back to back; the ratio of the two
// cancels the shared machine's load, and is compared between the episode's first and last
// fifth.
void RealMamba(int digits) {
  auto model = *engine::Model::RandomInit(Config(engine::Family::kMamba2), 1);
  tasks::Trajectory t = Expert(digits);
  engine::Session session(model.get());
  engine::Session reference(model.get());
  const size_t prompt = t.PromptSize();
  (void)session.Append(std::span<const int32_t>(t.tokens.data(), prompt));
  (void)reference.Append(std::span<const int32_t>(t.tokens.data(), prompt));
  std::vector<double> ratios;
  int64_t reads = 0;
  const auto start = Clock::now();
  for (size_t i = prompt; i < t.tokens.size(); ++i) {
    if (t.roles[i] == tasks::Role::kObservation) {
      (void)session.Append(std::span<const int32_t>(&t.tokens[i], 1));
      if (++reads % 50 == 0) {
        // Alternate which goes first: the order itself shifts timings.
        auto fork = session.Fork();
        const bool fork_first = (reads / 50) % 2 == 0;
        double real_ms = 0, ref_ms = 0;
        if (!fork_first) ref_ms = ToolStep(&reference, static_cast<int>(reads));
        real_ms = ToolStep(fork.get(), static_cast<int>(reads));
        if (fork_first) ref_ms = ToolStep(&reference, static_cast<int>(reads));
        ratios.push_back(real_ms / ref_ms);
      }
    } else {
      (void)session.Decode(t.tokens[i]);
    }
  }
  const double total = Ms(start, Clock::now());
  // One sample per pair of opposite orders: the geometric mean cancels the order effect.
  std::vector<double> paired;
  for (size_t i = 0; i + 1 < ratios.size(); i += 2) {
    paired.push_back(std::sqrt(ratios[i] * ratios[i + 1]));
  }
  ratios = paired;
  const size_t k = std::max<size_t>(1, ratios.size() / 5);
  const double first = Median(std::vector<double>(ratios.begin(), ratios.begin() + k));
  const double last = Median(std::vector<double>(ratios.end() - k, ratios.end()));
  std::cout << "### A real " << digits << "-digit episode through one Mamba-2 session\n\n"
            << absl::StrFormat(
                   "%d tokens, %d read steps, %.1f s in all. Tool step "
                   "on the episode's real state / tool step at the episode's start, median: "
                   "first fifth %.3f, last fifth %.3f (%d samples each). Session bytes %d "
                   "throughout.\n\n",
                   t.tokens.size(), reads, total / 1000, first, last, k, session.SizeBytes());
}

}  // namespace
}  // namespace tapeloop

int main(int argc, char** argv) {
  bool quick = false;
  bool real_only = false;
  int real_digits = 10000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--real-only") == 0) real_only = true;
    if (std::strcmp(argv[i], "--real-mamba-digits") == 0 && i + 1 < argc) {
      real_digits = std::atoi(argv[++i]);
    }
  }
  if (!real_only) tapeloop::SyntheticTable(quick);
  if (real_digits > 0) tapeloop::RealMamba(quick ? 100 : real_digits);
  return 0;
}
