// Fuzzes every tapeloop.v1 request handler of a real server (Server::Start, all services, loopback)
// with generated requests, bounded in count, deterministic in seed.
//
// Requests are built by protobuf reflection from each method's input type: fields set at random
// from "interesting" values (0, -1, huge, empty, long, invalid UTF-8, path escapes, the names of
// real models, tasks and modes) and from ids harvested out of earlier responses, so calls chain
// (a CreateSession's id is later appended to, forked, snapshotted, closed...). A fraction are raw
// bytes (truncated or mutated encodings, garbage) sent through the generic stub. Every method type
// goes through the same generic bidirectional call, so server-streaming handlers are covered.
//
// The server must stay up and correct: no crash (a crash kills this process under ASan), no
// UNKNOWN status (a handler that threw or returned an unmapped error), health SERVING at the end,
// and a plain GetServerInfo still answers.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "server/server.h"
#include "tapeloop/v1/server.grpc.pb.h"

namespace tapeloop::server {
namespace {

namespace pb = google::protobuf;

// The services a serving tapeloop exposes (those linked into this binary are fuzzed).
const char* const kServices[] = {"tapeloop.v1.Server", "tapeloop.v1.Engine", "tapeloop.v1.Agent",
                                 "tapeloop.v1.Environment", "tapeloop.v1.Debug",
                                 "tapeloop.v1.Evaluation"};

class RequestGenerator {
 public:
  explicit RequestGenerator(uint64_t seed) : rng_(seed) {}

  // Ids and names seen in responses, reused as string field values.
  void Harvest(const pb::Message& message) {
    const pb::Reflection* r = message.GetReflection();
    std::vector<const pb::FieldDescriptor*> fields;
    r->ListFields(message, &fields);
    for (const auto* f : fields) {
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING && !f->is_repeated()) {
        std::string v = r->GetString(message, f);
        if (v.size() > 3 && v.size() < 80 && v.find('_') != std::string::npos &&
            harvested_.size() < 256) {
          harvested_.insert(v);
        }
      } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
        Harvest(r->GetMessage(message, f));
      }
    }
  }
  size_t harvested() const { return harvested_.size(); }

  void Fill(pb::Message* message, int depth = 0) {
    const pb::Descriptor* d = message->GetDescriptor();
    const pb::Reflection* r = message->GetReflection();
    for (int i = 0; i < d->field_count(); ++i) {
      const pb::FieldDescriptor* f = d->field(i);
      if (!Chance(0.45)) continue;
      int count = f->is_repeated() ? static_cast<int>(Pick({0, 1, 2, 5, 40})) : 1;
      for (int k = 0; k < count; ++k) SetOne(message, r, f, depth);
    }
  }

  std::string RawBytes(const std::string& valid) {
    std::string s = valid;
    switch (rng_() % 4) {
      case 0:  // truncated
        if (!s.empty()) s.resize(rng_() % s.size());
        break;
      case 1:  // bit flips
        for (int i = 0; i < 4 && !s.empty(); ++i) s[rng_() % s.size()] ^= 1 << (rng_() % 8);
        break;
      case 2: {  // garbage
        s.resize(rng_() % 64);
        for (auto& c : s) c = static_cast<char>(rng_());
        break;
      }
      default:  // a huge length-delimited field header with nothing behind it
        s = std::string("\x0a\xff\xff\xff\xff\x0f", 6);
    }
    return s;
  }

  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  int64_t Pick(std::initializer_list<int64_t> values) {
    return *(values.begin() + rng_() % values.size());
  }
  std::mt19937_64& rng() { return rng_; }

 private:
  int64_t Int() {
    switch (rng_() % 4) {
      case 0:
        return Pick(
            {0, 1, -1, 2, 5, 16, 64, 1000, 100000, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN});
      case 1:
        return static_cast<int64_t>(rng_() % 50);
      case 2:
        return -static_cast<int64_t>(rng_() % 50);
      default:
        return static_cast<int64_t>(rng_());
    }
  }

