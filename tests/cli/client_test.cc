// `tapeloop client VERB` against a real `tapeloop serve` process: every verb family, output in
// both forms (text and --json), determinism of generation across sessions, snapshot / restore
// / fork continuing identically, errors (exit 1 with the gRPC code on stderr) and bad usage
// (exit 2 with one clear line).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "tests/cli/process.h"

namespace tapeloop {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::Process;
using testing::TapeloopBinary;

struct Ran {
  int code = -1;
  std::string out, err;
};

// Lines of `text` parsed as JSON objects; a line that is not JSON fails the test.
std::vector<json> JsonLines(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

int64_t Int(const json& j) {  // proto3 JSON writes int64 as a string
  return j.is_string() ? std::stoll(j.get<std::string>()) : j.get<int64_t>();
}

class ClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new std::string(
        (fs::temp_directory_path() / ("tapeloop_client_" + std::to_string(getpid()) + ".db"))
            .string());
    server_ = new Process({TapeloopBinary(), "serve", "--listen", "127.0.0.1:0", "--db", *db_,
                           "--models-dir", std::string(TAPELOOP_SOURCE_DIR) + "/models"});
    std::string line = server_->WaitForLine("listening on", std::chrono::seconds(60));
    std::smatch m;
    if (std::regex_search(line, m, std::regex(":(\\d+) \\(db"))) {
      address_ = new std::string("127.0.0.1:" + m[1].str());
    }
  }
  static void TearDownTestSuite() {
    server_->Signal(SIGTERM);
    server_->Wait();
    delete server_;
    for (auto s : {"", "-wal", "-shm"}) fs::remove(*db_ + s);
    delete db_;
    delete address_;
  }
  void SetUp() override {
    ASSERT_NE(address_, nullptr) << "server did not start: " << server_->stderr_text();
  }

  // Runs `tapeloop client ARGS... --server ADDRESS`.
  static Ran Client(std::vector<std::string> args, bool with_server = true) {
    std::vector<std::string> argv = {TapeloopBinary(), "client"};
    argv.insert(argv.end(), args.begin(), args.end());
    if (with_server) {
      argv.push_back("--server");
      argv.push_back(*address_);
    }
    Process p(argv);
    Ran r;
    r.code = p.Finish(std::chrono::seconds(120));
    r.out = p.all_stdout();
    r.err = p.stderr_text();
    return r;
  }

