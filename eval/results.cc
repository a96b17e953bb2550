#include "eval/results.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/json.h"
#include "common/status_macros.h"

namespace tapeloop::eval {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// FNV-1a 64, twice with different offsets, for a 128-bit hex id.
std::string Digest(const std::string& text) {
  uint64_t a = 1469598103934665603ull, b = 1099511628211ull * 31 + 7;
  for (unsigned char c : text) {
    a = (a ^ c) * 1099511628211ull;
    b = (b ^ c) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
  }
  return absl::StrFormat("%016x%016x", a, b);
}

}  // namespace

std::string ResultsStore::RunId(const nlohmann::json& config) {
  return Digest(DumpJson(config));  // nlohmann's dump() sorts object keys: canonical
}

absl::StatusOr<std::string> ResultsStore::BeginRun(const nlohmann::json& config,
                                                   const std::string& code_version) {
  std::string id = RunId(config);
  store::Transaction txn(db_);
  RETURN_IF_ERROR(txn.status());
  ASSIGN_OR_RETURN(auto stmt, db_->Prepare("INSERT OR IGNORE INTO eval_runs"
                                           " (id, config, code_version, created_unix_ms)"
                                           " VALUES (?, ?, ?, ?)"));
  RETURN_IF_ERROR(stmt.Bind(1, std::string_view(id))
                      .Bind(2, std::string_view(DumpJson(config)))
                      .Bind(3, std::string_view(code_version))
                      .Bind(4, NowMs())
                      .Run());
  RETURN_IF_ERROR(txn.Commit());
  return id;
}

absl::Status ResultsStore::FinishRun(const std::string& run_id) {
  ASSIGN_OR_RETURN(auto stmt,
                   db_->Prepare("UPDATE eval_runs SET finished_unix_ms = ? WHERE id = ?"));
  return stmt.Bind(1, NowMs()).Bind(2, std::string_view(run_id)).Run();
}

absl::StatusOr<nlohmann::json> ResultsStore::RunConfig(const std::string& run_id) {
  ASSIGN_OR_RETURN(auto stmt, db_->Prepare("SELECT config FROM eval_runs WHERE id = ?"));
  stmt.Bind(1, std::string_view(run_id));
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no evaluation run '", run_id, "'"));
  return nlohmann::json::parse(stmt.ColumnText(0));
}

absl::StatusOr<std::string> ResultsStore::LatestRun() {
  ASSIGN_OR_RETURN(
      auto stmt,
      db_->Prepare("SELECT id FROM eval_runs ORDER BY created_unix_ms DESC, rowid DESC LIMIT 1"));
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) return absl::NotFoundError(absl::StrCat(db_->path(), " holds no evaluation run"));
  return stmt.ColumnText(0);
}

absl::StatusOr<std::set<EpisodeKey>> ResultsStore::Done(const std::string& run_id) {
  ASSIGN_OR_RETURN(auto stmt, db_->Prepare("SELECT model, task, mode, length, seed, idx"
                                           " FROM eval_episodes WHERE run_id = ?"));
  stmt.Bind(1, std::string_view(run_id));
  std::set<EpisodeKey> done;
  while (true) {
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) break;
    done.insert({stmt.ColumnText(0), stmt.ColumnText(1), stmt.ColumnText(2), stmt.ColumnInt(3),
                 stmt.ColumnInt(4), stmt.ColumnInt(5)});
  }
  return done;
}

absl::StatusOr<std::map<EpisodeKey, bool>> ResultsStore::Outcomes(const std::string& run_id) {
  ASSIGN_OR_RETURN(auto stmt, db_->Prepare("SELECT model, task, mode, length, seed, idx, correct"
                                           " FROM eval_episodes WHERE run_id = ?"));
  stmt.Bind(1, std::string_view(run_id));
  std::map<EpisodeKey, bool> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) break;
    out[{stmt.ColumnText(0), stmt.ColumnText(1), stmt.ColumnText(2), stmt.ColumnInt(3),
         stmt.ColumnInt(4), stmt.ColumnInt(5)}] = stmt.ColumnInt(6) != 0;
  }
  return out;
}

absl::StatusOr<int64_t> ResultsStore::CountEpisodes(const std::string& run_id) {
  ASSIGN_OR_RETURN(auto stmt, db_->Prepare("SELECT COUNT(*) FROM eval_episodes WHERE run_id = ?"));
  stmt.Bind(1, std::string_view(run_id));
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  return row ? stmt.ColumnInt(0) : 0;
}

