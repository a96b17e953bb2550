#include "store/database.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "store/migrations.h"

namespace tapeloop::store {
namespace {

namespace fs = std::filesystem;

class DatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tapeloop_store_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  // Builds a database from a frozen schema fixture with the sqlite3 C API directly, so the
  // file is exactly what an older binary left behind.
  std::string FromFixture(const std::string& fixture) {
    std::ifstream in(std::string(TAPELOOP_SOURCE_DIR) + "/tests/store/fixtures/" + fixture);
    std::stringstream sql;
    sql << in.rdbuf();
    EXPECT_FALSE(sql.str().empty()) << fixture;
    std::string path = Path(fixture + ".db");
    fs::remove(path);
    sqlite3* raw = nullptr;
    EXPECT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(raw, sql.str().c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
    return path;
  }

  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  fs::path dir_;
};

TEST_F(DatabaseTest, FreshDatabaseIsAtLatestSchemaInWalMode) {
  auto db = Database::Open(Path("fresh.db"));
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ(*(*db)->SchemaVersion(), LatestSchemaVersion());
  EXPECT_GE(LatestSchemaVersion(), 4);
  auto mode = (*db)->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->ColumnText(0), "wal");
  auto tables = (*db)->Prepare(
      "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN"
      " ('meta','snapshots','episodes','eval_runs','eval_episodes')");
  ASSERT_TRUE(tables.ok());
  ASSERT_TRUE(*tables->Step());
  EXPECT_EQ(tables->ColumnInt(0), 5);
  EXPECT_TRUE((*db)->CheckIntegrity().ok());
}

TEST_F(DatabaseTest, ReopenKeepsDataAndDoesNotRemigrate) {
  {
    auto db = Database::Open(Path("re.db"));
    ASSERT_TRUE(db.ok());
    auto ins = (*db)->Prepare("INSERT INTO meta (key, value) VALUES (?, ?)");
    ASSERT_TRUE(ins.ok());
    ASSERT_TRUE(ins->Bind(1, std::string_view("k")).Bind(2, std::string_view("v")).Run().ok());
  }
  auto db = Database::Open(Path("re.db"));
  ASSERT_TRUE(db.ok()) << db.status();
  auto sel = (*db)->Prepare("SELECT value FROM meta WHERE key = 'k'");
  ASSERT_TRUE(sel.ok());
  ASSERT_TRUE(*sel->Step());
  EXPECT_EQ(sel->ColumnText(0), "v");
}

TEST_F(DatabaseTest, UpgradesEveryFrozenSchemaKeepingRows) {
  for (std::string fixture : {"schema_v1.sql", "schema_v2.sql", "schema_v3.sql"}) {
    std::string path = FromFixture(fixture);
    auto db = Database::Open(path);
    ASSERT_TRUE(db.ok()) << fixture << ": " << db.status();
    EXPECT_EQ(*(*db)->SchemaVersion(), LatestSchemaVersion()) << fixture;
    auto meta = (*db)->Prepare("SELECT value FROM meta WHERE key = 'created_unix_ms'");
    ASSERT_TRUE(meta.ok());
    ASSERT_TRUE(*meta->Step());
    EXPECT_EQ(meta->ColumnText(0), "1764000000000") << fixture;
    // Tables added by later steps exist and accept rows.
    auto ins = (*db)->Prepare(
        "INSERT INTO episodes VALUES ('e1','p','addition','pointer',5,1,'m',1,'{}',0)");
    auto run = (*db)->Prepare("INSERT INTO eval_runs VALUES ('r1', '{}', 'v', 0, NULL)");
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_TRUE(run->Run().ok());
    ASSERT_TRUE(ins.ok()) << ins.status();
    EXPECT_TRUE(ins->Run().ok());
  }
  auto db = Database::Open(FromFixture("schema_v2.sql"));
  ASSERT_TRUE(db.ok());
  auto snap = (*db)->Prepare("SELECT principal, state FROM snapshots WHERE id = 'snap-old'");
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(*snap->Step());
  EXPECT_EQ(snap->ColumnText(0), "alice");
  EXPECT_EQ(snap->ColumnBlob(1), std::string("\x00\x01\x02\x03", 4));
  auto v3 = Database::Open(FromFixture("schema_v3.sql"));
  ASSERT_TRUE(v3.ok());
  auto ep = (*v3)->Prepare("SELECT principal FROM episodes WHERE id = 'ep-old'");
  ASSERT_TRUE(ep.ok());
  ASSERT_TRUE(*ep->Step());
  EXPECT_EQ(ep->ColumnText(0), "alice");
}

TEST_F(DatabaseTest, RefusesNewerSchemaAndLeavesFileIntact) {
  std::string path = Path("newer.db");
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw,
                           "CREATE TABLE future (x); INSERT INTO future VALUES (1);"
                           "PRAGMA user_version = 999;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(raw);
  }
  std::string before = ReadFile(path);
  auto db = Database::Open(path);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(db.status().message().find("999"), std::string::npos) << db.status();
  EXPECT_NE(db.status().message().find(path), std::string::npos) << db.status();
  // journal_mode=WAL does not rewrite an unchanged rollback-journal file's content pages; the
  // schema version and the table are as they were.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 999);
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_prepare_v2(raw, "SELECT count(*) FROM sqlite_master", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 1);
  sqlite3_finalize(stmt);
  sqlite3_close(raw);
  EXPECT_FALSE(before.empty());
}

TEST_F(DatabaseTest, NotADatabaseIsDataLoss) {
  std::string path = Path("garbage.db");
  std::ofstream(path) << std::string(4096, 'x');
  auto db = Database::Open(path);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kDataLoss) << db.status();
  EXPECT_EQ(ReadFile(path), std::string(4096, 'x'));
}

TEST_F(DatabaseTest, UnwritableLocationIsUnavailableNamingPath) {
  std::string path = Path("no/such/dir/x.db");
  auto db = Database::Open(path);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable) << db.status();
  EXPECT_NE(db.status().message().find(path), std::string::npos) << db.status();
  EXPECT_EQ(Database::Open("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DatabaseTest, RolledBackTransactionLeavesNoRows) {
  auto db = Database::Open(Path("txn.db"));
  ASSERT_TRUE(db.ok());
  {
    Transaction txn(db->get());
    ASSERT_TRUE(txn.status().ok());
    ASSERT_TRUE((*db)->Execute("INSERT INTO meta VALUES ('a', '1')").ok());
    // No Commit(): the destructor rolls back.
  }
  {
    Transaction txn(db->get());
    ASSERT_TRUE((*db)->Execute("INSERT INTO meta VALUES ('b', '2')").ok());
    ASSERT_TRUE(txn.Commit().ok());
  }
  auto sel = (*db)->Prepare("SELECT group_concat(key) FROM meta WHERE key IN ('a','b')");
  ASSERT_TRUE(sel.ok());
  ASSERT_TRUE(*sel->Step());
  EXPECT_EQ(sel->ColumnText(0), "b");
  // A constraint violation is an error naming the SQL, not a crash.
  auto dup = (*db)->Prepare("INSERT INTO meta VALUES ('b', '3')");
  ASSERT_TRUE(dup.ok());
  absl::Status st = dup->Run();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("INSERT INTO meta"), std::string::npos) << st;
}

}  // namespace
}  // namespace tapeloop::store
