// tapeloop generate --model DIR --prompt TEXT --max-tokens N [--temperature T] [--top-k K]
//                   [--top-p P] [--seed S]
// Encodes the prompt with the checkpoint's tokenizer (DIR/tokenizer.json, else the built-in
// byte-level tapeloop-tokens-v1), prepends the config's bos_token_id when set, prefills, then
// samples up to N tokens (greedy unless --temperature > 0), stopping at eos_token_id, and prints
// the continuation. Bad flags, prompt or checkpoint: one line on stderr, exit 2.
#include <sys/stat.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/command.h"
#include "common/tokenizer.h"
#include "engine/models/model.h"
#include "engine/session/session.h"

namespace tapeloop::cli {
namespace {

int RunGenerate(int argc, char** argv) {
  Args args(argc, argv, {"help"});
  if (args.Bool("help")) {
    std::cout << "usage: tapeloop generate --model DIR --prompt TEXT --max-tokens N [--temperature T]\n"
                 "                         [--top-k K] [--top-p P] [--seed S]\n"
                 "  --temperature  0 (default) is greedy\n"
                 "  --top-k        0 (default) keeps every token\n"
                 "  --top-p        nucleus mass in (0, 1], default 1\n"
                 "  --seed         the session's sampling seed (default 0)\n";
    return 0;
  }
  auto dir = args.Require("model");
  auto prompt = args.Require("prompt");
  auto max_tokens = args.Int("max-tokens", -1);
  auto temperature = args.Double("temperature", 0.0);
  auto top_k = args.Int("top-k", 0);
  auto top_p = args.Double("top-p", 1.0);
  auto seed = args.Int("seed", 0);
  for (const absl::Status& s : {args.Finish(), dir.status(), prompt.status(), max_tokens.status(),
                                temperature.status(), top_k.status(), top_p.status(), seed.status()}) {
    if (!s.ok()) return Fail("generate", s, 2);
  }
  // Each bad value is reported with its flag (the int ones must also fit an int).
  auto bad = [](const std::string& message) {
    return Fail("generate", absl::InvalidArgumentError(message), 2);
  };
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  if (!args.Get("max-tokens")) return bad("missing required flag --max-tokens");
  if (*max_tokens < 0 || *max_tokens > kIntMax) {
    return bad(absl::StrCat("--max-tokens: ", *max_tokens, " is outside [0, ", kIntMax, "]"));
  }
  if (!std::isfinite(*temperature)) {
    return bad(absl::StrCat("--temperature: must be finite, got ", *temperature));
  }
  if (*top_k < 0 || *top_k > kIntMax) {
    return bad(absl::StrCat("--top-k: ", *top_k, " is outside [0, ", kIntMax, "]"));
  }
  if (!(*top_p > 0.0 && *top_p <= 1.0)) {
    return bad(absl::StrCat("--top-p: ", *top_p, " is outside (0, 1]"));
  }
  engine::SamplingParams params;
  params.temperature = static_cast<float>(*temperature);
  params.top_k = static_cast<int>(*top_k);
  params.top_p = static_cast<float>(*top_p);
  if (auto s = engine::ValidateSamplingParams(params); !s.ok()) return Fail("generate", s, 2);

  auto model = engine::Model::Load(*dir);
  if (!model.ok()) {
    return Fail(
        "generate",
        absl::Status(model.status().code(), absl::StrCat("--model: ", model.status().message())),
        2);
  }
  const engine::ModelConfig& config = (*model)->config();
  Tokenizer tokenizer;
  struct stat st;
  if (stat((*dir + "/tokenizer.json").c_str(), &st) == 0) {
    auto loaded = Tokenizer::Load(*dir + "/tokenizer.json");
    if (!loaded.ok()) return Fail("generate", loaded.status(), 2);
    tokenizer = *loaded;
  }
  std::vector<int32_t> ids;
  if (config.bos_token_id >= 0) ids.push_back(static_cast<int32_t>(config.bos_token_id));
  for (TokenId id : tokenizer.Encode(*prompt)) ids.push_back(id);
  if (ids.empty()) return bad("--prompt: empty and the model has no bos_token_id");
  for (int32_t id : ids) {
    if (id < 0 || id >= config.vocab_size) {
      return bad(absl::StrCat("--prompt: token ", id, " ('", tokenizer.TokenText(id),
                              "') is outside the model's vocabulary [0, ", config.vocab_size, ")"));
    }
  }
  if (config.eos_token_id >= 0) params.stop_tokens.push_back(static_cast<int32_t>(config.eos_token_id));

  engine::Session session(model->get(), static_cast<uint64_t>(*seed));
  auto logits = session.Append(ids);
  if (!logits.ok()) {
    return Fail("generate", logits.status(), logits.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1);
  }
  std::vector<int32_t> out;
  if (*max_tokens > 0) {
    auto generated = session.Generate(*logits, static_cast<int>(*max_tokens), params);
    if (!generated.ok()) return Fail("generate", generated.status(), 1);
    out = *generated;
  }
  if (!out.empty() && !params.stop_tokens.empty() && out.back() == params.stop_tokens[0]) out.pop_back();
  std::string text;
  for (int32_t id : out) text += tokenizer.TokenText(id);
  std::cout << text << std::endl;
  return 0;
}

}  // namespace

TAPELOOP_REGISTER_COMMAND("generate", "generate a continuation of a prompt with a model", RunGenerate);

}  // namespace tapeloop::cli
