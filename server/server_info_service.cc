#include "server/server_info_service.h"

#include "common/version.h"
#include "engine/kernels/device.h"
#include "proto/request_decoding.h"
#include "server/grpc_status.h"

namespace tapeloop::server {

ServerInfoService::ServerInfoService(int db_schema_version, const ApiKeys* keys, CallTracker* calls)
    : started_(std::chrono::steady_clock::now()),
      db_schema_version_(db_schema_version),
      gpu_visible_(engine::CudaDeviceCount() > 0),
      keys_(keys),
      calls_(calls) {}

grpc::ServerUnaryReactor* ServerInfoService::GetServerInfo(
    grpc::CallbackServerContext* context, const tapeloop::v1::GetServerInfoRequest* request,
    tapeloop::v1::ServerInfo* response) {
  auto* reactor = context->DefaultReactor();
  CallTracker::Scope call(calls_);
  if (!call.ok()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
    return reactor;
  }
  if (auto principal = keys_->Authenticate(*context); !principal.ok()) {
    reactor->Finish(ToGrpcStatus(principal.status()));
    return reactor;
  }
  if (std::string error = v1::DecodeError(*request); !error.empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, error));
    return reactor;
  }
  response->set_version(std::string(Version()));
  response->set_cuda_compiled(CudaCompiledIn());
  response->set_gpu_visible(gpu_visible_);
  response->set_uptime_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  response->set_db_schema_version(db_schema_version_);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace tapeloop::server