  // A plausible integer for a field of this name.
  int64_t SmallInt(const std::string& field) {
    if (field == "length") return 1 + static_cast<int64_t>(rng_() % 12);
    if (field.find("timeout") != std::string::npos) return 1 + static_cast<int64_t>(rng_() % 5);
    return static_cast<int64_t>(rng_() % 8);
  }

  // A plausible value for a field of this name (so calls get past validation and chain).
  std::string Known(const std::string& field) {
    auto pick = [&](std::initializer_list<const char*> v) {
      return std::string(*(v.begin() + rng_() % v.size()));
    };
    if (field == "model" || field == "name") return pick({"mamba2-pointer", "llama-pointer"});
    if (field == "policy") return pick({"oracle", "mamba2-pointer"});
    if (field == "task") return pick({"addition", "multiplication", "code_debug"});
    if (field == "mode") return pick({"pointer", "calculator", "interactive", ""});
    if (!harvested_.empty() && field.find("id") != std::string::npos) {
      auto it = harvested_.begin();
      std::advance(it, rng_() % harvested_.size());
      return *it;
    }
    return String();
  }

  std::string String() {
    static const std::vector<std::string> kWords = {"",
                                                    "mamba2-pointer",
                                                    "llama-pointer",
                                                    "oracle",
                                                    "addition",
                                                    "multiplication",
                                                    "code_debug",
                                                    "pointer",
                                                    "calculator",
                                                    "cot",
                                                    "direct",
                                                    "interactive",
                                                    "single-turn",
                                                    "../models/mamba2-pointer",
                                                    "/etc/passwd",
                                                    "main.py",
                                                    "run",
                                                    "where",
                                                    "break main.py:3",
                                                    "continue",
                                                    "print v1",
                                                    "step",
                                                    "view main.py",
                                                    "edit main.py 1 1 x = (",
                                                    "{}",
                                                    "{\"a\":",
                                                    "{\"pointer\": 1}",
                                                    "123",
                                                    "1+2",
                                                    "12345678901234567890",
                                                    "[EOS]",
                                                    "hello world"};
    switch (rng_() % 6) {
      case 0:
      case 1:
        return kWords[rng_() % kWords.size()];
      case 2:
        if (!harvested_.empty()) {
          auto it = harvested_.begin();
          std::advance(it, rng_() % harvested_.size());
          return *it;
        }
        return "ses_00000000000000000000000000000000";
      case 3: {
        static constexpr char kBad[] = "\xff\xfe bad utf8 \xc3";
        return std::string(kBad, sizeof kBad - 1);
      }
      case 4:
        return std::string(Pick({100, 5000, 70000}), "xa("[rng_() % 3]);
      default: {
        std::string s(rng_() % 12, 'a');
        for (auto& c : s) c = static_cast<char>(32 + rng_() % 95);
        return s;
      }
    }
  }

