// Engine benchmark: decode tokens/s at batch 1 / 64 / 256 and prefill tokens/s for every family
// at ~1M and ~25M parameters; state bytes per session after 1K / 10K / 100K tokens; measured
// memory read bandwidth and the batch-1 floor (bytes of weights + state read per token /
// bandwidth); the bound on the b=64 / b=1 ratio (weights a step reads, state a token reads and
// writes, FLOPs per token, against the measured bandwidth and 64-row product rate). Prints a
// markdown report (docs/performance.md "## Engine" holds a copy).
//
//   engine_bench [--sizes 1m,25m] [--families mamba2,llama,mistral,nemotron_h] [--steps N]
//   engine_bench --model DIR[,DIR...] [--batches 1,16,64,256] [--steps N]
//   engine_bench [--sizes ...] [--families ...] --batches 1,64 [--steps N]
//
// With --model, checkpoints (e.g. models/mamba2-pointer) are measured instead: decode tokens/s
// and CPU microseconds per token (process CPU time, all threads) at each batch size, best of a
// few repetitions, and the ratio of each batch's tokens/s to batch 1's. --batches without
// --model prints the same decode rows for the random models (no prefill or bandwidth runs; for
// profiling and quick before/after comparisons).
//
// A plain driver (timed loops, best of a few repetitions) rather than Google Benchmark fixtures:
// each figure needs a model and sessions set up first, and the run must stay short on a shared
// 2-core machine.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/kernels/linear.h"
#include "engine/kernels/linear_packed.h"
#include "engine/models/model.h"
#include "engine/parallel.h"
#include "engine/session/session.h"

namespace tapeloop::engine {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Read bandwidth in bytes/s: sums a buffer of `mib` MiB on EngineThreads() threads, best of 5.
// 512 MiB measures DRAM; a buffer the size of a 25M model's weights (96 MiB) can sit in a large
// L3 (300 MiB on the machines measured), which is what batch-1 decode then reads from.
double MeasureBandwidth(size_t mib) {
  const size_t n = (mib << 20) >> 3;  // doubles
  std::vector<double> buf(n, 1.0);
  double best = 0, sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<double> partial(64, 0.0);
    auto t0 = Clock::now();
    ParallelFor(static_cast<int64_t>(n), 1 << 20, [&](int64_t b, int64_t e) {
      // Four vectors of two doubles (SSE2, the baseline ISA): 4 x 16 bytes in flight per step.
      typedef double V2 __attribute__((vector_size(16)));
      V2 s0 = {}, s1 = {}, s2 = {}, s3 = {};
      int64_t i = b;
      for (; i + 8 <= e; i += 8) {
        V2 v[4];
        std::memcpy(v, &buf[i], sizeof(v));
        s0 += v[0];
        s1 += v[1];
        s2 += v[2];
        s3 += v[3];
      }
      const V2 t = (s0 + s1) + (s2 + s3);
      double sum = t[0] + t[1];
      for (; i < e; ++i) sum += buf[i];
      partial[(b * 64) / static_cast<int64_t>(n)] += sum;
    });
    auto t1 = Clock::now();
    for (double p : partial) sink += p;
    best = std::max(best, n * sizeof(double) / Seconds(t0, t1));
  }
  if (sink < 0) std::printf("%f", sink);
  return best;
}

// Update bandwidth in bytes/s (read + written): x = x * a + c in place over `bytes` bytes on
// EngineThreads() threads, best of 5. Over a b=64 step's working set (64 sessions' state and
// the weights) it measures what a step's state updates can reach, wherever that set lives (the
// large L3 of the machines measured holds up to ~300 MiB).
double MeasureUpdateBandwidth(double bytes) {
  const size_t n = std::max<size_t>(1 << 18, static_cast<size_t>(bytes / sizeof(float))) / 16 * 16;
  std::vector<float> buf(n, 1.0f);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = Clock::now();
    ParallelFor(static_cast<int64_t>(n / 16), 1 << 12, [&](int64_t b, int64_t e) {
      typedef float V4 __attribute__((vector_size(16)));  // SSE, the baseline ISA
      for (int64_t i = b * 16; i < e * 16; i += 16) {
        V4 v[4];
        std::memcpy(v, &buf[i], sizeof(v));
        for (V4& x : v) x = x * 0.999f + 0.001f;
        std::memcpy(&buf[i], v, sizeof(v));
      }
    });
    best = std::max(best, 2.0 * n * sizeof(float) / Seconds(t0, Clock::now()));
  }
  if (buf[n / 2] < 0) std::printf("%f", buf[n / 2]);
  return best;
}

