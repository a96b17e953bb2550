// Evaluation reports: the paper's "n->m (p%)" table, accuracy-vs-length and cost plots, and the
// machine-readable aggregate, all computed from stored episodes.
//
// WriteReport() writes into `dir` (created if needed):
//   report.md, report.html      tables per task (n->m (p%), accuracy by length, cost by length)
//   aggregate.json              configuration, model fingerprints, code version, seeds, cells
//   episodes.jsonl              one line per stored episode (its full record)
//   accuracy_<task>.svg/.png    accuracy vs length (log x), training range shaded, one line per
//                               model/mode with the min..max spread across seeds
//   cost_<task>.svg/.png        wall ms and generated tokens per episode vs length
// Plots are drawn by gnuplot (Debian's gnuplot-nox); without it the report says so and the
// tables are still written. Errors name the file that could not be written.
#ifndef TAPELOOP_EVAL_REPORT_H_
#define TAPELOOP_EVAL_REPORT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "eval/results.h"
#include "nlohmann/json.hpp"

namespace tapeloop::eval {

struct ReportInput {
  std::string run_id;
  nlohmann::json config;                      // the run's stored configuration
  std::vector<EpisodeRow> episodes;           // every stored episode of the run
  std::map<std::string, int64_t> train_length;  // model -> longest training length (n)
};

// "n->m (p%)": m is the largest evaluated length with accuracy >= 5% (p its accuracy);
// "n->- (0%)" when no length reaches 5%.
std::string LengthGeneralization(int64_t train_length, const std::vector<Aggregate>& cells);

// The Markdown report (also what `tapeloop eval` prints).
std::string MarkdownReport(const ReportInput& input, const std::vector<Aggregate>& cells);

absl::Status WriteReport(const ReportInput& input, const std::string& dir);

}  // namespace tapeloop::eval

#endif  // TAPELOOP_EVAL_REPORT_H_
