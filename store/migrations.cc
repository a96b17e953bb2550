#include "store/migrations.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "store/database.h"

namespace tapeloop::store {
namespace {

// v1: key/value facts about the database itself.
absl::Status CreateMeta(Database* db) {
  return db->Execute(
      "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "INSERT INTO meta (key, value) VALUES ('created_unix_ms',"
      " CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));");
}

// v2: session snapshots (engine state bytes), owned by the principal that made them.
absl::Status CreateSnapshots(Database* db) {
  return db->Execute(
      "CREATE TABLE snapshots ("
      " id TEXT PRIMARY KEY,"
      " principal TEXT NOT NULL,"
      " model TEXT NOT NULL,"
      " model_fingerprint TEXT NOT NULL,"
      " position INTEGER NOT NULL,"
      " state BLOB NOT NULL,"
      " checksum INTEGER NOT NULL,"
      " created_unix_ms INTEGER NOT NULL);"
      "CREATE INDEX snapshots_by_principal ON snapshots (principal);");
}

// v3: finished agent episodes and their JSON records.
absl::Status CreateEpisodes(Database* db) {
  return db->Execute(
      "CREATE TABLE episodes ("
      " id TEXT PRIMARY KEY,"
      " principal TEXT NOT NULL,"
      " task TEXT NOT NULL,"
      " mode TEXT NOT NULL,"
      " length INTEGER NOT NULL,"
      " seed INTEGER NOT NULL,"
      " model TEXT NOT NULL,"
      " correct INTEGER NOT NULL,"
      " record TEXT NOT NULL,"
      " created_unix_ms INTEGER NOT NULL);"
      "CREATE INDEX episodes_by_principal ON episodes (principal);");
}

// v4: evaluation runs and their episodes (one row per finished episode; aggregates are
// computed from these rows, so a report never holds a number the episodes do not).
absl::Status CreateEval(Database* db) {
  return db->Execute(
      "CREATE TABLE eval_runs ("
      " id TEXT PRIMARY KEY,"
      " config TEXT NOT NULL,"
      " code_version TEXT NOT NULL,"
      " created_unix_ms INTEGER NOT NULL,"
      " finished_unix_ms INTEGER);"
      "CREATE TABLE eval_episodes ("
      " run_id TEXT NOT NULL REFERENCES eval_runs (id),"
      " model TEXT NOT NULL,"
      " task TEXT NOT NULL,"
      " mode TEXT NOT NULL,"
      " length INTEGER NOT NULL,"
      " seed INTEGER NOT NULL,"
      " idx INTEGER NOT NULL,"
      " correct INTEGER NOT NULL,"
      " trajectory_match INTEGER NOT NULL,"
      " digit_accuracy REAL NOT NULL,"
      " generated_tokens INTEGER NOT NULL,"
      " tool_calls INTEGER NOT NULL,"
      " wall_ms REAL NOT NULL,"
      " peak_state_bytes INTEGER NOT NULL,"
      " record TEXT NOT NULL,"
      " PRIMARY KEY (run_id, model, task, mode, length, seed, idx));");
}

}  // namespace

const std::vector<Migration>& Migrations() {
  static const auto* steps = new std::vector<Migration>{
      {"create_meta", &CreateMeta},
      {"create_snapshots", &CreateSnapshots},
      {"create_episodes", &CreateEpisodes},
      {"create_eval", &CreateEval},
  };
  return *steps;
}

int LatestSchemaVersion() { return static_cast<int>(Migrations().size()); }

absl::Status Migrate(Database* db) {
  const auto& steps = Migrations();
  ASSIGN_OR_RETURN(int version, db->SchemaVersion());
  if (version > LatestSchemaVersion()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", db->path(), " has schema version ", version,
        ", newer than this binary's ", LatestSchemaVersion(),
        "; upgrade tapeloop to use it (the file was not modified)"));
  }
  for (int v = version; v < LatestSchemaVersion(); ++v) {
    Transaction txn(db);
    RETURN_IF_ERROR(txn.status());
    // Re-read inside the write lock: another process may have migrated meanwhile.
    ASSIGN_OR_RETURN(int current, db->SchemaVersion());
    if (current > v) continue;
    absl::Status applied = steps[v].apply(db);
    if (!applied.ok()) {
      return absl::Status(applied.code(), absl::StrCat("migration ", v + 1, " (", steps[v].name,
                                                       "): ", applied.message()));
    }
    RETURN_IF_ERROR(db->Execute(absl::StrCat("PRAGMA user_version = ", v + 1)));
    RETURN_IF_ERROR(txn.Commit());
  }
  return absl::OkStatus();
}

}  // namespace tapeloop::store
