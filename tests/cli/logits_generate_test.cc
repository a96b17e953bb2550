// `tapeloop logits` and `tapeloop generate` run as processes against real checkpoints (the
// bundled mamba2-pointer and the tiny HF fixtures), checked against the in-process engine on
// the same model: logits rows bit-equal to Session::Append's, greedy and seeded sampled
// continuations equal to Session::Generate's, and each bad input refused with exit code 2 and a
// message naming the flag and the value.
//
// The binary re-executes itself with faster OpenBLAS kernels where OpenBLAS falls back to
// Prescott ones (cli/main.cc), and kernels round differently, so for the bit-exact comparisons
// the child is given this process's kernels (SameBlasKernels); one test covers the default.
#include <cblas.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/tokenizer.h"
#include "engine/models/model.h"
#include "engine/session/sampling.h"
#include "engine/session/session.h"
#include "nlohmann/json.hpp"
#include "tests/cli/process.h"

namespace tapeloop {
namespace {

using testing::Process;
using testing::TapeloopBinary;

// While alive, children inherit OPENBLAS_CORETYPE = the core type this process's OpenBLAS uses,
// so they run the same kernels (and skip the re-exec). Restores the previous value after.
class SameBlasKernels {
 public:
  SameBlasKernels() {
    if (const char* v = getenv("OPENBLAS_CORETYPE")) saved_ = v;
    setenv("OPENBLAS_CORETYPE", openblas_get_corename(), 1);
  }
  ~SameBlasKernels() {
    if (saved_) {
      setenv("OPENBLAS_CORETYPE", saved_->c_str(), 1);
    } else {
      unsetenv("OPENBLAS_CORETYPE");
    }
  }
  SameBlasKernels(const SameBlasKernels&) = delete;
  SameBlasKernels& operator=(const SameBlasKernels&) = delete;