  // A session made with `create --json`; returns its id.
  static std::string Create(const std::string& extra_seed) {
    Ran r = Client({"create", "--model", "mamba2-pointer", "--temperature", "0.8", "--seed",
                    extra_seed, "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    auto lines = JsonLines(r.out);
    if (lines.size() != 1) {
      ADD_FAILURE() << r.out;
      return "";
    }
    EXPECT_EQ(lines[0].value("model", ""), "mamba2-pointer");
    return lines[0].value("session_id", "");
  }

  // `generate --json`: the generated ids, checking the chunk stream's shape on the way.
  static std::vector<int> Generate(const std::string& session, int max_tokens,
                                   int64_t start_position, const std::string& temperature = "") {
    std::vector<std::string> args = {"generate", session, "--max-tokens",
                                     std::to_string(max_tokens), "--json"};
    if (!temperature.empty()) {
      args.push_back("--temperature");
      args.push_back(temperature);
    }
    Ran r = Client(args);
    EXPECT_EQ(r.code, 0) << r.err;
    std::vector<int> ids;
    auto chunks = JsonLines(r.out);
    EXPECT_FALSE(chunks.empty()) << r.out;
    for (const auto& c : chunks) {
      if (c.contains("token_ids")) {
        for (const auto& id : c["token_ids"]) ids.push_back(id.get<int>());
      }
      EXPECT_EQ(Int(c.at("position")), start_position + static_cast<int64_t>(ids.size()));
    }
    if (!chunks.empty()) {
      EXPECT_EQ(chunks.back().value("finish_reason", ""), "GENERATE_FINISH_REASON_MAX_TOKENS");
    }
    EXPECT_EQ(ids.size(), static_cast<size_t>(max_tokens));
    return ids;
  }

  static Process* server_;
  static std::string* db_;
  static std::string* address_;
};

Process* ClientTest::server_ = nullptr;
std::string* ClientTest::db_ = nullptr;
std::string* ClientTest::address_ = nullptr;

TEST_F(ClientTest, InfoAndModels) {
  Ran info = Client({"info"});
  ASSERT_EQ(info.code, 0) << info.err;
  EXPECT_TRUE(std::regex_search(info.out, std::regex("^tapeloop \\S+  cuda (yes|no)  gpu")))
      << info.out;
  EXPECT_NE(info.out.find("db schema v"), std::string::npos) << info.out;
  Ran info_json = Client({"info", "--json"});
  ASSERT_EQ(info_json.code, 0) << info_json.err;
  auto j = JsonLines(info_json.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_FALSE(j[0].value("version", "").empty()) << j[0];
  EXPECT_GE(j[0].value("db_schema_version", 0), 3) << j[0];

  Ran models = Client({"models"});
  ASSERT_EQ(models.code, 0) << models.err;
  EXPECT_NE(models.out.find("mamba2-pointer  mamba2"), std::string::npos) << models.out;
  EXPECT_NE(models.out.find("llama-pointer  llama"), std::string::npos) << models.out;
  Ran models_json = Client({"models", "--json"});
  ASSERT_EQ(models_json.code, 0) << models_json.err;
  std::set<std::string> names;
  for (const auto& m : JsonLines(models_json.out)) names.insert(m.value("name", ""));
  EXPECT_TRUE(names.count("mamba2-pointer") && names.count("llama-pointer")) << models_json.out;

  Ran tools = Client({"tools", "--task", "addition", "--mode", "calculator", "--json"});
  ASSERT_EQ(tools.code, 0) << tools.err;
  std::set<std::string> tool_names;
  for (const auto& t : JsonLines(tools.out)) {
    tool_names.insert(t.value("name", ""));
    EXPECT_FALSE(json::parse(t.value("input_schema_json", ""), nullptr, false).is_discarded());
  }
  EXPECT_EQ(tool_names, (std::set<std::string>{"calculator", "submit"}));
}

TEST_F(ClientTest, CreateAppendGenerateIsDeterministic) {
  // Two sessions made the same way (sampled, temperature 0.8, the same seed) generate the same
  // tokens; a third with another seed is allowed to differ but must still generate.
  std::vector<std::vector<int>> generated;
  for (int i = 0; i < 2; ++i) {
    std::string id = Create("1234");
    ASSERT_FALSE(id.empty());
    Ran text = Client({"append", id, "--text", "4821+937="});
    ASSERT_EQ(text.code, 0) << text.err;
    EXPECT_EQ(text.out, "appended 9, position 9\n");
    Ran tokens = Client({"append", id, "--tokens", "259,52,56,50", "--json"});
    ASSERT_EQ(tokens.code, 0) << tokens.err;
    auto j = JsonLines(tokens.out);
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(Int(j[0].at("position")), 13);
    EXPECT_EQ(Int(j[0].at("appended")), 4);
    generated.push_back(Generate(id, 24, 13));
    // Human-readable generate: the ids in the summary line.
    Ran more = Client({"generate", id, "--max-tokens", "3"});
    ASSERT_EQ(more.code, 0) << more.err;
    EXPECT_TRUE(std::regex_search(
        more.out, std::regex("\\[3 tokens: \\d+ \\d+ \\d+; GENERATE_FINISH_REASON_MAX_TOKENS\\]")))
        << more.out;
    Ran session = Client({"session", id, "--json"});
    ASSERT_EQ(session.code, 0) << session.err;
    EXPECT_EQ(Int(JsonLines(session.out).at(0).at("position")), 13 + 24 + 3);
  }
  EXPECT_EQ(generated[0], generated[1]);
}

TEST_F(ClientTest, SnapshotRestoreAndForkContinueIdentically) {
  std::string id = Create("77");
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(Client({"append", id, "--text", "5093+11="}).code, 0);
  Ran fork = Client({"fork", id, "--json"});
  ASSERT_EQ(fork.code, 0) << fork.err;
  auto fork_json = JsonLines(fork.out);
  ASSERT_EQ(fork_json.size(), 1u);
  std::string fork_id = fork_json[0].value("session_id", "");
  ASSERT_NE(fork_id, id);
  EXPECT_EQ(Int(fork_json[0].at("position")), 8);

  Ran snap = Client({"snapshot", id});
  ASSERT_EQ(snap.code, 0) << snap.err;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(snap.out, m, std::regex("^(snap_[0-9a-f]{32})  position 8  \\d+ bytes")))
      << snap.out;
  const std::string snapshot_id = m[1];

  // A restored session gets its default sampling from the Restore request (the client's
  // `restore` sends none: greedy), its generator from the snapshot; so every Generate here
  // passes the sampling explicitly, without a seed (no reseed).
  std::vector<int> original = Generate(id, 20, 8, "0.8");
  std::vector<int> forked = Generate(fork_id, 20, 8, "0.8");
  EXPECT_EQ(forked, original);

  Ran restore = Client({"restore", snapshot_id});
  ASSERT_EQ(restore.code, 0) << restore.err;
  ASSERT_TRUE(std::regex_search(
      restore.out, m, std::regex("^(ses_[0-9a-f]{32})  model mamba2-pointer  position 8")))
      << restore.out;
  EXPECT_EQ(Generate(m[1], 20, 8, "0.8"), original);

  Ran sessions = Client({"sessions"});
  ASSERT_EQ(sessions.code, 0) << sessions.err;
  EXPECT_NE(sessions.out.find(fork_id), std::string::npos);
  EXPECT_NE(sessions.out.find(m[1].str()), std::string::npos);
}

TEST_F(ClientTest, CloseThenAppendIsNotFound) {
  std::string id = Create("5");
  ASSERT_FALSE(id.empty());
  Ran close = Client({"close", id});
  ASSERT_EQ(close.code, 0) << close.err;
  EXPECT_EQ(close.out, id + " closed\n");
  Ran append = Client({"append", id, "--tokens", "1,2"});
  EXPECT_EQ(append.code, 1);
  EXPECT_EQ(append.out, "");
  EXPECT_NE(append.err.find("tapeloop client append: NOT_FOUND: session '" + id + "' not found"),
            std::string::npos)
      << append.err;
  EXPECT_EQ(std::count(append.err.begin(), append.err.end(), '\n'), 1) << append.err;
  // An out-of-vocabulary id is the server's INVALID_ARGUMENT, also exit 1.
  std::string live = Create("6");
  Ran bad = Client({"append", live, "--tokens", "1,285"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("INVALID_ARGUMENT: tokens.ids[1]"), std::string::npos) << bad.err;
}

TEST_F(ClientTest, OracleEpisodeIsCorrectAndStored) {
  Ran episode = Client(
      {"episode", "--task", "addition", "--length", "6", "--seed", "3", "--policy", "oracle"});
  ASSERT_EQ(episode.code, 0) << episode.err << episode.out;
  EXPECT_NE(episode.out.find("CORRECT"), std::string::npos) << episode.out;
  EXPECT_NE(episode.out.find("stop eos"), std::string::npos) << episode.out;
  EXPECT_NE(episode.out.find(", stored"), std::string::npos) << episode.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(episode.out, m, std::regex("^episode (ep_[0-9a-f]+)  addition")))
      << episode.out;
  const std::string episode_id = m[1];

  Ran got = Client({"get-episode", episode_id, "--json"});
  ASSERT_EQ(got.code, 0) << got.err;
  auto j = JsonLines(got.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["summary"].value("episode_id", ""), episode_id);
  EXPECT_EQ(j[0]["summary"].value("policy", ""), "oracle");
  EXPECT_TRUE(j[0]["summary"].value("correct", false));
  json record = json::parse(j[0].value("record_json", ""), nullptr, false);
  EXPECT_TRUE(record.is_object()) << j[0];

  Ran list = Client({"episodes"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_NE(list.out.find(episode_id + "  addition pointer length 6 seed 3  oracle  correct"),
            std::string::npos)
      << list.out;
}

// A code_debug episode (no --mode: the task's default, interactive): the debugger's commands
// and answers print as tool calls and results, the expert fixes the program, and it is stored.
TEST_F(ClientTest, CodeDebugOracleEpisodeIsCorrectAndStored) {
  Ran episode = Client(
      {"episode", "--task", "code_debug", "--length", "3", "--seed", "4", "--policy", "oracle"});
  ASSERT_EQ(episode.code, 0) << episode.err << episode.out;
  EXPECT_NE(episode.out.find("  -> debugger {\"command\":\"run\"}"), std::string::npos)
      << episode.out;
  EXPECT_NE(episode.out.find("[program exited normally]"), std::string::npos) << episode.out;
  EXPECT_EQ(episode.out.find("[OBS]"), std::string::npos) << episode.out;  // shown as results
  EXPECT_NE(episode.out.find("CORRECT  stop eos"), std::string::npos) << episode.out;
  Ran list = Client({"episodes"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_NE(list.out.find("  code_debug interactive length 3 seed 4  oracle  correct"),
            std::string::npos)
      << list.out;
}

// An evaluation run over the server: started and awaited from the terminal, then listed and
// read back; the table is the one `tapeloop eval` prints for the same run.
TEST_F(ClientTest, EvaluationStartWaitGetAndList) {
  Ran run = Client({"eval-start", "--models", "mamba2-pointer,oracle", "--task", "addition",
                    "--lengths", "3,8", "--episodes", "2", "--seeds", "5", "--wait"});
  ASSERT_EQ(run.code, 0) << run.err << run.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(run.out, m, std::regex("([0-9a-f]{32})  succeeded  8/8 episodes")))
      << run.out;
  const std::string id = m[1];
  EXPECT_NE(run.out.find("| mamba2-pointer / pointer | 5->8 (100%) | 100% | 100% |"),
            std::string::npos)
      << run.out;
  Ran got = Client({"eval", id, "--json"});
  ASSERT_EQ(got.code, 0) << got.err;
  auto j = JsonLines(got.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0].value("state", ""), "EVALUATION_STATE_SUCCEEDED");
  EXPECT_EQ(j[0]["cells"].size(), 4u);
  Ran list = Client({"evals"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_NE(list.out.find(id + "  succeeded  8/8 episodes"), std::string::npos) << list.out;
  Ran bad = Client({"eval-start", "--models", "oracle", "--task", "addition", "--lengths", "0"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("INVALID_ARGUMENT: lengths:"), std::string::npos) << bad.err;
  Ran unknown = Client({"eval", "0123456789abcdef0123456789abcdef"});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.err.find("NOT_FOUND"), std::string::npos) << unknown.err;
}

TEST_F(ClientTest, OracleEpisodeJsonStreamsEveryEvent) {
  Ran episode = Client({"episode", "--task", "addition", "--length", "4", "--seed", "9", "--policy",
                        "oracle", "--json"});
  auto events = JsonLines(episode.out);
  ASSERT_GE(events.size(), 3u) << episode.err;
  EXPECT_TRUE(events.front().contains("started")) << events.front();
  ASSERT_TRUE(events.back().contains("finished")) << events.back();
  EXPECT_TRUE(events.back()["finished"].value("correct", false));
  EXPECT_TRUE(events.back()["finished"].value("stored", false));
  int64_t last_position = -1;
  for (size_t i = 1; i + 1 < events.size(); ++i) {
    if (!events[i].contains("token")) continue;
    int64_t position = Int(events[i]["token"].at("position"));
    EXPECT_GT(position, last_position);
    last_position = position;
  }
  EXPECT_GT(last_position, 0);
  EXPECT_EQ(episode.code, 0) << episode.err;
}

TEST_F(ClientTest, BadUsageExitsTwoWithOneClearLine) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"frobnicate"}, "unknown verb 'frobnicate'"},
      {{"append", "ses_x"}, "give exactly one of --text and --tokens"},
      {{"append", "ses_x", "--text", "a", "--tokens", "1"},
       "give exactly one of --text and --tokens"},
      {{"append", "ses_x", "--tokens", "1,x"}, "--tokens: 'x' is not a token id"},
      {{"append", "--tokens", "1"}, "expected one session id after the verb"},
      {{"generate", "ses_x", "--max-tokens", "many"}, "max-tokens"},
      {{"create"}, "model"},
      {{"info", "--bogus", "1"}, "bogus"},
      {{"restore"}, "expected one snapshot id"},
      {{"info", "--deadline", "0"}, "--deadline must be > 0"},
  };
  for (const auto& c : cases) {
    Ran r = Client(c.args);
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    EXPECT_EQ(r.code, 2) << joined << ": " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << joined << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << joined << ": " << r.err;
    EXPECT_EQ(r.err.rfind("tapeloop client", 0), 0u) << joined << ": " << r.err;
  }
  // No verb: the usage on stdout, exit 2; --help: the usage, exit 0.
  Ran none = Client({}, /*with_server=*/false);
  EXPECT_EQ(none.code, 2);
  EXPECT_EQ(none.out.rfind("usage: tapeloop client VERB", 0), 0u) << none.out;
  Ran help = Client({"--help"}, /*with_server=*/false);
  EXPECT_EQ(help.code, 0);
  EXPECT_EQ(help.out, none.out);
}

TEST_F(ClientTest, UnreachableServerExitsOne) {
  // A port nothing listens on: bound and closed again (nothing else binds it meanwhile on a
  // loopback port the kernel just handed out).
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  close(fd);
  for (const char* verb : {"info", "models"}) {
    Ran r = Client({verb, "--server", "127.0.0.1:" + std::to_string(port), "--deadline", "2"},
                   /*with_server=*/false);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_TRUE(r.err.find(std::string("tapeloop client ") + verb + ": UNAVAILABLE") !=
                    std::string::npos ||
                r.err.find(std::string("tapeloop client ") + verb + ": DEADLINE_EXCEEDED") !=
                    std::string::npos)
        << r.err;
    EXPECT_EQ(r.out, "");
  }
}

}  // namespace
}  // namespace tapeloop
