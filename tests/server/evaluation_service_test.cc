// tapeloop.v1.Evaluation over real loopback gRPC and a real SQLite file: a run started over gRPC
// stores the same episodes and reports the same table as the in-process runner (`tapeloop
// eval`); starting it again resumes; cancel, restart (interrupted -> resumed), ownership, the
// concurrency limit and malformed requests.
#include "server/evaluation_service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"
#include "eval/runner.h"
#include "tests/server/service_fixture.h"

namespace tapeloop::server {
namespace {

namespace v1 = ::tapeloop::v1;
using testing::ServiceFixture;

constexpr char kAlice[] = "alice-key-0123456789";
constexpr char kBob[] = "bob-key-0123456789ab";
constexpr int kPolls = 6000;  // of 100 ms: generous for sanitizer builds (ctest's limit is 900 s)

v1::EvaluationRun Start(v1::Evaluation::Stub* stub, const v1::StartEvaluationRequest& r,
                        const std::string& key, grpc::Status* status) {
  v1::EvaluationRun out;
  auto ctx = ServiceFixture::Ctx(key);
  *status = stub->StartEvaluation(ctx.get(), r, &out);
  return out;
}

v1::EvaluationRun Get(v1::Evaluation::Stub* stub, const std::string& key, const std::string& id,
                      grpc::Status* status) {
  v1::GetEvaluationRequest r;
  r.set_evaluation_id(id);
  v1::EvaluationRun out;
  auto ctx = ServiceFixture::Ctx(key);
  *status = stub->GetEvaluation(ctx.get(), r, &out);
  return out;
}

// Polls until the run leaves RUNNING (or 600 s pass: a sanitizer build on a slow machine).
v1::EvaluationRun WaitDone(v1::Evaluation::Stub* stub, const std::string& key,
                           const std::string& id) {
  v1::EvaluationRun run;
  for (int i = 0; i < kPolls; ++i) {
    grpc::Status status;
    run = Get(stub, key, id, &status);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (!status.ok() || run.state() != v1::EVALUATION_STATE_RUNNING) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return run;
}

// The bundled mamba2-pointer and the oracle on addition; small enough for a test.
v1::StartEvaluationRequest SmallRun() {
  v1::StartEvaluationRequest r;
  r.add_models("mamba2-pointer");
  r.add_models("oracle");
  r.add_tasks("addition");
  r.add_lengths(3);
  r.add_lengths(12);
  r.set_episodes(3);
  r.add_seeds(1);
  r.add_seeds(2);
  return r;
}

class EvaluationServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(f_.keys()->Add(kAlice, "alice").ok());
    ASSERT_TRUE(f_.keys()->Add(kBob, "bob").ok());
    service_ = std::make_unique<EvaluationService>(f_.context());
    f_.Start({service_.get()});
    stub_ = v1::Evaluation::NewStub(f_.channel());
  }
  void TearDown() override {
    f_.Stop();
    service_.reset();
  }

