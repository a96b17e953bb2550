// `tapeloop serve` as a process under SIGKILL: client threads write snapshots and agent
// episodes as fast as the server takes them; at a point drawn from a seeded RNG the server is
// killed mid-writes. Then the database file must pass SQLite's integrity check, and a restarted
// server must restore every acknowledged snapshot (at its acknowledged position and state) and
// return every acknowledged episode; every row the tables hold must be whole (checksum, a
// restorable state, a parseable record). Three kills on the same database, each round also
// re-checking what the earlier rounds acknowledged.
#include <dlfcn.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <thread>

#include "tapeloop/v1/agent.grpc.pb.h"
#include "tapeloop/v1/engine.grpc.pb.h"
#include "tests/cli/process.h"

namespace tapeloop {
namespace {

namespace fs = std::filesystem;
namespace v1 = tapeloop::v1;
using testing::Process;
using testing::TapeloopBinary;

constexpr char kModel[] = "mamba2-pointer";

int PortFrom(const std::string& line) {
  std::smatch m;
  std::regex re(":(\\d+) \\(db");
  return std::regex_search(line, m, re) ? std::stoi(m[1]) : -1;
}

std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 30) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

// The server's snapshot checksum (engine::Fnv1a64, engine/session/state.cc): FNV-1a over
// 8-byte little-endian words with an extra xor-shift per word, then byte-wise for the tail.
int64_t SnapshotChecksum(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ w) * 1099511628211ull;
    h ^= h >> 29;
  }
  for (; i < bytes.size(); ++i) h = (h ^ static_cast<unsigned char>(bytes[i])) * 1099511628211ull;
  return static_cast<int64_t>(h);
}

// The SQLite C API, loaded at run time (this test binary does not link SQLite; the server's
// own library is on every machine that runs `tapeloop serve`).
class Sqlite {
 public:
  struct Row {
    std::vector<std::string> columns;
  };

  Sqlite() {
    lib_ = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_LOCAL);
    if (lib_ == nullptr) lib_ = dlopen("libsqlite3.so", RTLD_NOW | RTLD_LOCAL);
    if (lib_ == nullptr) return;
    open_ = reinterpret_cast<decltype(open_)>(dlsym(lib_, "sqlite3_open_v2"));
    close_ = reinterpret_cast<decltype(close_)>(dlsym(lib_, "sqlite3_close"));
    prepare_ = reinterpret_cast<decltype(prepare_)>(dlsym(lib_, "sqlite3_prepare_v2"));
    step_ = reinterpret_cast<decltype(step_)>(dlsym(lib_, "sqlite3_step"));
    finalize_ = reinterpret_cast<decltype(finalize_)>(dlsym(lib_, "sqlite3_finalize"));
    column_count_ = reinterpret_cast<decltype(column_count_)>(dlsym(lib_, "sqlite3_column_count"));
    column_blob_ = reinterpret_cast<decltype(column_blob_)>(dlsym(lib_, "sqlite3_column_blob"));
    column_bytes_ = reinterpret_cast<decltype(column_bytes_)>(dlsym(lib_, "sqlite3_column_bytes"));
    errmsg_ = reinterpret_cast<decltype(errmsg_)>(dlsym(lib_, "sqlite3_errmsg"));
  }
  ~Sqlite() {
    if (lib_ != nullptr) dlclose(lib_);
  }
  bool loaded() const {
    return open_ && close_ && prepare_ && step_ && finalize_ && column_count_ && column_blob_ &&
           column_bytes_ && errmsg_;
  }

  // Runs `sql` on the database at `path` (opened read-write, so that a hot WAL is recovered as
  // any SQLite client would) and returns every row, each column as its bytes. Fails the test
  // (returning no rows) on an error.
  std::vector<Row> Query(const std::string& path, const std::string& sql) {
    std::vector<Row> rows;
    constexpr int kReadWrite = 0x00000002;  // SQLITE_OPEN_READWRITE
    void* db = nullptr;
    if (open_(path.c_str(), &db, kReadWrite, nullptr) != 0) {
      ADD_FAILURE() << "sqlite3_open_v2 " << path << ": " << (db ? errmsg_(db) : "no memory");
      if (db != nullptr) close_(db);
      return rows;
    }
    void* stmt = nullptr;
    if (prepare_(db, sql.c_str(), -1, &stmt, nullptr) != 0) {
      ADD_FAILURE() << sql << ": " << errmsg_(db);
    } else {
      constexpr int kRow = 100, kDone = 101;  // SQLITE_ROW, SQLITE_DONE
      int rc;
      while ((rc = step_(stmt)) == kRow) {
        Row row;
        for (int c = 0; c < column_count_(stmt); ++c) {
          const void* data = column_blob_(stmt, c);
          int n = column_bytes_(stmt, c);
          row.columns.emplace_back(data ? static_cast<const char*>(data) : "", data ? n : 0);
        }
        rows.push_back(std::move(row));
      }
      if (rc != kDone) ADD_FAILURE() << sql << ": step " << rc << ": " << errmsg_(db);
      finalize_(stmt);
    }
    close_(db);
    return rows;
  }

 private:
  void* lib_ = nullptr;
  int (*open_)(const char*, void**, int, const char*) = nullptr;
  int (*close_)(void*) = nullptr;
  int (*prepare_)(void*, const char*, int, void**, const char**) = nullptr;
  int (*step_)(void*) = nullptr;
  int (*finalize_)(void*) = nullptr;
  int (*column_count_)(void*) = nullptr;
  const void* (*column_blob_)(void*, int) = nullptr;
  int (*column_bytes_)(void*, int) = nullptr;
  const char* (*errmsg_)(void*) = nullptr;
};

