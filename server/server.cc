#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/agent_service.h"
#include "server/debug_service.h"
#include "server/engine_service.h"
#include "server/environment_service.h"
#include "server/evaluation_service.h"
#include "server/server_info_service.h"

namespace tapeloop::server {

absl::Status ValidateListenAddress(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen '", listen, "': expected HOST:PORT, e.g. 127.0.0.1:7070"));
  }
  std::string host = listen.substr(0, colon);
  std::string port_text = listen.substr(colon + 1);
  int port;
  if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen '", listen, "': port '", port_text, "' is not in 0..65535"));
  }
  if (host.front() == '[' && host.back() != ']') {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen '", listen, "': unterminated IPv6 bracket"));
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": not a PEM file"));
  }
  return text.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(
    const ServerOptions& options) {
  if (options.tls_cert_path.empty() && options.tls_key_path.empty()) {
    return grpc::InsecureServerCredentials();
  }
  if (options.tls_cert_path.empty() || options.tls_key_path.empty()) {
    return absl::InvalidArgumentError("TLS needs both --tls-cert and --tls-key");
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(options.tls_cert_path, "--tls-cert"));
  ASSIGN_OR_RETURN(pair.private_key, ReadPem(options.tls_key_path, "--tls-key"));
  ssl.pem_key_cert_pairs.push_back(pair);
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  RETURN_IF_ERROR(ValidateListenAddress(options.listen));
  if (options.api_keys.empty() && !IsLoopbackListen(options.listen)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing to listen on ", options.listen,
        " without API keys: give --api-keys-file (or --api-key), or listen on 127.0.0.1"));
  }
  ASSIGN_OR_RETURN(auto credentials, MakeCredentials(options));
  std::unique_ptr<Server> server(new Server());
  server->keys_ = options.api_keys;
  ASSIGN_OR_RETURN(server->db_, store::Database::Open(options.db_path));
  ASSIGN_OR_RETURN(int schema, server->db_->SchemaVersion());
  server->models_ = std::make_unique<ModelRegistry>(options.models_dir);
  server->context_.keys = &server->keys_;
  server->context_.calls = &server->calls_;
  server->context_.db_path = options.db_path;
  server->context_.models = server->models_.get();
  server->context_.limits = options.limits;

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default, which lets a second server silently share a port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options.listen, credentials, &server->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.limits.max_message_bytes));
  server->services_.push_back(
      std::make_unique<ServerInfoService>(schema, &server->keys_, &server->calls_));
  {
    auto engine = std::make_unique<EngineService>(&server->context_);
    server->shutdowns_.push_back([s = engine.get()] { s->Shutdown(); });
    server->services_.push_back(std::move(engine));
    auto agent = std::make_unique<AgentService>(&server->context_);
    server->shutdowns_.push_back([s = agent.get()] { s->Shutdown(); });
    server->services_.push_back(std::move(agent));
    auto environment = std::make_unique<EnvironmentService>(&server->context_);
    server->shutdowns_.push_back([s = environment.get()] { s->Shutdown(); });
    server->services_.push_back(std::move(environment));
    EvaluationServiceOptions evaluation_options;
    evaluation_options.max_running = options.max_running_evaluations;
    auto evaluation = std::make_unique<EvaluationService>(&server->context_, evaluation_options);
    server->shutdowns_.push_back([s = evaluation.get()] { s->Shutdown(); });
    server->services_.push_back(std::move(evaluation));
    auto debug = std::make_unique<DebugService>(&server->context_);
    server->shutdowns_.push_back([s = debug.get()] { s->Shutdown(); });
    server->services_.push_back(std::move(debug));
  }
  for (auto& service : server->services_) builder.RegisterService(service.get());
  server->grpc_server_ = builder.BuildAndStart();
  if (server->grpc_server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen,
                     ": the address is in use or not an address of this machine"));
  }
  auto* health = server->grpc_server_->GetHealthCheckService();
  health->SetServingStatus(true);
  for (const char* name :
       {tapeloop::v1::Server::service_full_name(), tapeloop::v1::Engine::service_full_name(),
        tapeloop::v1::Agent::service_full_name(), tapeloop::v1::Environment::service_full_name(),
        tapeloop::v1::Debug::service_full_name(), tapeloop::v1::Evaluation::service_full_name()}) {
    health->SetServingStatus(name, true);
  }
  return server;
}

Server::~Server() { Shutdown(std::chrono::milliseconds(0)); }

void Server::Wait() {
  if (grpc_server_ != nullptr) grpc_server_->Wait();
}

void Server::Shutdown(std::chrono::milliseconds grace) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (grpc_server_ != nullptr) {
    grpc_server_->GetHealthCheckService()->SetServingStatus(false);
    calls_.Drain(std::chrono::steady_clock::now() + grace);
    // Calls still running after the grace period (long streams) are cancelled by their
    // services, which also stop their worker threads.
    for (auto& shutdown : shutdowns_) shutdown();
    grpc_server_->Shutdown(std::chrono::system_clock::now());
  } else {
    for (auto& shutdown : shutdowns_) shutdown();
  }
  db_.reset();
}

}  // namespace tapeloop::server
