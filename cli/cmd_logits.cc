// tapeloop logits --model DIR --ids 3,1,4
// Loads an HF-format checkpoint (config.json + model.safetensors), runs the ids as one prefill
// and prints the logits: one JSON array per line, one line per position. Bad flags, ids or
// checkpoint: one line on stderr, exit 2.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/args.h"
#include "cli/command.h"
#include "engine/models/model.h"
#include "engine/session/session.h"

namespace tapeloop::cli {
namespace {

// "3,1,4" -> {3, 1, 4}; an error naming --ids and the first entry that is not an integer.
absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("--ids: '", std::string(part), "' (entry ",
                                                     ids.size() + 1,
                                                     ") is not an integer token id"));
    }
    ids.push_back(id);
  }
  return ids;
}

// An error naming --ids, the first id outside [0, vocab_size) and its position.
absl::Status CheckIds(const std::vector<int32_t>& ids, int64_t vocab_size) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("--ids: token id ", ids[i], " (entry ", i + 1,
                                                     ") is outside the model's vocabulary [0, ",
                                                     vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

int RunLogits(int argc, char** argv) {
  Args args(argc, argv, {"help"});
  if (args.Bool("help")) {
    std::cout
        << "usage: tapeloop logits --model DIR --ids 3,1,4\n"
           "  --model  checkpoint directory (HF format: config.json + model.safetensors)\n"
           "  --ids    comma-separated token ids; prints one JSON row of logits per position\n";
    return 0;
  }
  auto dir = args.Require("model");
  auto ids_text = args.Require("ids");
  if (auto s = args.Finish(); !s.ok()) return Fail("logits", s, 2);
  if (!dir.ok()) return Fail("logits", dir.status(), 2);
  if (!ids_text.ok()) return Fail("logits", ids_text.status(), 2);
  auto ids = ParseIds(*ids_text);
  if (!ids.ok()) return Fail("logits", ids.status(), 2);
  auto model = engine::Model::Load(*dir);
  if (!model.ok()) {
    return Fail(
        "logits",
        absl::Status(model.status().code(), absl::StrCat("--model: ", model.status().message())),
        2);
  }
  if (auto s = CheckIds(*ids, (*model)->config().vocab_size); !s.ok()) return Fail("logits", s, 2);
  engine::Session session(model->get());
  auto logits = session.Append(*ids, /*all_logits=*/true);
  if (!logits.ok()) {
    return Fail("logits", logits.status(),
                logits.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1);
  }
  const int64_t V = (*model)->config().vocab_size;
  char buf[32];
  for (size_t t = 0; t < ids->size(); ++t) {
    std::fputc('[', stdout);
    for (int64_t v = 0; v < V; ++v) {
      const float x = (*logits)[t * V + v];
      const int n = std::isfinite(x) ? std::snprintf(buf, sizeof(buf), "%.9g", x)
                                     : std::snprintf(buf, sizeof(buf), "null");
      std::fwrite(buf, 1, n, stdout);
      if (v + 1 < V) std::fputc(',', stdout);
    }
    std::fputs("]\n", stdout);
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

TAPELOOP_REGISTER_COMMAND("logits",
                          "print a model's logits for token ids (one JSON row per position)",
                          RunLogits);

}  // namespace tapeloop::cli
