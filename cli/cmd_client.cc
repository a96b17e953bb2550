// tapeloop client VERB [flags]: drives a running `tapeloop serve` over gRPC from a terminal.
//
// Every verb prints a human-readable answer, or with --json the response messages as JSON (one
// object per line; streams print one line per message), for scripts. Errors print the gRPC
// code and the server's message on one line and exit 1 (2 for bad usage).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cli/args.h"
#include "cli/command.h"
#include "tapeloop/v1/agent.grpc.pb.h"
#include "tapeloop/v1/engine.grpc.pb.h"
#include "tapeloop/v1/environment.grpc.pb.h"
#include "tapeloop/v1/evaluation.grpc.pb.h"
#include "tapeloop/v1/server.grpc.pb.h"

namespace tapeloop::cli {
namespace {

namespace v1 = tapeloop::v1;

constexpr char kUsage[] =
    "usage: tapeloop client VERB [--server HOST:PORT] [--api-key KEY] [--tls-ca PEM] [--json]\n"
    "                           [--deadline SECONDS]\n"
    "server:   info\n"
    "models:   models | load NAME | unload NAME\n"
    "sessions: create --model NAME [--temperature T] [--seed S] [--idle-timeout S]\n"
    "          append SESSION (--text TEXT | --tokens 1,2,3)\n"
    "          generate SESSION [--max-tokens N] [--stop ID,ID] [--temperature T]\n"
    "          fork SESSION | snapshot SESSION | session SESSION\n"
    "          restore SNAPSHOT [--temperature T] [--seed S]\n"
    "          close SESSION | sessions | stats\n"
    "agents:   episode --task T --length N [--seed S] [--index I] [--mode M]   (T: addition,\n"
    "                  multiplication*, code_debug; M default: pointer, interactive)\n"
    "                  [--policy MODEL|oracle] [--temperature T] [--quiet]\n"
    "          episodes [--page-size N] | get-episode ID\n"
    "tools:    tools [--task T] [--mode M]\n"
    "evals:    eval-start (--suite S | --models M,oracle --task T --lengths 5,100)\n"
    "                     [--modes M] [--episodes K] [--seeds 1,2] [--parallel P]\n"
    "                     [--stop-after-zero N] [--wait]\n"
    "          eval ID | eval-cancel ID | evals [--page-size N]\n"
    "  --server    default 127.0.0.1:7070 (or $TAPELOOP_SERVER)\n"
    "  --api-key   sent as `authorization: Bearer KEY` (or $TAPELOOP_API_KEY)\n"
    "  --tls-ca    PEM of the CA that signed the server's certificate: connect with TLS\n";

struct Client {
  std::shared_ptr<grpc::Channel> channel;
  std::string api_key;
  int64_t deadline_s = 60;
  bool json = false;

  std::unique_ptr<grpc::ClientContext> Ctx() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(deadline_s));
    if (!api_key.empty()) ctx->AddMetadata("authorization", "Bearer " + api_key);
    return ctx;
  }
};

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

