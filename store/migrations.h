// The schema of tapeloop's SQLite database, as an ordered list of migration steps.
//
// Step k (1-based) takes a database at user_version k-1 to user_version k. Each step runs in its
// own BEGIN IMMEDIATE transaction together with the user_version bump, so a crash leaves the
// database at a whole version. Steps are never edited once released: a change of schema is a
// new step at the end, and tests/store keeps a frozen copy of every old schema.
#ifndef TAPELOOP_STORE_MIGRATIONS_H_
#define TAPELOOP_STORE_MIGRATIONS_H_

#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace tapeloop::store {

class Database;

struct Migration {
  const char* name;
  absl::Status (*apply)(Database* db);
};

// The migration steps in order; index i takes version i to i+1.
const std::vector<Migration>& Migrations();

// The schema version this binary writes.
int LatestSchemaVersion();

// Brings `db` from its current version to LatestSchemaVersion(). FAILED_PRECONDITION if the
// database is newer than this binary; the database is then not modified.
absl::Status Migrate(Database* db);

}  // namespace tapeloop::store

#endif  // TAPELOOP_STORE_MIGRATIONS_H_
