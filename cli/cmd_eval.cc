// tapeloop eval: length-generalization evaluation runs (see eval/runner.h).
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/args.h"
#include "cli/command.h"
#include "eval/runner.h"

namespace tapeloop::cli {
namespace {

constexpr char kUsage[] =
    "usage: tapeloop eval (--suite NAME | --models DIR[,DIR...] --task T[,T...]\n"
    "                      --modes M[,M...] --lengths L[,L...]) [--episodes K] [--seeds S[,S...]]\n"
    "                      [--db results.db] [--report DIR] [--parallel P] [--models-dir models]\n"
    "                      [--commit-every N] [--stop-after-zero N]\n"
    "                      [--report-only [--run-id ID]]\n"
    "  --suite        paper-addition, paper-addition-short, addition-ablations,\n"
    "                 addition-ablations-short, multiplication, multiplication-short\n"
    "                 (models from --models-dir),\n"
    "                 code-debug, code-debug-short (the oracles and models/nemotron_h-code-debug)\n"
    "  --models       checkpoint directories, or `oracle` for the expert policy\n"
    "  --task         addition, multiplication (n x 2), multiplication-n1, multiplication-n2,\n"
    "                 code_debug (length = n, the number of functions/files)\n"
    "  --modes        pointer, calculator, cot, direct, direct-reversed (every model, every "
    "mode);\n"
    "                 interactive, single-turn for code_debug\n"
    "  --episodes     episodes per model, mode, task, length and seed\n"
    "  --stop-after-zero  after N consecutive lengths at 0% exact, skip a model/mode's longer\n"
    "                 lengths (0: run every length; the full suites default to 2)\n"
    "  --db           SQLite results; rerunning the same command resumes the run\n"
    "  --report       write report.md/.html, aggregate.json, episodes.jsonl and plots here\n"
    "  --report-only  recompute the report of the latest run (or --run-id) from --db\n";

absl::StatusOr<std::vector<int64_t>> IntList(const std::string& flag, const std::string& text) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": '", std::string(part), "' is not an integer"));
    }
    out.push_back(v);
  }
  return out;
}

std::vector<std::string> StrList(const std::string& text) {
  return absl::StrSplit(text, ',', absl::SkipEmpty());
}

// A progress bar with rate and ETA on a terminal; plain lines (about every 10%) otherwise.
class ProgressPrinter {
 public:
  ProgressPrinter() : tty_(isatty(STDERR_FILENO) == 1) {}
  void operator()(const eval::Progress& p) {
    int64_t todo = p.total - p.skipped;
    double rate = p.elapsed_s > 0 ? p.done / p.elapsed_s : 0;
    double eta = rate > 0 ? (todo - p.done) / rate : 0;
    if (tty_) {
      int width = 30;
      int filled = todo > 0 ? static_cast<int>(width * p.done / todo) : width;
      std::cerr << absl::StrFormat("\r[%s%s] %d/%d episodes  %.1f ep/s  ETA %.0fs  %-40s",
                                   std::string(filled, '#'), std::string(width - filled, '.'),
                                   p.done, todo, rate, eta, p.current)
                << std::flush;
      if (p.done == todo) std::cerr << "\n";
    } else if (todo > 0 && (p.done * 10 / todo != last_decile_ || p.done == todo)) {
      last_decile_ = p.done * 10 / todo;
      std::cerr << absl::StrFormat(
          "eval: %d/%d episodes (%d already done), %.1f ep/s, ETA %.0fs, at %s\n", p.done, todo,
          p.skipped, rate, eta, p.current);
    }
  }

 private:
  bool tty_;
  int64_t last_decile_ = -1;
};

int RunEval(int argc, char** argv) {
  Args args(argc, argv, {"help", "report-only"});
  if (args.Bool("help")) {
    std::cout << kUsage;
    return 0;
  }
  eval::EvalOptions options;
  std::string suite = args.String("suite", "");
  std::string models_dir = args.String("models-dir", "models");
  if (!suite.empty()) {
    auto o = eval::SuiteOptions(suite, models_dir);
    if (!o.ok()) return Fail("eval", o.status(), 2);
    options = *o;
    for (const auto& m : options.missing) {
      std::cerr << "tapeloop eval: suite " << suite << ": no checkpoint at " << m
                << " (left out; train it with `tapeloop train`)\n";
    }
  }
  if (auto t = args.Get("task")) options.tasks = StrList(*t);
  // Default modes: pointer; both code_debug modes when code_debug is the only task.
  bool code_debug_only = options.tasks == std::vector<std::string>{"code_debug"};
  std::vector<std::string> modes =
      StrList(args.String("modes", code_debug_only ? "interactive,single-turn" : "pointer"));
  if (auto models = args.Get("models")) {
    options.entries.clear();
    for (const auto& m : StrList(*models)) options.entries.push_back({m, modes});
  }
  if (auto l = args.Get("lengths")) {
    auto v = IntList("lengths", *l);
    if (!v.ok()) return Fail("eval", v.status(), 2);
    options.lengths = *v;
  }
  auto seeds_text = args.Get("seeds");
  if (!seeds_text) seeds_text = args.Get("seed");
  if (seeds_text) {
    auto v = IntList("seeds", *seeds_text);
    if (!v.ok()) return Fail("eval", v.status(), 2);
    options.seeds = *v;
  }
  auto episodes = args.Int("episodes", options.episodes);
  auto parallel = args.Int("parallel", options.parallel);
  auto commit_every = args.Int("commit-every", options.commit_every);
  if (!commit_every.ok() || *commit_every < 1) {
    return Fail("eval", absl::InvalidArgumentError("--commit-every must be an integer >= 1"), 2);
  }
  options.commit_every = *commit_every;
  auto stop_after_zero = args.Int("stop-after-zero", options.stop_after_zero);
  if (!stop_after_zero.ok() || *stop_after_zero < 0) {
    return Fail("eval",
                absl::InvalidArgumentError("--stop-after-zero must be an integer >= 0 (0: never)"),
                2);
  }
  options.stop_after_zero = *stop_after_zero;
  if (!episodes.ok()) return Fail("eval", episodes.status(), 2);
  if (!parallel.ok()) return Fail("eval", parallel.status(), 2);
  options.episodes = *episodes;
  options.parallel = static_cast<int>(*parallel);
  options.db_path = args.String("db", options.db_path);
  options.report_dir = args.String("report", "");
  bool report_only = args.Bool("report-only");
  std::string run_id = args.String("run-id", "");
  if (auto st = args.Finish(); !st.ok()) return Fail("eval", st, 2);

  absl::StatusOr<eval::RunResult> result;
  if (report_only) {
    result = eval::ReportOnly(options, run_id);
  } else {
    ProgressPrinter printer;
    result = eval::RunEvaluation(options, [&](const eval::Progress& p) { printer(p); });
  }
  if (!result.ok()) {
    bool usage = result.status().code() == absl::StatusCode::kInvalidArgument ||
                 result.status().code() == absl::StatusCode::kNotFound;
    return Fail("eval", result.status(), usage ? 2 : 1);
  }
  std::cout << result->markdown;
  if (!report_only) {
    std::cout << "\nrun " << result->run_id << ": " << result->ran << " episodes run, "
              << result->resumed << " resumed from " << options.db_path << "\n";
  }
  if (!options.report_dir.empty()) {
    std::cout << "report: " << options.report_dir << "/report.md (also report.html, plots)\n";
  }
  return 0;
}

}  // namespace

TAPELOOP_REGISTER_COMMAND("eval", "length-generalization evaluation runs, resumable, with reports",
                          RunEval);

}  // namespace tapeloop::cli
