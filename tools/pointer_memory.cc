#include "tools/pointer_memory.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tapeloop::tools {

using tokens::PointerOp;

PointerMemory::PointerMemory(std::vector<TokenId> input, PointerMemoryOptions options)
    : options_(options), memory_(std::move(input)) {
  options_.max_pointers = std::clamp(options_.max_pointers, 1, tokens::kMaxPointers);
  positions_.resize(options_.max_pointers);
}

std::optional<int64_t> PointerMemory::position(int pointer) const {
  if (pointer < 1 || pointer > options_.max_pointers) return std::nullopt;
  return positions_[pointer - 1];
}

absl::Status PointerMemory::CheckPointer(int pointer) const {
  if (pointer < 1 || pointer > options_.max_pointers) {
    return absl::InvalidArgumentError(absl::StrCat("pointer memory: unknown pointer ", pointer,
                                                   " (pointers are 1..",
                                                   options_.max_pointers, ")"));
  }
  if (pending_write_ != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pointer memory: a write on pointer ", pending_write_,
        " is pending; the next token must be the token to write"));
  }
  return absl::OkStatus();
}

absl::Status PointerMemory::Charge() {
  if (commands_ >= options_.max_commands) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "pointer memory: command budget exhausted (", options_.max_commands, " commands)"));
  }
  ++commands_;
  return absl::OkStatus();
}

absl::Status PointerMemory::Create(int pointer) {
  RETURN_IF_ERROR(CheckPointer(pointer));
  RETURN_IF_ERROR(Charge());
  positions_[pointer - 1] = 0;
  return absl::OkStatus();
}

absl::Status PointerMemory::Move(int pointer, int delta) {
  RETURN_IF_ERROR(CheckPointer(pointer));
  auto& pos = positions_[pointer - 1];
  if (!pos.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pointer memory: pointer ", pointer, " was never created ([P", pointer,
                     ".NEW] first)"));
  }
  const int64_t target = *pos + delta;
  const int64_t size = static_cast<int64_t>(memory_.size());
  if (target < -1 || target > size) {
    return absl::OutOfRangeError(absl::StrCat(
        "pointer memory: pointer ", pointer, " cannot move ", delta < 0 ? "left" : "right",
        " from position ", *pos, " (allowed -1..", size, " for ", size, " memory tokens)"));
  }
  RETURN_IF_ERROR(Charge());
  pos = target;
  return absl::OkStatus();
}

absl::StatusOr<TokenId> PointerMemory::Read(int pointer) {
  RETURN_IF_ERROR(CheckPointer(pointer));
  const auto& pos = positions_[pointer - 1];
  if (!pos.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pointer memory: pointer ", pointer, " was never created ([P", pointer,
                     ".NEW] first)"));
  }
  RETURN_IF_ERROR(Charge());
  if (*pos < 0 || *pos >= static_cast<int64_t>(memory_.size())) return tokens::kEnd;
  return memory_[*pos];
}

absl::Status PointerMemory::Write(int pointer, TokenId token) {
  RETURN_IF_ERROR(CheckPointer(pointer));
  const auto& pos = positions_[pointer - 1];
  if (!pos.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pointer memory: pointer ", pointer, " was never created"));
  }
  if (*pos < 0 || *pos >= static_cast<int64_t>(memory_.size())) {
    return absl::OutOfRangeError(absl::StrCat("pointer memory: pointer ", pointer,
                                              " at position ", *pos,
                                              " is past the end; nothing to write over"));
  }
  if (!tokens::IsValid(token) || tokens::IsPointerCommand(token)) {
    return absl::InvalidArgumentError(
        absl::StrCat("pointer memory: token ", token, " cannot be written to memory"));
  }
  RETURN_IF_ERROR(Charge());
  memory_[*pos] = token;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<TokenId>> PointerMemory::Command(TokenId command) {
  if (!tokens::IsPointerCommand(command)) {
    return absl::InvalidArgumentError(
        absl::StrCat("pointer memory: token ", command, " is not a pointer command"));
  }
  const int k = tokens::CommandPointer(command);
  switch (tokens::CommandOp(command)) {
    case PointerOp::kNew:
      RETURN_IF_ERROR(Create(k));
      return std::nullopt;
    case PointerOp::kLeft:
      RETURN_IF_ERROR(Move(k, -1));
      return std::nullopt;
    case PointerOp::kRight:
      RETURN_IF_ERROR(Move(k, +1));
      return std::nullopt;
    case PointerOp::kRead: {
      ASSIGN_OR_RETURN(TokenId observed, Read(k));
      return std::optional<TokenId>(observed);
    }
    case PointerOp::kWrite: {
      RETURN_IF_ERROR(CheckPointer(k));
      const auto& pos = positions_[k - 1];
      if (!pos.has_value()) {
        return absl::FailedPreconditionError(
            absl::StrCat("pointer memory: pointer ", k, " was never created"));
      }
      if (*pos < 0 || *pos >= static_cast<int64_t>(memory_.size())) {
        return absl::OutOfRangeError(absl::StrCat("pointer memory: pointer ", k,
                                                  " at position ", *pos,
                                                  " is past the end; nothing to write over"));
      }
      RETURN_IF_ERROR(Charge());
      pending_write_ = k;
      return std::nullopt;
    }
  }
  return absl::InternalError("pointer memory: unreachable");
}

absl::Status PointerMemory::Emit(TokenId token) {
  if (!tokens::IsValid(token) || tokens::IsPointerCommand(token)) {
    return absl::InvalidArgumentError(
        absl::StrCat("pointer memory: token ", token, " cannot be stored in memory"));
  }
  if (pending_write_ != 0) {
    const int k = pending_write_;
    memory_[*positions_[k - 1]] = token;
    pending_write_ = 0;
    return absl::OkStatus();
  }
  if (static_cast<int64_t>(memory_.size()) >= options_.max_memory_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "pointer memory: memory is full (", options_.max_memory_tokens, " tokens)"));
  }
  memory_.push_back(token);
  return absl::OkStatus();
}

