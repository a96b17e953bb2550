// A SQLite database file opened the way every tapeloop store needs it.
//
// Open() creates the file if needed, switches it to WAL journaling with synchronous=FULL (an
// acknowledged commit survives power loss), sets a busy timeout, enables foreign keys, and
// brings the schema up to date by running the migrations in store/migrations.h, each in its own
// BEGIN IMMEDIATE transaction. A database whose schema is newer than this binary knows is
// refused (FAILED_PRECONDITION) and left untouched.
//
// Thread safety: a Database is used by one thread at a time (the serialized SQLite mode makes
// concurrent use safe, but callers should keep one connection per thread for throughput).
// Not copyable.
#ifndef TAPELOOP_STORE_DATABASE_H_
#define TAPELOOP_STORE_DATABASE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct sqlite3;
struct sqlite3_stmt;

namespace tapeloop::store {

struct OpenOptions {
  // How long a writer waits for another connection's lock before failing with BUSY.
  int busy_timeout_ms = 5000;
  // When false, the schema is only checked, never migrated (used to inspect old files).
  bool migrate = true;
};

// A prepared statement. Bind indices are 1-based (SQLite's), column indices 0-based.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  ~Statement();

  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, double value);
  Statement& Bind(int index, std::string_view text);
  Statement& BindBlob(int index, std::string_view bytes);
  Statement& BindNull(int index);

  // Advances to the next row. Returns true with a row, false when done, or an error naming the
  // SQL on failure. A failed bind is reported here.
  absl::StatusOr<bool> Step();
  // Steps once and expects no row (INSERT / UPDATE / DELETE).
  absl::Status Run();
  absl::Status Reset();

  int64_t ColumnInt(int column) const;
  double ColumnDouble(int column) const;
  std::string ColumnText(int column) const;
  std::string ColumnBlob(int column) const;
  bool ColumnIsNull(int column) const;

 private:
  friend class Database;
  Statement(sqlite3* db, sqlite3_stmt* stmt, std::string sql);
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  std::string sql_;
  int bind_error_ = 0;
};

class Database {
 public:
  // Opens (creating if absent) the database at `path` and migrates it. Errors: INVALID_ARGUMENT
  // for an empty path, UNAVAILABLE when the file cannot be opened or written (message names the
  // path), FAILED_PRECONDITION for a schema newer than LatestSchemaVersion(), DATA_LOSS for a
  // file that is not a SQLite database.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path,
                                                        const OpenOptions& options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements with no results.
  absl::Status Execute(std::string_view sql);
  absl::StatusOr<Statement> Prepare(std::string_view sql);

  // BEGIN IMMEDIATE / COMMIT / ROLLBACK.
  absl::Status Begin();
  absl::Status Commit();
  absl::Status Rollback();

  // PRAGMA user_version.
  absl::StatusOr<int> SchemaVersion();
  // PRAGMA integrity_check == "ok".
  absl::Status CheckIntegrity();

  const std::string& path() const { return path_; }
  sqlite3* handle() { return db_; }

 private:
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
};

// RAII transaction: BEGIN IMMEDIATE on construction (check status()), ROLLBACK on destruction
// unless Commit() succeeded.
class Transaction {
 public:
  explicit Transaction(Database* db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  const absl::Status& status() const { return status_; }
  absl::Status Commit();

 private:
  Database* db_;
  absl::Status status_;
  bool done_ = false;
};

}  // namespace tapeloop::store

#endif  // TAPELOOP_STORE_DATABASE_H_
