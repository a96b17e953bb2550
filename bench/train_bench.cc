// Training throughput of the C++ trainer (engine/train): tokens/s of full training steps
// (forward + backward + AdamW) for every family (mamba2, llama, mistral, nemotron_h) at ~1M and
// ~25M parameters, and the achieved matmul GFLOP/s against this machine's measured sgemm peak
// (the same OpenBLAS, the same threads).
//
//   train_bench [--steps 3] [--rounds 5] [--threads 2] [--rows 32] [--len 128]
//               [--sizes 1m,25m] [--families mamba2,llama,mistral,nemotron_h]
//
// The machines this runs on are shared: another tenant can halve a core's speed for seconds at a
// time, so one peak measured at the start and compared with timings taken later says as much
// about the neighbours as about the trainer. Each model is therefore timed in `rounds` rounds,
// each `steps` training steps bracketed by two short sgemm peak measurements (before and
// after), and its ratio to the peak is taken per round against the mean of its two brackets:
// the figures printed are the median over rounds and their range.
//
// FLOPs counted per token: 6 x the parameters of every weight matrix but the embedding (the
// dense matmuls of forward and backward); per Mamba-2 layer the SSD's chunk matmuls (forward
// 2 P (q + 2N) per head and 2 q N per layer, backward twice that); per attention layer the
// score and value products over the causal context (forward 4 Hq hd ctx with ctx the mean
// visible length, backward twice that). Elementwise work is not counted.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/train/mamba2_lm.h"
#include "engine/train/nemotron_h_lm.h"
#include "engine/train/rng.h"
#include "engine/train/trainer.h"
#include "engine/train/transformer_lm.h"

namespace et = tapeloop::engine::train;

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds used so far by this thread / by the whole process: on a shared, loaded machine
// these count only the time we were actually running, unlike Now().
double Cpu(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Peak sgemm GFLOP/s with `threads` threads each running its own single-threaded 1024^3 sgemm
// (the way the trainer uses BLAS). *per_cpu_s (if given) receives the GFLOP per CPU-second of
// thread 0 (its own CPU time, so it does not drop when other processes take the core).
double SgemmPeak(int threads, double* per_cpu_s = nullptr, int reps = 8) {
  const int n = 1024;
  std::vector<std::vector<float>> a(threads, std::vector<float>(n * n, 0.5f)),
      b(threads, std::vector<float>(n * n, 0.25f)), c(threads, std::vector<float>(n * n));
  auto run = [&](int t, int reps) {
    for (int r = 0; r < reps; ++r)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a[t].data(), n,
                  b[t].data(), n, 0.f, c[t].data(), n);
  };
  for (int t = 0; t < threads; ++t) run(t, 1);  // warm up
  const double t0 = Now();
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(run, t, reps);
  const double c0 = Cpu(CLOCK_THREAD_CPUTIME_ID);
  run(0, reps);
  if (per_cpu_s) *per_cpu_s = 2.0 * n * n * n * reps / (Cpu(CLOCK_THREAD_CPUTIME_ID) - c0) / 1e9;
  for (auto& th : pool) th.join();
  return 2.0 * n * n * n * reps * threads / (Now() - t0) / 1e9;
}

// Median and range of a non-empty sample.
struct Spread {
  double median, lo, hi;
};
Spread SpreadOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return {med, v.front(), v.back()};
}

class RandomRows final : public et::ExampleSource {
 public:
  RandomRows(int len, int vocab) : len_(len), vocab_(vocab) {}
  std::vector<et::TrainExample> Next(int count) override {
    std::vector<et::TrainExample> out(count);
    for (auto& e : out) {
      for (int t = 0; t <= len_; ++t)
        e.tokens.push_back(static_cast<int32_t>(rng_.UniformInt(0, vocab_ - 1)));
      e.loss_mask.assign(e.tokens.size(), 1);
      e.loss_mask[0] = 0;
    }
    pos_ += count;
    return out;
  }
  uint64_t position() const override { return pos_; }
  void Seek(uint64_t p) override { pos_ = p; }

 private:
  int len_, vocab_;
  et::Rng rng_{7};
  uint64_t pos_ = 0;
};

// One benchmarked model: the row model and its counted FLOPs per token.
struct Bench {
  std::string name;
  std::unique_ptr<et::RowModel> model;
  double extra_flops_per_token = 0;  // SSD and attention products, beyond the dense 6 x params
};

