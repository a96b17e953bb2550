// A real gRPC server on loopback for service tests: a temp SQLite file, a models directory,
// a ServiceContext over them, and whatever services the test registers.
//
//   ServiceFixture f;                         // temp dir, keys: none ("local")
//   auto svc = std::make_unique<MyService>(f.context());
//   f.Start({svc.get()});                     // 127.0.0.1:<free port>
//   auto stub = tapeloop::v1::My::NewStub(f.channel());
//
// Restart() stops the gRPC server and starts a new one on the services the test passes (built
// again over the same database file), for durability tests.
#ifndef TAPELOOP_TESTS_SERVER_SERVICE_FIXTURE_H_
#define TAPELOOP_TESTS_SERVER_SERVICE_FIXTURE_H_

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "server/service_context.h"
#include "store/database.h"

namespace tapeloop::testing {

class ServiceFixture {
 public:
  // models_dir: defaults to the repository's bundled models/.
  explicit ServiceFixture(std::string models_dir = std::string(TAPELOOP_SOURCE_DIR) + "/models") {
    static int counter = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("tapeloop_svc_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    db_path_ = (dir_ / "server.db").string();
    // Create the schema the way the server does (migrations run on open).
    auto db = store::Database::Open(db_path_);
    if (!db.ok()) std::abort();
    registry_ = std::make_unique<server::ModelRegistry>(std::move(models_dir));
    context_.keys = &keys_;
    context_.calls = &calls_;
    context_.db_path = db_path_;
    context_.models = registry_.get();
  }
  ~ServiceFixture() {
    Stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Set before constructing services when a test needs keys or other limits.
  server::ApiKeys* keys() { return &keys_; }
  server::ServiceContext* context() { return &context_; }
  server::ServiceLimits* limits() { return &context_.limits; }
  const std::string& db_path() const { return db_path_; }
  const std::filesystem::path& dir() const { return dir_; }

  void Start(const std::vector<grpc::Service*>& services) {
    grpc::ServerBuilder builder;
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.SetMaxReceiveMessageSize(static_cast<int>(context_.limits.max_message_bytes));
    for (auto* s : services) builder.RegisterService(s);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port_ == 0) std::abort();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_),
                                         grpc::InsecureChannelCredentials(), args);
  }
  void Stop() {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
      server_.reset();
    }
  }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  int port() const { return port_; }

  // A client context with a deadline (default 30 s) and, optionally, an API key.
  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& api_key = "",
                                                  int deadline_s = 30) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(deadline_s));
    if (!api_key.empty()) ctx->AddMetadata("authorization", "Bearer " + api_key);
    return ctx;
  }

  // One unary call as the principal holding `api_key`: the request starts empty and `fill`
  // sets its fields; the response is dropped. For tables of bad requests:
  //   Unary(stub, &v1::Engine::Stub::Fork, kAlice, [&](v1::ForkRequest* r) { ... })
  template <typename Stub, typename Req, typename Resp, typename Fill>
  static grpc::Status Unary(Stub* stub,
                            grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                            const std::string& api_key, Fill fill) {
    Req request;
    fill(&request);
    Resp response;
    auto ctx = Ctx(api_key);
    return (stub->*method)(ctx.get(), request, &response);
  }

 private:
  std::filesystem::path dir_;
  std::string db_path_;
  server::ApiKeys keys_;
  server::CallTracker calls_;
  std::unique_ptr<server::ModelRegistry> registry_;
  server::ServiceContext context_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  int port_ = 0;
};

}  // namespace tapeloop::testing

#endif  // TAPELOOP_TESTS_SERVER_SERVICE_FIXTURE_H_