PointerMemoryTool::PointerMemoryTool(std::vector<TokenId> input, PointerMemoryOptions options)
    : memory_(std::move(input), options) {
  definition_.name = kName;
  definition_.description =
      "A memory of tokens (the input, then every appended thought or output) with up to " +
      std::to_string(memory_.options().max_pointers) +
      " pointers. op new: create pointer at the first input token; left / right: move it by "
      "one token; read: the token under it ([END] past either end); write: overwrite the "
      "token under it with `text` (one token); append: add `text` to the end of memory.";
  definition_.input_schema = {
      {"type", "object"},
      {"properties",
       {{"op",
         {{"type", "string"},
          {"enum", {"new", "left", "right", "read", "write", "append"}},
          {"description", "the operation"}}},
        {"pointer",
         {{"type", "integer"},
          {"minimum", 1},
          {"maximum", memory_.options().max_pointers},
          {"description", "pointer number (not used by append)"}}},
        {"text",
         {{"type", "string"},
          {"description", "write: the one token to write; append: the text to append"}}}}},
      {"required", {"op"}},
      {"additionalProperties", false}};
}

ToolResult PointerMemoryTool::Call(const ToolCall& call) {
  const auto& args = call.arguments;
  if (!args.is_object() || !args.contains("op") || !args["op"].is_string()) {
    return ToolResult::Error(call.id, "pointer_memory: needs a string argument op");
  }
  const std::string op = args["op"].get<std::string>();
  auto error = [&](const absl::Status& s) { return ToolResult::Error(call.id, std::string(s.message())); };
  if (op == "append") {
    if (!args.contains("text") || !args["text"].is_string()) {
      return ToolResult::Error(call.id, "pointer_memory: append needs a string argument text");
    }
    for (TokenId t : tokenizer_.Encode(args["text"].get<std::string>())) {
      if (auto s = memory_.Emit(t); !s.ok()) return error(s);
    }
    return ToolResult::Ok(call.id, "ok",
                          nlohmann::json{{"memory_size", memory_.memory().size()}});
  }
  if (!args.contains("pointer") || !args["pointer"].is_number_integer()) {
    return ToolResult::Error(call.id,
                             absl::StrCat("pointer_memory: ", op, " needs an integer pointer"));
  }
  const int64_t p64 = args["pointer"].get<int64_t>();
  const int k = p64 < 0 || p64 > 1000 ? -1 : static_cast<int>(p64);
  absl::Status status;
  if (op == "new") {
    status = memory_.Create(k);
  } else if (op == "left") {
    status = memory_.Move(k, -1);
  } else if (op == "right") {
    status = memory_.Move(k, +1);
  } else if (op == "read") {
    auto token = memory_.Read(k);
    if (!token.ok()) return error(token.status());
    return ToolResult::Ok(call.id, tokenizer_.TokenText(*token),
                          nlohmann::json{{"token", *token}, {"position", *memory_.position(k)}});
  } else if (op == "write") {
    if (!args.contains("text") || !args["text"].is_string()) {
      return ToolResult::Error(call.id, "pointer_memory: write needs a string argument text");
    }
    auto ids = tokenizer_.Encode(args["text"].get<std::string>());
    if (ids.size() != 1) {
      return ToolResult::Error(call.id, absl::StrCat("pointer_memory: write takes exactly one "
                                                     "token, \"text\" encodes to ",
                                                     ids.size()));
    }
    status = memory_.Write(k, ids[0]);
  } else {
    return ToolResult::Error(call.id, absl::StrCat("pointer_memory: unknown op \"", op, "\""));
  }
  if (!status.ok()) return error(status);
  return ToolResult::Ok(call.id, "ok", nlohmann::json{{"position", *memory_.position(k)}});
}

}  // namespace tapeloop::tools