// 6 x the parameters of every 2-D weight but the embedding.
double DenseFlopsPerToken(const et::ParamTable& t) {
  double n = 0;
  for (int i = 0; i < t.size(); ++i) {
    const et::ParamSpec& s = t.spec(i);
    if (s.shape.size() == 2 && s.name.find("embed") == std::string::npos) n += t.numel(i);
  }
  return 6.0 * n;
}

double SsdFlopsPerToken(int64_t chunk, int len, int heads, int P, int N) {
  const double q = std::min<double>(chunk, len);
  return 3.0 * (heads * 2.0 * P * (q + 2.0 * N) + 2.0 * q * N);
}

double AttentionFlopsPerToken(int len, int64_t window, int heads, int hd) {
  // Mean visible context over positions 1..len, capped by the window.
  double ctx = 0;
  for (int t = 1; t <= len; ++t) ctx += window > 0 ? std::min<int64_t>(t, window) : t;
  ctx /= len;
  return 3.0 * 4.0 * heads * hd * ctx;
}

std::vector<Bench> Benches(const std::string& sizes, const std::string& families, int len) {
  std::vector<Bench> out;
  auto want = [&](const std::string& family, const std::string& size) {
    return families.find(family) != std::string::npos && sizes.find(size) != std::string::npos;
  };
  for (const std::string size : {"1m", "25m"}) {
    const bool big = size == "25m";
    if (want("mamba2", size)) {
      et::Mamba2LmConfig c;  // ~1M: D=128 x 8 layers; ~25M: D=512 x 16, head dim 64, N 64
      c.d_model = big ? 512 : 128;
      c.layers = big ? 16 : 8;
      c.head_dim = big ? 64 : 16;
      c.state = big ? 64 : 16;
      out.push_back({"mamba2-" + size, std::make_unique<et::Mamba2Lm>(c),
                     c.layers * SsdFlopsPerToken(c.chunk, len, c.heads(), c.head_dim, c.state)});
    }
    for (const std::string family : {"llama", "mistral"}) {
      if (!want(family, size)) continue;
      et::TransformerLmConfig c;  // ~1M: D=128 x 5, 4/2 heads of 32; ~25M: D=512 x 8, 8/4 of 64
      c.d_model = big ? 512 : 128;
      c.layers = big ? 8 : 5;
      c.heads = big ? 8 : 4;
      c.kv_heads = big ? 4 : 2;
      c.head_dim = big ? 64 : 32;
      c.intermediate = big ? 1408 : 352;
      c.sliding_window = family == "mistral" ? 64 : 0;
      out.push_back(
          {family + "-" + size, std::make_unique<et::TransformerLm>(c),
           c.layers * AttentionFlopsPerToken(len, c.sliding_window, c.heads, c.head_dim)});
    }
    if (want("nemotron_h", size)) {
      et::NemotronHLmConfig c;  // three Mamba-2 layers to one attention layer, MLPs between
      c.d_model = big ? 512 : 128;
      c.pattern = big ? "M-M-M*-M-M-M*-M-M-M*-" : "M-M-M*-";
      c.mamba_head_dim = big ? 64 : 16;
      c.state = big ? 64 : 16;
      c.heads = big ? 8 : 4;
      c.kv_heads = big ? 4 : 2;
      c.attn_head_dim = big ? 64 : 32;
      c.intermediate = big ? 1408 : 384;
      double extra = 0;
      for (char k : c.pattern) {
        if (k == 'M')
          extra += SsdFlopsPerToken(c.chunk, len, c.mamba_heads(), c.mamba_head_dim, c.state);
        if (k == '*') extra += AttentionFlopsPerToken(len, 0, c.heads, c.attn_head_dim);
      }
      out.push_back({"nemotron_h-" + size, std::make_unique<et::NemotronHLm>(c), extra});
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 3, rounds = 5, threads = 2, rows = 32, len = 128;
  std::string sizes = "1m,25m", families = "mamba2,llama,mistral,nemotron_h";
  for (int i = 1; i < argc; i += 2) {
    const std::string k = i + 1 < argc ? argv[i] : "";  // a flag without its value: usage
    if (k == "--steps")
      steps = std::atoi(argv[i + 1]);
    else if (k == "--rounds")
      rounds = std::atoi(argv[i + 1]);
    else if (k == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (k == "--rows")
      rows = std::atoi(argv[i + 1]);
    else if (k == "--len")
      len = std::atoi(argv[i + 1]);
    else if (k == "--sizes")
      sizes = argv[i + 1];
    else if (k == "--families")
      families = argv[i + 1];
    else {
      std::fprintf(stderr,
                   "usage: train_bench [--steps 3] [--rounds 5] [--threads 2] [--rows 32] "
                   "[--len 128]\n"
                   "                   [--sizes 1m,25m] [--families "
                   "mamba2,llama,mistral,nemotron_h]\n");
      return 2;
    }
  }
  if (steps < 1 || rounds < 1 || threads < 1 || rows < 1 || len < 1) {
    std::fprintf(stderr, "train_bench: --steps, --rounds, --threads, --rows, --len must be >= 1\n");
    return 2;
  }
  openblas_set_num_threads(1);
  std::printf("OpenBLAS core: %s (set OPENBLAS_CORETYPE=SkylakeX if this says Prescott)\n",
              openblas_get_corename());
  double peak_cpu = 0;
  const double peak1 = SgemmPeak(1, &peak_cpu), peakn = SgemmPeak(threads);
  std::printf(
      "sgemm peak at the start: %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads; %.1f "
      "GFLOP per CPU-second\n",
      peak1, peakn, threads, peak_cpu);
  std::printf(
      "per model: %d rounds of %d steps, each between two %d-thread sgemm peak measurements; "
      "median [range] over rounds\n",
      rounds, steps, threads);
  for (Bench& b : Benches(sizes, families, len)) {
    et::TrainOptions o;
    o.steps = 1000000;
    o.batch = rows;
    o.threads = threads;
    RandomRows data(len, 285);
    const double per_token = DenseFlopsPerToken(b.model->table()) + b.extra_flops_per_token;
    const long long params = static_cast<long long>(b.model->table().total());
    et::Trainer tr(std::move(b.model), o, &data);
    tr.Step();  // warm up
    std::vector<double> tok_s, gflops, peak, ratio, cpu_ratio;
    for (int r = 0; r < rounds; ++r) {
      double cpu_a = 0, cpu_b = 0;
      const double pa = SgemmPeak(threads, &cpu_a, 4);
      const double t0 = Now(), c0 = Cpu(CLOCK_PROCESS_CPUTIME_ID);
      int64_t tokens = 0;
      for (int i = 0; i < steps; ++i) tokens += tr.Step().tokens;
      const double dt = Now() - t0, dc = Cpu(CLOCK_PROCESS_CPUTIME_ID) - c0;
      const double pb = SgemmPeak(threads, &cpu_b, 4);
      // Per CPU-second against the sgemm's per CPU-second (thread 0 of the same n-thread run):
      // the same ratio as the wall-clock one on an idle machine with balanced threads, but
      // robust to other processes taking a core.
      const double g = per_token * tokens / dt / 1e9, per_cpu = per_token * tokens / dc / 1e9;
      tok_s.push_back(tokens / dt);
      gflops.push_back(g);
      peak.push_back(0.5 * (pa + pb));
      ratio.push_back(100.0 * g / peak.back());
      cpu_ratio.push_back(100.0 * per_cpu / (0.5 * (cpu_a + cpu_b)));
    }
    const Spread ts = SpreadOf(tok_s), gf = SpreadOf(gflops), pk = SpreadOf(peak),
                 ra = SpreadOf(ratio), cr = SpreadOf(cpu_ratio);
    std::printf(
        "%s: %lld params, %d rows x %d tokens, %d threads: %.0f [%.0f-%.0f] tokens/s, %.1f "
        "GFLOP/s counted; %d-thread sgemm peak %.1f [%.1f-%.1f]; %.0f%% [%.0f-%.0f] of the "
        "peak; per CPU-second %.0f%% [%.0f-%.0f] of the sgemm's\n",
        b.name.c_str(), params, rows, len, threads, ts.median, ts.lo, ts.hi, gf.median, threads,
        pk.median, pk.lo, pk.hi, ra.median, ra.lo, ra.hi, cr.median, cr.lo, cr.hi);
    std::fflush(stdout);
  }
  return 0;
}