struct AckedSnapshot {
  int64_t position = 0;
  std::string state;  // GetSession(include_state) just before the Snapshot call
};

struct AckedEpisode {
  int64_t length = 0;
  int64_t seed = 0;
  std::string expected;
};

// What the clients saw acknowledged, over every round.
struct Acked {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, AckedSnapshot> snapshots;
  std::map<std::string, AckedEpisode> episodes;
  int round_count = 0;  // acknowledgements in the current round
  int round_snapshots = 0, round_episodes = 0;
  std::vector<std::string> errors;  // failures seen before the kill
};

class DurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tapeloop_durability_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_ = (dir_ / "server.db").string();
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "keeping the database for inspection: " << db_ << "\n";
      return;
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Starts `tapeloop serve` on the test's database; fills channel_.
  void StartServer() {
    server_ = std::make_unique<Process>(
        std::vector<std::string>{TapeloopBinary(), "serve", "--listen", "127.0.0.1:0", "--db", db_,
                                 "--models-dir", std::string(TAPELOOP_SOURCE_DIR) + "/models"});
    std::string line = server_->WaitForLine("listening on", std::chrono::seconds(60));
    ASSERT_FALSE(line.empty()) << server_->stderr_text();
    int port = PortFrom(line);
    ASSERT_GT(port, 0) << line;
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                         grpc::InsecureChannelCredentials(), args);
    engine_ = v1::Engine::NewStub(channel_);
    agent_ = v1::Agent::NewStub(channel_);
  }

  // Engine writer: sessions of random tokens, snapshotted after every append.
  void SnapshotWriter(uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto fail = [&](const std::string& what, const grpc::Status& st) {
      if (!killing_) {
        std::lock_guard<std::mutex> lock(acked_.mu);
        acked_.errors.push_back(what + ": " + std::to_string(st.error_code()) + " " +
                                st.error_message());
      }
    };
    while (!killing_) {
      v1::CreateSessionRequest create;
      create.set_model(kModel);
      create.mutable_sampling()->set_seed(rng());
      v1::EngineSession session;
      if (auto st = engine_->CreateSession(Ctx().get(), create, &session); !st.ok()) {
        return fail("CreateSession", st);
      }
      for (int round = 0; round < 3 && !killing_; ++round) {
        v1::AppendRequest append;
        append.set_session_id(session.session_id());
        int n = 1 + static_cast<int>(rng() % 24);
        for (int i = 0; i < n; ++i) append.mutable_tokens()->add_ids(static_cast<int>(rng() % 256));
        v1::AppendResponse appended;
        if (auto st = engine_->Append(Ctx().get(), append, &appended); !st.ok()) {
          return fail("Append", st);
        }
        v1::GetSessionRequest get;
        get.set_session_id(session.session_id());
        get.set_include_state(true);
        v1::EngineSession with_state;
        if (auto st = engine_->GetSession(Ctx().get(), get, &with_state); !st.ok()) {
          return fail("GetSession", st);
        }
        v1::SnapshotRequest snap;
        snap.set_session_id(session.session_id());
        v1::SnapshotResponse saved;
        if (auto st = engine_->Snapshot(Ctx().get(), snap, &saved); !st.ok()) {
          return fail("Snapshot", st);
        }
        if (saved.position() != appended.position() ||
            with_state.position() != appended.position()) {
          return fail("Snapshot position " + std::to_string(saved.position()) + " after Append",
                      grpc::Status::CANCELLED);
        }
        std::lock_guard<std::mutex> lock(acked_.mu);
        acked_.snapshots[saved.snapshot_id()] = {saved.position(), with_state.state()};
        ++acked_.round_count;
        ++acked_.round_snapshots;
        acked_.cv.notify_all();
      }
      v1::CloseSessionRequest close;
      close.set_session_id(session.session_id());
      v1::CloseSessionResponse closed;
      if (auto st = engine_->CloseSession(Ctx().get(), close, &closed); !st.ok()) {
        return fail("CloseSession", st);
      }
    }
  }

  // Agent writer: short oracle addition episodes.
  void EpisodeWriter(uint64_t seed) {
    std::mt19937_64 rng(seed);
    while (!killing_) {
      v1::RunEpisodeRequest request;
      request.set_task("addition");
      request.set_mode("pointer");
      request.set_policy("oracle");
      request.set_length(2 + static_cast<int64_t>(rng() % 7));
      request.set_seed(static_cast<int64_t>(rng() % 1000000));
      auto ctx = Ctx(60);
      auto reader = agent_->RunEpisode(ctx.get(), request);
      v1::RunEpisodeResponse message;
      std::optional<v1::EpisodeFinished> finished;
      while (reader->Read(&message)) {
        for (const auto& e : message.events()) {
          if (e.has_finished()) finished = e.finished();
        }
      }
      grpc::Status st = reader->Finish();
      if (finished.has_value() && finished->stored()) {
        // The finished event arrived: the episode is acknowledged whatever the stream's status.
        std::lock_guard<std::mutex> lock(acked_.mu);
        acked_.episodes[finished->episode_id()] = {request.length(), request.seed(),
                                                   finished->expected()};
        ++acked_.round_count;
        ++acked_.round_episodes;
        acked_.cv.notify_all();
      }
      if (!st.ok()) {
        if (!killing_) {
          std::lock_guard<std::mutex> lock(acked_.mu);
          acked_.errors.push_back("RunEpisode: " + st.error_message());
        }
        return;
      }
      if (!finished.has_value() || !finished->stored()) {
        std::lock_guard<std::mutex> lock(acked_.mu);
        acked_.errors.push_back("RunEpisode ended OK without a stored finished event");
        return;
      }
    }
  }

  // Every acknowledged snapshot restores at its position with its state; every acknowledged
  // episode is there with its record.
  void CheckAcknowledged() {
    std::lock_guard<std::mutex> lock(acked_.mu);
    for (const auto& [id, want] : acked_.snapshots) {
      SCOPED_TRACE("snapshot " + id);
      v1::RestoreRequest restore;
      restore.set_snapshot_id(id);
      v1::EngineSession session;
      grpc::Status st = engine_->Restore(Ctx().get(), restore, &session);
      ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
      EXPECT_EQ(session.position(), want.position);
      v1::GetSessionRequest get;
      get.set_session_id(session.session_id());
      get.set_include_state(true);
      v1::EngineSession with_state;
      ASSERT_TRUE(engine_->GetSession(Ctx().get(), get, &with_state).ok());
      EXPECT_EQ(with_state.position(), want.position);
      EXPECT_TRUE(with_state.state() == want.state)
          << "restored state differs (" << with_state.state().size() << " vs " << want.state.size()
          << " bytes)";
      v1::CloseSessionRequest close;
      close.set_session_id(session.session_id());
      v1::CloseSessionResponse closed;
      EXPECT_TRUE(engine_->CloseSession(Ctx().get(), close, &closed).ok());
    }
    for (const auto& [id, want] : acked_.episodes) {
      SCOPED_TRACE("episode " + id);
      v1::GetEpisodeRequest get;
      get.set_episode_id(id);
      v1::GetEpisodeResponse got;
      grpc::Status st = agent_->GetEpisode(Ctx().get(), get, &got);
      ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
      EXPECT_EQ(got.summary().episode_id(), id);
      EXPECT_EQ(got.summary().task(), "addition");
      EXPECT_EQ(got.summary().policy(), "oracle");
      EXPECT_EQ(got.summary().length(), want.length);
      EXPECT_EQ(got.summary().seed(), want.seed);
      EXPECT_TRUE(got.summary().correct());
      nlohmann::json record = nlohmann::json::parse(got.record_json(), nullptr, false);
      ASSERT_FALSE(record.is_discarded()) << got.record_json().substr(0, 200);
      EXPECT_NE(got.record_json().find(want.expected), std::string::npos)
          << "record lacks the expected answer " << want.expected;
    }
  }

  // Opens the killed server's file directly: integrity, and every row whole. Returns the ids
  // of the rows for CheckRows.
  void CheckFile(std::vector<std::string>* snapshot_ids, std::vector<std::string>* episode_ids) {
    Sqlite sqlite;
    ASSERT_TRUE(sqlite.loaded()) << "cannot load libsqlite3: " << dlerror();
    auto integrity = sqlite.Query(db_, "PRAGMA integrity_check");
    ASSERT_EQ(integrity.size(), 1u);
    EXPECT_EQ(integrity[0].columns.at(0), "ok");
    for (const auto& row :
         sqlite.Query(db_, "SELECT id, CAST(checksum AS TEXT), state, position FROM snapshots")) {
      EXPECT_EQ(std::to_string(SnapshotChecksum(row.columns.at(2))), row.columns.at(1))
          << "snapshot " << row.columns[0] << ": stored checksum does not match its state";
      snapshot_ids->push_back(row.columns[0]);
    }
    for (const auto& row : sqlite.Query(db_, "SELECT id, record FROM episodes")) {
      EXPECT_FALSE(nlohmann::json::parse(row.columns.at(1), nullptr, false).is_discarded())
          << "episode " << row.columns[0] << ": record is not JSON";
      episode_ids->push_back(row.columns[0]);
    }
  }

  // Through the restarted server: every row of the tables is usable.
  void CheckRows(const std::vector<std::string>& snapshot_ids,
                 const std::vector<std::string>& episode_ids) {
    for (const auto& id : snapshot_ids) {
      v1::RestoreRequest restore;
      restore.set_snapshot_id(id);
      v1::EngineSession session;
      grpc::Status st = engine_->Restore(Ctx().get(), restore, &session);
      ASSERT_TRUE(st.ok()) << id << ": " << st.error_code() << " " << st.error_message();
      v1::CloseSessionRequest close;
      close.set_session_id(session.session_id());
      v1::CloseSessionResponse closed;
      EXPECT_TRUE(engine_->CloseSession(Ctx().get(), close, &closed).ok());
    }
    for (const auto& id : episode_ids) {
      v1::GetEpisodeRequest get;
      get.set_episode_id(id);
      v1::GetEpisodeResponse got;
      grpc::Status st = agent_->GetEpisode(Ctx().get(), get, &got);
      ASSERT_TRUE(st.ok()) << id << ": " << st.error_code() << " " << st.error_message();
    }
  }

  fs::path dir_;
  std::string db_;
  std::unique_ptr<Process> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Engine::Stub> engine_;
  std::unique_ptr<v1::Agent::Stub> agent_;
  Acked acked_;
  std::atomic<bool> killing_{false};
};