absl::Status ResultsStore::Record(const std::string& run_id, const std::vector<EpisodeRow>& rows) {
  store::Transaction txn(db_);
  RETURN_IF_ERROR(txn.status());
  ASSIGN_OR_RETURN(
      auto stmt,
      db_->Prepare(
          "INSERT INTO eval_episodes (run_id, model, task, mode, length, seed, idx, correct,"
          " trajectory_match, digit_accuracy, generated_tokens, tool_calls, wall_ms,"
          " peak_state_bytes, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  for (const EpisodeRow& r : rows) {
    RETURN_IF_ERROR(stmt.Reset());
    RETURN_IF_ERROR(stmt.Bind(1, std::string_view(run_id))
                        .Bind(2, std::string_view(r.key.model))
                        .Bind(3, std::string_view(r.key.task))
                        .Bind(4, std::string_view(r.key.mode))
                        .Bind(5, r.key.length)
                        .Bind(6, r.key.seed)
                        .Bind(7, r.key.index)
                        .Bind(8, int64_t{r.correct})
                        .Bind(9, int64_t{r.trajectory_match})
                        .Bind(10, r.digit_accuracy)
                        .Bind(11, r.generated_tokens)
                        .Bind(12, r.tool_calls)
                        .Bind(13, r.wall_ms)
                        .Bind(14, r.peak_state_bytes)
                        .Bind(15, std::string_view(DumpJson(r.record)))
                        .Run());
  }
  return txn.Commit();
}

absl::StatusOr<std::vector<EpisodeRow>> ResultsStore::Episodes(const std::string& run_id,
                                                               bool with_records) {
  ASSIGN_OR_RETURN(
      auto stmt,
      db_->Prepare(absl::StrCat(
          "SELECT model, task, mode, length, seed, idx, correct, trajectory_match, digit_accuracy,"
          " generated_tokens, tool_calls, wall_ms, peak_state_bytes",
          with_records ? ", record" : "",
          " FROM eval_episodes WHERE run_id = ? ORDER BY model, task, mode, length, seed, idx")));
  stmt.Bind(1, std::string_view(run_id));
  std::vector<EpisodeRow> rows;
  while (true) {
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) break;
    EpisodeRow r;
    r.key = {stmt.ColumnText(0), stmt.ColumnText(1), stmt.ColumnText(2),
             stmt.ColumnInt(3),  stmt.ColumnInt(4),  stmt.ColumnInt(5)};
    r.correct = stmt.ColumnInt(6) != 0;
    r.trajectory_match = stmt.ColumnInt(7) != 0;
    r.digit_accuracy = stmt.ColumnDouble(8);
    r.generated_tokens = stmt.ColumnInt(9);
    r.tool_calls = stmt.ColumnInt(10);
    r.wall_ms = stmt.ColumnDouble(11);
    r.peak_state_bytes = stmt.ColumnInt(12);
    if (with_records) {
      r.record = nlohmann::json::parse(stmt.ColumnText(13), nullptr, /*allow_exceptions=*/false);
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

absl::StatusOr<std::vector<Aggregate>> ResultsStore::Aggregates(const std::string& run_id) {
  ASSIGN_OR_RETURN(auto rows, Episodes(run_id, /*with_records=*/false));
  return AggregateRows(rows);
}

std::vector<Aggregate> AggregateRows(const std::vector<EpisodeRow>& rows) {
  struct Acc {
    Aggregate agg;
    std::map<int64_t, std::pair<int64_t, int64_t>> seeds;  // seed -> (correct, total)
    int64_t correct = 0;
    double digits = 0, traj = 0, wall = 0, gen = 0, peak = 0;
  };
  std::map<std::tuple<std::string, std::string, std::string, int64_t>, Acc> cells;
  for (const EpisodeRow& r : rows) {
    auto& c = cells[{r.key.task, r.key.model, r.key.mode, r.key.length}];
    c.agg.task = r.key.task;
    c.agg.model = r.key.model;
    c.agg.mode = r.key.mode;
    c.agg.length = r.key.length;
    c.agg.episodes++;
    c.correct += r.correct;
    auto& s = c.seeds[r.key.seed];
    s.first += r.correct;
    s.second++;
    c.digits += r.digit_accuracy;
    c.traj += r.trajectory_match;
    c.wall += r.wall_ms;
    c.gen += r.generated_tokens;
    c.peak += r.peak_state_bytes;
  }
  std::vector<Aggregate> out;
  for (auto& [key, c] : cells) {
    Aggregate a = c.agg;
    double n = static_cast<double>(a.episodes);
    a.accuracy = c.correct / n;
    a.digit_accuracy = c.digits / n;
    a.trajectory_match = c.traj / n;
    a.mean_wall_ms = c.wall / n;
    a.mean_generated_tokens = c.gen / n;
    a.mean_peak_state_bytes = c.peak / n;
    a.seed_min = 1.0;
    a.seed_max = 0.0;
    for (auto& [seed, ct] : c.seeds) {
      double acc = static_cast<double>(ct.first) / ct.second;
      a.by_seed[seed] = acc;
      a.seed_min = std::min(a.seed_min, acc);
      a.seed_max = std::max(a.seed_max, acc);
    }
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace tapeloop::eval
