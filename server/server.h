// The tapeloop gRPC server: grpc.health.v1, server reflection, and the tapeloop.v1 services,
// over one SQLite database.
//
// Lifecycle: Start() opens the database, binds the address and starts serving; Shutdown() stops
// accepting calls, lets in-flight calls finish until the deadline then cancels them, and closes
// the database. The destructor shuts down if Shutdown() was not called. Thread-safe: Shutdown()
// may be called from any thread (a signal-waiting thread, typically). Not copyable.
#ifndef TAPELOOP_SERVER_SERVER_H_
#define TAPELOOP_SERVER_SERVER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/auth.h"
#include "server/call_tracker.h"
#include "server/model_registry.h"
#include "server/service_context.h"
#include "store/database.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace tapeloop::server {

struct ServerOptions {
  // "host:port"; port 0 picks a free port (see Server::port()).
  std::string listen = "127.0.0.1:7070";
  // SQLite file; created if absent.
  std::string db_path = "tapeloop.db";
  // With no keys every caller is "local" and only loopback addresses may be listened on.
  ApiKeys api_keys;
  // PEM files; both set enables TLS, neither keeps plaintext.
  std::string tls_cert_path;
  std::string tls_key_path;
  // Directory of models (one subdirectory each) the Engine and Agent services serve.
  std::string models_dir = "models";
  ServiceLimits limits;
  // Evaluation runs (tapeloop.v1.Evaluation) playing at once; more are RESOURCE_EXHAUSTED.
  int max_running_evaluations = 1;
};

// Validates a listen address ("host:port", "[v6]:port"); INVALID_ARGUMENT naming what is wrong.
absl::Status ValidateListenAddress(const std::string& listen);

class Server {
 public:
  // Errors: INVALID_ARGUMENT for a malformed listen address or TLS files, FAILED_PRECONDITION
  // for a non-loopback address without API keys, UNAVAILABLE when the address
  // cannot be bound or the database cannot be opened, FAILED_PRECONDITION for a database newer
  // than this binary.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound port (useful with port 0).
  int port() const { return port_; }
  // Calls in flight (for tests and metrics).
  int calls_in_flight() { return calls_.in_flight(); }
  // Blocks until Shutdown() completes.
  void Wait();
  // Marks health NOT_SERVING, refuses new calls, lets calls in flight finish for up to `grace`,
  // then cancels the rest and closes the database. Idempotent.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

 private:
  Server() = default;
  ApiKeys keys_;
  CallTracker calls_;
  std::unique_ptr<ModelRegistry> models_;
  ServiceContext context_;
  std::unique_ptr<store::Database> db_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::vector<std::function<void()>> shutdowns_;  // each service's Shutdown()
  std::unique_ptr<grpc::Server> grpc_server_;
  int port_ = 0;
  std::mutex mu_;
  bool shut_down_ = false;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_SERVER_H_
