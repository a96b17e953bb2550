#include "proto/request_decoding.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/message.h>
#include <google/protobuf/unknown_field_set.h>
#include <google/protobuf/wire_format_lite.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/utf8.h"

namespace tapeloop::v1 {
namespace {

namespace pb = google::protobuf;
using pb::internal::WireFormatLite;

// Nesting deeper than this is refused as malformed (protobuf's own default limit is 100).
constexpr int kMaxDepth = 64;

// Copies the wire bytes `in` of a message of type `type` to `out`, replacing invalid UTF-8 in
// every `string` field (nested messages and map entries included) with U+FFFD. The first such
// field's path and byte offset go to *first_error (when it is still empty). Returns false when
// `in` is not well-formed wire data for any message.
bool RepairUtf8(std::string_view in, const pb::Descriptor& type, const std::string& path, int depth,
                std::string* out, std::string* first_error) {
  if (depth > kMaxDepth) return false;
  pb::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(in.data()),
                                 static_cast<int>(in.size()));
  pb::io::StringOutputStream sink(out);
  pb::io::CodedOutputStream output(&sink);
  while (true) {
    const uint32_t tag = input.ReadTag();
    if (tag == 0) break;
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    if (number == 0) return false;
    output.WriteTag(tag);
    switch (WireFormatLite::GetTagWireType(tag)) {
      case WireFormatLite::WIRETYPE_VARINT: {
        uint64_t v;
        if (!input.ReadVarint64(&v)) return false;
        output.WriteVarint64(v);
        break;
      }
      case WireFormatLite::WIRETYPE_FIXED64: {
        uint64_t v;
        if (!input.ReadLittleEndian64(&v)) return false;
        output.WriteLittleEndian64(v);
        break;
      }
      case WireFormatLite::WIRETYPE_FIXED32: {
        uint32_t v;
        if (!input.ReadLittleEndian32(&v)) return false;
        output.WriteLittleEndian32(v);
        break;
      }
      case WireFormatLite::WIRETYPE_LENGTH_DELIMITED: {
        uint32_t length;
        std::string value;
        if (!input.ReadVarint32(&length) || !input.ReadString(&value, static_cast<int>(length))) {
          return false;
        }
        const pb::FieldDescriptor* field = type.FindFieldByNumber(number);
        if (field != nullptr) {
          const std::string field_path = path.empty() ? field->name() : path + "." + field->name();
          if (field->type() == pb::FieldDescriptor::TYPE_STRING) {
            if (size_t bad = InvalidUtf8At(value); bad != std::string::npos) {
              if (first_error->empty()) {
                *first_error = field_path + ": invalid UTF-8 at byte " + std::to_string(bad);
              }
              value = SanitizeUtf8(value);
            }
          } else if (field->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
            std::string repaired;
            if (!RepairUtf8(value, *field->message_type(), field_path, depth + 1, &repaired,
                            first_error)) {
              return false;
            }
            value = std::move(repaired);
          }
        }
        output.WriteVarint32(static_cast<uint32_t>(value.size()));
        output.WriteString(value);
        break;
      }
      default:  // groups (unused by our protos) and invalid wire types
        return false;
    }
  }
  return input.ConsumedEntireMessage() && input.CurrentPosition() == static_cast<int>(in.size());
}

void Mark(pb::Message* msg, const std::string& error) {
  msg->GetReflection()->MutableUnknownFields(msg)->AddLengthDelimited(kDecodeErrorField, error);
}

}  // namespace

grpc::Status DecodeRequest(grpc::ByteBuffer* buffer, grpc::protobuf::MessageLite* lite) {
  if (buffer == nullptr) return grpc::Status(grpc::StatusCode::INTERNAL, "No payload");
  std::vector<grpc::Slice> slices;
  grpc::Status read = buffer->Dump(&slices);
  if (!read.ok()) return read;
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  buffer->Clear();

  auto* msg = static_cast<pb::Message*>(lite);  // tapeloop.v1 is compiled with full runtime
  {
    pb::LogSilencer quiet;  // protobuf logs every invalid UTF-8 field it meets
    if (msg->ParseFromString(bytes)) {
      // A mark is ours to set: one sent by the client is dropped.
      msg->GetReflection()->MutableUnknownFields(msg)->DeleteByNumber(kDecodeErrorField);
      return grpc::Status::OK;
    }
  }
  msg->Clear();
  std::string repaired, error;
  if (RepairUtf8(bytes, *msg->GetDescriptor(), "", 0, &repaired, &error) && !error.empty() &&
      msg->ParseFromString(repaired)) {
    Mark(msg, error);
    return grpc::Status::OK;
  }
  msg->Clear();
  Mark(msg, "request: not a valid " + msg->GetDescriptor()->full_name() + " message");
  return grpc::Status::OK;
}

std::string DecodeError(const google::protobuf::Message& msg) {
  const pb::UnknownFieldSet& unknown = msg.GetReflection()->GetUnknownFields(msg);
  for (int i = 0; i < unknown.field_count(); ++i) {
    const pb::UnknownField& f = unknown.field(i);
    if (f.number() == kDecodeErrorField && f.type() == pb::UnknownField::TYPE_LENGTH_DELIMITED) {
      return f.length_delimited();
    }
  }
  return "";
}

}  // namespace tapeloop::v1
