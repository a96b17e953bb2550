// Serving benchmark: the tapeloop.v1 Engine service in-process on a loopback port, N sessions
// each streaming Generate concurrently for D seconds (continuous batching), then the same
// number of tokens one session at a time (sequential), through the same gRPC path.
//
//   tapeloop_serve_bench [--sessions 256] [--seconds 30] [--model mamba2-pointer]
//                        [--models-dir models] [--prompt 16] [--max-tokens 128]
//                        [--sequential-cap-seconds 120]
//
// Prints p50 / p99 per-token latency (the gap between a token's arrival and the previous one on
// its stream; k tokens arriving in one chunk share the gap), aggregate tokens/s, the
// scheduler's steps and largest batch, and the batched / sequential throughput ratio. Exits 1 if
// any call failed. Sampling: temperature 1 with a distinct seed per session, no stop tokens.
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/linear.h"
#include "engine/parallel.h"
#include "server/engine_service.h"
#include "tapeloop/v1/engine.grpc.pb.h"

namespace {

namespace v1 = tapeloop::v1;
using Clock = std::chrono::steady_clock;

struct Flags {
  int sessions = 256;
  double seconds = 30;
  std::string model = "mamba2-pointer";
  std::string models_dir = "models";
  int prompt = 16;
  int max_tokens = 128;
  double sequential_cap_seconds = 120;
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--sessions")
      f.sessions = std::atoi(next().c_str());
    else if (a == "--seconds")
      f.seconds = std::atof(next().c_str());
    else if (a == "--model")
      f.model = next();
    else if (a == "--models-dir")
      f.models_dir = next();
    else if (a == "--prompt")
      f.prompt = std::atoi(next().c_str());
    else if (a == "--max-tokens")
      f.max_tokens = std::atoi(next().c_str());
    else if (a == "--sequential-cap-seconds")
      f.sequential_cap_seconds = std::atof(next().c_str());
    else {
      std::fprintf(stderr, "unknown flag %s (see the header of bench/serve_bench.cc)\n", a.c_str());
      std::exit(2);
    }
  }
  if (f.sessions < 1 || f.seconds <= 0 || f.prompt < 1 || f.max_tokens < 1) {
    std::fprintf(stderr, "flags out of range\n");
    std::exit(2);
  }
  return f;
}

// Latencies (seconds per token) and counts, shared by all streams.
struct Recorder {
  std::mutex mu;
  std::vector<double> latencies;
  int64_t tokens = 0;
  int64_t errors = 0;
  std::string first_error;
  void Tokens(int n, double gap) {
    std::lock_guard<std::mutex> lock(mu);
    for (int i = 0; i < n; ++i) latencies.push_back(gap / n);
    tokens += n;
  }
  void Error(const grpc::Status& s) {
    std::lock_guard<std::mutex> lock(mu);
    if (errors++ == 0) first_error = std::to_string(s.error_code()) + " " + s.error_message();
  }
};

// CPU seconds (user + system) of the whole process so far: the server, its scheduler and the
// in-process client together. On a shared machine tokens per CPU second compare the two phases
// more fairly than wall time does.
double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec * 1e-6;
}

// Steady-clock seconds.
double Seconds() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

// One session's stream loop: Generate calls back to back until the deadline.
class StreamLoop {
 public:
  StreamLoop(v1::Engine::Stub* stub, std::string session, int max_tokens, Clock::time_point end,
             Recorder* rec)
      : stub_(stub), session_(std::move(session)), max_tokens_(max_tokens), end_(end), rec_(rec) {}

  void Start() { (new Call(this))->Start(); }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
  }

 private:
  class Call final : public grpc::ClientReadReactor<v1::GenerateChunk> {
   public:
    explicit Call(StreamLoop* loop) : loop_(loop) {}
    void Start() {
      req_.set_session_id(loop_->session_);
      req_.set_max_tokens(loop_->max_tokens_);
      ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
      loop_->stub_->async()->Generate(&ctx_, &req_, this);
      last_ = Seconds();
      StartRead(&chunk_);
      StartCall();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;
      if (chunk_.token_ids_size() > 0) {
        const double now = Seconds();
        loop_->rec_->Tokens(chunk_.token_ids_size(), now - last_);
        last_ = now;
      }
      StartRead(&chunk_);
    }
    void OnDone(const grpc::Status& s) override {
      if (!s.ok()) loop_->rec_->Error(s);
      StreamLoop* loop = loop_;
      delete this;
      if (s.ok() && Clock::now() < loop->end_) {
        (new Call(loop))->Start();
      } else {
        std::lock_guard<std::mutex> lock(loop->mu_);
        loop->done_ = true;
        loop->cv_.notify_all();
      }
    }

   private:
    StreamLoop* loop_;
    grpc::ClientContext ctx_;
    v1::GenerateRequest req_;
    v1::GenerateChunk chunk_;
    double last_ = 0;  // Seconds() at the previous token (or the call's start)
  };

  v1::Engine::Stub* stub_;
  std::string session_;
  int max_tokens_;
  Clock::time_point end_;
  Recorder* rec_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

