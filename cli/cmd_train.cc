// tapeloop train --arch mamba2|llama|mistral|nemotron_h --task addition --mode pointer
//                --max-len 5 --steps N --seed S --out DIR [--config FILE]
//                [model / optimizer / data / evaluation flags]
// Trains a model from scratch on a task's expert trajectories (engine/train/trainer.h) and
// writes DIR/config.json + model.safetensors (HF format), DIR/trainer_state.safetensors,
// DIR/tokenizer.json, DIR/training.json ({"max_len", task, mode, arch, steps, ...}) and
// DIR/train_log.jsonl. With --agent-eval-lengths it then runs greedy
// agent-loop episodes (the model drives the pointer-memory tool; observations are fed back)
// and reports exact match per length; --eval-only does only that, on the model in DIR.
// --task code_debug trains on the debugger trajectories of tasks/code_debug (n functions in
// --min-len..--max-len, mode interactive or single-turn); its agent eval plays code_debug
// episodes through the debugger with the saved model (eval::ModelCodeDebugAgent).
#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli/args.h"
#include "cli/command.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "common/tokenizer.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/models/model.h"
#include "engine/train/nemotron_h_lm.h"
#include "engine/train/trainer.h"
#include "engine/train/transformer_lm.h"
#include "eval/code_debug_suite.h"
#include "nlohmann/json.hpp"
#include "tasks/code_debug/code_debug.h"
#include "tasks/task.h"
#include "tasks/trajectory_source.h"
#include "tools/pointer_memory.h"

namespace tapeloop::cli {
namespace {

namespace et = ::tapeloop::engine::train;
namespace cd = ::tapeloop::tasks::code_debug;

// tasks::TrajectorySource as the trainer's ExampleSource.
class TaskExamples final : public et::ExampleSource {
 public:
  explicit TaskExamples(std::unique_ptr<tasks::TrajectorySource> src) : src_(std::move(src)) {}
  std::vector<et::TrainExample> Next(int count) override {
    std::vector<et::TrainExample> out;
    for (tasks::Example& e : src_->Next(count))
      out.push_back(et::TrainExample{std::vector<int32_t>(e.tokens.begin(), e.tokens.end()),
                                     std::move(e.loss_mask)});
    return out;
  }
  uint64_t position() const override { return src_->position(); }
  void Seek(uint64_t p) override { src_->Seek(p); }

 private:
  std::unique_ptr<tasks::TrajectorySource> src_;
};

// Flags, optionally defaulted from a JSON config file with the same keys.
class Flags {
 public:
  Flags(Args* args, nlohmann::json config) : args_(args), config_(std::move(config)) {}
  std::string Str(const std::string& k, const std::string& def) {
    if (auto v = args_->Get(k)) return *v;
    if (config_.contains(k)) {
      const auto& j = config_.at(k);
      return j.is_string() ? j.get<std::string>() : j.dump();
    }
    return def;
  }
  absl::StatusOr<double> Num(const std::string& k, double def) {
    const std::string s = Str(k, "");
    if (s.empty()) return def;
    double v;
    if (!absl::SimpleAtod(s, &v))
      return absl::InvalidArgumentError(absl::StrCat("--", k, ": not a number: '", s, "'"));
    return v;
  }

