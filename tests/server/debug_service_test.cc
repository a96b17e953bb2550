// tapeloop.v1.Debug over a real loopback gRPC server (tests/server/service_fixture.h).
#include "server/debug_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tapeloop/v1/debug.grpc.pb.h"
#include "tasks/code_debug/code_debug.h"
#include "tests/server/service_fixture.h"

namespace tapeloop::server {
namespace {

namespace v1 = ::tapeloop::v1;
namespace code_debug = ::tapeloop::tasks::code_debug;
using testing::ServiceFixture;

constexpr char kKeyA[] = "key-aaaaaaaaaaaaaaaaaaaa";
constexpr char kKeyB[] = "key-bbbbbbbbbbbbbbbbbbbb";

class DebugServiceTest : public ::testing::Test {
 protected:
  void StartServer(DebugServiceOptions options = {}, bool with_keys = false) {
    if (with_keys) {
      ASSERT_TRUE(fixture_.keys()->Add(kKeyA, "alice").ok());
      ASSERT_TRUE(fixture_.keys()->Add(kKeyB, "bob").ok());
      key_ = kKeyA;
    }
    service_ = std::make_unique<DebugService>(fixture_.context(), options);
    fixture_.Start({service_.get()});
    stub_ = v1::Debug::NewStub(fixture_.channel());
  }
  void TearDown() override {
    if (service_) service_->Shutdown();
    fixture_.Stop();
  }

  grpc::Status Open(const v1::OpenDebugSessionRequest& req, v1::OpenDebugSessionResponse* resp,
                    const std::string& key) {
    auto ctx = ServiceFixture::Ctx(key);
    return stub_->Open(ctx.get(), req, resp);
  }
  std::string OpenProgram(const std::map<std::string, std::string>& files, const std::string& key) {
    v1::OpenDebugSessionRequest req;
    for (const auto& [name, source] : files)
      (*req.mutable_program()->mutable_files())[name] = source;
    v1::OpenDebugSessionResponse resp;
    grpc::Status s = Open(req, &resp, key);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.session_id();
  }
  std::string OpenTask(int n, uint64_t seed, const std::string& key,
                       v1::OpenDebugSessionResponse* out = nullptr) {
    v1::OpenDebugSessionRequest req;
    req.mutable_task()->set_task("code_debug");
    req.mutable_task()->set_length(n);
    req.mutable_task()->set_seed(seed);
    v1::OpenDebugSessionResponse resp;
    grpc::Status s = Open(req, &resp, key);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (out) *out = resp;
    return resp.session_id();
  }
  grpc::Status Command(const std::string& id, const std::string& command,
                       v1::DebugCommandResponse* resp, const std::string& key) {
    v1::DebugCommandRequest req;
    req.set_session_id(id);
    req.set_command(command);
    auto ctx = ServiceFixture::Ctx(key);
    return stub_->Command(ctx.get(), req, resp);
  }
  v1::DebugCommandResponse MustCommand(const std::string& id, const std::string& command,
                                       const std::string& key) {
    v1::DebugCommandResponse resp;
    grpc::Status s = Command(id, command, &resp, key);
    EXPECT_TRUE(s.ok()) << command << ": " << s.error_message();
    return resp;
  }
  std::map<std::string, std::string> Files(const std::string& id, const std::string& key) {
    v1::DebugFilesRequest req;
    req.set_session_id(id);
    v1::DebugFilesResponse resp;
    auto ctx = ServiceFixture::Ctx(key);
    grpc::Status s = stub_->Files(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.files().begin(), resp.files().end()};
  }

