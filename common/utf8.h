// UTF-8 checks for text that crosses the API (proto3 `string` fields must hold UTF-8; a model,
// a pointer read or a program under debugging can produce any bytes).
//
// Validation is strict, as protobuf's: no overlong forms, no surrogates (U+D800..U+DFFF), nothing
// above U+10FFFF, no truncated sequences.
#ifndef TAPELOOP_COMMON_UTF8_H_
#define TAPELOOP_COMMON_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace tapeloop {

// Length (1-4) of the valid UTF-8 sequence starting at s[i] (i < s.size()), or 0.
size_t Utf8SequenceLength(std::string_view s, size_t i);

// Offset of the first byte that does not start a valid sequence, or std::string::npos.
size_t InvalidUtf8At(std::string_view s);

inline bool IsValidUtf8(std::string_view s) { return InvalidUtf8At(s) == std::string::npos; }

// `s` with every byte that does not start a valid sequence replaced by U+FFFD.
std::string SanitizeUtf8(std::string_view s);

}  // namespace tapeloop

#endif  // TAPELOOP_COMMON_UTF8_H_