 private:
  Args* args_;
  nlohmann::json config_;
};

// The JSON object in the file at `path`; an empty object when it cannot be read or parsed, or
// holds something else.
nlohmann::json ReadJsonObject(const std::string& path) {
  auto text = engine::ReadFileToString(path);
  nlohmann::json j = text.ok() ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
  return j.is_object() ? j : nlohmann::json::object();
}

// The model and task flags of the checkpoint the trainer wrote to `dir` (its config.json and
// training.json), as --config keys: what --eval-only and --resume fill in where the command line
// and --config say nothing. Keys the files do not hold are left out; unreadable files give none.
nlohmann::json FlagsFromCheckpoint(const std::string& dir) {
  nlohmann::json out = nlohmann::json::object();
  const nlohmann::json hf = ReadJsonObject(dir + "/config.json"),
                       tj = ReadJsonObject(dir + "/training.json");
  auto copy = [&](const nlohmann::json& from, const char* key, const char* flag) {
    if (from.contains(key) && (from[key].is_number() || from[key].is_string())) {
      out[flag] = from[key];
    }
  };
  // config.json key -> flag, per model_type (the keys each family's ToHfConfigJson writes).
  using Keys = std::vector<std::pair<const char*, const char*>>;
  const Keys attention = {{"num_attention_heads", "heads"},
                          {"num_key_value_heads", "kv-heads"},
                          {"head_dim", "attn-head-dim"},
                          {"intermediate_size", "ffn"}};
  Keys keys;
  const std::string type = hf.value("model_type", "");
  if (type == "mamba2") {
    keys = {{"num_hidden_layers", "layers"},
            {"state_size", "state"},
            {"head_dim", "head-dim"},
            {"expand", "expand"},
            {"chunk_size", "chunk"}};
  } else if (type == "llama" || type == "mistral") {
    keys = attention;
    keys.insert(keys.end(), {{"num_hidden_layers", "layers"},
                             {"rope_theta", "rope-theta"},
                             {"sliding_window", "window"}});
  } else if (type == "nemotron_h") {
    keys = attention;
    keys.insert(keys.end(), {{"hybrid_override_pattern", "pattern"},
                             {"mamba_head_dim", "head-dim"},
                             {"ssm_state_size", "state"},
                             {"chunk_size", "chunk"},
                             {"time_step_min", "time-step-min"}});
    // expand = Mamba heads x head dim / model width.
    const int64_t heads = hf.value("mamba_num_heads", int64_t{0}),
                  hd = hf.value("mamba_head_dim", int64_t{0}),
                  d = hf.value("hidden_size", int64_t{0});
    if (heads > 0 && hd > 0 && d > 0 && heads * hd % d == 0) out["expand"] = heads * hd / d;
  }
  if (!keys.empty()) {  // a family the trainer writes
    out["arch"] = type;
    copy(hf, "hidden_size", "d-model");
    for (const auto& [key, flag] : keys) copy(hf, key, flag);
  }
  copy(tj, "task", "task");
  copy(tj, "mode", "mode");
  copy(tj, "max_len", "max-len");
  copy(tj, "min_len", "min-len");
  return out;
}

struct AgentResult {
  int episodes = 0, exact = 0;
  int64_t tokens = 0;
};

// Greedy agent-loop episodes in pointer mode, all episodes batched through Mamba2Lm::Step:
// the prompt is fed token by token; a generated pointer command runs on the episode's
// PointerMemory and a read's observation is fed back as the next input; thoughts, [ANS] and
// outputs are emitted to memory; [EOS] (or an error, or 2x the expert's length) ends it.
absl::StatusOr<AgentResult> AgentEval(const et::Mamba2Lm& model, const std::vector<float>& params,
                                      const tasks::Task& task, int length, int episodes,
                                      uint64_t seed, int threads) {
  struct Episode {
    tasks::Instance inst;
    std::vector<TokenId> pending;  // inputs to feed before generating
    std::unique_ptr<tools::PointerMemory> mem;
    std::vector<TokenId> output;
    bool after_ans = false, done = false;
    int64_t limit = 0, generated = 0;
  };
  std::vector<Episode> eps(episodes);
  for (int i = 0; i < episodes; ++i) {
    tasks::Rng rng(tasks::MixSeed(seed, i));
    eps[i].inst = task.Generate(length, /*training=*/false, rng);
    ASSIGN_OR_RETURN(tasks::Trajectory expert, task.Expert(eps[i].inst, tasks::Mode::kPointer));
    eps[i].limit = 2 * static_cast<int64_t>(expert.tokens.size());
    std::vector<TokenId> prompt = tasks::PromptTokens(eps[i].inst);
    eps[i].mem = std::make_unique<tools::PointerMemory>(
        std::vector<TokenId>(prompt.begin() + 1, prompt.end()));
    eps[i].pending.assign(prompt.rbegin(), prompt.rend());  // popped from the back
  }
  const int64_t S = model.config().state_size(), V = model.config().vocab;
  // Episodes split into `threads` groups, each stepping its own batch.
  std::vector<std::thread> pool;
  std::atomic<int64_t> total_tokens{0};
  auto run_group = [&](int g) {
    std::vector<int> mine;
    for (int i = g; i < episodes; i += threads) mine.push_back(i);
    const int R = static_cast<int>(mine.size());
    std::vector<float> states(R * S, 0.f), logits(R * V);
    std::vector<int32_t> next(R);
    for (int k = 0; k < R; ++k) {
      next[k] = eps[mine[k]].pending.back();
      eps[mine[k]].pending.pop_back();
    }
    for (;;) {
      bool any = false;
      for (int k = 0; k < R; ++k) any |= !eps[mine[k]].done;
      if (!any) break;
      model.Step(params.data(), next, states.data(), logits.data());
      total_tokens += R;
      for (int k = 0; k < R; ++k) {
        Episode& e = eps[mine[k]];
        if (e.done) continue;
        if (!e.pending.empty()) {
          next[k] = e.pending.back();
          e.pending.pop_back();
          continue;
        }
        const float* z = logits.data() + k * V;
        const TokenId tok = static_cast<TokenId>(std::max_element(z, z + V) - z);
        next[k] = tok;
        if (++e.generated > e.limit) {
          e.done = true;
          continue;
        }
        if (tokens::IsPointerCommand(tok)) {
          auto obs = e.mem->Command(tok);
          if (!obs.ok()) {
            e.done = true;
            continue;
          }
          if (obs->has_value()) e.pending.push_back(**obs);
        } else if (tok == tokens::kEos) {
          e.done = true;
        } else {
          if (!e.mem->Emit(tok).ok()) {
            e.done = true;
            continue;
          }
          if (e.after_ans) e.output.push_back(tok);
          if (tok == tokens::kAns) e.after_ans = true;
        }
      }
    }
  };
  for (int g = 1; g < threads; ++g) pool.emplace_back(run_group, g);
  run_group(0);
  for (auto& t : pool) t.join();
  AgentResult res;
  res.episodes = episodes;
  res.tokens = total_tokens;
  for (const Episode& e : eps)
    res.exact += tasks::ScoreOutput(e.inst, tasks::Mode::kPointer, e.output).exact;
  return res;
}

// Teacher-forced error breakdown over `examples`: for every masked target the model gets wrong
// (argmax != target), counts by context "previous token -> target" (digits written as d) and by
// position bucket; prints the most frequent. For finding WHICH tokens a model gets wrong.
void Diagnose(const et::RowModel& model, const std::vector<float>& params,
              const std::vector<et::TrainExample>& examples) {
  const Tokenizer tok;
  auto name = [&](int32_t id) {
    return tokens::IsDigit(id) ? std::string("d") : tok.TokenText(id);
  };
  std::map<std::string, std::pair<int64_t, int64_t>> by_ctx;  // key -> (errors, total)
  std::map<std::string, int64_t> confusions;
  std::map<int64_t, std::pair<int64_t, int64_t>> by_pos;  // bucket of 25 -> (errors, total)
  int64_t exact = 0, errors = 0, targets = 0;
  et::Mamba2Workspace ws;
  std::vector<float> mask;
  std::vector<int32_t> argmax;
  for (const et::TrainExample& e : examples) {
    mask.assign(e.loss_mask.begin() + 1, e.loss_mask.end());
    et::RowResult r = model.RowForwardBackward(params.data(), e.tokens, mask, 1.0, nullptr, nullptr,
                                               nullptr, &ws, &argmax);
    exact += r.correct == r.counted;
    for (size_t i = 1; i < e.tokens.size(); ++i) {
      if (!e.loss_mask[i]) continue;
      const bool wrong = argmax[i - 1] != e.tokens[i];
      // Context: the two tokens before the target (the observation and the command before it).
      const std::string key = absl::StrCat(i >= 2 ? name(e.tokens[i - 2]) : "", " ",
                                           name(e.tokens[i - 1]), " -> ", name(e.tokens[i]));
      auto& c = by_ctx[key];
      c.first += wrong;
      ++c.second;
      auto& b = by_pos[static_cast<int64_t>(i) / 25];
      b.first += wrong;
      ++b.second;
      ++targets;
      if (wrong) {
        ++errors;
        ++confusions[absl::StrCat(key, " (predicted ", tok.TokenText(argmax[i - 1]), ")")];
      }
    }
  }
  std::fprintf(stderr, "diagnose: %zu examples, exact %lld, %lld/%lld targets wrong\n",
               examples.size(), static_cast<long long>(exact), static_cast<long long>(errors),
               static_cast<long long>(targets));
  std::vector<std::pair<int64_t, std::string>> rows;
  for (const auto& [k, v] : by_ctx)
    if (v.first > 0)
      rows.push_back({v.first, absl::StrFormat("%-40s %6lld / %6lld wrong", k, v.first, v.second)});
  std::sort(rows.rbegin(), rows.rend());
  std::fprintf(stderr, "errors by context (prev2 prev1 -> target; d = a digit):\n");
  for (size_t i = 0; i < rows.size() && i < 25; ++i)
    std::fprintf(stderr, "  %s\n", rows[i].second.c_str());
  rows.clear();
  for (const auto& [k, v] : confusions) rows.push_back({v, k});
  std::sort(rows.rbegin(), rows.rend());
  std::fprintf(stderr, "most frequent confusions:\n");
  for (size_t i = 0; i < rows.size() && i < 15; ++i)
    std::fprintf(stderr, "  %6lld  %s\n", static_cast<long long>(rows[i].first),
                 rows[i].second.c_str());
  std::fprintf(stderr, "errors by target position:\n");
  for (const auto& [b, v] : by_pos)
    std::fprintf(stderr, "  %4lld-%4lld  %6lld / %6lld wrong\n", static_cast<long long>(b * 25),
                 static_cast<long long>(b * 25 + 24), static_cast<long long>(v.first),
                 static_cast<long long>(v.second));
}

// OpenBLAS 0.3.21 does not recognize some recent Xeons (e.g. family 6 model 207 under KVM) and
// falls back to its Prescott (SSE3) kernels, ~4x slower here. Its core type can only be chosen
// before the library initializes, so when that happened on a CPU with AVX-512 / AVX2 we re-run
// this process once with OPENBLAS_CORETYPE set. Returns only if no re-exec was needed.
void UseFastBlasKernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  std::string core = openblas_get_corename();
  for (char& c : core) c = static_cast<char>(std::tolower(c));
  if (core != "prescott" && core != "core2" && core != "unknown") return;
  const char* want = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                     : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                       : nullptr;
  if (want == nullptr) return;
  setenv("OPENBLAS_CORETYPE", want, 1);
  std::fprintf(stderr,
               "tapeloop train: OpenBLAS chose %s kernels; re-running with OPENBLAS_CORETYPE=%s\n",
               core.c_str(), want);
  execv("/proc/self/exe", argv - 1);  // argv[-1] is the binary (main passes argv + 1)
}

int RunTrain(int argc, char** argv) {
  UseFastBlasKernels(argv);
  Args args(argc, argv, {"help", "eval-only", "resume"});
  if (args.Bool("help")) {
    std::cout
        << "usage: tapeloop train --arch mamba2|llama|mistral|nemotron_h --task addition "
           "--mode pointer --max-len 5\n"
           "                      --steps N --seed S --out DIR [--config FILE]\n"
           "  task:       --task addition|multiplication-n1|multiplication-n2|code_debug\n"
           "              --mode pointer|calculator|cot|direct|direct-reversed; for code_debug\n"
           "              interactive (default) or single-turn, n functions in\n"
           "              --min-len 4 .. --max-len\n"
           "  model:      --d-model 128 --layers 4 --state 16 --head-dim 16 --expand 2 --chunk 64\n"
           "              llama/mistral: --heads 4 --kv-heads 2 --attn-head-dim 32 --ffn 3*D\n"
           "              --rope-theta 10000 --window 64 (mistral)\n"
           "              nemotron_h: --pattern M-M-M*- (M Mamba-2, * attention without\n"
           "              positional encoding, - relu^2 MLP; its length is the layer count,\n"
           "              --layers is not used), Mamba-2 layers as mamba2's flags, attention\n"
           "              as llama's, MLP --ffn 3*D, --time-step-min 0.001 (dt clamp)\n"
           "  optimizer:  --batch 128 --lr 2e-3 --warmup 100 --clip 1.0 --weight-decay 0.01\n"
           "              --decay-all (also decay norms/biases/embeddings, as the prototype)\n"
           "  data:       --max-tokens 0 (skip longer trajectories)\n"
           "  states:     --init-state zero|pass-final|noise --noise-std 0.1\n"
           "              --tbptt-concat 1 --tbptt-window 0\n"
           "  running:    --threads 2 --log-every 10 --eval-every 100 --eval-count 128\n"
           "              --eval-length MAX_LEN --checkpoint-every 0 --resume\n"
           "  agent eval: --agent-eval-lengths 5,20 --agent-episodes 64 --agent-seed 1\n"
           "              --eval-only (no training: evaluate the model in --out; with\n"
           "              --resume, the model and task flags default to those of the model in\n"
           "              --out, from its config.json and training.json)\n"
           "  --diagnose N: teacher-forced error breakdown on N held-out examples (by context\n"
           "              and position)\n"
           "  --config FILE: a JSON object with any of these keys (flags override it)\n";
    return 0;
  }
  nlohmann::json config = nlohmann::json::object();
  if (auto file = args.Get("config")) {
    auto text = engine::ReadFileToString(*file);
    if (!text.ok()) return Fail("train", text.status(), 2);
    config = nlohmann::json::parse(*text, nullptr, false);
    if (config.is_discarded() || !config.is_object())
      return Fail(
          "train",
          absl::InvalidArgumentError(absl::StrCat("--config ", *file, ": not a JSON object")), 2);
  }
  {
    // --eval-only / --resume: the checkpoint's own model and task flags fill in what the command
    // line and --config leave out.
    Flags pre(&args, config);
    const std::string dir = pre.Str("out", "");
    const bool from_dir = args.Bool("eval-only") || args.Bool("resume") ||
                          pre.Str("eval-only", "") == "true" || pre.Str("resume", "") == "true";
    if (from_dir && !dir.empty()) {
      const nlohmann::json saved = FlagsFromCheckpoint(dir);
      for (const auto& [k, v] : saved.items()) {
        if (!config.contains(k)) config[k] = v;
      }
    }
  }
  Flags f(&args, config);
  const bool eval_only = args.Bool("eval-only") || f.Str("eval-only", "") == "true";
  const bool resume = args.Bool("resume") || f.Str("resume", "") == "true";
  const bool decay_all = args.Bool("decay-all") || f.Str("decay-all", "") == "true";
  const std::string arch = f.Str("arch", "mamba2");
  const std::string task_name = f.Str("task", "addition");
  const bool code_debug = task_name == cd::kTaskName;
  const std::string mode_name = f.Str("mode", code_debug ? "interactive" : "pointer");
  const std::string out = f.Str("out", "");
  const std::string init_state = f.Str("init-state", "zero");
  const std::string agent_lengths = f.Str("agent-eval-lengths", "");
  const std::string pattern = f.Str("pattern", "M-M-M*-");
  std::map<std::string, double> n;
  for (auto [k, def] : std::vector<std::pair<std::string, double>>{{"max-len", 5},
                                                                   {"steps", 400},
                                                                   {"seed", 0},
                                                                   {"d-model", 128},
                                                                   {"layers", 4},
                                                                   {"state", 16},
                                                                   {"head-dim", 16},
                                                                   {"expand", 2},
                                                                   {"chunk", 64},
                                                                   {"batch", 128},
                                                                   {"lr", 2e-3},
                                                                   {"warmup", 100},
                                                                   {"clip", 1.0},
                                                                   {"weight-decay", 0.01},
                                                                   {"max-tokens", 0},
                                                                   {"noise-std", 0.1},
                                                                   {"tbptt-concat", 1},
                                                                   {"tbptt-window", 0},
                                                                   {"threads", 2},
                                                                   {"log-every", 10},
                                                                   {"eval-every", 100},
                                                                   {"eval-count", 128},
                                                                   {"eval-length", -1},
                                                                   {"checkpoint-every", 0},
                                                                   {"agent-episodes", 64},
                                                                   {"agent-seed", 1},
                                                                   {"heads", 4},
                                                                   {"kv-heads", 2},
                                                                   {"attn-head-dim", 32},
                                                                   {"ffn", 0},
                                                                   {"window", 64},
                                                                   {"rope-theta", 10000},
                                                                   {"diagnose", 0},
                                                                   {"time-step-min", 0.001},
                                                                   {"min-len", 4}}) {
    auto v = f.Num(k, def);
    if (!v.ok()) return Fail("train", v.status(), 2);
    n[k] = *v;
  }
  args.Get("config");
  if (auto st = args.Finish(); !st.ok()) return Fail("train", st, 2);
  if (out.empty()) return Fail("train", absl::InvalidArgumentError("--out DIR is required"), 2);
  if (arch != "mamba2" && arch != "llama" && arch != "mistral" && arch != "nemotron_h")
    return Fail("train",
                absl::InvalidArgumentError(absl::StrCat(
                    "--arch ", arch, ": expected mamba2, llama, mistral or nemotron_h")),
                2);
  // The arithmetic tasks' mode and task, or code_debug's mode.
  absl::StatusOr<tasks::Mode> mode = tasks::Mode::kPointer;
  absl::StatusOr<const tasks::Task*> task = nullptr;
  cd::CodeDebugMode debug_mode = cd::CodeDebugMode::kInteractive;
  if (code_debug) {
    auto m = cd::ParseCodeDebugMode(mode_name);
    if (!m.ok())
      return Fail("train",
                  absl::InvalidArgumentError(absl::StrCat(
                      "--mode ", mode_name, ": code_debug's modes are interactive, single-turn")),
                  2);
    debug_mode = *m;
  } else {
    mode = tasks::ParseMode(mode_name);
    if (!mode.ok()) return Fail("train", mode.status(), 2);
    task = tasks::FindTask(task_name);
    if (!task.ok()) return Fail("train", task.status(), 2);
  }

  et::Mamba2LmConfig mc;
  mc.vocab = tokens::kVocabSize;
  mc.d_model = static_cast<int64_t>(n["d-model"]);
  mc.layers = static_cast<int>(n["layers"]);
  mc.state = static_cast<int>(n["state"]);
  mc.head_dim = static_cast<int>(n["head-dim"]);
  mc.expand = static_cast<int>(n["expand"]);
  mc.chunk = static_cast<int>(n["chunk"]);
  if (mc.d_model < 1 || mc.layers < 1 || mc.state < 1 || mc.head_dim < 1 || mc.expand < 1 ||
      mc.chunk < 1 || mc.inner() % mc.head_dim != 0)
    return Fail("train",
                absl::InvalidArgumentError(
                    "model sizes must be positive and d-model * expand divisible by head-dim"),
                2);
  et::TrainOptions o;
  o.steps = static_cast<int64_t>(n["steps"]);
  o.batch = static_cast<int>(n["batch"]);
  o.lr = n["lr"];
  o.warmup = static_cast<int64_t>(n["warmup"]);
  o.clip = n["clip"];
  o.adam.weight_decay = static_cast<float>(n["weight-decay"]);
  o.adam.decay_all = decay_all;
  o.threads = std::max(1, static_cast<int>(n["threads"]));
  o.seed = static_cast<uint64_t>(n["seed"]);
  o.noise_std = static_cast<float>(n["noise-std"]);
  o.tbptt_concat = std::max(1, static_cast<int>(n["tbptt-concat"]));
  o.tbptt_window = static_cast<int64_t>(n["tbptt-window"]);
  if (init_state == "zero") {
    o.init_state = et::InitState::kZero;
  } else if (init_state == "pass-final") {
    o.init_state = et::InitState::kPassFinal;
  } else if (init_state == "noise") {
    o.init_state = et::InitState::kNoise;
  } else {
    return Fail("train",
                absl::InvalidArgumentError(absl::StrCat("--init-state ", init_state,
                                                        ": expected zero, pass-final or noise")),
                2);
  }
  if (o.batch < 1 || o.steps < 0)
    return Fail("train", absl::InvalidArgumentError("--batch must be >= 1 and --steps >= 0"), 2);

  tasks::TrajectorySourceConfig sc;
  sc.task = task_name;
  sc.mode = *mode;
  sc.max_length = static_cast<int>(n["max-len"]);
  sc.training = true;
  sc.seed = o.seed;
  sc.max_tokens = static_cast<int64_t>(n["max-tokens"]);
  tasks::TrajectorySourceConfig ec = sc;
  ec.training = false;
  ec.max_length = n["eval-length"] > 0 ? static_cast<int>(n["eval-length"]) : sc.max_length;
  ec.seed = o.seed ^ 0x5eed0fe7a1ULL;  // held out: another stream of fresh instances
  ec.max_tokens = 0;
  absl::StatusOr<std::unique_ptr<tasks::TrajectorySource>> src, esrc;
  if (code_debug) {
    const int lo = static_cast<int>(n["min-len"]), hi = sc.max_length;
    if (lo < cd::kMinFunctions || lo > hi || hi > cd::kMaxFunctions + 1)
      return Fail("train",
                  absl::InvalidArgumentError(absl::StrCat(
                      "--min-len ", lo, " / --max-len ", hi, ": code_debug needs ",
                      cd::kMinFunctions, " <= --min-len <= --max-len <= ", cd::kMaxFunctions + 1)),
                  2);
    cd::CodeDebugSourceConfig dc;
    dc.mode = debug_mode;
    dc.min_functions = static_cast<int>(n["min-len"]);
    dc.max_functions = sc.max_length;
    dc.seed = sc.seed;
    dc.max_tokens = sc.max_tokens;
    src = cd::MakeCodeDebugTrajectorySource(dc);
    dc.min_functions = std::min(dc.min_functions, ec.max_length);
    dc.max_functions = ec.max_length;
    dc.seed = ec.seed;
    dc.max_tokens = 0;
    if (src.ok()) esrc = cd::MakeCodeDebugTrajectorySource(dc);
  } else {
    src = tasks::MakeTrajectorySource(sc);
    if (src.ok()) esrc = tasks::MakeTrajectorySource(ec);
  }
  if (!src.ok()) return Fail("train", src.status(), 2);
  TaskExamples data(std::move(*src));
  if (!esrc.ok()) return Fail("train", esrc.status(), 2);
  TaskExamples held(std::move(*esrc));

  std::unique_ptr<et::RowModel> row_model;
  if (arch == "mamba2") {
    row_model = std::make_unique<et::Mamba2Lm>(mc);
  } else if (arch == "nemotron_h") {
    et::NemotronHLmConfig hc;
    hc.vocab = tokens::kVocabSize;
    hc.d_model = mc.d_model;
    hc.pattern = pattern;
    hc.state = mc.state;
    hc.mamba_head_dim = mc.head_dim;
    hc.expand = mc.expand;
    hc.chunk = mc.chunk;
    hc.time_step_min = static_cast<float>(n["time-step-min"]);
    hc.heads = static_cast<int>(n["heads"]);
    hc.kv_heads = static_cast<int>(n["kv-heads"]);
    hc.attn_head_dim = static_cast<int>(n["attn-head-dim"]);
    hc.intermediate = n["ffn"] > 0 ? static_cast<int64_t>(n["ffn"]) : 3 * mc.d_model;
    if (auto st = hc.Validate(); !st.ok()) return Fail("train", st, 2);
    if (o.init_state != et::InitState::kZero || o.tbptt_concat > 1)
      return Fail("train",
                  absl::InvalidArgumentError(
                      "--init-state / --tbptt-concat need a recurrent state: nemotron_h rows "
                      "always start fresh (its attention layers carry no fixed-size state)"),
                  2);
    row_model = std::make_unique<et::NemotronHLm>(hc);
  } else {
    et::TransformerLmConfig tc;
    tc.vocab = tokens::kVocabSize;
    tc.d_model = mc.d_model;
    tc.layers = mc.layers;
    tc.heads = static_cast<int>(n["heads"]);
    tc.kv_heads = static_cast<int>(n["kv-heads"]);
    tc.head_dim = static_cast<int>(n["attn-head-dim"]);
    tc.intermediate = n["ffn"] > 0 ? static_cast<int64_t>(n["ffn"]) : 3 * mc.d_model;
    tc.rope_theta = n["rope-theta"];
    tc.sliding_window = arch == "mistral" ? static_cast<int64_t>(n["window"]) : 0;
    if (tc.heads < 1 || tc.kv_heads < 1 || tc.heads % tc.kv_heads != 0 || tc.head_dim < 2 ||
        tc.head_dim % 2 != 0 || (arch == "mistral" && tc.sliding_window < 1))
      return Fail(
          "train",
          absl::InvalidArgumentError(
              "--heads must be a multiple of --kv-heads, --attn-head-dim even, --window >= 1"),
          2);
    row_model = std::make_unique<et::TransformerLm>(tc);
  }
  et::Trainer trainer(std::move(row_model), o, &data);
  if (eval_only) {
    // The optimizer and schedule flags play no part in an evaluation: not printed.
    std::fprintf(stderr, "tapeloop train --eval-only: %s/%s, %lld parameters (%s), %d threads\n",
                 task_name.c_str(), mode_name.c_str(),
                 static_cast<long long>(trainer.model().table().total()),
                 trainer.model().Describe().c_str(), o.threads);
  } else {
    std::fprintf(
        stderr,
        "tapeloop train: %s/%s, %lld parameters (%s), batch %d, lr %g, %lld steps, %d threads\n",
        task_name.c_str(), mode_name.c_str(),
        static_cast<long long>(trainer.model().table().total()), trainer.model().Describe().c_str(),
        o.batch, o.lr, static_cast<long long>(o.steps), o.threads);
  }
  // A checkpoint that does not fit this run's model (a flag given that contradicts it, or a
  // directory the trainer did not write): say which model it holds (its training.json).
  auto mismatch = [&](const absl::Status& st) {
    const nlohmann::json j = ReadJsonObject(out + "/training.json");
    if (!j.contains("model") || !j["model"].is_string()) return st;
    const std::string theirs = j["model"].get<std::string>();
    if (theirs == trainer.model().Describe()) return st;
    return absl::Status(
        st.code(), absl::StrCat(st.message(), "; ", out, " holds ", theirs, " (training.json), ",
                                "this run builds ", trainer.model().Describe(),
                                ": pass the model flags it was trained with (--arch, --d-model, "
                                "...; its README.md or training command)"));
  };
  if (eval_only) {
    // Only the parameters: the optimizer state and the schedule do not matter to an
    // evaluation (and a bundled model ships without them), so only the model flags must match.
    if (auto st = trainer.LoadParams(out); !st.ok()) return Fail("train", mismatch(st), 1);
    std::fprintf(stderr, "loaded parameters from %s\n", out.c_str());
  } else if (resume) {
    if (auto st = trainer.LoadCheckpoint(out); !st.ok()) return Fail("train", mismatch(st), 1);
    std::fprintf(stderr, "resumed from %s at step %lld\n", out.c_str(),
                 static_cast<long long>(trainer.step()));
  }
  std::error_code dir_ec;
  std::filesystem::create_directories(out, dir_ec);
  std::ofstream log(out + "/train_log.jsonl", std::ios::app);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto evaluate = [&](int64_t step) {
    et::EvalStats ev = trainer.Evaluate(held.Next(static_cast<int>(n["eval-count"])));
    nlohmann::json j = {{"step", step},
                        {"eval_length", ec.max_length},
                        {"eval_examples", ev.examples},
                        {"eval_exact", ev.exact_rate()},
                        {"eval_token_acc", ev.token_acc},
                        {"eval_loss", ev.loss},
                        {"elapsed_s", elapsed()}};
    log << j.dump() << "\n" << std::flush;
    std::fprintf(stderr,
                 "eval step %lld: held-out %s%d exact %.4f (%lld/%lld, teacher-forced), token "
                 "acc %.5f\n",
                 static_cast<long long>(step), code_debug ? "n<=" : "length ", ec.max_length,
                 ev.exact_rate(), static_cast<long long>(ev.exact),
                 static_cast<long long>(ev.examples), ev.token_acc);
    return ev;
  };
  if (!eval_only) {
    const int64_t start = trainer.step();
    int64_t tokens = 0;
    double train_time = 0;
    for (int64_t s = start; s < o.steps; ++s) {
      const double a = elapsed();
      et::StepStats st = trainer.Step();
      const double dt = elapsed() - a;
      train_time += dt;
      tokens += st.tokens;
      nlohmann::json j = {{"step", st.step},     {"loss", st.loss},
                          {"lr", st.lr},         {"grad_norm", st.grad_norm},
                          {"tokens", st.tokens}, {"token_acc", st.token_acc},
                          {"step_s", dt},        {"elapsed_s", elapsed()}};
      log << j.dump() << "\n";
      const int64_t every = std::max<int64_t>(1, static_cast<int64_t>(n["log-every"]));
      if (st.step % every == 0 || st.step == o.steps || st.step == start + 1) {
        const double tps = tokens / std::max(train_time, 1e-9);
        const double eta = train_time / (st.step - start) * (o.steps - st.step);
        std::fprintf(stderr,
                     "step %lld/%lld loss %.5f tok_acc %.4f lr %.2e gnorm %.3f tok/s %.0f elapsed "
                     "%.0fs eta %.0fs\n",
                     static_cast<long long>(st.step), static_cast<long long>(o.steps), st.loss,
                     st.token_acc, st.lr, st.grad_norm, tps, elapsed(), eta);
      }
      const int64_t eval_every = static_cast<int64_t>(n["eval-every"]);
      if (eval_every > 0 && (st.step % eval_every == 0 || st.step == o.steps)) evaluate(st.step);
      const int64_t ck = static_cast<int64_t>(n["checkpoint-every"]);
      if (ck > 0 && st.step % ck == 0 && st.step != o.steps) {
        if (auto cs = trainer.SaveCheckpoint(out); !cs.ok()) return Fail("train", cs, 1);
      }
    }
    if (auto cs = trainer.SaveCheckpoint(out); !cs.ok()) return Fail("train", cs, 1);
    if (auto ts = Tokenizer().Save(out + "/tokenizer.json"); !ts.ok()) return Fail("train", ts, 1);
    // DIR/training.json: what the model was trained on (eval/runner.cc reads max_len to shade
    // the training range and to report "n->m").
    {
      nlohmann::json tj = {{"max_len", sc.max_length},
                           {"task", task_name},
                           {"mode", mode_name},
                           {"arch", arch},
                           {"steps", o.steps},
                           {"seed", o.seed},
                           {"batch", o.batch},
                           {"lr", o.lr},
                           {"warmup", o.warmup},
                           {"weight_decay", n["weight-decay"]},
                           {"parameters", trainer.model().table().total()},
                           {"model", trainer.model().Describe()}};
      if (arch == "nemotron_h") tj["pattern"] = pattern;
      if (code_debug) tj["min_len"] = static_cast<int>(n["min-len"]);
      std::ofstream tf(out + "/training.json");
      tf << DumpJson(tj, 2) << "\n";
      if (!tf)
        return Fail("train",
                    absl::InternalError(absl::StrCat("cannot write ", out, "/training.json")), 1);
    }
    std::fprintf(stderr, "trained %lld steps in %.1fs (%.0f tokens/s); saved %s\n",
                 static_cast<long long>(o.steps - start), train_time,
                 tokens / std::max(train_time, 1e-9), out.c_str());
    nlohmann::json j = {
        {"done", true}, {"steps", o.steps}, {"train_s", train_time}, {"elapsed_s", elapsed()}};
    log << j.dump() << "\n" << std::flush;
  }
  if (n["diagnose"] > 0)
    Diagnose(trainer.model(), trainer.params(), held.Next(static_cast<int>(n["diagnose"])));
  if (!agent_lengths.empty() && code_debug) {
    // The saved model plays code_debug episodes through the debugger (the evaluator's agent).
    auto model = engine::Model::Load(out);
    if (!model.ok()) return Fail("train", model.status(), 1);
    eval::ModelCodeDebugAgent agent(model->get());
    for (absl::string_view piece : absl::StrSplit(agent_lengths, ',')) {
      int len = 0;
      if (!absl::SimpleAtoi(piece, &len) || len < cd::kMinFunctions || len > cd::kMaxFunctions + 1)
        return Fail("train",
                    absl::InvalidArgumentError(
                        absl::StrCat("--agent-eval-lengths: bad n '", std::string(piece), "'")),
                    2);
      const double a = elapsed();
      std::vector<eval::EpisodeKey> keys;
      for (int i = 0; i < static_cast<int>(n["agent-episodes"]); ++i)
        keys.push_back(
            {"model", cd::kTaskName, mode_name, len, static_cast<int64_t>(n["agent-seed"]), i});
      auto rows = eval::RunCodeDebugEpisodes(agent, keys, o.threads);
      if (!rows.ok()) return Fail("train", rows.status(), 1);
      int passed = 0;
      std::map<std::string, int> reasons;
      for (const eval::EpisodeRow& r : *rows) {
        passed += r.correct ? 1 : 0;
        ++reasons[r.record.value("stop_reason", std::string("error"))];
      }
      const int episodes = static_cast<int>(rows->size());
      const double rate = double(passed) / std::max(1, episodes);
      std::string why;
      for (const auto& [k, v] : reasons) absl::StrAppend(&why, why.empty() ? "" : ", ", k, " ", v);
      std::fprintf(
          stderr, "agent eval: code_debug n=%d %s, %d episodes: passed %.4f (%d/%d), %.1fs (%s)\n",
          len, mode_name.c_str(), episodes, rate, passed, episodes, elapsed() - a, why.c_str());
      nlohmann::json j = {
          {"agent_eval_length", len}, {"episodes", episodes},    {"exact", rate},
          {"seed", n["agent-seed"]},  {"stop_reasons", reasons}, {"seconds", elapsed() - a}};
      log << DumpJson(j) << "\n" << std::flush;
      std::cout << DumpJson(j) << std::endl;
    }
  } else if (!agent_lengths.empty()) {
    if (*mode != tasks::Mode::kPointer)
      return Fail("train", absl::InvalidArgumentError("--agent-eval-lengths needs --mode pointer"),
                  2);
    const auto* mamba = dynamic_cast<const et::Mamba2Lm*>(&trainer.model());
    if (mamba == nullptr)
      return Fail(
          "train",
          absl::UnimplementedError("--agent-eval-lengths needs --arch mamba2 (the trainer's "
                                   "recurrent step); use tapeloop run --model DIR for the others"),
          2);
    for (absl::string_view piece : absl::StrSplit(agent_lengths, ',')) {
      int len = 0;
      if (!absl::SimpleAtoi(piece, &len) || len < 1)
        return Fail("train",
                    absl::InvalidArgumentError(absl::StrCat("--agent-eval-lengths: bad length '",
                                                            std::string(piece), "'")),
                    2);
      const double a = elapsed();
      auto r =
          AgentEval(*mamba, trainer.params(), **task, len, static_cast<int>(n["agent-episodes"]),
                    static_cast<uint64_t>(n["agent-seed"]), o.threads);
      if (!r.ok()) return Fail("train", r.status(), 1);
      const double rate = double(r->exact) / std::max(1, r->episodes);
      std::fprintf(stderr, "agent eval: %d-digit %s, %d episodes: exact %.4f (%d/%d), %.1fs\n", len,
                   task_name.c_str(), r->episodes, rate, r->exact, r->episodes, elapsed() - a);
      nlohmann::json j = {{"agent_eval_length", len},
                          {"episodes", r->episodes},
                          {"exact", rate},
                          {"seed", n["agent-seed"]},
                          {"seconds", elapsed() - a}};
      log << j.dump() << "\n" << std::flush;
      std::cout << j.dump() << std::endl;
    }
  }
  return 0;
}

}  // namespace

TAPELOOP_REGISTER_COMMAND("train", "train a model from scratch on a task's expert trajectories",
                          RunTrain);

}  // namespace tapeloop::cli
