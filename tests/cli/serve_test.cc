// `tapeloop serve` as a process: start-up errors, health over gRPC, clean signal shutdown.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/cli/process.h"

namespace tapeloop {
namespace {

namespace fs = std::filesystem;
using testing::Process;
using testing::TapeloopBinary;

std::string TempDb(const std::string& name) {
  auto p = fs::temp_directory_path() / ("tapeloop_cli_" + std::to_string(getpid()) + name);
  fs::remove(p);
  return p.string();
}

int PortFrom(const std::string& line) {
  std::smatch m;
  std::regex re(":(\\d+) \\(db");
  return std::regex_search(line, m, re) ? std::stoi(m[1]) : -1;
}

TEST(ServeCommand, ServesHealthAndStopsCleanlyOnSignals) {
  for (int sig : {SIGTERM, SIGINT}) {
    std::string db = TempDb("_serve.db");
    Process proc({TapeloopBinary(), "serve", "--listen", "127.0.0.1:0", "--db", db});
    std::string line = proc.WaitForLine("listening on", std::chrono::seconds(30));
    ASSERT_FALSE(line.empty()) << proc.stderr_text();
    int port = PortFrom(line);
    ASSERT_GT(port, 0) << line;

    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                       grpc::InsecureChannelCredentials());
    auto health = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, {}, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);

    proc.Signal(sig);
    EXPECT_EQ(proc.Wait(), 0) << proc.stderr_text();
    EXPECT_NE(proc.all_stdout().find("shutting down"), std::string::npos) << proc.all_stdout();
    EXPECT_NE(proc.all_stdout().find("stopped"), std::string::npos) << proc.all_stdout();
    EXPECT_TRUE(fs::exists(db));
    for (auto s : {"", "-wal", "-shm"}) fs::remove(db + s);
  }
}

TEST(ServeCommand, BadListenExitsTwoWithOneClearLine) {
  Process proc({TapeloopBinary(), "serve", "--listen", "localhost", "--db", TempDb("_bad.db")});
  EXPECT_EQ(proc.Wait(), 2);
  std::string err = proc.stderr_text();
  EXPECT_NE(err.find("--listen 'localhost'"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(ServeCommand, UnwritableDbExitsTwoNamingThePath) {
  std::string db = "/nonexistent_dir_tapeloop/x.db";
  Process proc({TapeloopBinary(), "serve", "--listen", "127.0.0.1:0", "--db", db});
  EXPECT_EQ(proc.Wait(), 2);
  std::string err = proc.stderr_text();
  EXPECT_NE(err.find(db), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(ServeCommand, OutOfRangeLimitsExitTwoNamingTheFlag) {
  for (auto [flag, value] : {std::pair<const char*, const char*>{"--max-evaluations", "0"},
                             {"--max-evaluations", "65"},
                             {"--max-sessions", "0"},
                             {"--idle-timeout", "0"}}) {
    Process proc({TapeloopBinary(), "serve", "--listen", "127.0.0.1:0", "--db",
                  TempDb("_limits.db"), flag, value});
    EXPECT_EQ(proc.Wait(), 2) << flag << " " << value;
    std::string err = proc.stderr_text();
    EXPECT_NE(err.find(flag), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

TEST(ServeCommand, UnknownFlagAndCommandAreUsageErrors) {
  Process a({TapeloopBinary(), "serve", "--lisen", "x"});
  EXPECT_EQ(a.Wait(), 2);
  EXPECT_NE(a.stderr_text().find("unknown flag --lisen"), std::string::npos) << a.stderr_text();
  Process b({TapeloopBinary(), "frobnicate"});
  EXPECT_EQ(b.Wait(), 2);
  EXPECT_NE(b.stderr_text().find("unknown command 'frobnicate'"), std::string::npos);
}

}  // namespace
}  // namespace tapeloop
