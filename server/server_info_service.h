// tapeloop.v1.Server: GetServerInfo (version, CUDA build and visibility, uptime, DB schema).
#ifndef TAPELOOP_SERVER_SERVER_INFO_SERVICE_H_
#define TAPELOOP_SERVER_SERVER_INFO_SERVICE_H_

#include <chrono>

#include "server/auth.h"
#include "tapeloop/v1/server.grpc.pb.h"

namespace tapeloop::server {

class ServerInfoService final : public tapeloop::v1::Server::CallbackService {
 public:
  // `keys` must outlive the service.
  ServerInfoService(int db_schema_version, const ApiKeys* keys);

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const tapeloop::v1::GetServerInfoRequest* request,
                                          tapeloop::v1::ServerInfo* response) override;

 private:
  const std::chrono::steady_clock::time_point started_;
  const int db_schema_version_;
  const bool gpu_visible_;
  const ApiKeys* keys_;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_SERVER_INFO_SERVICE_H_