  ServiceFixture f_;
  std::unique_ptr<EvaluationService> service_;
  std::unique_ptr<v1::Evaluation::Stub> stub_;
};

// Over gRPC, the run stores exactly what the in-process runner stores: same cells, same
// Markdown table. Starting it again answers the finished run without playing anything.
TEST_F(EvaluationServiceTest, RunMatchesTheInProcessRunnerAndRestartingItResumes) {
  grpc::Status status;
  v1::EvaluationRun started = Start(stub_.get(), SmallRun(), kAlice, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(started.evaluation_id().size(), 32u);
  EXPECT_EQ(started.episodes_planned(), 2 * 2 * 2 * 3);
  v1::EvaluationRun done = WaitDone(stub_.get(), kAlice, started.evaluation_id());
  ASSERT_EQ(done.state(), v1::EVALUATION_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.episodes_done(), 24);
  EXPECT_EQ(done.episodes_planned(), 24);
  EXPECT_GT(done.finished_unix_ms(), 0);
  ASSERT_EQ(done.cells_size(), 4);
  for (const auto& c : done.cells()) {
    EXPECT_EQ(c.episodes(), 6) << c.model();
    EXPECT_EQ(c.accuracy(), 1.0) << c.model() << "@" << c.length();  // both are exact here
    EXPECT_GT(c.mean_generated_tokens(), 0.0);
  }
  auto config = nlohmann::json::parse(done.config_json());
  EXPECT_EQ(config["owner"], "alice");

  // The same configuration in process, into another database: the same table.
  eval::EvalOptions o;
  o.entries = {{std::string(TAPELOOP_SOURCE_DIR) + "/models/mamba2-pointer", {"pointer"}},
               {"oracle", {"pointer"}}};
  o.tasks = {"addition"};
  o.lengths = {3, 12};
  o.episodes = 3;
  o.seeds = {1, 2};
  o.owner = "alice";
  o.db_path = (f_.dir() / "local.db").string();
  auto local = eval::RunEvaluation(o);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(local->run_id, done.evaluation_id());
  // The accuracy tables agree; the cost table holds wall times, which differ run to run.
  auto tables = [](const std::string& md) { return md.substr(0, md.find("\nCost per episode")); };
  EXPECT_EQ(tables(local->markdown), tables(done.report_markdown()));
  EXPECT_NE(done.report_markdown().find("| mamba2-pointer / pointer | 5->12 (100%) |"),
            std::string::npos)
      << done.report_markdown();

  v1::EvaluationRun again = Start(stub_.get(), SmallRun(), kAlice, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(again.evaluation_id(), done.evaluation_id());
  v1::EvaluationRun again_done = WaitDone(stub_.get(), kAlice, again.evaluation_id());
  EXPECT_EQ(again_done.state(), v1::EVALUATION_STATE_SUCCEEDED);
  EXPECT_EQ(again_done.episodes_done(), 24);
  EXPECT_EQ(again_done.report_markdown(), done.report_markdown());

  // Listed for its owner only.
  v1::ListEvaluationsRequest list;
  v1::ListEvaluationsResponse listed;
  auto ctx = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->ListEvaluations(ctx.get(), list, &listed).ok());
  ASSERT_EQ(listed.evaluations_size(), 1);
  EXPECT_EQ(listed.evaluations(0).evaluation_id(), done.evaluation_id());
  EXPECT_EQ(listed.evaluations(0).cells_size(), 0);  // summaries only
  ctx = ServiceFixture::Ctx(kBob);
  listed.Clear();
  ASSERT_TRUE(stub_->ListEvaluations(ctx.get(), list, &listed).ok());
  EXPECT_EQ(listed.evaluations_size(), 0);
}

// Another principal can neither read nor cancel a run; the same settings started by bob are a
// run of his own.
TEST_F(EvaluationServiceTest, RunsBelongToTheirOwner) {
  grpc::Status status;
  v1::StartEvaluationRequest r;
  r.add_models("oracle");
  r.add_tasks("addition");
  r.add_lengths(4);
  r.set_episodes(2);
  v1::EvaluationRun mine = Start(stub_.get(), r, kAlice, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  Get(stub_.get(), kBob, mine.evaluation_id(), &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::CancelEvaluationRequest cancel;
  cancel.set_evaluation_id(mine.evaluation_id());
  v1::EvaluationRun out;
  auto ctx = ServiceFixture::Ctx(kBob);
  EXPECT_EQ(stub_->CancelEvaluation(ctx.get(), cancel, &out).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(WaitDone(stub_.get(), kAlice, mine.evaluation_id()).state(),
            v1::EVALUATION_STATE_SUCCEEDED);
  v1::EvaluationRun his = Start(stub_.get(), r, kBob, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_NE(his.evaluation_id(), mine.evaluation_id());
  EXPECT_EQ(WaitDone(stub_.get(), kBob, his.evaluation_id()).state(),
            v1::EVALUATION_STATE_SUCCEEDED);
  // Unauthenticated callers are refused before anything else.
  Get(stub_.get(), "", mine.evaluation_id(), &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// A long run cancelled midway keeps its finished batches; the server's limit of one running
// evaluation refuses a second meanwhile; started again, the run resumes and completes to the
// same cells an uninterrupted run has.
TEST_F(EvaluationServiceTest, CancelKeepsFinishedBatchesAndStartingAgainResumes) {
  grpc::Status status;
  v1::StartEvaluationRequest r;
  r.add_models("mamba2-pointer");
  r.add_tasks("addition");
  r.add_lengths(30);
  r.set_episodes(160);  // batches of 64, 64 and 32
  r.set_parallel(8);
  v1::EvaluationRun started = Start(stub_.get(), r, kAlice, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(started.state(), v1::EVALUATION_STATE_RUNNING);

  v1::StartEvaluationRequest other;
  other.add_models("oracle");
  other.add_tasks("addition");
  other.add_lengths(5);
  Start(stub_.get(), other, kAlice, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();

  // Wait for the first batch to be stored, then cancel.
  for (int i = 0; i < kPolls; ++i) {
    if (Get(stub_.get(), kAlice, started.evaluation_id(), &status).episodes_done() > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  v1::CancelEvaluationRequest cancel;
  cancel.set_evaluation_id(started.evaluation_id());
  v1::EvaluationRun cancelled;
  auto ctx = ServiceFixture::Ctx(kAlice);
  ASSERT_TRUE(stub_->CancelEvaluation(ctx.get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::EVALUATION_STATE_CANCELLED);
  EXPECT_GE(cancelled.episodes_done(), 64);
  EXPECT_LT(cancelled.episodes_done(), 160);
  EXPECT_EQ(cancelled.episodes_done() % 64, 0);  // whole batches only
  EXPECT_EQ(service_->running(), 0);

  v1::EvaluationRun resumed = Start(stub_.get(), r, kAlice, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resumed.evaluation_id(), started.evaluation_id());
  v1::EvaluationRun done = WaitDone(stub_.get(), kAlice, started.evaluation_id());
  ASSERT_EQ(done.state(), v1::EVALUATION_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.episodes_done(), 160);
  ASSERT_EQ(done.cells_size(), 1);
  EXPECT_EQ(done.cells(0).episodes(), 160);
  EXPECT_EQ(done.cells(0).accuracy(), 1.0);  // the bundled model is exact at 30 digits
}

// With max_running = 2, two runs play at once and a third is refused until one ends.
TEST(EvaluationServiceLimitTest, MaxRunningRunsThatManyAtOnce) {
  ServiceFixture f;
  EvaluationServiceOptions options;
  options.max_running = 2;
  EvaluationService service(f.context(), options);
  f.Start({&service});
  auto stub = v1::Evaluation::NewStub(f.channel());
  grpc::Status status;
  std::vector<std::string> ids;
  for (int64_t length : {40, 41}) {
    v1::StartEvaluationRequest r;
    r.add_models("mamba2-pointer");
    r.add_tasks("addition");
    r.add_lengths(length);
    r.set_episodes(64);
    ids.push_back(Start(stub.get(), r, "", &status).evaluation_id());
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(service.running(), 2);
  v1::StartEvaluationRequest third;
  third.add_models("oracle");
  third.add_tasks("addition");
  third.add_lengths(5);
  Start(stub.get(), third, "", &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_NE(status.error_message().find("at most 2"), std::string::npos) << status.error_message();
  for (const std::string& id : ids) {
    EXPECT_EQ(WaitDone(stub.get(), "", id).state(), v1::EVALUATION_STATE_SUCCEEDED);
  }
  EXPECT_TRUE(Start(stub.get(), third, "", &status).evaluation_id().size() == 32);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(service.WaitIdle(std::chrono::seconds(60)));
  f.Stop();
}

// StartEvaluation loads the checkpoints once and the run plays on those: a checkpoint removed
// from the models directory right after the answer does not fail the run.
TEST(EvaluationServiceLoadTest, TheRunPlaysOnTheModelsLoadedWhenItWasStarted) {
  const std::filesystem::path models =
      std::filesystem::temp_directory_path() /
      ("tapeloop_eval_models_" + std::to_string(::getpid()));
  std::filesystem::remove_all(models);
  std::filesystem::create_directories(models);
  std::filesystem::copy(std::string(TAPELOOP_SOURCE_DIR) + "/models/mamba2-pointer",
                        models / "mamba2-pointer");
  ServiceFixture f(models.string());
  EvaluationService service(f.context());
  f.Start({&service});
  auto stub = v1::Evaluation::NewStub(f.channel());
  v1::StartEvaluationRequest r;
  r.add_models("mamba2-pointer");
  r.add_tasks("addition");
  r.add_lengths(4);
  r.add_lengths(9);
  r.set_episodes(5);
  grpc::Status status;
  const std::string id = Start(stub.get(), r, "", &status).evaluation_id();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::filesystem::remove_all(models / "mamba2-pointer");
  v1::EvaluationRun done = WaitDone(stub.get(), "", id);
  EXPECT_EQ(done.state(), v1::EVALUATION_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.episodes_done(), 10);
  for (const auto& c : done.cells()) EXPECT_EQ(c.accuracy(), 1.0) << c.length();
  // Now that it is gone, a new run of it is refused naming it.
  r.set_episodes(6);
  Start(stub.get(), r, "", &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  EXPECT_NE(status.error_message().find("mamba2-pointer"), std::string::npos)
      << status.error_message();
  f.Stop();
  std::filesystem::remove_all(models);
}

// A server stopped while a run plays leaves it INTERRUPTED; a new server over the same file
// resumes it when it is started again.
TEST(EvaluationServiceRestartTest, ShutdownInterruptsAndANewServerResumes) {
  ServiceFixture f;
  grpc::Status status;
  v1::StartEvaluationRequest r;
  r.add_models("mamba2-pointer");
  r.add_tasks("addition");
  r.add_lengths(20);
  r.set_episodes(200);
  r.set_parallel(8);
  std::string id;
  int64_t stored = 0;
  {
    EvaluationService service(f.context());
    f.Start({&service});
    auto stub = v1::Evaluation::NewStub(f.channel());
    id = Start(stub.get(), r, "", &status).evaluation_id();
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (int i = 0; i < kPolls && stored == 0; ++i) {
      stored = Get(stub.get(), "", id, &status).episodes_done();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_GT(stored, 0);
    f.Stop();
    service.Shutdown();
  }
  EvaluationService service(f.context());
  f.Start({&service});
  auto stub = v1::Evaluation::NewStub(f.channel());
  v1::EvaluationRun before = Get(stub.get(), "", id, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(before.state(), v1::EVALUATION_STATE_INTERRUPTED);
  EXPECT_GE(before.episodes_done(), stored);
  EXPECT_LT(before.episodes_done(), 200);
  EXPECT_EQ(Start(stub.get(), r, "", &status).evaluation_id(), id);
  ASSERT_TRUE(status.ok()) << status.error_message();
  v1::EvaluationRun done = WaitDone(stub.get(), "", id);
  EXPECT_EQ(done.state(), v1::EVALUATION_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.episodes_done(), 200);
  f.Stop();
}

// Each malformed request is refused with the right code and a message naming its field.
TEST_F(EvaluationServiceTest, BadRequestsNameTheField) {
  struct Case {
    const char* name;
    std::function<void(v1::StartEvaluationRequest*)> edit;
    grpc::StatusCode code;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"no models", [](auto* r) { r->clear_models(); }, grpc::StatusCode::INVALID_ARGUMENT,
       "models:"},
      {"no tasks", [](auto* r) { r->clear_tasks(); }, grpc::StatusCode::INVALID_ARGUMENT, "tasks:"},
      {"no lengths", [](auto* r) { r->clear_lengths(); }, grpc::StatusCode::INVALID_ARGUMENT,
       "lengths:"},
      {"unknown suite", [](auto* r) { r->set_suite("paper-subtraction"); },
       grpc::StatusCode::INVALID_ARGUMENT, "suite:"},
      {"unknown task", [](auto* r) { r->set_tasks(0, "subtraction"); },
       grpc::StatusCode::INVALID_ARGUMENT, "tasks:"},
      {"unknown mode", [](auto* r) { r->add_modes("telepathy"); },
       grpc::StatusCode::INVALID_ARGUMENT, "modes:"},
      {"path as model", [](auto* r) { r->set_models(0, "../models/mamba2-pointer"); },
       grpc::StatusCode::INVALID_ARGUMENT, "models:"},
      {"absent model", [](auto* r) { r->set_models(0, "no-such-model"); },
       grpc::StatusCode::NOT_FOUND, "models:"},
      {"length 0", [](auto* r) { r->set_lengths(0, 0); }, grpc::StatusCode::INVALID_ARGUMENT,
       "lengths:"},
      {"huge length", [](auto* r) { r->set_lengths(0, 1'000'000'000); },
       grpc::StatusCode::INVALID_ARGUMENT, "lengths:"},
      {"negative episodes", [](auto* r) { r->set_episodes(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "episodes:"},
      {"too many episodes", [](auto* r) { r->set_episodes(int64_t{1} << 40); },
       grpc::StatusCode::INVALID_ARGUMENT, "episodes:"},
      {"parallel 1000", [](auto* r) { r->set_parallel(1000); }, grpc::StatusCode::INVALID_ARGUMENT,
       "parallel:"},
      {"stop_after_zero -5", [](auto* r) { r->set_stop_after_zero(-5); },
       grpc::StatusCode::INVALID_ARGUMENT, "stop_after_zero:"},
      {"100 seeds",
       [](auto* r) {
         for (int i = 0; i < 100; ++i) r->add_seeds(i);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "seeds:"},
  };
  for (const Case& c : cases) {
    v1::StartEvaluationRequest r = SmallRun();
    c.edit(&r);
    grpc::Status status;
    Start(stub_.get(), r, kAlice, &status);
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_EQ(status.error_message().rfind(c.field, 0), 0u)
        << c.name << ": " << status.error_message();
  }
  EXPECT_EQ(service_->running(), 0);  // nothing started
  grpc::Status status;
  Get(stub_.get(), kAlice, "", &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  Get(stub_.get(), kAlice, "0123456789abcdef0123456789abcdef", &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("evaluation_id"), std::string::npos);
  v1::ListEvaluationsRequest list;
  list.set_page_size(5000);
  v1::ListEvaluationsResponse listed;
  auto ctx = ServiceFixture::Ctx(kAlice);
  EXPECT_EQ(stub_->ListEvaluations(ctx.get(), list, &listed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// A suite with an override: paper-addition-short's models, only its shortest length.
TEST_F(EvaluationServiceTest, SuiteWithOverrides) {
  grpc::Status status;
  v1::StartEvaluationRequest r;
  r.set_suite("paper-addition-short");
  r.add_lengths(3);
  r.set_episodes(2);
  v1::EvaluationRun started = Start(stub_.get(), r, kAlice, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  v1::EvaluationRun done = WaitDone(stub_.get(), kAlice, started.evaluation_id());
  ASSERT_EQ(done.state(), v1::EVALUATION_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.cells_size(), 4);  // the four bundled pointer models
  EXPECT_EQ(done.episodes_done(), 4 * 2);
  EXPECT_NE(done.report_markdown().find("mamba2-pointer / pointer"), std::string::npos);
}

}  // namespace
}  // namespace tapeloop::server