int RpcFail(const char* verb, const grpc::Status& status) {
  static const char* const kCodes[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  int code = status.error_code();
  std::cerr << "tapeloop client " << verb << ": "
            << (code >= 0 && code <= 16 ? kCodes[code] : "CODE " + std::to_string(code)) << ": "
            << status.error_message() << "\n";
  return 1;
}

// Comma-separated integers of flag --`flag`; a part that is not one is named as not `what`.
template <typename Int>
absl::StatusOr<std::vector<Int>> ParseList(const std::string& text, const char* flag,
                                           const char* what) {
  std::vector<Int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    Int v;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::InvalidArgumentError(std::string("--") + flag + ": '" + std::string(part) +
                                        "' is not " + what);
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text, const char* flag) {
  return ParseList<int32_t>(text, flag, "a token id");
}

// The one positional argument a verb takes (a name or an id).
absl::StatusOr<std::string> Positional(Args& args, const char* what) {
  if (args.positional().size() != 2) {
    return absl::InvalidArgumentError(std::string("expected one ") + what + " after the verb");
  }
  return args.positional()[1];
}

const char* StateName(v1::EvaluationState s) {
  switch (s) {
    case v1::EVALUATION_STATE_RUNNING:
      return "running";
    case v1::EVALUATION_STATE_SUCCEEDED:
      return "succeeded";
    case v1::EVALUATION_STATE_FAILED:
      return "failed";
    case v1::EVALUATION_STATE_CANCELLED:
      return "cancelled";
    case v1::EVALUATION_STATE_INTERRUPTED:
      return "interrupted";
    default:
      return "?";
  }
}

// One line per run: id, state, progress (and the error of a failed one).
void PrintEvaluation(const Client& c, const v1::EvaluationRun& r) {
  if (c.json) {
    std::cout << ToJson(r) << "\n";
    return;
  }
  std::cout << r.evaluation_id() << "  " << StateName(r.state()) << "  " << r.episodes_done() << "/"
            << r.episodes_planned() << " episodes";
  if (r.state() == v1::EVALUATION_STATE_RUNNING && !r.current().empty()) {
    std::cout << "  " << r.episodes_per_second() << " ep/s  at " << r.current();
  }
  if (!r.error().empty()) std::cout << "  error: " << r.error();
  std::cout << "\n";
}

absl::StatusOr<std::vector<int64_t>> ParseInts(const std::string& text, const char* flag) {
  return ParseList<int64_t>(text, flag, "an integer");
}

void PrintSession(const Client& c, const v1::EngineSession& s) {
  if (c.json) {
    std::cout << ToJson(s) << "\n";
  } else {
    std::cout << s.session_id() << "  model " << s.model() << "  position " << s.position()
              << "  state " << s.state_bytes() << " bytes\n";
  }
}

int RunVerb(const std::string& verb, Args& args, Client& c) {
  auto engine = v1::Engine::NewStub(c.channel);
  auto agent = v1::Agent::NewStub(c.channel);
  grpc::Status st;
  auto usage = [&](const absl::Status& s) { return Fail("client " + verb, s, 2); };

  if (verb == "info") {
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    v1::ServerInfo r;
    st = v1::Server::NewStub(c.channel)->GetServerInfo(c.Ctx().get(), {}, &r);
    if (!st.ok()) return RpcFail("info", st);
    if (c.json) {
      std::cout << ToJson(r) << "\n";
    } else {
      std::cout << "tapeloop " << r.version() << "  cuda " << (r.cuda_compiled() ? "yes" : "no")
                << "  gpu " << (r.gpu_visible() ? "visible" : "none") << "  uptime "
                << static_cast<int64_t>(r.uptime_seconds()) << " s  db schema v"
                << r.db_schema_version() << "\n";
    }
    return 0;
  }
  if (verb == "models") {
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    v1::ListModelsResponse r;
    st = engine->ListModels(c.Ctx().get(), {}, &r);
    if (!st.ok()) return RpcFail("models", st);
    for (const auto& m : r.models()) {
      if (c.json) {
        std::cout << ToJson(m) << "\n";
      } else {
        std::cout << m.name() << "  " << (m.arch().empty() ? "?" : m.arch())
                  << (m.loaded() ? "  loaded, " + std::to_string(m.num_params()) + " params" : "")
                  << (m.error().empty() ? "" : "  error: " + m.error()) << "\n";
      }
    }
    return 0;
  }
  if (verb == "load" || verb == "unload") {
    auto name = Positional(args, "model name");
    if (!name.ok()) return usage(name.status());
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    if (verb == "load") {
      v1::LoadModelRequest q;
      q.set_name(*name);
      v1::EngineModel r;
      st = engine->LoadModel(c.Ctx().get(), q, &r);
      if (!st.ok()) return RpcFail("load", st);
      std::cout << (c.json ? ToJson(r)
                           : r.name() + " loaded (" + std::to_string(r.num_params()) + " params)")
                << "\n";
    } else {
      v1::UnloadModelRequest q;
      q.set_name(*name);
      v1::UnloadModelResponse r;
      st = engine->UnloadModel(c.Ctx().get(), q, &r);
      if (!st.ok()) return RpcFail("unload", st);
      std::cout << (c.json ? ToJson(r) : *name + " unloaded") << "\n";
    }
    return 0;
  }
  if (verb == "create") {
    auto model = args.Require("model");
    auto temperature = args.Double("temperature", 0.0);
    auto seed = args.Int("seed", -1);
    auto idle = args.Int("idle-timeout", 0);
    if (!model.ok()) return usage(model.status());
    for (const auto* s : {&temperature.status(), &seed.status(), &idle.status()}) {
      if (!s->ok()) return usage(*s);
    }
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    v1::CreateSessionRequest q;
    q.set_model(*model);
    q.mutable_sampling()->set_temperature(static_cast<float>(*temperature));
    if (*seed >= 0) q.mutable_sampling()->set_seed(static_cast<uint64_t>(*seed));
    q.set_idle_timeout_seconds(*idle);
    v1::EngineSession r;
    st = engine->CreateSession(c.Ctx().get(), q, &r);
    if (!st.ok()) return RpcFail("create", st);
    PrintSession(c, r);
    return 0;
  }
  if (verb == "append") {
    auto session = Positional(args, "session id");
    auto text = args.Get("text");
    auto tokens = args.Get("tokens");
    if (!session.ok()) return usage(session.status());
    if (text.has_value() == tokens.has_value()) {
      return usage(absl::InvalidArgumentError("give exactly one of --text and --tokens"));
    }
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    v1::AppendRequest q;
    q.set_session_id(*session);
    if (text) {
      q.set_text(*text);
    } else {
      auto ids = ParseIds(*tokens, "tokens");
      if (!ids.ok()) return usage(ids.status());
      for (int32_t id : *ids) q.mutable_tokens()->add_ids(id);
    }
    v1::AppendResponse r;
    st = engine->Append(c.Ctx().get(), q, &r);
    if (!st.ok()) return RpcFail("append", st);
    std::cout << (c.json ? ToJson(r)
                         : "appended " + std::to_string(r.appended()) + ", position " +
                               std::to_string(r.position()))
              << "\n";
    return 0;
  }
  if (verb == "generate") {
    auto session = Positional(args, "session id");
    auto max_tokens = args.Int("max-tokens", 64);
    auto stop = args.Get("stop");
    auto temperature = args.Get("temperature");
    if (!session.ok()) return usage(session.status());
    if (!max_tokens.ok()) return usage(max_tokens.status());
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    v1::GenerateRequest q;
    q.set_session_id(*session);
    q.set_max_tokens(static_cast<int32_t>(*max_tokens));
    if (stop) {
      auto ids = ParseIds(*stop, "stop");
      if (!ids.ok()) return usage(ids.status());
      for (int32_t id : *ids) q.add_stop_token_ids(id);
    }
    if (temperature) {
      double t;
      if (!absl::SimpleAtod(*temperature, &t)) {
        return usage(absl::InvalidArgumentError("--temperature: not a number"));
      }
      q.mutable_sampling()->set_temperature(static_cast<float>(t));
    }
    auto ctx = c.Ctx();
    auto reader = engine->Generate(ctx.get(), q);
    v1::GenerateChunk chunk;
    std::vector<int32_t> ids;
    v1::GenerateFinishReason reason = v1::GENERATE_FINISH_REASON_UNSPECIFIED;
    while (reader->Read(&chunk)) {
      if (c.json) {
        std::cout << ToJson(chunk) << "\n" << std::flush;
        continue;
      }
      if (!chunk.text().empty()) {
        std::cout << chunk.text() << std::flush;
      }
      ids.insert(ids.end(), chunk.token_ids().begin(), chunk.token_ids().end());
      if (chunk.finish_reason() != v1::GENERATE_FINISH_REASON_UNSPECIFIED) {
        reason = chunk.finish_reason();
      }
    }
    st = reader->Finish();
    if (!c.json) {
      std::cout << "\n[" << ids.size() << " tokens:";
      for (size_t i = 0; i < ids.size() && i < 64; ++i) std::cout << " " << ids[i];
      if (ids.size() > 64) std::cout << " ...";
      std::cout << "; " << v1::GenerateFinishReason_Name(reason) << "]\n";
    }
    if (!st.ok()) return RpcFail("generate", st);
    return 0;
  }
  if (verb == "fork" || verb == "session" || verb == "close" || verb == "snapshot" ||
      verb == "restore") {
    auto id = Positional(args, verb == "restore" ? "snapshot id" : "session id");
    if (!id.ok()) return usage(id.status());
    // restore: the new session's sampling defaults (a snapshot keeps state, not settings).
    absl::StatusOr<double> temperature = 0.0;
    absl::StatusOr<int64_t> seed = -1;
    if (verb == "restore") {
      temperature = args.Double("temperature", 0.0);
      seed = args.Int("seed", -1);
      if (!temperature.ok()) return usage(temperature.status());
      if (!seed.ok()) return usage(seed.status());
    }
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    if (verb == "fork") {
      v1::ForkRequest q;
      q.set_session_id(*id);
      v1::EngineSession r;
      st = engine->Fork(c.Ctx().get(), q, &r);
      if (!st.ok()) return RpcFail("fork", st);
      PrintSession(c, r);
    } else if (verb == "session") {
      v1::GetSessionRequest q;
      q.set_session_id(*id);
      v1::EngineSession r;
      st = engine->GetSession(c.Ctx().get(), q, &r);
      if (!st.ok()) return RpcFail("session", st);
      PrintSession(c, r);
    } else if (verb == "close") {
      v1::CloseSessionRequest q;
      q.set_session_id(*id);
      v1::CloseSessionResponse r;
      st = engine->CloseSession(c.Ctx().get(), q, &r);
      if (!st.ok()) return RpcFail("close", st);
      std::cout << (c.json ? ToJson(r) : *id + " closed") << "\n";
    } else if (verb == "snapshot") {
      v1::SnapshotRequest q;
      q.set_session_id(*id);
      v1::SnapshotResponse r;
      st = engine->Snapshot(c.Ctx().get(), q, &r);
      if (!st.ok()) return RpcFail("snapshot", st);
      std::cout << (c.json ? ToJson(r)
                           : r.snapshot_id() + "  position " + std::to_string(r.position()) + "  " +
                                 std::to_string(r.size_bytes()) + " bytes")
                << "\n";
    } else {
      v1::RestoreRequest q;
      q.set_snapshot_id(*id);
      q.mutable_sampling()->set_temperature(static_cast<float>(*temperature));
      if (*seed >= 0) q.mutable_sampling()->set_seed(static_cast<uint64_t>(*seed));
      v1::EngineSession r;
      st = engine->Restore(c.Ctx().get(), q, &r);
      if (!st.ok()) return RpcFail("restore", st);
      PrintSession(c, r);
    }
    return 0;
  }
  if (verb == "sessions" || verb == "stats") {
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    if (verb == "stats") {
      v1::EngineStats r;
      st = engine->GetEngineStats(c.Ctx().get(), {}, &r);
      if (!st.ok()) return RpcFail("stats", st);
      std::cout << ToJson(r) << "\n";
      return 0;
    }
    v1::ListSessionsResponse r;
    st = engine->ListSessions(c.Ctx().get(), {}, &r);
    if (!st.ok()) return RpcFail("sessions", st);
    for (const auto& s : r.sessions()) PrintSession(c, s);
    for (const auto& e : r.evicted()) {
      std::cout << (c.json ? ToJson(e)
                           : e.session_id() + "  evicted" +
                                 (e.snapshot_id().empty() ? "" : ", snapshot " + e.snapshot_id()))
                << "\n";
    }
    return 0;
  }
  if (verb == "episode") {
    auto task = args.Require("task");
    auto length = args.Int("length", 0);
    auto seed = args.Int("seed", 1);
    auto index = args.Int("index", 0);
    auto temperature = args.Double("temperature", 0.0);
    std::string mode = args.String("mode", "");  // empty: the task's default
    std::string policy = args.String("policy", "mamba2-pointer");
    bool quiet = args.Bool("quiet");
    if (!task.ok()) return usage(task.status());
    for (const auto* s :
         {&length.status(), &seed.status(), &index.status(), &temperature.status()}) {
      if (!s->ok()) return usage(*s);
    }
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    v1::RunEpisodeRequest q;
    q.set_task(*task);
    q.set_length(*length);
    q.set_seed(*seed);
    q.set_index(*index);
    q.set_mode(mode);
    q.set_policy(policy);
    q.set_temperature(static_cast<float>(*temperature));
    auto ctx = c.Ctx();
    auto reader = agent->RunEpisode(ctx.get(), q);
    v1::RunEpisodeResponse response;
    const v1::EpisodeFinished* finished = nullptr;
    v1::EpisodeFinished last;
    while (reader->Read(&response)) {
      for (const auto& e : response.events()) {
        if (e.has_finished()) {
          last = e.finished();
          finished = &last;
        }
        if (c.json) {
          std::cout << ToJson(e) << "\n";
          continue;
        }
        if (e.has_started()) {
          std::cout << "episode " << e.started().episode_id() << "  " << e.started().task() << " "
                    << e.started().mode() << " length " << e.started().length() << "  policy "
                    << e.started().policy() << "\n"
                    << e.started().prompt() << "\n";
        } else if (e.has_token() && !quiet) {
          // An observation's tokens repeat the tool result printed just before them.
          if (e.token().role() != v1::TOKEN_ROLE_OBSERVATION) std::cout << e.token().text();
        } else if (e.has_tool_call() && !quiet) {
          std::cout << "\n  -> " << e.tool_call().name() << " " << e.tool_call().arguments_json()
                    << "\n";
        } else if (e.has_tool_result() && !quiet) {
          std::cout << "  <- " << (e.tool_result().is_error() ? "error: " : "")
                    << e.tool_result().text() << "\n";
        }
      }
      std::cout << std::flush;
    }
    st = reader->Finish();
    if (!st.ok()) return RpcFail("episode", st);
    if (finished != nullptr && !c.json) {
      std::cout << "\nanswer " << finished->final_answer() << "  expected " << finished->expected()
                << "  " << (finished->correct() ? "CORRECT" : "WRONG") << "  stop "
                << finished->stop_reason() << "  " << finished->generated_tokens()
                << " generated tokens, " << finished->tool_steps() << " tool steps, "
                << static_cast<int64_t>(finished->wall_ms()) << " ms"
                << (finished->stored() ? ", stored" : "") << "\n";
    }
    return finished != nullptr && finished->correct() ? 0 : (finished != nullptr ? 3 : 1);
  }
  if (verb == "episodes") {
    auto page_size = args.Int("page-size", 20);
    if (!page_size.ok()) return usage(page_size.status());
    std::string token = args.String("page-token", "");
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    v1::ListEpisodesRequest q;
    q.set_page_size(static_cast<int32_t>(*page_size));
    q.set_page_token(token);
    v1::ListEpisodesResponse r;
    st = agent->ListEpisodes(c.Ctx().get(), q, &r);
    if (!st.ok()) return RpcFail("episodes", st);
    for (const auto& e : r.episodes()) {
      std::cout << (c.json ? ToJson(e)
                           : e.episode_id() + "  " + e.task() + " " + e.mode() + " length " +
                                 std::to_string(e.length()) + " seed " + std::to_string(e.seed()) +
                                 "  " + e.policy() + "  " + (e.correct() ? "correct" : "wrong"))
                << "\n";
    }
    if (!r.next_page_token().empty() && !c.json) {
      std::cout << "more: --page-token " << r.next_page_token() << "\n";
    }
    return 0;
  }
  if (verb == "get-episode") {
    auto id = Positional(args, "episode id");
    if (!id.ok()) return usage(id.status());
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    v1::GetEpisodeRequest q;
    q.set_episode_id(*id);
    v1::GetEpisodeResponse r;
    st = agent->GetEpisode(c.Ctx().get(), q, &r);
    if (!st.ok()) return RpcFail("get-episode", st);
    std::cout << (c.json ? ToJson(r) : r.record_json()) << "\n";
    return 0;
  }
  if (verb == "tools") {
    v1::ListEnvToolsRequest q;
    q.set_task(args.String("task", "addition"));
    q.set_mode(args.String("mode", "pointer"));
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    v1::ListEnvToolsResponse r;
    st = v1::Environment::NewStub(c.channel)->ListTools(c.Ctx().get(), q, &r);
    if (!st.ok()) return RpcFail("tools", st);
    for (const auto& t : r.tools()) {
      std::cout << (c.json ? ToJson(t)
                           : t.name() + ": " + t.description() + "\n    " + t.input_schema_json())
                << "\n";
    }
    return 0;
  }
  if (verb == "eval-start") {
    v1::StartEvaluationRequest q;
    q.set_suite(args.String("suite", ""));
    auto list = [](const std::string& text) -> std::vector<std::string> {
      return absl::StrSplit(text, ',', absl::SkipWhitespace());
    };
    for (const auto& m : list(args.String("models", ""))) q.add_models(m);
    for (const auto& t : list(args.String("task", ""))) q.add_tasks(t);
    for (const auto& m : list(args.String("modes", ""))) q.add_modes(m);
    auto lengths = ParseInts(args.String("lengths", ""), "lengths");
    if (!lengths.ok()) return usage(lengths.status());
    for (int64_t v : *lengths) q.add_lengths(v);
    auto seeds = ParseInts(args.String("seeds", ""), "seeds");
    if (!seeds.ok()) return usage(seeds.status());
    for (int64_t v : *seeds) q.add_seeds(v);
    auto episodes = args.Int("episodes", 0);
    auto parallel = args.Int("parallel", 0);
    auto stop = args.Int("stop-after-zero", 0);
    for (const auto* s : {&episodes.status(), &parallel.status(), &stop.status()}) {
      if (!s->ok()) return usage(*s);
    }
    q.set_episodes(*episodes);
    q.set_parallel(static_cast<int32_t>(*parallel));
    q.set_stop_after_zero(static_cast<int32_t>(*stop));
    const bool wait = args.Bool("wait");
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    auto stub = v1::Evaluation::NewStub(c.channel);
    v1::EvaluationRun r;
    st = stub->StartEvaluation(c.Ctx().get(), q, &r);
    if (!st.ok()) return RpcFail("eval-start", st);
    PrintEvaluation(c, r);
    if (!wait) return 0;
    // Poll until the run leaves RUNNING, a progress line now and then, then the report.
    v1::GetEvaluationRequest g;
    g.set_evaluation_id(r.evaluation_id());
    int64_t last_done = -1;
    while (true) {
      st = stub->GetEvaluation(c.Ctx().get(), g, &r);
      if (!st.ok()) return RpcFail("eval-start", st);
      if (r.state() != v1::EVALUATION_STATE_RUNNING) break;
      if (r.episodes_done() != last_done && !c.json) {
        last_done = r.episodes_done();
        PrintEvaluation(c, r);
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    PrintEvaluation(c, r);
    if (!c.json) std::cout << r.report_markdown();
    return r.state() == v1::EVALUATION_STATE_SUCCEEDED ? 0 : 1;
  }
  if (verb == "eval" || verb == "eval-cancel") {
    auto id = Positional(args, "evaluation id");
    if (!id.ok()) return usage(id.status());
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    auto stub = v1::Evaluation::NewStub(c.channel);
    v1::EvaluationRun r;
    if (verb == "eval") {
      v1::GetEvaluationRequest q;
      q.set_evaluation_id(*id);
      st = stub->GetEvaluation(c.Ctx().get(), q, &r);
    } else {
      v1::CancelEvaluationRequest q;
      q.set_evaluation_id(*id);
      st = stub->CancelEvaluation(c.Ctx().get(), q, &r);
    }
    if (!st.ok()) return RpcFail(verb.c_str(), st);
    PrintEvaluation(c, r);
    if (!c.json && verb == "eval") std::cout << r.report_markdown();
    return 0;
  }
  if (verb == "evals") {
    auto page_size = args.Int("page-size", 20);
    if (!page_size.ok()) return usage(page_size.status());
    std::string token = args.String("page-token", "");
    if (auto s = args.Finish(); !s.ok()) return usage(s);
    v1::ListEvaluationsRequest q;
    q.set_page_size(static_cast<int32_t>(*page_size));
    q.set_page_token(token);
    v1::ListEvaluationsResponse r;
    st = v1::Evaluation::NewStub(c.channel)->ListEvaluations(c.Ctx().get(), q, &r);
    if (!st.ok()) return RpcFail("evals", st);
    for (const auto& e : r.evaluations()) PrintEvaluation(c, e);
    if (!r.next_page_token().empty() && !c.json) {
      std::cout << "more: --page-token " << r.next_page_token() << "\n";
    }
    return 0;
  }
  return usage(absl::InvalidArgumentError("unknown verb '" + verb + "' (see --help)"));
}

int RunClient(int argc, char** argv) {
  Args args(argc, argv, {"help", "json", "quiet", "wait"});
  if (args.Bool("help") || args.positional().empty()) {
    std::cout << kUsage;
    return args.Bool("help") ? 0 : 2;
  }
  const std::string verb = args.positional()[0];
  Client c;
  const char* env_server = std::getenv("TAPELOOP_SERVER");
  const char* env_key = std::getenv("TAPELOOP_API_KEY");
  std::string server = args.String("server", env_server ? env_server : "127.0.0.1:7070");
  c.api_key = args.String("api-key", env_key ? env_key : "");
  c.json = args.Bool("json");
  auto deadline = args.Int("deadline", 600);
  if (!deadline.ok()) return Fail("client", deadline.status(), 2);
  if (*deadline <= 0)
    return Fail("client", absl::InvalidArgumentError("--deadline must be > 0"), 2);
  c.deadline_s = *deadline;
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (auto ca = args.Get("tls-ca")) {
    std::ifstream in(*ca);
    if (!in)
      return Fail("client", absl::InvalidArgumentError("--tls-ca " + *ca + ": cannot open"), 2);
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  c.channel = grpc::CreateCustomChannel(server, credentials, channel_args);
  return RunVerb(verb, args, c);
}

}  // namespace

TAPELOOP_REGISTER_COMMAND("client",
                          "drive a running server (sessions, generation, episodes, tools, evals)",
                          RunClient);

}  // namespace tapeloop::cli
