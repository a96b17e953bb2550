#include "server/service_context.h"

#include <sys/random.h>

#include <cstdio>
#include <stdexcept>

namespace tapeloop::server {

std::string NewId(const char* prefix) {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    // getrandom only fails with EINTR / EAGAIN once the pool is initialised; retry.
  }
  std::string id = prefix;
  id += '_';
  char hex[3];
  for (unsigned char b : bytes) {
    std::snprintf(hex, sizeof hex, "%02x", b);
    id += hex;
  }
  return id;
}

absl::StatusOr<std::string> Principal(const ServiceContext& ctx,
                                      const grpc::ServerContextBase& context) {
  return ctx.keys->Authenticate(context);
}

}  // namespace tapeloop::server