grpc::Status CheckCall(const grpc::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s failed: %d %s\n", what, s.error_code(), s.error_message().c_str());
    std::exit(1);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* core = tapeloop::engine::FasterBlasCoreType()) {
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv);  // OpenBLAS picks its kernels at load time
  }
  const Flags flags = ParseFlags(argc, argv);
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("tapeloop_serve_bench_" + std::to_string(getpid()));
  fs::create_directories(dir);

  tapeloop::server::ApiKeys keys;  // none: every caller is "local"
  tapeloop::server::CallTracker calls;
  tapeloop::server::ModelRegistry registry(flags.models_dir);
  tapeloop::server::ServiceContext ctx;
  ctx.keys = &keys;
  ctx.calls = &calls;
  ctx.db_path = (dir / "bench.db").string();
  ctx.models = &registry;
  ctx.limits.max_sessions_per_principal = std::max(1024, flags.sessions * 2);
  ctx.limits.max_tokens_in_flight_per_principal = int64_t{1} << 40;
  auto service = std::make_unique<tapeloop::server::EngineService>(&ctx);
  if (!service->init_status().ok()) {
    std::fprintf(stderr, "%s\n", service->init_status().ToString().c_str());
    return 1;
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service.get());
  auto server = builder.BuildAndStart();
  if (server == nullptr) return 1;
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  auto stub = v1::Engine::NewStub(channel);

  std::printf(
      "serve_bench: model %s, %d sessions, %.0f s, prompt %d, %d tokens per Generate, "
      "%d engine threads, %s, %ld cores\n",
      flags.model.c_str(), flags.sessions, flags.seconds, flags.prompt, flags.max_tokens,
      tapeloop::engine::EngineThreads(), tapeloop::engine::BlasDescription().c_str(),
      sysconf(_SC_NPROCESSORS_ONLN));

  // Sessions, each with its own seed and a random prompt.
  std::mt19937 rng(1);
  std::vector<std::string> sessions;
  for (int i = 0; i < flags.sessions; ++i) {
    v1::CreateSessionRequest create;
    create.set_model(flags.model);
    create.mutable_sampling()->set_temperature(1.0f);
    create.mutable_sampling()->set_seed(1000 + i);
    v1::EngineSession s;
    grpc::ClientContext c1;
    CheckCall(stub->CreateSession(&c1, create, &s), "CreateSession");
    v1::AppendRequest append;
    append.set_session_id(s.session_id());
    for (int t = 0; t < flags.prompt; ++t) append.mutable_tokens()->add_ids(rng() % 256);
    v1::AppendResponse appended;
    grpc::ClientContext c2;
    CheckCall(stub->Append(&c2, append, &appended), "Append");
    sessions.push_back(s.session_id());
  }

  // Batched: every session streams at once.
  Recorder batched;
  const double cpu0 = CpuSeconds();
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(flags.seconds));
  std::vector<std::unique_ptr<StreamLoop>> loops;
  for (const auto& id : sessions) {
    loops.push_back(std::make_unique<StreamLoop>(stub.get(), id, flags.max_tokens, end, &batched));
  }
  for (auto& l : loops) l->Start();
  for (auto& l : loops) l->Wait();
  const double batched_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double batched_cpu = CpuSeconds() - cpu0;
  const auto stats = service->stats();
  const double batched_tps = batched.tokens / batched_s;
  std::printf(
      "batched:    %lld tokens in %.2f s = %.0f tokens/s; per-token latency p50 %.2f ms, "
      "p99 %.2f ms; %.2f CPU s = %.0f tokens per CPU s; scheduler steps %lld, max batch %lld, "
      "mean batch %.1f; errors %lld\n",
      static_cast<long long>(batched.tokens), batched_s, batched_tps,
      1e3 * Percentile(batched.latencies, 0.50), 1e3 * Percentile(batched.latencies, 0.99),
      batched_cpu, batched.tokens / batched_cpu, static_cast<long long>(stats.steps),
      static_cast<long long>(stats.max_batch),
      stats.steps > 0 ? static_cast<double>(stats.tokens_generated) / stats.steps : 0.0,
      static_cast<long long>(batched.errors));

  // Sequential: the same number of tokens, one session at a time (capped in time).
  Recorder sequential;
  const double cpu1 = CpuSeconds();
  const auto s0 = Clock::now();
  const auto cap = s0 + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(flags.sequential_cap_seconds));
  bool capped = false;
  for (size_t i = 0; sequential.tokens < batched.tokens; i = (i + 1) % sessions.size()) {
    if (Clock::now() >= cap) {
      capped = true;
      break;
    }
    StreamLoop one(stub.get(), sessions[i], flags.max_tokens, Clock::now(), &sequential);
    one.Start();  // one Generate call (the deadline has passed when it ends)
    one.Wait();
  }
  const double seq_s = std::chrono::duration<double>(Clock::now() - s0).count();
  const double seq_cpu = CpuSeconds() - cpu1;
  const double seq_tps = sequential.tokens / seq_s;
  std::printf(
      "sequential: %lld tokens in %.2f s = %.0f tokens/s%s; per-token latency p50 %.2f ms, "
      "p99 %.2f ms; %.2f CPU s = %.0f tokens per CPU s; errors %lld\n",
      static_cast<long long>(sequential.tokens), seq_s, seq_tps,
      capped ? " (stopped at the time cap)" : "", 1e3 * Percentile(sequential.latencies, 0.50),
      1e3 * Percentile(sequential.latencies, 0.99), seq_cpu, sequential.tokens / seq_cpu,
      static_cast<long long>(sequential.errors));
  std::printf(
      "ratio batched / sequential: %.2fx aggregate tokens/s (target >= 5x), %.2fx tokens per CPU "
      "second\n",
      seq_tps > 0 ? batched_tps / seq_tps : 0.0,
      seq_cpu > 0 ? (batched.tokens / batched_cpu) / (sequential.tokens / seq_cpu) : 0.0);

  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  service->Shutdown();
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (batched.errors + sequential.errors > 0) {
    std::fprintf(stderr, "errors: %lld (first: %s)\n",
                 static_cast<long long>(batched.errors + sequential.errors),
                 (batched.errors > 0 ? batched.first_error : sequential.first_error).c_str());
    return 1;
  }
  return 0;
}