ModelConfig BenchConfig(Family f, bool big) {
  ModelConfig c;
  c.family = f;
  c.vocab_size = 285;  // tapeloop-tokens-v1
  c.initializer_range = 0.02f;
  c.hidden_size = big ? 512 : 128;
  c.norm_eps = 1e-5f;
  c.mamba_head_dim = 64;
  c.mamba_num_heads = static_cast<int>(2 * c.hidden_size / 64);
  c.ssm_state_size = 64;
  c.n_groups = 1;
  c.conv_kernel = 4;
  c.chunk_size = 128;
  c.gated_norm_group_size = static_cast<int>(c.mamba_inner());
  c.dt_min = 0.0f;
  c.dt_max = INFINITY;
  c.head_dim = big ? 64 : 32;
  c.num_attention_heads = static_cast<int>(c.hidden_size / c.head_dim);
  c.num_key_value_heads = c.num_attention_heads / 2;
  c.use_rope = f != Family::kNemotronH;
  switch (f) {
    case Family::kMamba2:
      c.num_hidden_layers = big ? 15 : 8;
      c.tie_word_embeddings = true;
      break;
    case Family::kLlama:
    case Family::kMistral:
      c.num_hidden_layers = big ? 8 : 5;
      c.intermediate_size = big ? 1408 : 352;
      c.mlp_kind = MlpKind::kSwiGlu;
      if (f == Family::kMistral) c.sliding_window = 512;
      break;
    case Family::kNemotronH:
      c.pattern = big ? "M-M-M*-M-M-M*-M-" : "M-M-M*-";
      c.num_hidden_layers = static_cast<int>(c.pattern.size());
      c.intermediate_size = big ? 1536 : 384;
      c.mlp_kind = MlpKind::kRelu2;
      c.gated_norm_group_size = static_cast<int>(c.mamba_inner() / c.n_groups);
      break;
  }
  return c;
}

std::vector<int32_t> Tokens(int n, int seed) {
  std::vector<int32_t> t(n);
  uint64_t s = seed;
  for (auto& x : t) x = static_cast<int32_t>(NextRandom(&s) % 256);
  return t;
}

struct Row {
  std::string family, size;
  int64_t params = 0;
  double prefill = 0, decode1 = 0, decode64 = 0, decode256 = 0;
  double floor1 = 0;  // tokens/s at the bandwidth floor
  int64_t state1k = 0, state10k = 0, state100k = 0;
  // The bound on batching (see Bound()).
  double weight_bytes = 0;  // read by one decode step, whatever its batch
  double state_bytes = 0;   // per-session state read + written per decoded token
  double flops = 0;         // per decoded token
  double update_bw = 0;     // bytes/s, over a b=64 step's working set
};

// Bytes of weights one decode step reads (every parameter but the embedding table, of which a
// step reads only its B rows, unless the LM head is tied to it), the bytes of per-session state
// one decoded token reads and writes at `position` (recurrent state read and written whole; the
// KV caches' live rows read, one row written), and the token's floating-point operations (2 per
// weight of every matrix product; attention scores and values, 4 Hq hd per cached row; the
// Mamba-2 state update and readout, about 5 per state element).
void Bound(const Model& m, int64_t position, Row* r) {
  const ModelConfig& c = m.config();
  const double embed = static_cast<double>(c.vocab_size) * c.hidden_size;
  double matmul = 0;
  for (const ParamEntry& p : m.params()) {
    if (p.shape.size() >= 2) matmul += static_cast<double>(NumElements(p.shape));
  }
  if (!c.tie_word_embeddings) matmul -= embed;  // only the step's rows are looked up
  r->weight_bytes = 4.0 * (m.num_params() - (c.tie_word_embeddings ? 0.0 : embed));
  const StateLayout& l = m.state_layout();
  double state = 2.0 * 4.0 * l.recurrent_floats, flops = 2.0 * matmul;
  for (size_t i = 0; i < l.kv_width.size(); ++i) {
    const int64_t rows = l.kv_window[i] > 0 ? std::min(position + 1, l.kv_window[i]) : position + 1;
    state += 4.0 * 2 * (rows + 1) * l.kv_width[i];
    flops += 4.0 * rows * c.num_attention_heads * c.head_dim;
  }
  for (const StateLayout::Block& b : l.blocks) flops += 5.0 * b.ssm_size;
  r->state_bytes = state;
  r->flops = flops;
}

