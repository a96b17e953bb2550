#include "server/auth.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "server/server.h"
#include "tapeloop/v1/server.grpc.pb.h"

namespace tapeloop::server {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("tapeloop_auth_" + std::to_string(getpid()) + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(ApiKeys, ParsesFileAndRejectsBadLinesNamingThem) {
  auto dir = TempDir("file");
  std::ofstream(dir / "good") << "# comment\n\nabcdefghijklmnop0123 alice\n"
                                 "ZZZZZZZZZZZZZZZZZZZZ bob@lab\n";
  auto keys = ApiKeys::FromFile((dir / "good").string());
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 2u);

  std::ofstream(dir / "short") << "abcdefghijklmnop0123 alice\nshort bob\n";
  auto bad = ApiKeys::FromFile((dir / "short").string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos) << bad.status();

  std::ofstream(dir / "three") << "abcdefghijklmnop0123 alice extra\n";
  EXPECT_EQ(ApiKeys::FromFile((dir / "three").string()).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::ofstream(dir / "dup") << "abcdefghijklmnop0123 alice\nabcdefghijklmnop0123 bob\n";
  EXPECT_FALSE(ApiKeys::FromFile((dir / "dup").string()).ok());
  EXPECT_EQ(ApiKeys::FromFile((dir / "missing").string()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(ApiKeys::FromFlag("abcdefghijklmnop0123=bad principal!").ok());
  EXPECT_FALSE(ApiKeys::FromFlag("noequals").ok());
  EXPECT_TRUE(ApiKeys::FromFlag("abcdefghijklmnop0123=alice,qqqqqqqqqqqqqqqqqqqq=bob").ok());
  fs::remove_all(dir);
}

TEST(ApiKeys, LoopbackDetection) {
  EXPECT_TRUE(IsLoopbackListen("127.0.0.1:7070"));
  EXPECT_TRUE(IsLoopbackListen("127.3.2.1:0"));
  EXPECT_TRUE(IsLoopbackListen("localhost:80"));
  EXPECT_TRUE(IsLoopbackListen("[::1]:80"));
  EXPECT_FALSE(IsLoopbackListen("0.0.0.0:7070"));
  EXPECT_FALSE(IsLoopbackListen("[::]:7070"));
  EXPECT_FALSE(IsLoopbackListen("10.1.2.3:7070"));
}

class AuthServerTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name()); }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(AuthServerTest, KeysMapCallersToPrincipalsAndRejectOthers) {
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = (dir_ / "a.db").string();
  ASSERT_TRUE(options.api_keys.Add("alice-key-0123456789", "alice").ok());
  auto server = Server::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = tapeloop::v1::Server::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string((*server)->port()), grpc::InsecureChannelCredentials()));
  auto call = [&](const std::string& header, const std::string& value) {
    grpc::ClientContext ctx;
    if (!header.empty()) ctx.AddMetadata(header, value);
    tapeloop::v1::ServerInfo info;
    return stub->GetServerInfo(&ctx, {}, &info).error_code();
  };
  EXPECT_EQ(call("", ""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("authorization", "Bearer wrong-key-0123456789"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("authorization", "alice-key-0123456789"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("authorization", "Bearer alice-key-0123456789"), grpc::StatusCode::OK);
  EXPECT_EQ(call("x-api-key", "alice-key-0123456789"), grpc::StatusCode::OK);
}

TEST_F(AuthServerTest, WithoutKeysOnlyLoopbackIsAllowed) {
  ServerOptions options;
  options.listen = "0.0.0.0:0";
  options.db_path = (dir_ / "b.db").string();
  auto server = Server::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(server.status().message().find("0.0.0.0:0"), std::string::npos);
}

TEST_F(AuthServerTest, ServesTlsFromCertificateFiles) {
  std::string cert = (dir_ / "cert.pem").string(), key = (dir_ / "key.pem").string();
  std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                    "-addext subjectAltName=DNS:localhost -keyout " + key + " -out " + cert +
                    " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl failed";
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = (dir_ / "c.db").string();
  options.tls_cert_path = cert;
  options.tls_key_path = key;
  auto server = Server::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  std::ifstream in(cert);
  std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pem;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  std::string target = "127.0.0.1:" + std::to_string((*server)->port());
  auto secure = tapeloop::v1::Server::NewStub(
      grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  tapeloop::v1::ServerInfo info;
  grpc::Status st = secure->GetServerInfo(&ctx, {}, &info);
  EXPECT_TRUE(st.ok()) << st.error_message();
  // A plaintext client cannot talk to the TLS port.
  auto plain = tapeloop::v1::Server::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx2;
  ctx2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  EXPECT_FALSE(plain->GetServerInfo(&ctx2, {}, &info).ok());
  // Half a TLS configuration or a non-PEM file is a clear error.
  options.tls_key_path = "";
  EXPECT_EQ(Server::Start(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.tls_key_path = options.db_path;
  EXPECT_EQ(Server::Start(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tapeloop::server
