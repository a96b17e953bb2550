// tapeloop.v1.Server: GetServerInfo (version, CUDA build and visibility, uptime, DB schema).
#ifndef TAPELOOP_SERVER_SERVER_INFO_SERVICE_H_
#define TAPELOOP_SERVER_SERVER_INFO_SERVICE_H_

#include <chrono>

#include "server/auth.h"
#include "server/call_tracker.h"
#include "tapeloop/v1/server.grpc.pb.h"

namespace tapeloop::server {

class ServerInfoService final : public tapeloop::v1::Server::CallbackService {
 public:
  // `keys` and `calls` must outlive the service.
  ServerInfoService(int db_schema_version, const ApiKeys* keys, CallTracker* calls);

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const tapeloop::v1::GetServerInfoRequest* request,
                                          tapeloop::v1::ServerInfo* response) override;

 private:
  const std::chrono::steady_clock::time_point started_;
  const int db_schema_version_;
  const bool gpu_visible_;
  const ApiKeys* keys_;
  CallTracker* calls_;
};

}  // namespace tapeloop::server

#endif  // TAPELOOP_SERVER_SERVER_INFO_SERVICE_H_