// f32 GFLOP/s of a 64-row decode product (64 x 512 -> 2048, the ~25M models' widths) through
// LinearForwardDecode on EngineThreads() threads, best of 5: the compute ceiling of a b=64 step.
double MeasureGemmRate() {
  const int64_t rows = 64, in = 512, out = 2048;
  std::vector<float> x(rows * in, 0.5f), w(out * in, 0.25f), y(rows * out);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const int iters = 20;
    auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i)
      LinearForwardDecode(y.data(), x.data(), w.data(), nullptr, rows, in, out);
    best = std::max(best, 2.0 * rows * in * out * iters / Seconds(t0, Clock::now()) / 1e9);
  }
  return best;
}

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Decode tokens/s (best of `reps`) and CPU microseconds per token (all threads; least of `reps`:
// on a loaded machine the CPU time is steadier than the wall time).
double DecodeRate(const Model& m, int batch, int prompt, int steps, int reps,
                  double* cpu_us = nullptr) {
  std::vector<std::unique_ptr<Session>> sessions;
  std::vector<Session*> ptrs;
  for (int b = 0; b < batch; ++b) {
    // Different prompt lengths so sessions sit at different positions; sessions beyond the
    // first seven are forks of those (same positions, no prefill to wait for).
    if (b < 7) {
      sessions.push_back(std::make_unique<Session>(&m));
      (void)sessions.back()->Append(Tokens(prompt + b % 7, b));
    } else {
      sessions.push_back(sessions[b % 7]->Fork());
    }
    ptrs.push_back(sessions.back().get());
  }
  std::vector<int32_t> toks(batch, 65);
  (void)DecodeBatch(ptrs, toks);  // warm-up
  double best = 0;
  for (int rep = 0; rep < reps; ++rep) {
    const double c0 = CpuSeconds();
    auto t0 = Clock::now();
    for (int s = 0; s < steps; ++s) (void)DecodeBatch(ptrs, toks);
    const double rate = batch * steps / Seconds(t0, Clock::now());
    const double us = (CpuSeconds() - c0) * 1e6 / (batch * steps);
    best = std::max(best, rate);
    if (cpu_us && (rep == 0 || us < *cpu_us)) *cpu_us = us;
  }
  return best;
}

// Decode steps per repetition and repetitions for the random models' table at batch b (`steps`
// at batch 1; fewer at larger batches, so that the sessions' positions stay near the prompt).
void TableSteps(int b, int steps, int* n, int* reps) {
  *n = b == 1 ? steps : b <= 64 ? std::max(2, steps / 8) : std::max(2, steps / 16);
  *reps = b == 1 ? 5 : b <= 64 ? 4 : 3;
}

// Decode rows of one model at the given batch sizes (--model: about the same number of tokens
// per repetition at every batch size; --batches with --sizes: the table's steps).
void BenchDecode(const std::string& name, const Model& model, const std::vector<int>& batches,
                 int steps, bool table_steps) {
  double base = 0;
  for (int b : batches) {
    double cpu_us = 0;
    int n = std::max(4, steps * 64 / std::max(b, 1)), reps = 5;
    if (table_steps) TableSteps(b, steps, &n, &reps);
    const double rate = DecodeRate(model, b, 64, n, reps, &cpu_us);
    if (base == 0) base = rate;
    std::printf("| %s | %.2fM | %d | %.0f | %.1f | %.2fx |\n", name.c_str(),
                model.num_params() / 1e6, b, rate, cpu_us, rate / base);
    std::fflush(stdout);
  }
}

// The memory the decode step's packed weight copies (kernels/linear_packed.h) took beside the
// parameters, per model measured (printed after the decode table).
std::vector<std::string>& PackedNotes() {
  static std::vector<std::string> notes;
  return notes;
}
void PackedNote(const std::string& name, const Model& m) {
  char line[256];
  std::snprintf(line, sizeof(line), "| %s | %.2f MB | %.2f MB | %.2f MB |\n", name.c_str(),
                4e-6 * m.num_params(), 1e-6 * m.packed_bytes_built(), 1e-6 * m.packed_bytes());
  PackedNotes().push_back(line);
}
void PrintPackedNotes() {
  std::printf(
      "\n| model | parameters (f32) | packed copies built | packed copies, all "
      "|\n|---|---|---|---|\n");
  for (const std::string& l : PackedNotes()) std::printf("%s", l.c_str());
}

constexpr char kDecodeHeader[] =
    "| model | params | batch | decode tok/s | CPU us / token | vs batch 1 "
    "|\n|---|---|---|---|---|---|\n";

// --model: decode of checkpoints at the given batch sizes.
int BenchCheckpoints(const std::vector<std::string>& dirs, const std::vector<int>& batches,
                     int steps) {
  std::printf("%s", kDecodeHeader);
  for (const std::string& dir : dirs) {
    auto model = Model::Load(dir);
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
      return 1;
    }
    BenchDecode(dir, **model, batches, steps, false);
    PackedNote(dir, **model);
  }
  PrintPackedNotes();
  return 0;
}

