// Evaluation results in SQLite: runs and their finished episodes.
//
// A run is identified by a hash of its configuration, so re-running the same configuration
// resumes it: Done() lists the episodes already stored, and Record() writes a batch of finished
// episodes in one transaction (all or none), so a killed run loses at most the batch in flight
// and never stores half of one. Aggregates are always computed from the episode rows.
//
// Not thread-safe; one ResultsStore per thread. Not copyable.
#ifndef TAPELOOP_EVAL_RESULTS_H_
#define TAPELOOP_EVAL_RESULTS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "store/database.h"

namespace tapeloop::eval {

// Identifies one episode of a run.
struct EpisodeKey {
  std::string model;
  std::string task;
  std::string mode;
  int64_t length = 0;
  int64_t seed = 0;
  int64_t index = 0;
  auto tie() const { return std::tie(model, task, mode, length, seed, index); }
  bool operator<(const EpisodeKey& o) const { return tie() < o.tie(); }
  bool operator==(const EpisodeKey& o) const { return tie() == o.tie(); }
};

struct EpisodeRow {
  EpisodeKey key;
  bool correct = false;           // exact match of the output stream
  bool trajectory_match = false;  // exact match of the whole trajectory vs the expert
  double digit_accuracy = 0.0;
  int64_t generated_tokens = 0;
  int64_t tool_calls = 0;
  double wall_ms = 0.0;
  int64_t peak_state_bytes = 0;
  nlohmann::json record;  // the full episode record
};

// One (task, model, mode, length) cell, aggregated over seeds and episodes.
struct Aggregate {
  std::string task, model, mode;
  int64_t length = 0;
  int64_t episodes = 0;
  double accuracy = 0.0;                  // over all episodes of the cell
  std::map<int64_t, double> by_seed;      // seed -> accuracy
  double seed_min = 0.0, seed_max = 0.0;  // spread across seeds
  double digit_accuracy = 0.0;
  double trajectory_match = 0.0;
  double mean_wall_ms = 0.0;
  double mean_generated_tokens = 0.0;
  double mean_peak_state_bytes = 0.0;
};

class ResultsStore {
 public:
  explicit ResultsStore(store::Database* db) : db_(db) {}
  ResultsStore(const ResultsStore&) = delete;
  ResultsStore& operator=(const ResultsStore&) = delete;

  // Creates the run row if absent (same id = same configuration) and returns its id.
  absl::StatusOr<std::string> BeginRun(const nlohmann::json& config,
                                       const std::string& code_version);
  absl::Status FinishRun(const std::string& run_id);
  // The stored configuration of a run; NOT_FOUND for an unknown id.
  absl::StatusOr<nlohmann::json> RunConfig(const std::string& run_id);
  // The most recently created run; NOT_FOUND when the database has none.
  absl::StatusOr<std::string> LatestRun();

  absl::StatusOr<std::set<EpisodeKey>> Done(const std::string& run_id);
  // The stored episodes of a run with whether each was exact.
  absl::StatusOr<std::map<EpisodeKey, bool>> Outcomes(const std::string& run_id);
  // Episodes stored for a run (0 for an unknown id).
  absl::StatusOr<int64_t> CountEpisodes(const std::string& run_id);
  // Writes all rows in one transaction. A row already present is an error (ALREADY_EXISTS) and
  // nothing of the batch is written.
  absl::Status Record(const std::string& run_id, const std::vector<EpisodeRow>& rows);
  // Every stored episode of a run; without `with_records` their `record` stays null (the
  // records are most of the bytes: a 1,000-digit episode's is ~1 MB).
  absl::StatusOr<std::vector<EpisodeRow>> Episodes(const std::string& run_id,
                                                   bool with_records = true);
  absl::StatusOr<std::vector<Aggregate>> Aggregates(const std::string& run_id);

  // The id a configuration gets: a hex digest of its canonical JSON.
  static std::string RunId(const nlohmann::json& config);

 private:
  store::Database* db_;
};

// Aggregates rows by (task, model, mode, length), sorted by those keys.
std::vector<Aggregate> AggregateRows(const std::vector<EpisodeRow>& rows);

}  // namespace tapeloop::eval

#endif  // TAPELOOP_EVAL_RESULTS_H_