TEST_F(DurabilityTest, AcknowledgedWritesSurviveSigkillAndNothingHalfWrittenIsVisible) {
  std::mt19937_64 rng(20240607);
  constexpr int kRounds = 3;
  constexpr int kSnapshotWriters = 2, kEpisodeWriters = 2;
  ASSERT_NO_FATAL_FAILURE(StartServer());
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Kill after this many acknowledged writes of this round (snapshots + episodes, at least one
    // of each).
    const int kill_after = 10 + static_cast<int>(rng() % 50);
    {
      std::lock_guard<std::mutex> lock(acked_.mu);
      acked_.round_count = acked_.round_snapshots = acked_.round_episodes = 0;
    }
    killing_ = false;
    std::vector<std::thread> writers;
    for (int i = 0; i < kSnapshotWriters; ++i) {
      writers.emplace_back([this, s = rng()] { SnapshotWriter(s); });
    }
    for (int i = 0; i < kEpisodeWriters; ++i) {
      writers.emplace_back([this, s = rng()] { EpisodeWriter(s); });
    }
    bool reached;
    {
      std::unique_lock<std::mutex> lock(acked_.mu);
      reached = acked_.cv.wait_for(lock, std::chrono::seconds(120), [&] {
        return (acked_.round_count >= kill_after && acked_.round_snapshots > 0 &&
                acked_.round_episodes > 0) ||
               !acked_.errors.empty();
      });
    }
    killing_ = true;
    server_->Signal(SIGKILL);
    int code = server_->Wait();
    for (auto& w : writers) w.join();
    EXPECT_EQ(code, 128 + SIGKILL) << server_->stderr_text();
    server_.reset();
    {
      std::lock_guard<std::mutex> lock(acked_.mu);
      ASSERT_TRUE(acked_.errors.empty()) << acked_.errors.front();
      ASSERT_TRUE(reached) << "the writers did not reach " << kill_after << " acknowledgements";
    }

    std::vector<std::string> snapshot_ids, episode_ids;
    ASSERT_NO_FATAL_FAILURE(CheckFile(&snapshot_ids, &episode_ids));
    {
      // Every acknowledged write is a row (there may be more rows: a commit whose answer was
      // lost in the kill).
      std::lock_guard<std::mutex> lock(acked_.mu);
      EXPECT_GE(snapshot_ids.size(), acked_.snapshots.size());
      EXPECT_GE(episode_ids.size(), acked_.episodes.size());
    }
    {
      std::lock_guard<std::mutex> lock(acked_.mu);
      std::cout << "round " << round << ": killed after " << acked_.round_count
                << " acknowledged writes (at least " << kill_after << "); acknowledged so far "
                << acked_.snapshots.size() << " snapshots, " << acked_.episodes.size()
                << " episodes; the file holds " << snapshot_ids.size() << " and "
                << episode_ids.size() << "\n";
    }
    ASSERT_NO_FATAL_FAILURE(StartServer());
    // Everything acknowledged so far, this round's and the earlier rounds'.
    ASSERT_NO_FATAL_FAILURE(CheckAcknowledged());
    ASSERT_NO_FATAL_FAILURE(CheckRows(snapshot_ids, episode_ids));
    if (HasFailure()) break;
  }
  {
    std::lock_guard<std::mutex> lock(acked_.mu);
    EXPECT_GE(acked_.snapshots.size(), 1u);
    EXPECT_GE(acked_.episodes.size(), 1u);
  }
  server_->Signal(SIGTERM);
  EXPECT_EQ(server_->Wait(), 0) << server_->stderr_text();
}

}  // namespace
}  // namespace tapeloop