 private:
  std::optional<std::string> saved_;
};

using Result = testing::CliResult;
using testing::RunCli;

std::string Bundled(const std::string& name) {
  return std::string(TAPELOOP_SOURCE_DIR) + "/models/" + name;
}
std::string Fixture(const std::string& family) {
  return std::string(TAPELOOP_SOURCE_DIR) + "/tests/engine/fixtures/hf/" + family;
}

std::unique_ptr<engine::Model> LoadOrDie(const std::string& dir) {
  auto model = engine::Model::Load(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

// The rows `tapeloop logits` printed, each parsed as a JSON array of floats.
std::vector<std::vector<float>> ParseRows(const std::string& out) {
  std::vector<std::vector<float>> rows;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    nlohmann::json row = nlohmann::json::parse(line);
    EXPECT_TRUE(row.is_array()) << line.substr(0, 80);
    std::vector<float> values;
    for (const auto& v : row) values.push_back(static_cast<float>(v.get<double>()));
    rows.push_back(std::move(values));
  }
  return rows;
}

// The continuation `tapeloop generate` prints for `prompt`, computed in process: the
// tokenizer's ids after the config's BOS, prefill, Generate, the final EOS dropped.
std::string EngineContinuation(const engine::Model& model, const std::string& prompt,
                               int max_tokens, float temperature, uint64_t seed) {
  const engine::ModelConfig& config = model.config();
  Tokenizer tokenizer;
  std::vector<int32_t> ids;
  if (config.bos_token_id >= 0) ids.push_back(static_cast<int32_t>(config.bos_token_id));
  for (TokenId id : tokenizer.Encode(prompt)) ids.push_back(id);
  engine::SamplingParams params;
  params.temperature = temperature;
  if (config.eos_token_id >= 0) {
    params.stop_tokens.push_back(static_cast<int32_t>(config.eos_token_id));
  }
  engine::Session session(&model, seed);
  auto logits = session.Append(ids);
  EXPECT_TRUE(logits.ok()) << logits.status();
  if (!logits.ok()) return "";
  auto out = session.Generate(*logits, max_tokens, params);
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return "";
  if (!out->empty() && out->back() == config.eos_token_id) out->pop_back();
  std::string text;
  for (int32_t id : *out) text += tokenizer.TokenText(id);
  return text + "\n";
}

// Random ids in [0, V): printed rows equal the engine's all-position logits exactly (%.9g
// round-trips a float), one row per id, V values per row. The 300-id case crosses the
// engine's 256-token prefill chunks and Mamba-2's 64-token SSD chunks.
TEST(LogitsCommand, RowsEqualInProcessEngineLogits) {
  SameBlasKernels same_kernels;
  std::mt19937 rng(31337);
  const std::vector<std::pair<std::string, int>> cases = {{Bundled("mamba2-pointer"), 300},
                                                          {Fixture("nemotron_h"), 17},
                                                          {Fixture("llama"), 9},
                                                          {Fixture("mistral"), 23}};
  for (const auto& [dir, n] : cases) {
    SCOPED_TRACE(dir);
    auto model = LoadOrDie(dir);
    ASSERT_NE(model, nullptr);
    const int64_t V = model->config().vocab_size;
    std::vector<int32_t> ids(n);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng() % V);
    ids.back() = static_cast<int32_t>(V - 1);  // the largest valid id is accepted

    Result r = RunCli({"logits", "--model", dir, "--ids", absl::StrJoin(ids, ",")});
    ASSERT_EQ(r.code, 0) << r.err;
    const std::vector<std::vector<float>> rows = ParseRows(r.out);
    ASSERT_EQ(rows.size(), ids.size());

    engine::Session session(model.get());
    auto expected = session.Append(ids, /*all_logits=*/true);
    ASSERT_TRUE(expected.ok()) << expected.status();
    ASSERT_EQ(static_cast<int64_t>(expected->size()), n * V);
    for (int t = 0; t < n; ++t) {
      ASSERT_EQ(static_cast<int64_t>(rows[t].size()), V) << "row " << t;
      for (int64_t v = 0; v < V; ++v) {
        ASSERT_EQ(rows[t][v], (*expected)[t * V + v]) << "row " << t << " column " << v;
      }
    }
  }
}

// With the binary's own choice of kernels (possibly re-executed with faster ones) the rows still
// match the engine's to float rounding, and two runs print the same bytes.
TEST(LogitsCommand, DefaultKernelsMatchEngineClosely) {
  const std::string dir = Bundled("mamba2-pointer");
  auto model = LoadOrDie(dir);
  ASSERT_NE(model, nullptr);
  const int64_t V = model->config().vocab_size;
  std::mt19937 rng(4242);
  std::vector<int32_t> ids(70);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng() % V);
  const std::vector<std::string> args = {"logits", "--model", dir, "--ids",
                                         absl::StrJoin(ids, ",")};
  Result a = RunCli(args);
  Result b = RunCli(args);
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  const auto rows = ParseRows(a.out);
  ASSERT_EQ(rows.size(), ids.size());
  engine::Session session(model.get());
  auto expected = session.Append(ids, /*all_logits=*/true);
  ASSERT_TRUE(expected.ok()) << expected.status();
  for (size_t t = 0; t < ids.size(); ++t) {
    ASSERT_EQ(static_cast<int64_t>(rows[t].size()), V);
    for (int64_t v = 0; v < V; ++v) {
      const float want = (*expected)[t * V + v];
      ASSERT_NEAR(rows[t][v], want, 1e-4f * std::max(1.0f, std::fabs(want)))
          << "row " << t << " column " << v;
    }
  }
}

TEST(GenerateCommand, GreedyIsDeterministicAndEqualsEngine) {
  SameBlasKernels same_kernels;
  const std::string dir = Bundled("mamba2-pointer");
  auto model = LoadOrDie(dir);
  ASSERT_NE(model, nullptr);
  for (const std::string prompt : {"472+95=", "[P1.NEW]31+8="}) {
    SCOPED_TRACE(prompt);
    Result a = RunCli({"generate", "--model", dir, "--prompt", prompt, "--max-tokens", "24"});
    Result b = RunCli({"generate", "--model", dir, "--prompt", prompt, "--max-tokens", "24"});
    ASSERT_EQ(a.code, 0) << a.err;
    ASSERT_EQ(b.code, 0) << b.err;
    EXPECT_EQ(a.out, b.out);
    EXPECT_EQ(a.out, EngineContinuation(*model, prompt, 24, 0.0f, 0));
    EXPECT_GT(a.out.size(), 1u);  // something was generated before any EOS
  }
  // --max-tokens 0 prints an empty continuation.
  Result zero = RunCli({"generate", "--model", dir, "--prompt", "1+2=", "--max-tokens", "0"});
  ASSERT_EQ(zero.code, 0) << zero.err;
  EXPECT_EQ(zero.out, "\n");
}

// Sampling at temperature 1.5 from a random-init hybrid: the same seed gives the same text as
// itself and as the engine with that seed; different seeds do not all agree.
TEST(GenerateCommand, SeededSamplingIsReproducible) {
  SameBlasKernels same_kernels;
  const std::string dir = Fixture("nemotron_h");
  auto model = LoadOrDie(dir);
  ASSERT_NE(model, nullptr);
  const std::string prompt = "#!$%&";  // bytes below the fixture's vocabulary size of 64
  std::vector<std::string> outputs;
  for (uint64_t seed : {7u, 8u, 9u}) {
    SCOPED_TRACE(seed);
    const std::vector<std::string> args = {
        "generate",     "--model", dir,      "--prompt",           prompt,
        "--max-tokens", "20",      "--seed", std::to_string(seed), "--temperature",
        "1.5"};
    Result a = RunCli(args);
    Result b = RunCli(args);
    ASSERT_EQ(a.code, 0) << a.err;
    ASSERT_EQ(b.code, 0) << b.err;
    EXPECT_EQ(a.out, b.out);
    EXPECT_EQ(a.out, EngineContinuation(*model, prompt, 20, 1.5f, seed));
    outputs.push_back(a.out);
  }
  EXPECT_FALSE(outputs[0] == outputs[1] && outputs[1] == outputs[2])
      << "three seeds sampled the same 20 tokens: " << outputs[0];
}

struct BadCase {
  std::vector<std::string> args;
  std::vector<std::string> words;  // each must appear in the one stderr line
};

TEST(LogitsGenerateCommands, BadInputExitsTwoNamingTheFlagAndValue) {
  const std::string m = Bundled("mamba2-pointer");  // vocabulary 285
  const std::string f = Fixture("llama");           // vocabulary 64
  const std::string missing = std::string(TAPELOOP_SOURCE_DIR) + "/models/no-such-model";
  const std::vector<BadCase> cases = {
      {{"logits", "--model", m, "--ids", "3,285,4"}, {"--ids", "285", "vocabulary"}},
      {{"logits", "--model", m, "--ids", "-1"}, {"--ids", "-1", "vocabulary"}},
      {{"logits", "--model", f, "--ids", "1,64"}, {"--ids", "64", "[0, 64)"}},
      {{"logits", "--model", missing, "--ids", "3,1,4"}, {"--model", "no-such-model"}},
      {{"logits", "--model", m, "--ids", "3,x,4"}, {"--ids", "'x'"}},
      {{"logits", "--model", m, "--ids", "3,,4"}, {"--ids", "entry 2"}},
      {{"logits", "--model", m, "--ids", "3;1"}, {"--ids", "'3;1'"}},
      {{"logits", "--model", m, "--ids", "99999999999"}, {"--ids", "99999999999"}},
      {{"logits", "--model", m, "--ids", ""}, {"--ids"}},
      {{"logits", "--model", m}, {"--ids"}},
      {{"logits", "--ids", "1"}, {"--model"}},
      {{"logits", "--model", m, "--ids", "1", "--idz", "2"}, {"--idz"}},
      {{"generate", "--model", m, "--prompt", "1+2=", "--max-tokens", "-3"},
       {"--max-tokens", "-3"}},
      {{"generate", "--model", m, "--prompt", "1+2=", "--max-tokens", "4294967297"},
       {"--max-tokens", "4294967297"}},
      {{"generate", "--model", m, "--prompt", "1+2=", "--max-tokens", "ten"},
       {"--max-tokens", "'ten'"}},
      {{"generate", "--model", m, "--prompt", "1+2="}, {"--max-tokens"}},
      {{"generate", "--model", missing, "--prompt", "1+2=", "--max-tokens", "4"},
       {"--model", "no-such-model"}},
      {{"generate", "--model", m, "--max-tokens", "4"}, {"--prompt"}},
      {{"generate", "--model", f, "--prompt", "xyz", "--max-tokens", "4"},
       {"--prompt", "120", "vocabulary"}},
      {{"generate", "--model", m, "--prompt", "1", "--max-tokens", "4", "--top-p", "0"},
       {"--top-p", "0"}},
      {{"generate", "--model", m, "--prompt", "1", "--max-tokens", "4", "--top-k", "-2"},
       {"--top-k", "-2"}},
      {{"generate", "--model", m, "--prompt", "1", "--max-tokens", "4", "--temperature", "nan"},
       {"--temperature", "nan"}},
  };
  for (const BadCase& c : cases) {
    const std::string cmd = absl::StrJoin(c.args, " ");
    SCOPED_TRACE(cmd);
    Result r = RunCli(c.args);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out.substr(0, 200);
    EXPECT_EQ(r.err.rfind("tapeloop " + c.args[0] + ": ", 0), 0u) << r.err;
    for (const std::string& w : c.words) EXPECT_NE(r.err.find(w), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace tapeloop
