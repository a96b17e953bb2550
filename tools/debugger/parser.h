// Tokenizer and parser for the debugger's Python subset (indentation-sensitive, CPython 3.11
// grammar restricted to what docs/debugger.md lists).
#ifndef TAPELOOP_TOOLS_DEBUGGER_PARSER_H_
#define TAPELOOP_TOOLS_DEBUGGER_PARSER_H_

#include <memory>
#include <optional>
#include <string>

#include "tools/debugger/ast.h"

namespace tapeloop::debugger {

// A syntax error the way CPython reports it: `type` is "SyntaxError" or "IndentationError";
// `line` is 1-based; `col` / `end_col` are 0-based byte offsets of the caret range in that line;
// `show_caret` is false where CPython prints no caret line (e.g. "unexpected indent").
struct SyntaxErrorInfo {
  std::string type = "SyntaxError";
  std::string message;
  std::string filename;
  int line = 1;
  int col = 0;
  int end_col = 1;
  bool show_caret = true;
  std::string source_line;
};

struct ParseResult {
  std::unique_ptr<Module> module;        // set on success
  std::optional<SyntaxErrorInfo> error;  // set on failure
};

// Parses a whole file. Never fails in any other way than through `error`; constructs outside the
// supported subset are a SyntaxError naming the construct. Thread-safe (no shared state).
ParseResult ParseModule(const std::string& filename, const std::string& source);

// Parses a single expression (the debugger's `print EXPR`), with filename "<string>".
ParseResult ParseExpression(const std::string& source, std::unique_ptr<Expr>* out);

// CPython's display of a syntax error: '  File "f.py", line N' / the stripped source line /
// the caret line / "SyntaxError: message".
std::string FormatSyntaxError(const SyntaxErrorInfo& error);

}  // namespace tapeloop::debugger

#endif  // TAPELOOP_TOOLS_DEBUGGER_PARSER_H_
