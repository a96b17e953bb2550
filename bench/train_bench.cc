// Training throughput of the C++ trainer (engine/train): tokens/s of full training steps
// (forward + backward + AdamW) for Mamba-2 models of ~1M and ~25M parameters, and the achieved
// matmul GFLOP/s against this machine's measured sgemm peak (the same OpenBLAS, the same
// threads).
//
//   train_bench [--steps 3] [--threads 2] [--rows 32] [--len 128] [--sizes 1m,25m]
//
// FLOPs counted: 6 x (in_proj + out_proj + lm_head parameters) per token (the dense matmuls of
// forward and backward) plus the SSD's chunk matmuls (forward per token 2 P (q + 2N) per head
// and 2 q N per layer, backward twice that); elementwise work is not counted. llama / mistral / nemotron_h
// have no backward pass in this trainer yet, so only mamba2 is measured.
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "engine/train/mamba2_lm.h"
#include "engine/train/rng.h"
#include "engine/train/trainer.h"

namespace et = tapeloop::engine::train;

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Peak sgemm GFLOP/s with `threads` threads each running its own single-threaded 1024^3 sgemm
// (the way the trainer uses BLAS).
double SgemmPeak(int threads) {
  const int n = 1024;
  std::vector<std::vector<float>> a(threads, std::vector<float>(n * n, 0.5f)),
      b(threads, std::vector<float>(n * n, 0.25f)), c(threads, std::vector<float>(n * n));
  auto run = [&](int t, int reps) {
    for (int r = 0; r < reps; ++r)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a[t].data(), n,
                  b[t].data(), n, 0.f, c[t].data(), n);
  };
  for (int t = 0; t < threads; ++t) run(t, 1);  // warm up
  const int reps = 8;
  const double t0 = Now();
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(run, t, reps);
  run(0, reps);
  for (auto& th : pool) th.join();
  return 2.0 * n * n * n * reps * threads / (Now() - t0) / 1e9;
}

class RandomRows final : public et::ExampleSource {
 public:
  RandomRows(int len, int vocab) : len_(len), vocab_(vocab) {}
  std::vector<et::TrainExample> Next(int count) override {
    std::vector<et::TrainExample> out(count);
    for (auto& e : out) {
      for (int t = 0; t <= len_; ++t) e.tokens.push_back(static_cast<int32_t>(rng_.UniformInt(0, vocab_ - 1)));
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

}  // namespace

int main(int argc, char** argv) {
  int steps = 3, threads = 2, rows = 32, len = 128;
  std::string sizes = "1m,25m";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--steps") steps = std::atoi(argv[i + 1]);
    else if (k == "--threads") threads = std::atoi(argv[i + 1]);
    else if (k == "--rows") rows = std::atoi(argv[i + 1]);
    else if (k == "--len") len = std::atoi(argv[i + 1]);
    else if (k == "--sizes") sizes = argv[i + 1];
  }
  openblas_set_num_threads(1);
  std::printf("OpenBLAS core: %s (set OPENBLAS_CORETYPE=SkylakeX if this says Prescott)\n",
              openblas_get_corename());
  const double peak1 = SgemmPeak(1), peakn = SgemmPeak(threads);
  std::printf("sgemm peak: %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads\n", peak1, peakn,
              threads);
  struct Size {
    std::string name;
    et::Mamba2LmConfig c;
  };
  std::vector<Size> configs;
  et::Mamba2LmConfig small;  // ~1M: D=128, 8 layers
  small.d_model = 128;
  small.layers = 8;
  et::Mamba2LmConfig big;  // ~25M: D=512, 16 layers, head dim 64
  big.d_model = 512;
  big.layers = 16;
  big.head_dim = 64;
  big.state = 64;
  if (sizes.find("1m") != std::string::npos) configs.push_back({"mamba2-1m", small});
  if (sizes.find("25m") != std::string::npos) configs.push_back({"mamba2-25m", big});
  for (const Size& s : configs) {
    et::TrainOptions o;
    o.steps = 1000;
    o.batch = rows;
    o.threads = threads;
    RandomRows data(len, static_cast<int>(s.c.vocab));
    et::Trainer tr(s.c, o, &data);
    tr.Step();  // warm up
    const double t0 = Now();
    int64_t tokens = 0;
    for (int i = 0; i < steps; ++i) tokens += tr.Step().tokens;
    const double dt = Now() - t0;
    const double D = s.c.d_model, di = s.c.inner(), V = s.c.vocab;
    const double dense = 6.0 * (s.c.layers * (s.c.proj_dim() * D + D * di) + V * D);
    const double q = std::min<double>(s.c.chunk, len), P = s.c.head_dim, N = s.c.state;
    // Per token: per head W x (2 q P) and the state in/out products (4 N P), per layer C B^T
    // (2 q N); backward about twice the forward.
    const double ssd = 3.0 * s.c.layers * (s.c.heads() * 2.0 * P * (q + 2 * N) + 2.0 * q * N);
    const double flops = (dense + ssd) * tokens;
    const double gflops = flops / dt / 1e9;
    std::printf("%s: %lld params, %d rows x %d tokens, %d threads: %.0f tokens/s, %.1f GFLOP/s "
                "counted (%.0f%% of the %d-thread sgemm peak)\n",
                s.name.c_str(), static_cast<long long>(tr.model().table().total()), rows, len,
                threads, tokens / dt, gflops, 100.0 * gflops / peakn, threads);
  }
  return 0;
}