  void SetOne(pb::Message* m, const pb::Reflection* r, const pb::FieldDescriptor* f, int depth) {
    using FD = pb::FieldDescriptor;
    const bool rep = f->is_repeated();
    switch (f->cpp_type()) {
      case FD::CPPTYPE_INT32: {
        auto v = static_cast<int32_t>(Chance(0.5) ? SmallInt(f->name()) : Int());
        rep ? r->AddInt32(m, f, v) : r->SetInt32(m, f, v);
        break;
      }
      case FD::CPPTYPE_INT64: {
        int64_t v = Chance(0.5) ? SmallInt(f->name()) : Int();
        rep ? r->AddInt64(m, f, v) : r->SetInt64(m, f, v);
        break;
      }
      case FD::CPPTYPE_UINT32: {
        auto v = static_cast<uint32_t>(Int());
        rep ? r->AddUInt32(m, f, v) : r->SetUInt32(m, f, v);
        break;
      }
      case FD::CPPTYPE_UINT64: {
        auto v = static_cast<uint64_t>(Int());
        rep ? r->AddUInt64(m, f, v) : r->SetUInt64(m, f, v);
        break;
      }
      case FD::CPPTYPE_DOUBLE:
      case FD::CPPTYPE_FLOAT: {
        double v = static_cast<double>(Pick({0, 1, -1, 2, 1000000, -1000000})) *
                   (Chance(0.3) ? 0.37 : 1.0);
        if (Chance(0.1)) v = std::numeric_limits<double>::quiet_NaN();
        if (Chance(0.05)) v = std::numeric_limits<double>::infinity();
        if (f->cpp_type() == FD::CPPTYPE_FLOAT) {
          rep ? r->AddFloat(m, f, static_cast<float>(v)) : r->SetFloat(m, f, static_cast<float>(v));
        } else {
          rep ? r->AddDouble(m, f, v) : r->SetDouble(m, f, v);
        }
        break;
      }
      case FD::CPPTYPE_BOOL: {
        bool v = Chance(0.5);
        rep ? r->AddBool(m, f, v) : r->SetBool(m, f, v);
        break;
      }
      case FD::CPPTYPE_ENUM: {
        int n = f->enum_type()->value_count();
        int v = Chance(0.9) ? f->enum_type()->value(static_cast<int>(rng_() % n))->number()
                            : static_cast<int>(Int() % 1000);
        rep ? r->AddEnumValue(m, f, v) : r->SetEnumValue(m, f, v);
        break;
      }
      case FD::CPPTYPE_STRING: {
        std::string v = Chance(0.6) ? Known(f->name()) : String();
        rep ? r->AddString(m, f, v) : r->SetString(m, f, v);
        break;
      }
      case FD::CPPTYPE_MESSAGE: {
        if (depth > 3) break;
        pb::Message* sub = rep ? r->AddMessage(m, f) : r->MutableMessage(m, f);
        Fill(sub, depth + 1);
        break;
      }
    }
  }

  std::mt19937_64 rng_;
  std::set<std::string> harvested_;
};

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

struct CallResult {
  grpc::Status status;
  std::vector<std::string> responses;
};

