// The real gRPC server on a loopback ephemeral port, called through real channels.
#include "server/server.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/version.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "store/migrations.h"
#include "tapeloop/v1/server.grpc.pb.h"

namespace tapeloop::server {
namespace {

namespace fs = std::filesystem;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_path_ = (fs::temp_directory_path() /
                ("tapeloop_server_" + std::to_string(::getpid()) + "_" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db"))
                   .string();
    fs::remove(db_path_);
  }
  void TearDown() override {
    for (auto suffix : {"", "-wal", "-shm"}) fs::remove(db_path_ + suffix);
  }

  std::unique_ptr<Server> StartServer() {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = db_path_;
    auto server = Server::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(*server) : nullptr;
  }

  static std::shared_ptr<grpc::Channel> Connect(int port) {
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                               grpc::InsecureChannelCredentials());
  }

  std::string db_path_;
};

TEST_F(ServerTest, HealthIsServingForServerAndServices) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto health = grpc::health::v1::Health::NewStub(Connect(server->port()));
  for (std::string service : {"", "tapeloop.v1.Server"}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status st = health->Check(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << service << ": " << st.error_message();
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("no.such.Service");
  grpc::health::v1::HealthCheckResponse resp;
  EXPECT_EQ(health->Check(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, ServerInfoReportsBuildAndUptime) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto stub = tapeloop::v1::Server::NewStub(Connect(server->port()));
  auto call = [&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    tapeloop::v1::ServerInfo info;
    grpc::Status st = stub->GetServerInfo(&ctx, {}, &info);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return info;
  };
  auto first = call();
  EXPECT_EQ(first.version(), Version());
  EXPECT_EQ(first.cuda_compiled(), CudaCompiledIn());
  if (!CudaCompiledIn()) {
    EXPECT_FALSE(first.gpu_visible());
  }
  EXPECT_EQ(first.db_schema_version(), store::LatestSchemaVersion());
  EXPECT_GE(first.uptime_seconds(), 0.0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto second = call();
  EXPECT_GT(second.uptime_seconds(), first.uptime_seconds() + 0.04);
}

TEST_F(ServerTest, ShutdownRefusesNewCallsAndReleasesTheDatabase) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  int port = server->port();
  auto stub = tapeloop::v1::Server::NewStub(Connect(port));
  {
    grpc::ClientContext ctx;
    tapeloop::v1::ServerInfo info;
    ASSERT_TRUE(stub->GetServerInfo(&ctx, {}, &info).ok());
  }
  server->Shutdown(std::chrono::milliseconds(1000));
  server->Wait();
  server->Shutdown();  // idempotent
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    tapeloop::v1::ServerInfo info;
    EXPECT_EQ(stub->GetServerInfo(&ctx, {}, &info).error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  server.reset();
  // The database was closed cleanly: it opens and checks out.
  auto db = store::Database::Open(db_path_);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_TRUE((*db)->CheckIntegrity().ok());
}

TEST_F(ServerTest, BadListenAddressesAreClearErrors) {
  for (std::string bad : {"nonsense", "127.0.0.1:99999", "127.0.0.1:abc", ":7070", "[::1:80"}) {
    ServerOptions options;
    options.listen = bad;
    options.db_path = db_path_;
    auto server = Server::Start(options);
    ASSERT_FALSE(server.ok()) << bad;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(server.status().message().find(bad), std::string::npos) << server.status();
  }
}

TEST_F(ServerTest, PortInUseIsUnavailable) {
  auto first = StartServer();
  ASSERT_NE(first, nullptr);
  ServerOptions options;
  options.listen = "127.0.0.1:" + std::to_string(first->port());
  options.db_path = db_path_ + ".second";
  auto second = Server::Start(options);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  for (auto suffix : {"", "-wal", "-shm"}) fs::remove(options.db_path + suffix);
}

}  // namespace
}  // namespace tapeloop::server