Row Run(Family f, bool big, double bandwidth, int steps) {
  Row r;
  r.family = FamilyName(f);
  r.size = big ? "~25M" : "~1M";
  auto model = Model::RandomInit(BenchConfig(f, big), 1);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    std::exit(1);
  }
  const Model& m = **model;
  r.params = m.num_params();
  // Prefill: 512 tokens in one Append (chunks of 256), best of 3. Best-of-N repetitions make the
  // figures robust to other load on a shared machine.
  for (int rep = 0; rep < 3; ++rep) {
    Session s(&m);
    auto toks = Tokens(512, 3);
    auto t0 = Clock::now();
    (void)s.Append(toks);
    r.prefill = std::max(r.prefill, 512 / Seconds(t0, Clock::now()));
  }
  const int prompt = 64;
  int n, reps;
  TableSteps(1, steps, &n, &reps);
  r.decode1 = DecodeRate(m, 1, prompt, n, reps);
  TableSteps(64, steps, &n, &reps);
  r.decode64 = DecodeRate(m, 64, prompt, n, reps);
  TableSteps(256, steps, &n, &reps);
  r.decode256 = DecodeRate(m, 256, prompt, n, reps);
  const double bytes = 4.0 * r.params + SessionState::SizeBytesAfter(m.state_layout(), prompt);
  r.floor1 = bandwidth / bytes;
  Bound(m, prompt, &r);
  r.update_bw = MeasureUpdateBandwidth(
      64.0 * SessionState::SizeBytesAfter(m.state_layout(), prompt) + r.weight_bytes);
  r.state1k = SessionState::SizeBytesAfter(m.state_layout(), 1000);
  r.state10k = SessionState::SizeBytesAfter(m.state_layout(), 10000);
  r.state100k = SessionState::SizeBytesAfter(m.state_layout(), 100000);
  // Cross-check the formula against a real session at 1K tokens (small models only).
  if (!big) {
    Session s(&m);
    (void)s.Append(Tokens(1000, 4));
    if (s.SizeBytes() != r.state1k)
      std::fprintf(stderr, "state size formula mismatch for %s\n", r.family.c_str());
  }
  return r;
}

