// tapeloop.v1.Environment: task tools for external agents (proto/tapeloop/v1/environment.proto).
//
// An environment is one episode's instance (agents::MakeEpisodeSpec's, so the same as
// `tapeloop run`'s episode `index`) and its tools: pointer mode, a tools::PointerMemoryTool over
// the prompt (without [BOS]); calculator mode, a tools::CalculatorTool; every mode, `submit`
// ({"answer": "<decimal digits>"}), which terminates the episode with reward 1 when the answer
// equals the instance's, 0 otherwise. Steps past max_steps truncate. A call whose arguments are
// JSON but wrong for the tool is an error observation; the RPC fails only for requests that
// are not tool calls at all (unparseable JSON, unknown tool, unknown env).
//
// Environments live in memory (not durable: a restart forgets them), belong to the principal
// that opened them (another principal's id is NOT_FOUND), count against
// ServiceLimits::max_environments_per_principal, and are closed after their idle timeout
// (expiry is checked on every call; no thread).
//
// Thread safety: all methods may be called concurrently; Steps on one environment are
// serialised. No call blocks on anything but short in-memory work.
#ifndef TAPELOOP_SERVER_ENVIRONMENT_SERVICE_H_
#define TAPELOOP_SERVER_ENVIRONMENT_SERVICE_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "server/service_context.h"
#include "tapeloop/v1/environment.grpc.pb.h"

namespace tapeloop::server {

class Environment;  // one open environment (environment_service.cc)

class EnvironmentService final : public tapeloop::v1::Environment::CallbackService {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // `ctx` must outlive the service. `clock` (default: steady_clock::now) drives idle expiry;
  // tests pass a fake one.
  explicit EnvironmentService(const ServiceContext* ctx, Clock clock = nullptr);
  ~EnvironmentService() override;
  EnvironmentService(const EnvironmentService&) = delete;
  EnvironmentService& operator=(const EnvironmentService&) = delete;

  grpc::ServerUnaryReactor* ListTools(grpc::CallbackServerContext* context,
                                      const tapeloop::v1::ListEnvToolsRequest* request,
                                      tapeloop::v1::ListEnvToolsResponse* response) override;
  grpc::ServerUnaryReactor* Reset(grpc::CallbackServerContext* context,
                                  const tapeloop::v1::EnvResetRequest* request,
                                  tapeloop::v1::EnvResetResponse* response) override;
  grpc::ServerUnaryReactor* Step(grpc::CallbackServerContext* context,
                                 const tapeloop::v1::EnvStepRequest* request,
                                 tapeloop::v1::EnvStepResponse* response) override;
  grpc::ServerUnaryReactor* Close(grpc::CallbackServerContext* context,
                                  const tapeloop::v1::EnvCloseRequest* request,
                                  tapeloop::v1::EnvCloseResponse* response) override;

  // Closes every environment. Calls are short, so nothing waits. Idempotent.
  void Shutdown();

  // Open environments (all principals), expired ones not counted.
  int open_environments();

 private:
  // The caller's environment `id`, or NOT_FOUND. Expires idle environments first.
  absl::StatusOr<std::shared_ptr<Environment>> Find(const std::string& principal,
                                                    const std::string& id);
  void ExpireLocked(std::chrono::steady_clock::time_point now);  // REQUIRES mu_ held

  const ServiceContext* ctx_;
  Clock clock_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Environment>> envs_;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_ENVIRONMENT_SERVICE_H_
