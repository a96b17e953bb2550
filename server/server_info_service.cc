#include "server/server_info_service.h"

#include "common/version.h"
#include "engine/kernels/device.h"

namespace tapeloop::server {

ServerInfoService::ServerInfoService(int db_schema_version)
    : started_(std::chrono::steady_clock::now()),
      db_schema_version_(db_schema_version),
      gpu_visible_(engine::CudaDeviceCount() > 0) {}

grpc::ServerUnaryReactor* ServerInfoService::GetServerInfo(
    grpc::CallbackServerContext* context, const tapeloop::v1::GetServerInfoRequest* request,
    tapeloop::v1::ServerInfo* response) {
  response->set_version(std::string(Version()));
  response->set_cuda_compiled(CudaCompiledIn());
  response->set_gpu_visible(gpu_visible_);
  response->set_uptime_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  response->set_db_schema_version(db_schema_version_);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace tapeloop::server