// --products: GFLOP/s of the decode step's products of the ~1M and ~25M models at the given row
// counts, through LinearForwardRef (OpenBLAS sgemm / sgemv), LinearForwardDecode (register
// blocks for 2..32 rows, else LinearForwardRef) and LinearForwardPacked (packed panels), best
// of 5 rounds of ~20 ms each, the three interleaved so that load on the machine hits them alike.
int BenchProducts(const std::vector<int>& batches) {
  struct Shape {
    const char* what;
    int64_t in, out;
  };
  const Shape shapes[] = {{"1M qkv", 128, 256},
                          {"1M gate|up", 128, 704},
                          {"1M down", 352, 128},
                          {"1M mamba in_proj", 128, 644},
                          {"25M qkv", 512, 1024},
                          {"25M o", 512, 512},
                          {"25M gate|up", 512, 2816},
                          {"25M down", 1408, 512},
                          {"25M mamba in_proj", 512, 2128},
                          {"25M mamba out_proj", 1024, 512},
                          {"25M lm_head", 512, 285}};
  std::printf(
      "| product | in | out | rows | sgemm GFLOP/s | decode GFLOP/s | packed GFLOP/s | packed / "
      "sgemm |\n|---|---|---|---|---|---|---|---|\n");
  for (const Shape& s : shapes) {
    std::vector<float> w(s.out * s.in);
    uint64_t seed = 1;
    for (float& v : w) v = static_cast<float>(NextRandom(&seed) % 1000) * 1e-3f - 0.5f;
    PackedLinear packed(w.data(), s.in, s.out);
    (void)packed.panels();
    for (int rows : batches) {
      std::vector<float> x(rows * s.in, 0.5f), y(rows * s.out);
      const double flop = 2.0 * rows * s.in * s.out;
      const int iters = std::max(1, static_cast<int>(2e-2 * 50e9 / flop));
      double best[3] = {0, 0, 0};
      for (int rep = 0; rep < 5; ++rep) {
        for (int k = 0; k < 3; ++k) {
          auto t0 = Clock::now();
          for (int i = 0; i < iters; ++i) {
            if (k == 0) LinearForwardRef(y.data(), x.data(), w.data(), nullptr, rows, s.in, s.out);
            if (k == 1)
              LinearForwardDecode(y.data(), x.data(), w.data(), nullptr, rows, s.in, s.out);
            if (k == 2) LinearForwardPacked(y.data(), x.data(), packed, nullptr, rows);
          }
          best[k] = std::max(best[k], flop * iters / Seconds(t0, Clock::now()) / 1e9);
        }
      }
      std::printf("| %s | %lld | %lld | %d | %.1f | %.1f | %.1f | %.2fx |\n", s.what,
                  static_cast<long long>(s.in), static_cast<long long>(s.out), rows, best[0],
                  best[1], best[2], best[2] / best[0]);
      std::fflush(stdout);
    }
  }
  return 0;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

int Main(int argc, char** argv) {
  std::string sizes = "1m,25m", families = "mamba2,llama,mistral,nemotron_h", models,
              batches = "1,16,64,256";
  int steps = 32;
  bool decode_only = false, products = false;
  for (int i = 1; i < argc; i += 2) {
    std::string flag = argv[i];
    if (i + 1 >= argc) flag = "";  // a flag without its value (or a lone --help): usage
    if (flag == "--sizes")
      sizes = argv[i + 1];
    else if (flag == "--families")
      families = argv[i + 1];
    else if (flag == "--steps")
      steps = std::max(8, std::atoi(argv[i + 1]));
    else if (flag == "--model")
      models = argv[i + 1];
    else if (flag == "--batches")
      batches = argv[i + 1];
    else if (flag == "--products")
      products = std::string(argv[i + 1]) != "0";
    else {
      std::fprintf(
          stderr,
          "usage: engine_bench [--sizes 1m,25m] [--families ...] [--steps N]\n"
          "       engine_bench --model DIR[,DIR...] [--batches 1,16,64,256] [--steps N]\n"
          "       engine_bench [--sizes ...] [--families ...] --batches 1,64 [--steps N]"
          "   (decode only, for profiling)\n"
          "       engine_bench --products 1 [--batches 1,16,64,256]   (the decode products "
          "alone: sgemm, register blocks, packed panels)\n");
      return 2;
    }
  }
  // --batches without --model: decode rows of the random models only.
  for (int i = 1; i + 1 < argc; i += 2) decode_only |= std::string(argv[i]) == "--batches";
  auto family = [](const std::string& name) {
    return name == "mamba2"    ? Family::kMamba2
           : name == "llama"   ? Family::kLlama
           : name == "mistral" ? Family::kMistral
                               : Family::kNemotronH;
  };
  if (!models.empty() || decode_only || products) {
    std::printf("engine threads: %d, hardware threads: %u, %s\n\n", EngineThreads(),
                std::thread::hardware_concurrency(), BlasDescription().c_str());
    std::vector<int> b;
    for (const std::string& x : Split(batches)) b.push_back(std::max(1, std::atoi(x.c_str())));
    if (products) return BenchProducts(b);
    if (!models.empty()) return BenchCheckpoints(Split(models), b, steps);
    std::printf("%s", kDecodeHeader);
    for (const std::string& size : Split(sizes)) {
      for (const std::string& fam : Split(families)) {
        auto model = Model::RandomInit(BenchConfig(family(fam), size == "25m"), 1);
        if (!model.ok()) return 1;
        BenchDecode(fam + " " + size, **model, b, steps, true);
        PackedNote(fam + " " + size, **model);
      }
    }
    PrintPackedNotes();
    return 0;
  }
  const double bw = MeasureBandwidth(512);
  const double bw_cached = MeasureBandwidth(96);
  const double gflops = MeasureGemmRate();
  std::printf("engine threads: %d, hardware threads: %u, %s\n", EngineThreads(),
              std::thread::hardware_concurrency(), BlasDescription().c_str());
  std::printf(
      "measured read bandwidth: %.2f GB/s (512 MiB buffer, DRAM; the floor below uses it), "
      "%.2f GB/s (96 MiB buffer, cache-resident)\n",
      bw / 1e9, bw_cached / 1e9);
  std::printf(
      "measured 64-row product rate: %.1f GFLOP/s (64 x 512 -> 2048, LinearForwardDecode)\n\n",
      gflops);
  std::vector<Row> rows;
  for (const std::string& size : Split(sizes)) {
    for (const std::string& fam : Split(families)) {
      rows.push_back(Run(family(fam), size == "25m", bw, steps));
      std::fflush(stdout);
    }
  }
  std::printf(
      "| family | size | params | prefill tok/s | decode b=1 tok/s | b=1 floor tok/s | b=1 / floor "
      "| "
      "b=64 tok/s | b=64 / b=1 | b=256 tok/s |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    std::printf("| %s | %s | %.2fM | %.0f | %.0f | %.0f | %.2f | %.0f | %.1fx | %.0f |\n",
                r.family.c_str(), r.size.c_str(), r.params / 1e6, r.prefill, r.decode1, r.floor1,
                r.decode1 / r.floor1, r.decode64, r.decode64 / r.decode1, r.decode256);
  }
  // The bound on batching. A decode step reads the weights (W) once whatever its batch, but
  // every token reads and writes its own session's state (S). Memory-bound at one bandwidth,
  // b=1 costs W + S bytes per token and b=64 W/64 + S, so b=64 / b=1 <= (W + S) / (W/64 + S).
  // Absolute ceilings of a b=64 step: the update bandwidth measured over its working set
  // (64 sessions' state and the weights) over W/64 + S, and the measured 64-row product rate
  // over the FLOPs per token. The smaller one over the measured b=1 rate bounds the measured
  // ratio; it is below the bytes ratio where b=1 runs from cache (weights and one session's
  // state fit in L2 / L3) faster than the bandwidth the 64 sessions' state sees.
  std::printf(
      "\n| family | size | weights W read / step | state S r+w / token at %d | (W+S) / (W/64+S) | "
      "MFLOP / token | update GB/s over 64 sessions + W | b=64 ceiling: bytes | b=64 ceiling: "
      "FLOPs | ceiling / b=1 | measured b=64 / b=1 "
      "|\n|---|---|---|---|---|---|---|---|---|---|---|\n",
      64);
  for (const Row& r : rows) {
    const double mem = r.update_bw / (r.weight_bytes / 64 + r.state_bytes),
                 compute = gflops * 1e9 / r.flops;
    std::printf(
        "| %s | %s | %.2f MB | %.0f KB | %.1fx | %.2f | %.1f | %.0f tok/s | %.0f tok/s | %.1fx | "
        "%.1fx |\n",
        r.family.c_str(), r.size.c_str(), r.weight_bytes / 1e6, r.state_bytes / 1e3,
        (r.weight_bytes + r.state_bytes) / (r.weight_bytes / 64 + r.state_bytes), r.flops / 1e6,
        r.update_bw / 1e9, mem, compute, std::min(mem, compute) / r.decode1,
        r.decode64 / r.decode1);
  }
  std::printf(
      "\n| family | size | state after 1K | after 10K | after 100K |\n|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    std::printf("| %s | %s | %.1f KiB | %.1f KiB | %.1f KiB |\n", r.family.c_str(), r.size.c_str(),
                r.state1k / 1024.0, r.state10k / 1024.0, r.state100k / 1024.0);
  }
  return 0;
}

}  // namespace
}  // namespace tapeloop::engine

int main(int argc, char** argv) { return tapeloop::engine::Main(argc, argv); }
