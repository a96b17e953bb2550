// tapeloop run --model DIR | --oracle --task addition --length N --seed S [--mode pointer]
//              [--episodes K] [--parallel P] [--training] [--temperature T]
//              [--max-tokens N] [--json]
// Runs episodes of a task through the agent loop and prints each trajectory (thoughts,
// outputs, commands and observations told apart; ANSI colours only on a terminal) and its
// score, or with --json one episode record per line (JSONL). --task code_debug plays the
// debugging task instead (--length = functions, --mode interactive | single-turn): the
// oracle or the model sends debugger commands (eval::ModelCodeDebugAgent), and each episode's
// commands, observations (cut at 2,000 bytes), stop reason and score are printed.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agents/agent_loop.h"
#include "agents/engine_policy.h"
#include "agents/oracle_policy.h"
#include "agents/render.h"
#include "cli/args.h"
#include "cli/command.h"
#include "common/json.h"
#include "common/tokenizer.h"
#include "engine/models/model.h"
#include "eval/code_debug_suite.h"
#include "tasks/code_debug/code_debug.h"
#include "tasks/task.h"

namespace tapeloop::cli {
namespace {

namespace cd = ::tapeloop::tasks::code_debug;

// --task code_debug: episodes of the debugging task, played by the oracle or the model.
// `parallel` episodes live at once: a model's decode steps are batched over them, on up to one
// thread per core.
int RunCodeDebug(const engine::Model* model, const std::string& mode, int64_t n, int64_t seed,
                 int64_t episodes, int parallel, int64_t max_tokens, bool json) {
  std::unique_ptr<eval::CodeDebugAgent> agent;
  if (model == nullptr) {
    agent = std::make_unique<eval::OracleCodeDebugAgent>();
  } else {
    eval::ModelDebugLimits limits;
    if (max_tokens > 0) limits.max_tokens = max_tokens;
    agent = std::make_unique<eval::ModelCodeDebugAgent>(model, limits, parallel);
  }
  const int threads =
      std::max(1, std::min<int>(parallel, static_cast<int>(std::thread::hardware_concurrency())));
  std::vector<eval::EpisodeKey> keys;
  for (int64_t i = 0; i < episodes; ++i) {
    keys.push_back({model == nullptr ? "oracle" : "model", cd::kTaskName, mode, n, seed, i});
  }
  auto rows = eval::RunCodeDebugEpisodes(*agent, keys, threads);
  if (!rows.ok()) return Fail("run", rows.status(), 1);
  int passed = 0;
  for (size_t i = 0; i < rows->size(); ++i) {
    const eval::EpisodeRow& r = (*rows)[i];
    passed += r.correct ? 1 : 0;
    if (json) {
      std::cout << DumpJson(r.record) << "\n";
      continue;
    }
    std::cout << absl::StrFormat("episode %d: code_debug, mode %s, n %d, policy %s\n", i, mode, n,
                                 model == nullptr ? "oracle" : "model");
    for (const auto& step : r.record.value("steps", nlohmann::json::array())) {
      std::cout << "$ " << step.value("command", "") << "\n" << step.value("observation", "");
      const std::string obs = step.value("observation", "");
      if (!obs.empty() && obs.back() != '\n') std::cout << "\n";
    }
    if (r.record.contains("error")) {
      std::cout << "error: " << r.record.value("error", "") << "\n";
    }
    std::cout << absl::StrFormat(
        "passed: %s | outcome %s | stop=%s | %d commands, %d runs, matches the expert: %s, "
        "%.1f ms\n\n",
        r.correct ? "yes" : "no",
        r.record.contains("score") ? r.record["score"].value("outcome", "") : std::string("-"),
        r.record.value("stop_reason", model == nullptr ? "expert" : "-"), r.tool_calls,
        r.record.value("runs", 0), r.trajectory_match ? "yes" : "no", r.wall_ms);
  }
  if (!json && rows->size() > 1) {
    std::cout << absl::StrFormat("passed: %d / %d\n", passed, rows->size());
  }
  return 0;
}

constexpr char kUsage[] =
    "usage: tapeloop run (--model DIR | --oracle) [--task addition] [--length 10] [--seed 0]\n"
    "                    [--mode pointer] [--episodes 1] [--parallel 8] [--training]\n"
    "                    [--temperature 0] [--max-tokens N] [--json]\n"
    "  --model DIR     HF-format checkpoint (config.json, model.safetensors, tokenizer.json)\n"
    "  --oracle        play the expert trajectory through the same loop and tools\n"
    "  --task          addition | multiplication (n x 2) | multiplication-n1 | "
    "multiplication-n2 |\n"
    "                  code_debug (fix a generated program through the debugger)\n"
    "  --length N      operand length in digits (the first operand for multiplication);\n"
    "                  code_debug: the number of functions (2..1001)\n"
    "  --seed S        instance seed; episode i uses instance seed mix(S, i)\n"
    "  --mode          pointer | calculator | cot | direct | direct-reversed;\n"
    "                  code_debug: interactive (default) | single-turn\n"
    "  --parallel P    episodes played at once (their decode steps batched)\n"
    "  --training      draw instances from the training distribution (lengths U{1..N})\n"
    "  --temperature   sampling temperature for --model (0: greedy)\n"
    "  --max-tokens    generated-token budget per episode (default: 2x the expert's + 64)\n"
    "  --json          print one JSON episode record per line instead of the trajectory\n";

int RunRun(int argc, char** argv) {
  Args args(argc, argv, {"help", "oracle", "json", "training"});
  if (args.Bool("help")) {
    std::cout << kUsage;
    return 0;
  }
  const std::string model_dir = args.String("model", "");
  const bool oracle = args.Bool("oracle");
  const std::string task_name = args.String("task", "addition");
  const bool code_debug = task_name == cd::kTaskName;
  const std::string mode_name = args.String("mode", code_debug ? "interactive" : "pointer");
  const bool json = args.Bool("json");
  const bool training = args.Bool("training");
  auto length = args.Int("length", 10);
  auto seed = args.Int("seed", 0);
  auto episodes = args.Int("episodes", 1);
  auto parallel = args.Int("parallel", 8);
  auto max_tokens = args.Int("max-tokens", 0);
  auto temperature = args.Double("temperature", 0.0);
  for (const absl::Status& s :
       {length.status(), seed.status(), episodes.status(), parallel.status(), max_tokens.status(),
        temperature.status(), args.Finish()}) {
    if (!s.ok()) return Fail("run", s, 2);
  }
  if (oracle == !model_dir.empty()) {
    return Fail("run", absl::InvalidArgumentError("give exactly one of --model DIR and --oracle"),
                2);
  }
  if (*length < 1 || *length > 100'000) {
    return Fail(
        "run",
        absl::InvalidArgumentError(absl::StrCat("--length must be in 1..100000, got ", *length)),
        2);
  }
  if (*episodes < 1 || *parallel < 1) {
    return Fail("run", absl::InvalidArgumentError("--episodes and --parallel must be >= 1"), 2);
  }
  if (code_debug) {
    if (auto s = eval::ValidateCodeDebugCell(mode_name, {*length}); !s.ok()) {
      return Fail("run", s, 2);
    }
    if (training || *temperature != 0) {
      return Fail("run",
                  absl::InvalidArgumentError(
                      "--training / --temperature: code_debug episodes are greedy, on test "
                      "instances"),
                  2);
    }
  }
  auto task = code_debug ? absl::StatusOr<const tasks::Task*>(nullptr) : tasks::FindTask(task_name);
  if (!task.ok()) return Fail("run", task.status(), 2);
  auto mode =
      code_debug ? absl::StatusOr<tasks::Mode>(tasks::Mode::kPointer) : tasks::ParseMode(mode_name);
  if (!mode.ok()) return Fail("run", mode.status(), 2);

  std::unique_ptr<engine::Model> model;
  std::unique_ptr<agents::Policy> policy;
  if (oracle) {
    policy = std::make_unique<agents::OraclePolicy>();
  } else {
    const std::string tokenizer_path = (std::filesystem::path(model_dir) / "tokenizer.json");
    if (std::filesystem::exists(tokenizer_path)) {
      if (auto t = Tokenizer::Load(tokenizer_path); !t.ok()) return Fail("run", t.status(), 2);
    } else {
      std::cerr << "tapeloop run: warning: " << tokenizer_path << " missing; assuming "
                << tokens::kVersion << "\n";
    }
    auto loaded = engine::Model::Load(model_dir);
    if (!loaded.ok()) return Fail("run", loaded.status(), 2);
    model = std::move(*loaded);
    engine::SamplingParams params;
    params.temperature = static_cast<float>(*temperature);
    if (auto s = engine::ValidateSamplingParams(params); !s.ok()) return Fail("run", s, 2);
    policy = std::make_unique<agents::EnginePolicy>(model.get(), params);
  }
  if (code_debug) {
    return RunCodeDebug(model.get(), mode_name, *length, *seed, *episodes,
                        static_cast<int>(*parallel), *max_tokens, json);
  }

  std::vector<agents::EpisodeSpec> specs;
  for (int64_t i = 0; i < *episodes; ++i) {
    specs.push_back(agents::MakeEpisodeSpec(*task, *mode, *length, *seed, i, training));
  }
  agents::LoopOptions options;
  options.parallel = static_cast<int>(*parallel);
  options.max_generated_tokens = *max_tokens;
  auto records = agents::RunEpisodes(*policy, specs, options);
  if (!records.ok()) return Fail("run", records.status(), 1);

  const bool color = !json && isatty(STDOUT_FILENO);
  int exact = 0;
  for (size_t i = 0; i < records->size(); ++i) {
    const agents::EpisodeRecord& r = (*records)[i];
    exact += r.score.exact;
    if (json) {
      std::cout << DumpJson(r.ToJson()) << "\n";
      continue;
    }
    std::cout << absl::StrFormat("episode %d: %s, mode %s, length %d, policy %s\n", i, r.task,
                                 std::string(tasks::ModeName(r.mode)), r.instance.length, r.policy);
    std::cout << agents::RenderTrajectory(r.trajectory, color);
    std::string answer;
    for (TokenId id : r.trajectory.Output()) answer += agents::Printable(id);
    std::cout << absl::StrFormat(
        "answer: %s\nexpected: %s\nscore: exact=%s digit_accuracy=%.4f trajectory_exact=%s | "
        "stop=%s%s | generated %d tokens, %d tool steps, %.1f ms (policy %.1f ms, tools %.1f "
        "ms), peak session %d bytes\n\n",
        answer, r.score.expected, r.score.exact ? "yes" : "no", r.score.digit_accuracy,
        r.score.trajectory_exact.has_value() ? (*r.score.trajectory_exact ? "yes" : "no") : "-",
        r.stop_reason, r.error.empty() ? "" : " (" + r.error + ")", r.generated_tokens,
        r.tool_steps, r.wall_ms, r.policy_ms, r.tool_ms, r.peak_session_bytes);
  }
  if (!json && records->size() > 1) {
    std::cout << absl::StrFormat("exact: %d / %d\n", exact, records->size());
  }
  return 0;
}

}  // namespace

TAPELOOP_REGISTER_COMMAND("run",
                          "run task episodes with a model or the oracle through the agent loop",
                          RunRun);

}  // namespace tapeloop::cli