// One call of any kind (unary or streaming) through the generic stub: write one request, close
// the sending side, read up to `max_reads` responses, finish.
CallResult GenericCall(grpc::GenericStub* stub, const std::string& method, const std::string& bytes,
                       int max_reads, int deadline_ms) {
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
  CallResult result;
  auto call = stub->PrepareCall(&ctx, method, &cq);
  void* tag;
  bool ok;
  auto step = [&](void* t) {
    if (!cq.Next(&tag, &ok)) return false;
    EXPECT_EQ(tag, t);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  if (step(reinterpret_cast<void*>(1))) {
    grpc::ByteBuffer request = ToBuffer(bytes);
    call->Write(request, reinterpret_cast<void*>(2));
    if (step(reinterpret_cast<void*>(2))) {
      call->WritesDone(reinterpret_cast<void*>(3));
      step(reinterpret_cast<void*>(3));
    }
    bool ended = false;
    for (int i = 0; i < max_reads && !ended; ++i) {
      grpc::ByteBuffer response;
      call->Read(&response, reinterpret_cast<void*>(4));
      if (!step(reinterpret_cast<void*>(4))) {
        ended = true;
      } else {
        result.responses.push_back(FromBuffer(response));
      }
    }
    // Stop a stream that is still going (a long Generate or episode): cancel it.
    if (!ended) ctx.TryCancel();
  }
  call->Finish(&result.status, reinterpret_cast<void*>(5));
  step(reinterpret_cast<void*>(5));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return result;
}

TEST(HandlerFuzz, EveryHandlerSurvivesGeneratedRequests) {
  auto dir = std::filesystem::temp_directory_path() / ("tapeloop_fuzz_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = (dir / "fuzz.db").string();
  options.models_dir = std::string(TAPELOOP_SOURCE_DIR) + "/models";
  // Small limits keep each generated request cheap.
  options.limits.max_tokens_per_generate = 64;
  options.limits.max_tokens_per_append = 512;
  options.limits.max_episode_length = 12;
  options.limits.max_sessions_per_principal = 64;
  options.limits.max_environments_per_principal = 32;
  auto server = Server::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);

  struct Method {
    std::string path;
    const pb::Descriptor* input;
    const pb::Descriptor* output;
  };
  std::vector<Method> methods;
  for (const char* name : kServices) {
    const pb::ServiceDescriptor* service =
        pb::DescriptorPool::generated_pool()->FindServiceByName(name);
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      const auto* m = service->method(i);
      methods.push_back({"/" + std::string(service->full_name()) + "/" + std::string(m->name()),
                         m->input_type(), m->output_type()});
    }
  }
  ASSERT_FALSE(methods.empty());

  pb::DynamicMessageFactory factory(pb::DescriptorPool::generated_pool());
  // Invalid UTF-8 in string fields is intended here; keep protobuf's log quiet about it.
  pb::LogSilencer quiet_protobuf;
  RequestGenerator gen(20261129);
  std::map<std::string, std::map<int, int>> codes;  // method -> code -> count
  constexpr int kCalls = 4000;
  int unparseable = 0;
  for (int i = 0; i < kCalls; ++i) {
    const Method& method = methods[gen.rng()() % methods.size()];
    std::unique_ptr<pb::Message> request(factory.GetPrototype(method.input)->New());
    gen.Fill(request.get());
    std::string bytes = request->SerializePartialAsString();
    if (gen.Chance(0.15)) bytes = gen.RawBytes(bytes);
    // Requests that protobuf cannot parse (raw bytes, or invalid UTF-8 in a proto3 string)
    // reach the handler too (proto/request_decoding.h) and are refused INVALID_ARGUMENT; no
    // method may answer UNIMPLEMENTED (gRPC's answer when a request type decodes strictly).
    std::unique_ptr<pb::Message> reparsed(factory.GetPrototype(method.input)->New());
    const bool raw = !reparsed->ParseFromString(bytes);
    CallResult result =
        GenericCall(&stub, method.path, bytes, /*max_reads=*/8, /*deadline_ms=*/5000);
    codes[method.path][result.status.error_code()]++;
    EXPECT_NE(result.status.error_code(), grpc::StatusCode::UNKNOWN)
        << method.path << ": " << result.status.error_message() << "\n"
        << request->ShortDebugString().substr(0, 500);
    EXPECT_NE(result.status.error_code(), grpc::StatusCode::INTERNAL)
        << method.path << ": " << result.status.error_message() << "\n"
        << request->ShortDebugString().substr(0, 500);
    EXPECT_NE(result.status.error_code(), grpc::StatusCode::UNIMPLEMENTED)
        << method.path << ": " << result.status.error_message();
    if (raw) {
      ++unparseable;
      EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << method.path << ": " << result.status.error_message();
      EXPECT_TRUE(result.status.error_message().find("invalid UTF-8") != std::string::npos ||
                  result.status.error_message().rfind("request: not a valid tapeloop.v1.", 0) == 0)
          << method.path << ": " << result.status.error_message();
    }
    for (const std::string& response_bytes : result.responses) {
      std::unique_ptr<pb::Message> response(factory.GetPrototype(method.output)->New());
      if (response->ParseFromString(response_bytes)) gen.Harvest(*response);
    }
  }
  // The fuzzer reached past argument checks: ids came back and were reused.
  EXPECT_GT(gen.harvested(), 0u);
  EXPECT_GT(unparseable, kCalls / 20);
  for (const auto& [path, by_code] : codes) {
    std::string line = path + ":";
    for (const auto& [code, n] : by_code)
      line += " " + std::to_string(code) + "x" + std::to_string(n);
    std::cout << line << "\n";
  }

  // Still serving, and still right.
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext hctx;
  grpc::health::v1::HealthCheckResponse hresp;
  ASSERT_TRUE(health->Check(&hctx, {}, &hresp).ok());
  EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  auto info = tapeloop::v1::Server::NewStub(channel);
  grpc::ClientContext ictx;
  tapeloop::v1::ServerInfo iresp;
  ASSERT_TRUE(info->GetServerInfo(&ictx, {}, &iresp).ok());
  EXPECT_FALSE(iresp.version().empty());

  (*server)->Shutdown(std::chrono::milliseconds(2000));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tapeloop::server
