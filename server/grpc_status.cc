#include "server/grpc_status.h"

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace tapeloop::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  std::string message =
      SanitizeUtf8(std::string_view(status.message().data(), status.message().size()));
  if (message.size() > kMaxStatusMessageBytes) {
    // Keep whole characters: back up over UTF-8 continuation bytes (10xxxxxx).
    size_t keep = kMaxStatusMessageBytes - 40;
    while (keep > 0 && (static_cast<unsigned char>(message[keep]) & 0xC0) == 0x80) --keep;
    const size_t cut = message.size() - keep;
    message.resize(keep);
    absl::StrAppend(&message, "... [", cut, " more bytes]");
  }
  // absl::StatusCode and grpc::StatusCode share the canonical numbering 0..16.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message);
}

}  // namespace tapeloop::server