  ServiceFixture fixture_;
  std::unique_ptr<DebugService> service_;
  std::unique_ptr<v1::Debug::Stub> stub_;
  std::string key_;
};

// The test plays the interactive oracle's commands through the service: every observation is
// the one the oracle saw in-process, and the session ends with a passing program.
TEST_F(DebugServiceTest, TaskSessionReplaysInteractiveOracleToAPassingProgram) {
  StartServer();
  std::mt19937_64 rng(20240608);
  for (int round = 0; round < 3; ++round) {
    int n = 6 + static_cast<int>(rng() % 20);
    uint64_t seed = rng();
    auto instance = code_debug::GenerateCodeDebug(n, seed);
    ASSERT_TRUE(instance.ok()) << instance.status();
    auto oracle = code_debug::InteractiveOracle(*instance);
    ASSERT_TRUE(oracle.ok()) << oracle.status();
    ASSERT_GE(oracle->steps.size(), 3u);

    v1::OpenDebugSessionResponse opened;
    std::string id = OpenTask(n, seed, key_, &opened);
    ASSERT_FALSE(id.empty());
    EXPECT_EQ(opened.session_id().rfind("dbg_", 0), 0u);
    EXPECT_EQ(opened.instructions(), instance->prompt);
    EXPECT_EQ(opened.files_size(), n);
    EXPECT_EQ(opened.state().kind(), v1::ProgramState::NOT_STARTED);

    v1::DebugCommandResponse last;
    for (size_t i = 0; i < oracle->steps.size(); ++i) {
      const auto& step = oracle->steps[i];
      last = MustCommand(id, step.command, key_);
      ASSERT_EQ(last.observation(), step.observation) << "step " << i << ": " << step.command;
      EXPECT_EQ(last.is_error(), step.is_error) << step.command;
      ASSERT_TRUE(last.has_passes());
      if (i == 0) {
        // The buggy program dies of the v10 NameError.
        EXPECT_EQ(last.state().kind(), v1::ProgramState::ERROR);
        EXPECT_EQ(last.state().exit_status(), 1);
        EXPECT_EQ(last.state().exception_type(), "NameError");
        EXPECT_FALSE(last.passes());
      }
    }
    EXPECT_TRUE(last.passes());
    EXPECT_EQ(last.state().kind(), v1::ProgramState::FINISHED);
    EXPECT_EQ(last.state().exit_status(), 0);
    EXPECT_EQ(Files(id, key_), oracle->final_files);
  }
}

TEST_F(DebugServiceTest, BreakpointsStepAndStateOverTheWire) {
  StartServer();
  std::string id = OpenProgram({{"main.py",
                                 "def add(a, b):\n"
                                 "    c = a + b\n"
                                 "    return c\n"
                                 "x = add(2, 3)\n"
                                 "print(x)\n"}},
                               key_);
  auto r = MustCommand(id, "break main.py:2", key_);
  EXPECT_FALSE(r.is_error());
  r = MustCommand(id, "run", key_);
  EXPECT_EQ(r.state().kind(), v1::ProgramState::STOPPED) << r.observation();
  EXPECT_EQ(r.state().file(), "main.py");
  EXPECT_EQ(r.state().line(), 2);
  EXPECT_EQ(r.state().function(), "add");
  EXPECT_FALSE(r.has_passes());  // not a task session
  r = MustCommand(id, "print a * 10 + b", key_);
  EXPECT_NE(r.observation().find("23"), std::string::npos) << r.observation();
  r = MustCommand(id, "next", key_);
  EXPECT_EQ(r.state().line(), 3);
  r = MustCommand(id, "print c", key_);
  EXPECT_NE(r.observation().find("5"), std::string::npos);
  r = MustCommand(id, "continue", key_);
  EXPECT_EQ(r.state().kind(), v1::ProgramState::FINISHED);
  EXPECT_EQ(r.state().exit_status(), 0);
  EXPECT_NE(r.observation().find("5\n"), std::string::npos);
  r = MustCommand(id, "frobnicate", key_);
  EXPECT_TRUE(r.is_error());
  // restart keeps the breakpoint.
  r = MustCommand(id, "restart", key_);
  EXPECT_EQ(r.state().kind(), v1::ProgramState::STOPPED);
  EXPECT_EQ(r.state().line(), 2);
}

// Edits in one session never show in another, of the same principal or of another one, and a
// principal cannot reach another's session at all.
TEST_F(DebugServiceTest, SessionsAreIsolatedBetweenAndWithinPrincipals) {
  StartServer({}, /*with_keys=*/true);
  std::mt19937_64 rng(77);
  uint64_t seed = rng();
  std::string a1 = OpenTask(8, seed, kKeyA);
  std::string a2 = OpenTask(8, seed, kKeyA);
  std::string b1 = OpenTask(8, seed, kKeyB);
  auto original = Files(a1, kKeyA);
  ASSERT_EQ(original.size(), 8u);
  EXPECT_EQ(Files(a2, kKeyA), original);

  auto r = MustCommand(a1, "edit foo.py 1-1 def foo():  # edited in a1", kKeyA);
  EXPECT_FALSE(r.is_error()) << r.observation();
  r = MustCommand(b1, "edit main.py 1-1 # edited in b1", kKeyB);
  EXPECT_FALSE(r.is_error()) << r.observation();
  auto a1_files = Files(a1, kKeyA);
  EXPECT_NE(a1_files.at("foo.py"), original.at("foo.py"));
  EXPECT_EQ(a1_files.at("main.py"), original.at("main.py"));
  EXPECT_EQ(Files(a2, kKeyA), original);
  auto b1_files = Files(b1, kKeyB);
  EXPECT_EQ(b1_files.at("foo.py"), original.at("foo.py"));
  EXPECT_NE(b1_files.at("main.py"), original.at("main.py"));
  r = MustCommand(a2, "view foo.py 1-1", kKeyA);
  EXPECT_EQ(r.observation().find("edited"), std::string::npos);

  // Bob cannot command, read or close Alice's session; it is NOT_FOUND, like an unknown id.
  v1::DebugCommandResponse resp;
  EXPECT_EQ(Command(a1, "ls", &resp, kKeyB).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::DebugFilesRequest freq;
  freq.set_session_id(a1);
  v1::DebugFilesResponse fresp;
  auto ctx = ServiceFixture::Ctx(kKeyB);
  EXPECT_EQ(stub_->Files(ctx.get(), freq, &fresp).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::CloseDebugSessionRequest creq;
  creq.set_session_id(a1);
  v1::CloseDebugSessionResponse cresp;
  ctx = ServiceFixture::Ctx(kKeyB);
  EXPECT_EQ(stub_->Close(ctx.get(), creq, &cresp).error_code(), grpc::StatusCode::NOT_FOUND);
  // Without a key: UNAUTHENTICATED.
  EXPECT_EQ(Command(a1, "ls", &resp, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Alice still has it, and closing makes it NOT_FOUND for her too.
  EXPECT_EQ(Files(a1, kKeyA), a1_files);
  ctx = ServiceFixture::Ctx(kKeyA);
  EXPECT_TRUE(stub_->Close(ctx.get(), creq, &cresp).ok());
  EXPECT_EQ(Command(a1, "ls", &resp, kKeyA).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(service_->open_sessions(), 2);
}

// Each bad program answers with a clear observation while another session keeps answering
// commands at the same time.
TEST_F(DebugServiceTest, BadProgramsGiveObservationsWhileAnotherSessionKeepsServing) {
  DebugServiceOptions options;
  options.worker_threads = 3;
  StartServer(options);
  struct Bad {
    std::string name;
    std::map<std::string, std::string> files;
    std::vector<std::string> commands;  // the last one's answer is checked
    std::string expect_outcome;         // ProgramState.outcome after the last command
    std::string expect_text;            // in the last observation
  };
  std::vector<Bad> bad = {
      {"infinite loop",
       {{"main.py", "x = 0\nwhile True:\n    x = x + 1\n"}},
       {"run"},
       "budget_exhausted",
       ""},
      {"deep recursion",
       {{"main.py", "def f(n):\n    return f(n + 1)\nf(0)\n"}},
       {"run"},
       "exception",
       "RecursionError"},
      {"huge list",
       {{"main.py", "x = [0] * 1000\nwhile True:\n    x = x + x\n"}},
       {"run"},
       "exception",
       "MemoryError"},
      {"syntax error",
       {{"main.py", "def f(:\n    return 1\nprint(f())\n"}},
       {"run"},
       "syntax_error",
       "SyntaxError"},
      {"edit breaks the syntax",
       {{"main.py", "import util\nprint(util.g(2))\n"},
        {"util.py", "def g(x):\n    return x * 2\n"}},
       {"run", "edit util.py 1-1 def g(x:", "run"},
       "syntax_error",
       "SyntaxError"},
  };
  std::vector<std::string> ids;
  for (const auto& b : bad) ids.push_back(OpenProgram(b.files, key_));
  std::string good = OpenTask(10, 99, key_);

  std::atomic<bool> bad_done{false};
  std::vector<std::future<v1::DebugCommandResponse>> results;
  for (size_t i = 0; i < bad.size(); ++i) {
    results.push_back(std::async(std::launch::async, [&, i] {
      v1::DebugCommandResponse r;
      for (const auto& c : bad[i].commands) {
        grpc::Status s = Command(ids[i], c, &r, key_);
        EXPECT_TRUE(s.ok()) << bad[i].name << ": " << s.error_message();
        if (c.rfind("edit", 0) == 0) {
          EXPECT_TRUE(r.is_error()) << bad[i].name << ": " << r.observation();
          EXPECT_NE(r.observation().find("no longer parses"), std::string::npos);
        }
      }
      return r;
    }));
  }
  // Meanwhile the good session answers, again and again, until the bad ones are all done.
  std::thread watcher([&] {
    for (auto& f : results) f.wait();
    bad_done = true;
  });
  int answered = 0;
  do {
    auto r = MustCommand(good, answered % 2 ? "ls" : "view main.py 1-3", key_);
    EXPECT_FALSE(r.is_error());
    ++answered;
  } while (!bad_done && answered < 100000);
  watcher.join();
  EXPECT_GE(answered, 1);
  for (size_t i = 0; i < bad.size(); ++i) {
    v1::DebugCommandResponse r = results[i].get();
    SCOPED_TRACE(bad[i].name);
    EXPECT_TRUE(r.is_error()) << r.observation();
    EXPECT_EQ(r.state().kind(), v1::ProgramState::ERROR);
    EXPECT_EQ(r.state().exit_status(), 1);
    EXPECT_EQ(r.state().outcome(), bad[i].expect_outcome) << r.observation();
    EXPECT_NE(r.observation().find(bad[i].expect_text), std::string::npos) << r.observation();
    EXPECT_FALSE(r.observation().empty());
  }
  // The server still serves: the good session runs its (buggy) program to the NameError.
  auto r = MustCommand(good, "run", key_);
  EXPECT_EQ(r.state().exception_type(), "NameError") << r.observation();
  EXPECT_FALSE(r.passes());
}

TEST_F(DebugServiceTest, IdleSessionIsClosedByTheReaper) {
  DebugServiceOptions options;
  options.reaper_interval = std::chrono::milliseconds(20);
  StartServer(options);
  v1::OpenDebugSessionRequest req;
  (*req.mutable_program()->mutable_files())["main.py"] = "print(1)\n";
  req.set_idle_timeout_seconds(1);
  v1::OpenDebugSessionResponse idle, busy;
  ASSERT_TRUE(Open(req, &idle, key_).ok());
  EXPECT_EQ(idle.idle_timeout_seconds(), 1u);
  req.set_idle_timeout_seconds(3600);
  ASSERT_TRUE(Open(req, &busy, key_).ok());
  EXPECT_EQ(service_->open_sessions(), 2);
  // Poll (bounded) until the reaper has closed the idle one; the other stays.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (service_->open_sessions() == 2 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(service_->open_sessions(), 1);
  v1::DebugCommandResponse resp;
  EXPECT_EQ(Command(idle.session_id(), "ls", &resp, key_).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(Command(busy.session_id(), "ls", &resp, key_).ok());
}

TEST_F(DebugServiceTest, PerPrincipalSessionLimit) {
  fixture_.limits()->max_environments_per_principal = 3;
  StartServer({}, /*with_keys=*/true);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(OpenProgram({{"main.py", "print(1)\n"}}, kKeyA));
  v1::OpenDebugSessionRequest req;
  (*req.mutable_program()->mutable_files())["main.py"] = "print(1)\n";
  v1::OpenDebugSessionResponse resp;
  EXPECT_EQ(Open(req, &resp, kKeyA).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Another principal has its own allowance.
  EXPECT_TRUE(Open(req, &resp, kKeyB).ok());
  v1::CloseDebugSessionRequest creq;
  creq.set_session_id(ids[0]);
  v1::CloseDebugSessionResponse cresp;
  auto ctx = ServiceFixture::Ctx(kKeyA);
  ASSERT_TRUE(stub_->Close(ctx.get(), creq, &cresp).ok());
  EXPECT_TRUE(Open(req, &resp, kKeyA).ok());
}

// Shutdown lets a running command finish (bounded by the instruction budget), then refuses.
TEST_F(DebugServiceTest, ShutdownFinishesRunningCommandsAndRefusesNewOnes) {
  StartServer();
  std::string loop = OpenProgram({{"main.py", "while True:\n    pass\n"}}, key_);
  std::string other = OpenProgram({{"main.py", "print(2)\n"}}, key_);
  auto running = std::async(std::launch::async, [&] {
    v1::DebugCommandResponse r;
    grpc::Status s = Command(loop, "run", &r, key_);
    return std::make_pair(s, r);
  });
  service_->Shutdown();
  auto [status, r] = running.get();
  // Either it ran to the budget, or it had not been queued before the shutdown.
  if (status.ok()) {
    EXPECT_EQ(r.state().outcome(), "budget_exhausted");
  } else {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  }
  v1::DebugCommandResponse resp;
  EXPECT_EQ(Command(other, "run", &resp, key_).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(service_->open_sessions(), 0);
}

TEST_F(DebugServiceTest, MalformedRequestsGetTheirCodes) {
  fixture_.limits()->max_idle_timeout = std::chrono::seconds(100);
  DebugServiceOptions options;
  options.max_files = 4;
  options.max_program_bytes = 1000;
  options.max_file_bytes = 600;
  options.max_command_bytes = 2000;
  StartServer(options);
  std::string id = OpenProgram({{"main.py", "print(1)\n"}}, key_);

  auto program = [](std::map<std::string, std::string> files, std::string entry = "") {
    v1::OpenDebugSessionRequest r;
    r.mutable_program();  // set even when `files` is empty
    for (auto& [k, v] : files) (*r.mutable_program()->mutable_files())[k] = v;
    if (!entry.empty()) r.mutable_program()->set_entry_file(entry);
    return r;
  };
  auto task = [](std::string name, int n) {
    v1::OpenDebugSessionRequest r;
    r.mutable_task()->set_task(name);
    r.mutable_task()->set_length(n);
    return r;
  };
  std::map<std::string, std::string> five;
  for (int i = 0; i < 5; ++i) five["m" + std::to_string(i) + ".py"] = "x = 1\n";
  five["main.py"] = "x = 1\n";
  std::map<std::string, std::string> big;
  for (int i = 0; i < 3; ++i) big["m" + std::to_string(i) + ".py"] = std::string(400, '#');
  big["main.py"] = "x = 1\n";

  struct OpenCase {
    std::string name;
    v1::OpenDebugSessionRequest request;
    grpc::StatusCode code;
    std::string field;  // named in the message
  };
  v1::OpenDebugSessionRequest long_idle = program({{"main.py", "x = 1\n"}});
  long_idle.set_idle_timeout_seconds(101);
  std::vector<OpenCase> opens = {
      {"no source", v1::OpenDebugSessionRequest(), grpc::StatusCode::INVALID_ARGUMENT, "source"},
      {"no files", program({}), grpc::StatusCode::INVALID_ARGUMENT, "program.files"},
      {"too many files", program(five), grpc::StatusCode::INVALID_ARGUMENT, "program.files"},
      {"program too big", program(big), grpc::StatusCode::INVALID_ARGUMENT, "program.files"},
      {"file too big", program({{"main.py", std::string(700, '#')}}),
       grpc::StatusCode::INVALID_ARGUMENT, "program.files[main.py]"},
      {"invalid UTF-8 source", program({{"main.py", "print('\xff\xfe')\n"}}),
       grpc::StatusCode::INVALID_ARGUMENT, "program.files[main.py]"},
      {"path in file name", program({{"../etc/passwd", "x\n"}, {"main.py", "x = 1\n"}}),
       grpc::StatusCode::INVALID_ARGUMENT, "program.files"},
      {"missing entry file", program({{"a.py", "x = 1\n"}}), grpc::StatusCode::INVALID_ARGUMENT,
       "program.entry_file"},
      {"entry file not given", program({{"a.py", "x = 1\n"}}, "b.py"),
       grpc::StatusCode::INVALID_ARGUMENT, "program.entry_file"},
      {"unknown task", task("addition", 8), grpc::StatusCode::INVALID_ARGUMENT, "task.task"},
      {"task too short", task("code_debug", 1), grpc::StatusCode::INVALID_ARGUMENT, "task.length"},
      {"task too long", task("code_debug", 5000), grpc::StatusCode::INVALID_ARGUMENT,
       "task.length"},
      {"idle timeout too long", long_idle, grpc::StatusCode::INVALID_ARGUMENT,
       "idle_timeout_seconds"},
  };
  for (const auto& c : opens) {
    v1::OpenDebugSessionResponse resp;
    grpc::Status s = Open(c.request, &resp, key_);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.field), std::string::npos)
        << c.name << ": " << s.error_message();
  }

  struct CommandCase {
    std::string name;
    std::string session_id;
    std::string command;
    grpc::StatusCode code;
    std::string field;
  };
  std::vector<CommandCase> commands = {
      {"empty session id", "", "ls", grpc::StatusCode::INVALID_ARGUMENT, "session_id"},
      {"unknown session", "dbg_00000000000000000000000000000000", "ls", grpc::StatusCode::NOT_FOUND,
       "session_id"},
      {"command too long", id, "print " + std::string(2001, '1'),
       grpc::StatusCode::INVALID_ARGUMENT, "command"},
      {"command not UTF-8", id, "print '\xc3\x28'", grpc::StatusCode::INVALID_ARGUMENT, "command"},
  };
  for (const auto& c : commands) {
    v1::DebugCommandResponse resp;
    grpc::Status s = Command(c.session_id, c.command, &resp, key_);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.field), std::string::npos)
        << c.name << ": " << s.error_message();
  }
  // An edit that would grow a file past the cap is an error observation, not a call error.
  auto r = MustCommand(id, "edit main.py 1-1 " + std::string(700, '#'), key_);
  EXPECT_TRUE(r.is_error()) << r.observation();
  // The session still works.
  r = MustCommand(id, "run", key_);
  EXPECT_EQ(r.state().kind(), v1::ProgramState::FINISHED);
}

}  // namespace
}  // namespace tapeloop::server
