// Pointer memory, as in the paper (docs/trajectory-format.md is the reference):
// - memory starts as the input tokens (the prompt without [BOS]);
// - every generated thought / [ANS] / output token is appended (Emit); commands and
//   observations never are;
// - up to max_pointers pointers, created by [Pk.NEW] at the first input token (position 0);
//   [Pk.LEFT] / [Pk.RIGHT] move by one token, to at most one position past either end;
// - [Pk.READ] is answered by exactly one observation token: the token under pointer k, or
//   [END] past either end;
// - [Pk.WRITE] (optional Turing-tape write): the next emitted token overwrites the cell under
//   pointer k instead of being appended.
//
// PointerMemory is the token-level core the agent loop and the expert trajectories drive;
// PointerMemoryTool wraps one for JSON tool calls (the environment API). Both are bounded in
// memory tokens and commands; a bad command is an error and leaves the state unchanged.
// Not thread-safe.
#ifndef TAPELOOP_TOOLS_POINTER_MEMORY_H_
#define TAPELOOP_TOOLS_POINTER_MEMORY_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tokenizer.h"
#include "tools/tool.h"

namespace tapeloop::tools {

struct PointerMemoryOptions {
  int max_pointers = tokens::kMaxPointers;  // 1..4 (the vocabulary has 4 pointers)
  int64_t max_memory_tokens = int64_t{1} << 24;
  int64_t max_commands = int64_t{1} << 32;
};

class PointerMemory {
 public:
  // `input`: the initial memory (the prompt's tokens without [BOS]).
  explicit PointerMemory(std::vector<TokenId> input, PointerMemoryOptions options = {});
  PointerMemory(const PointerMemory&) = delete;
  PointerMemory& operator=(const PointerMemory&) = delete;

  // Runs a pointer-command token. Returns the observation token for [Pk.READ], nullopt for
  // the other commands. Errors (state unchanged): INVALID_ARGUMENT for a token that is not a
  // command or a pointer above max_pointers; FAILED_PRECONDITION for a pointer never created
  // or a command while a write is pending; OUT_OF_RANGE for a move further than one position
  // past either end or a write past the ends; RESOURCE_EXHAUSTED past max_commands.
  absl::StatusOr<std::optional<TokenId>> Command(TokenId command);

  // A generated non-command token: overwrites the cell of a pending [Pk.WRITE], else appends.
  // INVALID_ARGUMENT for an invalid id or a command token; RESOURCE_EXHAUSTED if memory is
  // full.
  absl::Status Emit(TokenId token);

  // The same operations addressed by pointer number (1-based), for the JSON tool.
  absl::Status Create(int pointer);
  absl::Status Move(int pointer, int delta);
  absl::StatusOr<TokenId> Read(int pointer);
  absl::Status Write(int pointer, TokenId token);

  const std::vector<TokenId>& memory() const { return memory_; }
  // Position of pointer k (1-based), or nullopt if it was never created.
  std::optional<int64_t> position(int pointer) const;
  bool write_pending() const { return pending_write_ != 0; }
  int64_t commands() const { return commands_; }
  const PointerMemoryOptions& options() const { return options_; }

 private:
  absl::Status CheckPointer(int pointer) const;
  absl::Status Charge();

  PointerMemoryOptions options_;
  std::vector<TokenId> memory_;
  std::vector<std::optional<int64_t>> positions_;  // index k-1
  int pending_write_ = 0;                          // pointer of a pending write, 0 if none
  int64_t commands_ = 0;
};

// JSON tool over one PointerMemory (one episode):
//   {"op": "new"|"left"|"right"|"read"|"write"|"append", "pointer": 1..K, "text": "..."}
// "pointer" is required except for append; "text" is the token to write (one token, e.g. "7"
// or "[ANS]") for write and the thought/output text to append for append. A read answers the
// token's spelling as text and {"token": id, "position": p} as structured JSON.
class PointerMemoryTool final : public Tool {
 public:
  static constexpr char kName[] = "pointer_memory";

  PointerMemoryTool(std::vector<TokenId> input, PointerMemoryOptions options = {});

  const ToolDefinition& definition() const override { return definition_; }
  ToolResult Call(const ToolCall& call) override;

  PointerMemory& memory() { return memory_; }

 private:
  PointerMemory memory_;
  Tokenizer tokenizer_;
  ToolDefinition definition_;
};

}  // namespace tapeloop::tools

#endif  // TAPELOOP_TOOLS_POINTER_MEMORY_H_
