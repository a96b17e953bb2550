// The tapeloop vocabulary: byte-level tokens plus single-token special commands.
//
// Version "tapeloop-tokens-v1" (docs/trajectory-format.md is the reference):
//   ids 0..255      the bytes 0x00..0xff (text is UTF-8, one token per byte)
//   256 [BOS]  257 [EOS]  258 [PAD]  259 [ANS]  260 [END]
//   261..280        pointer commands, 5 per pointer k = 1..4, in the order
//                   [Pk.NEW] [Pk.LEFT] [Pk.RIGHT] [Pk.READ] [Pk.WRITE]
//                   (id = 261 + 5 * (k - 1) + op)
//   281 [CALL] 282 [/CALL] 283 [OBS] 284 [/OBS]   text-tool delimiters
//   vocab size 285
//
// The ids are fixed by the version, so they are compile-time constants below; a tokenizer.json
// file only records which version a checkpoint was trained with, and Load() refuses any other.
//
// Thread safety: Tokenizer is an immutable value after construction; all methods are const
// and safe to call concurrently.
#ifndef TAPELOOP_COMMON_TOKENIZER_H_
#define TAPELOOP_COMMON_TOKENIZER_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tapeloop {

using TokenId = int32_t;

namespace tokens {

inline constexpr char kVersion[] = "tapeloop-tokens-v1";
inline constexpr int kByteTokens = 256;
inline constexpr int kMaxPointers = 4;

inline constexpr TokenId kBos = 256;
inline constexpr TokenId kEos = 257;
inline constexpr TokenId kPad = 258;
inline constexpr TokenId kAns = 259;
inline constexpr TokenId kEnd = 260;  // observation: a read past either end of memory
inline constexpr TokenId kFirstPointer = 261;

// Pointer operations; the numeric value is the offset inside a pointer's block of 5 ids.
enum class PointerOp : int { kNew = 0, kLeft = 1, kRight = 2, kRead = 3, kWrite = 4 };
inline constexpr int kPointerOps = 5;

inline constexpr TokenId kCall = kFirstPointer + kMaxPointers * kPointerOps;  // 281
inline constexpr TokenId kCallEnd = kCall + 1;                                  // 282
inline constexpr TokenId kObs = kCall + 2;                                      // 283
inline constexpr TokenId kObsEnd = kCall + 3;                                   // 284
inline constexpr int kVocabSize = kCall + 4;                                    // 285

// The id of "[P<pointer>.<OP>]". REQUIRES 1 <= pointer <= kMaxPointers.
constexpr TokenId PointerCommand(int pointer, PointerOp op) {
  return kFirstPointer + (pointer - 1) * kPointerOps + static_cast<int>(op);
}
// True for the 20 pointer-command ids.
constexpr bool IsPointerCommand(TokenId id) {
  return id >= kFirstPointer && id < kFirstPointer + kMaxPointers * kPointerOps;
}
// For a pointer-command id: its pointer (1-based) and operation. REQUIRES IsPointerCommand(id).
constexpr int CommandPointer(TokenId id) { return (id - kFirstPointer) / kPointerOps + 1; }
constexpr PointerOp CommandOp(TokenId id) {
  return static_cast<PointerOp>((id - kFirstPointer) % kPointerOps);
}
constexpr bool IsByte(TokenId id) { return id >= 0 && id < kByteTokens; }
constexpr bool IsDigit(TokenId id) { return id >= '0' && id <= '9'; }
constexpr bool IsValid(TokenId id) { return id >= 0 && id < kVocabSize; }

}  // namespace tokens

class Tokenizer {
 public:
  // The v1 vocabulary (the only one that exists so far).
  Tokenizer();

  // Reads a tokenizer.json written by Save(). Fails with NOT_FOUND if the file cannot be read
  // and INVALID_ARGUMENT (naming the offending field) if it is not valid JSON, names another
  // version, or lists special tokens other than v1's, in v1's order.
  static absl::StatusOr<Tokenizer> Load(const std::string& path);
  // The same checks on the JSON text itself.
  static absl::StatusOr<Tokenizer> FromJson(const std::string& text);

  // Writes {"version", "byte_tokens", "vocab_size", "special_tokens": [...]} to `path`.
  // Fails with INTERNAL if the file cannot be written.
  absl::Status Save(const std::string& path) const;
  std::string ToJson() const;

  // Text -> ids: every exact special-token spelling ("[ANS]", "[P2.READ]") becomes that one
  // token; every other byte becomes its byte token. Never fails.
  std::vector<TokenId> Encode(std::string_view text) const;

  // Ids -> text: bytes as themselves, special tokens as their spelling. Fails with
  // INVALID_ARGUMENT naming the first id outside [0, vocab_size).
  absl::StatusOr<std::string> Decode(std::span<const TokenId> ids) const;

  // The spelling of one token: a special token's name, or the byte itself (printable or not).
  // An invalid id gives "<invalid:ID>".
  std::string TokenText(TokenId id) const;

  // The id of a special-token spelling, or nullopt if `spelling` is not one.
  std::optional<TokenId> FindSpecial(std::string_view spelling) const;

  int vocab_size() const { return tokens::kVocabSize; }
  // All special-token spellings, index i being id 256 + i.
  const std::vector<std::string>& special_tokens() const { return specials_; }

 private:
  std::vector<std::string> specials_;
};

}  // namespace tapeloop

#endif  // TAPELOOP_COMMON_TOKENIZER_H_
