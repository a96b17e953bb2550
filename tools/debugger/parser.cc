#include "tools/debugger/parser.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <utility>
#include <vector>

namespace tapeloop::debugger {
namespace {

constexpr int kMaxNesting = 200;  // CPython's parser refuses deeper nesting, too
// Bound on the depth of an expression tree (nesting plus chained operators such as
// `1 + 1 + ...`), so that parsing, evaluating and freeing it never exhausts a thread's stack.
constexpr int kMaxExprDepth = 1000;

enum class Tok { kName, kNumber, kString, kOp, kNewline, kIndent, kDedent, kEnd };

struct Token {
  Tok type;
  std::string text;  // kString: the decoded value
  int line;
  int col;
  int end_line;
  int end_col;
};

const std::set<std::string>& Keywords() {
  static const auto* keywords = new std::set<std::string>{
      "False", "None",     "True",  "and",    "as",   "assert", "async",  "await",    "break",
      "class", "continue", "def",   "del",    "elif", "else",   "except", "finally",  "for",
      "from",  "global",   "if",    "import", "in",   "is",     "lambda", "nonlocal", "not",
      "or",    "pass",     "raise", "return", "try",  "while",  "with",   "yield"};
  return *keywords;
}

struct SyntaxFailure {
  SyntaxErrorInfo info;
};

class Lexer {
 public:
  explicit Lexer(const std::vector<std::string>& lines) : lines_(lines) {}

  // Set when the file ended inside parentheses.
  const std::optional<SyntaxErrorInfo>& unclosed() const { return unclosed_; }

  // Returns false and fills `error` on failure.
  bool Run(std::vector<Token>* out, SyntaxErrorInfo* error) {
    std::vector<int> indents = {0};
    std::vector<Token> parens;
    int last_line = 0;
    for (size_t li = 0; li < lines_.size(); ++li) {
      const std::string& s = lines_[li];
      int line = static_cast<int>(li) + 1;
      size_t i = 0;
      if (parens.empty()) {
        int width = 0;
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\f')) {
          width = s[i] == '\t' ? (width / 8 + 1) * 8 : width + 1;
          ++i;
        }
        if (i == s.size() || s[i] == '#' || s[i] == '\r') continue;  // blank line
        if (width > indents.back()) {
          // Like CPython's tokenizer: always an INDENT; the parser reports one it did not
          // expect ("unexpected indent") unless an earlier error comes first.
          indents.push_back(width);
          out->push_back({Tok::kIndent, "", line, 0, line, static_cast<int>(i)});
        } else {
          while (width < indents.back()) {
            indents.pop_back();
            out->push_back(
                {Tok::kDedent, "", line, static_cast<int>(i), line, static_cast<int>(i)});
          }
          if (width != indents.back()) {
            *error =
                Error("IndentationError", "unindent does not match any outer indentation level",
                      line, static_cast<int>(s.size()), static_cast<int>(s.size()) + 1);
            return false;
          }
        }
      }
      while (i < s.size()) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\f' || c == '\r') {
          ++i;
          continue;
        }
        if (c == '#') break;
        int col = static_cast<int>(i);
        if (c == '\\' && i + 1 == s.size()) {
          goto next_line_joined;
        }
        if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
          size_t j = i;
          while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_'))
            ++j;
          if (j < s.size() && (s[j] == '\'' || s[j] == '"') && j - i <= 2) {
            *error = Error("SyntaxError",
                           "string prefixes are not supported by the tapeloop interpreter", line,
                           col, static_cast<int>(j) + 1);
            return false;
          }
          out->push_back({Tok::kName, s.substr(i, j - i), line, col, line, static_cast<int>(j)});
          i = j;
          continue;
        }
        if (std::isdigit(static_cast<unsigned char>(c))) {
          size_t j = i;
          while (j < s.size() &&
                 (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_' || s[j] == '.'))
            ++j;
          std::string text = s.substr(i, j - i);
          bool ok = std::all_of(text.begin(), text.end(),
                                [](char d) { return std::isdigit(static_cast<unsigned char>(d)); });
          if (!ok) {
            *error = Error("SyntaxError",
                           "only decimal integer literals are supported by the tapeloop "
                           "interpreter",
                           line, col, static_cast<int>(j));
            return false;
          }
          if (text.size() > 1 && text[0] == '0' &&
              text.find_first_not_of('0') != std::string::npos) {
            *error = Error("SyntaxError",
                           "leading zeros in decimal integer literals are not permitted; use an "
                           "0o prefix for octal integers",
                           line, col, static_cast<int>(j));
            return false;
          }
          out->push_back({Tok::kNumber, text, line, col, line, static_cast<int>(j)});
          i = j;
          continue;
        }
        if (c == '\'' || c == '"') {
          if (i + 2 < s.size() && s[i + 1] == c && s[i + 2] == c) {
            *error = Error("SyntaxError",
                           "triple-quoted strings are not supported by the tapeloop interpreter",
                           line, col, col + 3);
            return false;
          }
          std::string value;
          size_t j = i + 1;
          bool closed = false;
          while (j < s.size()) {
            char d = s[j];
            if (d == c) {
              closed = true;
              ++j;
              break;
            }
            if (d == '\\' && j + 1 < s.size()) {
              char e = s[j + 1];
              switch (e) {
                case 'n':
                  value += '\n';
                  break;
                case 't':
                  value += '\t';
                  break;
                case 'r':
                  value += '\r';
                  break;
                case '0':
                  value += '\0';
                  break;
                case '\\':
                  value += '\\';
                  break;
                case '\'':
                  value += '\'';
                  break;
                case '"':
                  value += '"';
                  break;
                default:
                  value += '\\';
                  value += e;
                  break;
              }
              j += 2;
              continue;
            }
            value += d;
            ++j;
          }
          if (!closed) {
            *error =
                Error("SyntaxError",
                      "unterminated string literal (detected at line " + std::to_string(line) + ")",
                      line, col, col + 1);
            return false;
          }
          out->push_back({Tok::kString, value, line, col, line, static_cast<int>(j)});
          i = j;
          continue;
        }
        // Operators, longest first.
        static const char* kOps[] = {
            "**=", "//=", "==", "!=", "<=", ">=", "+=", "-=", "*=", "%=", "/=", "//", "**",
            "->",  "+",   "-",  "*",  "/",  "%",  "<",  ">",  "=",  "(",  ")",  "[",  "]",
            "{",   "}",   ",",  ":",  ".",  ";",  "@",  "&",  "|",  "^",  "~",  "!"};
        std::string op;
        for (const char* candidate : kOps) {
          size_t n = std::char_traits<char>::length(candidate);
          if (s.compare(i, n, candidate) == 0) {
            op = candidate;
            break;
          }
        }
        if (op.empty()) {
          unsigned char uc = static_cast<unsigned char>(c);
          std::string shown = uc < 0x80 ? std::string(1, c) : "\\x" + std::to_string(uc);
          *error = Error("SyntaxError", "invalid character '" + shown + "'", line, col, col + 1);
          return false;
        }
        Token tok{Tok::kOp, op, line, col, line, col + static_cast<int>(op.size())};
        if (op == "(" || op == "[" || op == "{") {
          parens.push_back(tok);
          if (parens.size() > kMaxNesting) {
            *error = Error("SyntaxError", "too many nested parentheses", line, col, col + 1);
            return false;
          }
        } else if (op == ")" || op == "]" || op == "}") {
          if (parens.empty()) {
            *error = Error("SyntaxError", "unmatched '" + op + "'", line, col, col + 1);
            return false;
          }
          std::string open = parens.back().text;
          std::string want = open == "(" ? ")" : open == "[" ? "]" : "}";
          if (op != want) {
            if (parens.back().line == line) {
              *error = Error("SyntaxError",
                             "closing parenthesis '" + op +
                                 "' does not match opening parenthesis '" + open + "'",
                             line, col, col + 1);
            } else {
              *error =
                  Error("SyntaxError",
                        "closing parenthesis '" + op + "' does not match opening parenthesis '" +
                            open + "' on line " + std::to_string(parens.back().line),
                        line, col, col + 1);
            }
            return false;
          }
          parens.pop_back();
        }
        out->push_back(tok);
        i += op.size();
      }
      if (parens.empty() && !out->empty() && out->back().type != Tok::kNewline &&
          out->back().type != Tok::kIndent && out->back().type != Tok::kDedent) {
        // The NEWLINE token sits where the line's code ends (before a comment).
        int at = out->back().end_col;
        out->push_back({Tok::kNewline, "", line, at, line, at + 1});
      }
      last_line = line;
      continue;
    next_line_joined:
      last_line = line;
      continue;
    }
    if (!parens.empty()) {
      // The parser fails on the truncated statement; this error then replaces its own (as
      // CPython's full-source tokenizer check does).
      const Token& open = parens.back();
      unclosed_ = Error("SyntaxError", "'" + open.text + "' was never closed", open.line, open.col,
                        open.col + 1);
    }
    int end_line = std::max<int>(last_line, static_cast<int>(lines_.size())) + 1;
    if (!out->empty() && out->back().type != Tok::kNewline && out->back().type != Tok::kDedent) {
      out->push_back({Tok::kNewline, "", last_line, 0, last_line, 0});
    }
    while (indents.size() > 1) {
      indents.pop_back();
      out->push_back({Tok::kDedent, "", end_line, 0, end_line, 0});
    }
    out->push_back({Tok::kEnd, "", end_line, 0, end_line, 0});
    return true;
  }

  SyntaxErrorInfo Error(const std::string& type, const std::string& message, int line, int col,
                        int end_col) const {
    return MakeError(type, message, line, col, end_col);
  }
  SyntaxErrorInfo MakeError(const std::string& type, const std::string& message, int line, int col,
                            int end_col) const {
    SyntaxErrorInfo e;
    e.type = type;
    e.message = message;
    e.line = line;
    e.col = col;
    e.end_col = end_col;
    if (line >= 1 && line <= static_cast<int>(lines_.size())) e.source_line = lines_[line - 1];
    return e;
  }

 private:
  const std::vector<std::string>& lines_;
  std::optional<SyntaxErrorInfo> unclosed_;
};

SourceRange Span(const SourceRange& a, const SourceRange& b) {
  return SourceRange{a.line, a.col, b.end_line, b.end_col};
}

std::unique_ptr<Expr> MakeExpr(ExprKind kind, SourceRange range) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->range = range;
  e->outer = range;
  return e;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::vector<std::string>& lines)
      : toks_(std::move(tokens)), lines_(lines) {}

  bool ParseFile(Block* body, SyntaxErrorInfo* error) {
    while (Peek().type != Tok::kEnd) {
      if (Peek().type == Tok::kNewline) {
        ++pos_;
        continue;
      }
      if (!ParseStatement(body)) break;
    }
    if (failed_) *error = error_;
    return !failed_;
  }

  bool ParseSingleExpression(std::unique_ptr<Expr>* out, SyntaxErrorInfo* error) {
    auto e = ParseExpr();
    if (!failed_) {
      while (Peek().type == Tok::kNewline) ++pos_;
      if (Peek().type != Tok::kEnd) Fail("invalid syntax", Peek());
    }
    if (failed_) {
      *error = error_;
      return false;
    }
    *out = std::move(e);
    return true;
  }

 private:
  const Token& Peek(int ahead = 0) const {
    size_t i = std::min(pos_ + ahead, toks_.size() - 1);
    return toks_[i];
  }
  const Token& Prev() const { return toks_[pos_ == 0 ? 0 : pos_ - 1]; }
  bool IsOp(const char* op, int ahead = 0) const {
    return Peek(ahead).type == Tok::kOp && Peek(ahead).text == op;
  }
  bool IsKeyword(const char* kw, int ahead = 0) const {
    return Peek(ahead).type == Tok::kName && Peek(ahead).text == kw;
  }
  bool AcceptOp(const char* op) {
    if (!IsOp(op)) return false;
    ++pos_;
    return true;
  }
  bool AcceptKeyword(const char* kw) {
    if (!IsKeyword(kw)) return false;
    ++pos_;
    return true;
  }

  void Fail(const std::string& message, const Token& at, const char* type = "SyntaxError",
            bool caret = true) {
    if (failed_) return;
    failed_ = true;
    error_.type = type;
    error_.message = message;
    error_.line = at.line;
    error_.col = at.col;
    error_.end_col = std::max(at.end_col, at.col + 1);
    if (at.type == Tok::kNewline || at.type == Tok::kEnd || at.type == Tok::kDedent)
      error_.end_col = at.col + 1;
    error_.show_caret = caret;
    if (at.line >= 1 && at.line <= static_cast<int>(lines_.size()))
      error_.source_line = lines_[at.line - 1];
  }
  void FailAt(const std::string& message, int line, int col) {
    Token t{Tok::kOp, "", line, col, line, col + 1};
    Fail(message, t);
  }

  void ExpectColon() {
    if (AcceptOp(":")) return;
    const Token& prev = Prev();
    FailAt("expected ':'", prev.end_line, prev.end_col);
  }

  // Parses the block after a compound statement header; `what` names the header the way
  // CPython's "expected an indented block after ..." message does.
  bool ParseBlock(Block* body, const std::string& what, int header_line) {
    ExpectColon();
    if (failed_) return false;
    if (Peek().type != Tok::kNewline) {
      return ParseSimpleStatements(body);
    }
    ++pos_;
    if (Peek().type != Tok::kIndent) {
      const Token& t = Peek();
      Token at = t;
      if (t.type == Tok::kDedent || t.type == Tok::kEnd) {
        // The next statement starts at a lower indentation: point at it.
        at.col = t.col;
        at.end_col = t.col + 1;
      }
      if (t.type == Tok::kEnd) {
        at.line = t.line;
      }
      Fail("expected an indented block after " + what + " on line " + std::to_string(header_line),
           at, "IndentationError");
      error_.end_col = error_.col + 1;
      return false;
    }
    ++pos_;
    while (Peek().type != Tok::kDedent && Peek().type != Tok::kEnd) {
      if (Peek().type == Tok::kNewline) {
        ++pos_;
        continue;
      }
      if (!ParseStatement(body)) return false;
    }
    if (Peek().type == Tok::kDedent) ++pos_;
    return !failed_;
  }

  bool ParseStatement(Block* body) {
    if (++depth_ > kMaxNesting) {
      Fail("too many statically nested blocks", Peek());
      return false;
    }
    bool ok = ParseStatementInner(body);
    --depth_;
    return ok && !failed_;
  }

  bool ParseStatementInner(Block* body) {
    const Token& t = Peek();
    if (t.type == Tok::kIndent) {
      Fail("unexpected indent", t, "IndentationError", false);
      return false;
    }
    if (t.type == Tok::kName) {
      if (t.text == "if") return ParseIf(body, "'if' statement");
      if (t.text == "while") return ParseWhile(body);
      if (t.text == "for") return ParseFor(body);
      if (t.text == "def") return ParseDef(body);
      static const std::set<std::string> kUnsupported = {
          "class", "try",    "with",  "lambda",   "yield",  "async",  "await",
          "del",   "assert", "raise", "nonlocal", "except", "finally"};
      if (kUnsupported.count(t.text)) {
        Fail("'" + t.text + "' is not supported by the tapeloop interpreter", t);
        return false;
      }
      if (t.text == "else" || t.text == "elif") {
        Fail("invalid syntax", t);
        return false;
      }
    }
    return ParseSimpleStatements(body);
  }

  bool ParseSimpleStatements(Block* body) {
    while (true) {
      auto stmt = ParseSmallStatement();
      if (failed_) return false;
      body->push_back(std::move(stmt));
      if (AcceptOp(";")) {
        if (Peek().type == Tok::kNewline) break;
        continue;
      }
      break;
    }
    if (Peek().type != Tok::kNewline) {
      Fail("invalid syntax", Peek());
      return false;
    }
    ++pos_;
    return true;
  }

  std::unique_ptr<Stmt> NewStmt(StmtKind kind, const Token& first) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->range = SourceRange{first.line, first.col, first.end_line, first.end_col};
    return s;
  }
  void EndStmt(Stmt* s) {
    const Token& prev = Prev();
    s->range.end_line = prev.end_line;
    s->range.end_col = prev.end_col;
  }

  bool IsSimpleStart() const {
    const Token& t = Peek();
    return !(t.type == Tok::kNewline || t.type == Tok::kEnd || IsOp(";"));
  }

  std::unique_ptr<Stmt> ParseSmallStatement() {
    const Token first = Peek();
    if (first.type == Tok::kName) {
      if (first.text == "pass" || first.text == "break" || first.text == "continue") {
        ++pos_;
        auto s = NewStmt(first.text == "pass"    ? StmtKind::kPass
                         : first.text == "break" ? StmtKind::kBreak
                                                 : StmtKind::kContinue,
                         first);
        return s;
      }
      if (first.text == "return") {
        ++pos_;
        auto s = NewStmt(StmtKind::kReturn, first);
        if (IsSimpleStart()) s->exprs.push_back(ParseExpr());
        EndStmt(s.get());
        return s;
      }
      if (first.text == "global") {
        ++pos_;
        auto s = NewStmt(StmtKind::kGlobal, first);
        do {
          if (Peek().type != Tok::kName || Keywords().count(Peek().text)) {
            Fail("invalid syntax", Peek());
            return s;
          }
          s->names.push_back(Peek().text);
          ++pos_;
        } while (AcceptOp(","));
        EndStmt(s.get());
        return s;
      }
      if (first.text == "import") {
        ++pos_;
        auto s = NewStmt(StmtKind::kImport, first);
        do {
          std::string name = ParseDottedName();
          if (failed_) return s;
          std::string as = name;
          if (AcceptKeyword("as")) as = ParseIdentifier();
          s->names.push_back(name);
          s->as_names.push_back(as);
        } while (AcceptOp(","));
        EndStmt(s.get());
        return s;
      }
      if (first.text == "from") {
        ++pos_;
        auto s = NewStmt(StmtKind::kFromImport, first);
        s->module = ParseDottedName();
        if (failed_) return s;
        if (!AcceptKeyword("import")) {
          Fail("invalid syntax", Peek());
          return s;
        }
        bool paren = AcceptOp("(");
        if (IsOp("*")) {
          Fail("'from ... import *' is not supported by the tapeloop interpreter", Peek());
          return s;
        }
        do {
          if (paren && IsOp(")")) break;
          std::string name = ParseIdentifier();
          if (failed_) return s;
          std::string as = name;
          if (AcceptKeyword("as")) as = ParseIdentifier();
          s->names.push_back(name);
          s->as_names.push_back(as);
        } while (AcceptOp(","));
        if (paren && !AcceptOp(")")) {
          Fail("invalid syntax", Peek());
          return s;
        }
        EndStmt(s.get());
        return s;
      }
    }
    // Expression statement, assignment or augmented assignment.
    auto first_expr = ParseExpr();
    if (failed_) return nullptr;
    static const std::set<std::string> kAug = {"+=", "-=", "*=", "//=", "%=", "/=", "**="};
    if (Peek().type == Tok::kOp && kAug.count(Peek().text)) {
      std::string op = Peek().text;
      CheckTarget(*first_expr, true);
      ++pos_;
      auto s = NewStmt(StmtKind::kAugAssign, first);
      s->op = op.substr(0, op.size() - 1);
      s->exprs.push_back(std::move(first_expr));
      s->exprs.push_back(ParseExpr());
      EndStmt(s.get());
      return s;
    }
    if (IsOp("=")) {
      auto s = NewStmt(StmtKind::kAssign, first);
      s->exprs.push_back(std::move(first_expr));
      while (AcceptOp("=")) {
        s->exprs.push_back(ParseExpr());
        if (failed_) return s;
      }
      for (size_t i = 0; i + 1 < s->exprs.size(); ++i) CheckTarget(*s->exprs[i], false);
      EndStmt(s.get());
      return s;
    }
    if (IsOp(",")) {
      Fail("tuples are not supported by the tapeloop interpreter", Peek());
      return nullptr;
    }
    auto s = NewStmt(StmtKind::kExpr, first);
    s->exprs.push_back(std::move(first_expr));
    EndStmt(s.get());
    return s;
  }

  void CheckTarget(const Expr& e, bool augmented) {
    if (e.kind == ExprKind::kName || e.kind == ExprKind::kSubscript) {
      if (e.kind == ExprKind::kSubscript && e.is_slice) {
        FailAt("slice assignment is not supported by the tapeloop interpreter", e.range.line,
               e.range.col);
      }
      return;
    }
    std::string what;
    switch (e.kind) {
      case ExprKind::kCall:
        what = "function call";
        break;
      case ExprKind::kInt:
      case ExprKind::kStr:
      case ExprKind::kTrue:
      case ExprKind::kFalse:
      case ExprKind::kNone:
        what = "literal";
        break;
      case ExprKind::kAttribute:
        FailAt("attribute assignment is not supported by the tapeloop interpreter", e.range.line,
               e.range.col);
        return;
      default:
        what = "expression";
        break;
    }
    if (augmented) {
      FailAt("'" + what + "' is an illegal expression for augmented assignment", e.range.line,
             e.range.col);
    } else {
      FailAt("cannot assign to " + what + " here. Maybe you meant '==' instead of '='?",
             e.range.line, e.range.col);
    }
    error_.end_col = e.range.end_line == e.range.line ? e.range.end_col : error_.col + 1;
  }

  std::string ParseIdentifier() {
    const Token& t = Peek();
    if (t.type != Tok::kName || Keywords().count(t.text)) {
      Fail("invalid syntax", t);
      return "";
    }
    ++pos_;
    return t.text;
  }

  std::string ParseDottedName() {
    std::string name = ParseIdentifier();
    while (!failed_ && AcceptOp(".")) name += "." + ParseIdentifier();
    return name;
  }

  bool ParseIf(Block* body, const std::string& what) {
    const Token first = Peek();
    ++pos_;
    auto s = NewStmt(StmtKind::kIf, first);
    s->exprs.push_back(ParseNamedTest());
    if (failed_) return false;
    if (!ParseBlock(&s->body, what, first.line)) return false;
    if (IsKeyword("elif")) {
      if (!ParseIf(&s->orelse, "'elif' statement")) return false;
    } else if (IsKeyword("else")) {
      int line = Peek().line;
      ++pos_;
      if (!ParseBlock(&s->orelse, "'else' statement", line)) return false;
    }
    EndBlockStmt(s.get());
    body->push_back(std::move(s));
    return true;
  }

  void EndBlockStmt(Stmt* s) {
    // A compound statement ends where its last child ends.
    const Block* last = !s->orelse.empty() ? &s->orelse : &s->body;
    if (!last->empty()) {
      s->range.end_line = last->back()->range.end_line;
      s->range.end_col = last->back()->range.end_col;
    }
  }

  std::unique_ptr<Expr> ParseNamedTest() {
    auto e = ParseExpr();
    if (!failed_ && IsOp("=")) {
      Fail("invalid syntax. Maybe you meant '==' or ':=' instead of '='?", Peek());
    }
    return e;
  }

  bool ParseWhile(Block* body) {
    const Token first = Peek();
    ++pos_;
    auto s = NewStmt(StmtKind::kWhile, first);
    s->exprs.push_back(ParseNamedTest());
    if (failed_) return false;
    return ParseLoopBody(body, std::move(s), "'while' statement", first.line);
  }

  bool ParseFor(Block* body) {
    const Token first = Peek();
    ++pos_;
    auto s = NewStmt(StmtKind::kFor, first);
    const Token name = Peek();
    if (name.type != Tok::kName || Keywords().count(name.text)) {
      Fail("invalid syntax", name);
      return false;
    }
    ++pos_;
    auto target =
        MakeExpr(ExprKind::kName, SourceRange{name.line, name.col, name.end_line, name.end_col});
    target->name = name.text;
    if (IsOp(",")) {
      Fail("tuples are not supported by the tapeloop interpreter", Peek());
      return false;
    }
    if (!AcceptKeyword("in")) {
      Fail("invalid syntax", Peek());
      return false;
    }
    s->exprs.push_back(std::move(target));
    s->exprs.push_back(ParseExpr());
    if (failed_) return false;
    return ParseLoopBody(body, std::move(s), "'for' statement", first.line);
  }

  // The body of a while / for loop and its optional else block; appends the loop to `body`.
  bool ParseLoopBody(Block* body, std::unique_ptr<Stmt> s, const char* what, int line) {
    if (!ParseBlock(&s->body, what, line)) return false;
    if (IsKeyword("else")) {
      int else_line = Peek().line;
      ++pos_;
      if (!ParseBlock(&s->orelse, "'else' statement", else_line)) return false;
    }
    EndBlockStmt(s.get());
    body->push_back(std::move(s));
    return true;
  }

  bool ParseDef(Block* body) {
    const Token first = Peek();
    ++pos_;
    auto s = NewStmt(StmtKind::kDef, first);
    auto def = std::make_unique<FunctionDef>();
    def->line = first.line;
    def->name = ParseIdentifier();
    if (failed_) return false;
    if (!IsOp("(")) {
      Fail("invalid syntax", Peek());
      return false;
    }
    ++pos_;
    std::set<std::string> seen;
    std::optional<Token> duplicate;  // reported after the list parses, as CPython's symtable does
    while (!IsOp(")")) {
      const Token p = Peek();
      if (IsOp("*") || IsOp("**") || IsOp("/")) {
        Fail("'*' and '/' parameters are not supported by the tapeloop interpreter", p);
        return false;
      }
      std::string param = ParseIdentifier();
      if (failed_) return false;
      if (!seen.insert(param).second && !duplicate) duplicate = p;
      def->params.push_back(param);
      if (AcceptOp("=")) {
        def->defaults.push_back(ParseExpr());
        if (failed_) return false;
      } else if (!def->defaults.empty()) {
        Fail("non-default argument follows default argument", p);
        return false;
      }
      if (IsOp(":")) {
        Fail("annotations are not supported by the tapeloop interpreter", Peek());
        return false;
      }
      if (!AcceptOp(",")) break;
    }
    if (!AcceptOp(")")) {
      Fail("invalid syntax", Peek());
      return false;
    }
    if (duplicate) {
      Fail("duplicate argument '" + duplicate->text + "' in function definition", *duplicate);
      return false;
    }
    if (IsOp("->")) {
      Fail("annotations are not supported by the tapeloop interpreter", Peek());
      return false;
    }
    if (!ParseBlock(&def->body, "function definition", first.line)) return false;
    ComputeVarnames(def.get());
    s->def = std::move(def);
    s->range.end_line = s->def->body.back()->range.end_line;
    s->range.end_col = s->def->body.back()->range.end_col;
    body->push_back(std::move(s));
    return true;
  }

  // ---- expressions ----

  // Counts one more level of expression depth; fails past kMaxExprDepth. Callers undo their
  // levels with `expr_depth_ -= n` when done.
  bool Deeper() {
    if (++expr_depth_ <= kMaxExprDepth) return true;
    Fail("expression too deeply nested or too long for the tapeloop interpreter", Peek());
    return false;
  }

  std::unique_ptr<Expr> ParseExpr() {
    if (++expr_depth_ > kMaxExprDepth) {
      Fail("too many nested expressions", Peek());
      --expr_depth_;
      return MakeExpr(ExprKind::kNone, {});
    }
    auto e = ParseIfExp();
    --expr_depth_;
    return e;
  }

  std::unique_ptr<Expr> ParseIfExp() {
    auto body = ParseOr();
    if (failed_ || !IsKeyword("if")) return body;
    ++pos_;
    auto test = ParseOr();
    if (failed_) return body;
    if (!AcceptKeyword("else")) {
      Fail("expected 'else' after 'if' expression", Peek());
      return body;
    }
    auto orelse = ParseExpr();
    if (failed_) return body;
    auto e = MakeExpr(ExprKind::kIfExp, Span(body->outer, orelse->outer));
    e->children.push_back(std::move(test));
    e->children.push_back(std::move(body));
    e->children.push_back(std::move(orelse));
    return e;
  }

  std::unique_ptr<Expr> ParseOr() { return ParseBoolOp("or", &Parser::ParseAnd); }
  std::unique_ptr<Expr> ParseAnd() { return ParseBoolOp("and", &Parser::ParseNot); }

  // operand (op operand)*, one kBoolOp node over all the operands (as Python's ast does).
  std::unique_ptr<Expr> ParseBoolOp(const char* op, std::unique_ptr<Expr> (Parser::*operand)()) {
    auto left = (this->*operand)();
    if (failed_ || !IsKeyword(op)) return left;
    auto e = MakeExpr(ExprKind::kBoolOp, left->outer);
    e->op = op;
    e->children.push_back(std::move(left));
    while (AcceptKeyword(op)) {
      e->children.push_back((this->*operand)());
      if (failed_) return e;
    }
    e->range = e->outer = Span(e->children.front()->outer, e->children.back()->outer);
    return e;
  }

  std::unique_ptr<Expr> ParseNot() {
    if (IsKeyword("not")) {
      const Token t = Peek();
      ++pos_;
      if (!Deeper()) return MakeExpr(ExprKind::kNone, {});
      auto operand = ParseNot();
      --expr_depth_;
      if (failed_) return operand;
      auto e = MakeExpr(ExprKind::kUnaryOp,
                        Span(SourceRange{t.line, t.col, t.end_line, t.end_col}, operand->outer));
      e->op = "not";
      e->children.push_back(std::move(operand));
      return e;
    }
    return ParseComparison();
  }

  std::string PeekCompareOp() const {
    const Token& t = Peek();
    if (t.type == Tok::kOp) {
      static const std::set<std::string> kOps = {"==", "!=", "<", "<=", ">", ">="};
      if (kOps.count(t.text)) return t.text;
      return "";
    }
    if (t.type == Tok::kName) {
      if (t.text == "in") return "in";
      if (t.text == "is") return IsKeyword("not", 1) ? "is not" : "is";
      if (t.text == "not" && IsKeyword("in", 1)) return "not in";
    }
    return "";
  }

  std::unique_ptr<Expr> ParseComparison() {
    auto left = ParseArith();
    if (failed_) return left;
    std::string op = PeekCompareOp();
    if (op.empty()) return left;
    auto e = MakeExpr(ExprKind::kCompare, left->outer);
    e->children.push_back(std::move(left));
    while (!(op = PeekCompareOp()).empty()) {
      pos_ += (op == "is not" || op == "not in") ? 2 : 1;
      e->compare_ops.push_back(op);
      e->children.push_back(ParseArith());
      if (failed_) return e;
    }
    e->range = e->outer = Span(e->children.front()->outer, e->children.back()->outer);
    return e;
  }

  std::unique_ptr<Expr> Binary(std::unique_ptr<Expr> left, const std::string& op,
                               std::unique_ptr<Expr> right) {
    auto e = MakeExpr(ExprKind::kBinOp, Span(left->outer, right->outer));
    e->op = op;
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  std::unique_ptr<Expr> ParseArith() {
    auto left = ParseTerm();
    int levels = 0;
    while (!failed_ && (IsOp("+") || IsOp("-")) && Deeper()) {
      ++levels;
      std::string op = Peek().text;
      ++pos_;
      auto right = ParseTerm();
      if (failed_) return left;
      left = Binary(std::move(left), op, std::move(right));
    }
    if (!failed_ && (IsOp("|") || IsOp("&") || IsOp("^") || IsOp("~") || IsOp("@"))) {
      Fail("bitwise operators are not supported by the tapeloop interpreter", Peek());
    }
    expr_depth_ -= levels;
    return left;
  }

  std::unique_ptr<Expr> ParseTerm() {
    auto left = ParseFactor();
    int levels = 0;
    while (!failed_ && (IsOp("*") || IsOp("//") || IsOp("%") || IsOp("/")) && Deeper()) {
      ++levels;
      std::string op = Peek().text;
      ++pos_;
      auto right = ParseFactor();
      if (failed_) return left;
      left = Binary(std::move(left), op, std::move(right));
    }
    expr_depth_ -= levels;
    return left;
  }

  std::unique_ptr<Expr> ParseFactor() {
    if (IsOp("-") || IsOp("+")) {
      const Token t = Peek();
      ++pos_;
      if (++expr_depth_ > kMaxExprDepth) {
        Fail("too many nested expressions", t);
        return MakeExpr(ExprKind::kNone, {});
      }
      auto operand = ParseFactor();
      --expr_depth_;
      if (failed_) return operand;
      auto e = MakeExpr(ExprKind::kUnaryOp,
                        Span(SourceRange{t.line, t.col, t.end_line, t.end_col}, operand->outer));
      e->op = t.text;
      e->children.push_back(std::move(operand));
      return e;
    }
    return ParsePower();
  }

  std::unique_ptr<Expr> ParsePower() {
    auto base = ParsePrimary();
    if (failed_ || !IsOp("**")) return base;
    ++pos_;
    if (!Deeper()) return base;
    auto exponent = ParseFactor();
    --expr_depth_;
    if (failed_) return base;
    return Binary(std::move(base), "**", std::move(exponent));
  }

  std::unique_ptr<Expr> ParsePrimary() {
    auto e = ParseAtom();
    int levels = 0;
    while (!failed_) {
      if (IsOp("(") || IsOp("[") || IsOp(".")) {
        if (!Deeper()) break;
        ++levels;
      }
      if (IsOp("(")) {
        ++pos_;
        auto call = MakeExpr(ExprKind::kCall, e->outer);
        call->children.push_back(std::move(e));
        std::vector<std::unique_ptr<Expr>> kw_values;
        while (!IsOp(")")) {
          if (IsOp("*") || IsOp("**")) {
            Fail("'*' arguments are not supported by the tapeloop interpreter", Peek());
            return call;
          }
          if (Peek().type == Tok::kName && IsOp("=", 1) && !Keywords().count(Peek().text)) {
            std::string name = Peek().text;
            const Token at = Peek();
            pos_ += 2;
            for (const auto& k : call->keywords) {
              if (k == name) {
                Fail("keyword argument repeated: " + name, at);
                return call;
              }
            }
            call->keywords.push_back(name);
            kw_values.push_back(ParseExpr());
          } else {
            if (!call->keywords.empty()) {
              Fail("positional argument follows keyword argument", Peek());
              return call;
            }
            call->children.push_back(ParseExpr());
          }
          if (failed_) return call;
          if (!AcceptOp(",")) break;
        }
        if (!IsOp(")")) {
          Fail(Peek().type == Tok::kName || Peek().type == Tok::kNumber ||
                       Peek().type == Tok::kString
                   ? "invalid syntax. Perhaps you forgot a comma?"
                   : "invalid syntax",
               Peek());
          return call;
        }
        const Token close = Peek();
        ++pos_;
        for (auto& v : kw_values) call->children.push_back(std::move(v));
        call->range.end_line = close.end_line;
        call->range.end_col = close.end_col;
        call->outer = call->range;
        e = std::move(call);
      } else if (IsOp("[")) {
        ++pos_;
        auto sub = MakeExpr(ExprKind::kSubscript, e->outer);
        sub->children.push_back(std::move(e));
        if (IsOp(":") || !IsOp("]")) {
          std::unique_ptr<Expr> lower;
          if (!IsOp(":")) lower = ParseExpr();
          if (failed_) return sub;
          if (AcceptOp(":")) {
            sub->is_slice = true;
            std::unique_ptr<Expr> upper;
            if (!IsOp("]")) upper = ParseExpr();
            if (failed_) return sub;
            sub->children.push_back(std::move(lower));
            sub->children.push_back(std::move(upper));
          } else {
            sub->children.push_back(std::move(lower));
          }
        }
        if (sub->children.size() < 2 || !IsOp("]")) {
          Fail("invalid syntax", Peek());
          return sub;
        }
        const Token close = Peek();
        ++pos_;
        sub->range.end_line = close.end_line;
        sub->range.end_col = close.end_col;
        sub->outer = sub->range;
        e = std::move(sub);
      } else if (IsOp(".")) {
        ++pos_;
        const Token name = Peek();
        std::string attr = ParseIdentifier();
        if (failed_) return e;
        auto a =
            MakeExpr(ExprKind::kAttribute,
                     Span(e->outer, SourceRange{name.line, name.col, name.end_line, name.end_col}));
        a->name = attr;
        a->children.push_back(std::move(e));
        e = std::move(a);
      } else {
        break;
      }
    }
    expr_depth_ -= levels;
    return e;
  }

  std::unique_ptr<Expr> ParseAtom() {
    const Token t = Peek();
    SourceRange r{t.line, t.col, t.end_line, t.end_col};
    switch (t.type) {
      case Tok::kNumber: {
        ++pos_;
        auto e = MakeExpr(ExprKind::kInt, r);
        // Literals longer than 18 digits do not fit the interpreter's 64-bit ints.
        if (t.text.size() > 18) {
          Fail("integer literal too large for the tapeloop interpreter (64-bit ints)", t);
          return e;
        }
        e->int_value = std::stoll(t.text);
        return e;
      }
      case Tok::kString: {
        ++pos_;
        auto e = MakeExpr(ExprKind::kStr, r);
        e->str_value = t.text;
        while (Peek().type == Tok::kString) {  // implicit concatenation
          e->str_value += Peek().text;
          e->range.end_line = Peek().end_line;
          e->range.end_col = Peek().end_col;
          ++pos_;
        }
        e->outer = e->range;
        return e;
      }
      case Tok::kName: {
        if (t.text == "True" || t.text == "False" || t.text == "None") {
          ++pos_;
          return MakeExpr(t.text == "True"    ? ExprKind::kTrue
                          : t.text == "False" ? ExprKind::kFalse
                                              : ExprKind::kNone,
                          r);
        }
        if (Keywords().count(t.text)) {
          if (t.text == "lambda" || t.text == "yield" || t.text == "await") {
            Fail("'" + t.text + "' is not supported by the tapeloop interpreter", t);
          } else {
            Fail("invalid syntax", t);
          }
          return MakeExpr(ExprKind::kNone, r);
        }
        ++pos_;
        auto e = MakeExpr(ExprKind::kName, r);
        e->name = t.text;
        return e;
      }
      case Tok::kOp: {
        if (t.text == "(") {
          ++pos_;
          if (IsOp(")")) {
            Fail("tuples are not supported by the tapeloop interpreter", t);
            return MakeExpr(ExprKind::kNone, r);
          }
          auto inner = ParseExpr();
          if (failed_) return inner;
          if (IsOp(",")) {
            Fail("tuples are not supported by the tapeloop interpreter", Peek());
            return inner;
          }
          if (!IsOp(")")) {
            Fail(Peek().type == Tok::kName || Peek().type == Tok::kNumber
                     ? "invalid syntax. Perhaps you forgot a comma?"
                     : "invalid syntax",
                 Peek());
            return inner;
          }
          const Token close = Peek();
          ++pos_;
          inner->outer = SourceRange{t.line, t.col, close.end_line, close.end_col};
          return inner;
        }
        if (t.text == "[") {
          ++pos_;
          auto e = MakeExpr(ExprKind::kList, r);
          while (!IsOp("]")) {
            e->children.push_back(ParseExpr());
            if (failed_) return e;
            if (IsKeyword("for")) {
              Fail("comprehensions are not supported by the tapeloop interpreter", Peek());
              return e;
            }
            if (!AcceptOp(",")) break;
          }
          if (!IsOp("]")) {
            Fail("invalid syntax. Perhaps you forgot a comma?", Peek());
            return e;
          }
          const Token close = Peek();
          ++pos_;
          e->range.end_line = close.end_line;
          e->range.end_col = close.end_col;
          e->outer = e->range;
          return e;
        }
        if (t.text == "{") {
          Fail("dicts and sets are not supported by the tapeloop interpreter", t);
          return MakeExpr(ExprKind::kNone, r);
        }
        Fail("invalid syntax", t);
        return MakeExpr(ExprKind::kNone, r);
      }
      default:
        Fail("invalid syntax", t);
        return MakeExpr(ExprKind::kNone, r);
    }
  }

  // ---- co_varnames ----

  struct VarScan {
    std::vector<std::string> order;
    std::set<std::string> seen;
    std::set<std::string> assigned;
    std::set<std::string> globals;
    void Use(const std::string& name) {
      if (seen.insert(name).second) order.push_back(name);
    }
  };

  static void ScanExpr(const Expr* e, VarScan* scan) {
    if (e == nullptr) return;
    if (e->kind == ExprKind::kName) {
      scan->Use(e->name);
      return;
    }
    if (e->kind == ExprKind::kIfExp) {
      ScanExpr(e->children[0].get(), scan);
      ScanExpr(e->children[1].get(), scan);
      ScanExpr(e->children[2].get(), scan);
      return;
    }
    for (const auto& c : e->children) ScanExpr(c.get(), scan);
  }

  static void Assigned(const Expr* e, VarScan* scan) {
    if (e->kind == ExprKind::kName) scan->assigned.insert(e->name);
  }

  static void ScanBlock(const Block& block, VarScan* scan) {
    for (const auto& s : block) {
      switch (s->kind) {
        case StmtKind::kExpr:
        case StmtKind::kReturn:
          for (const auto& e : s->exprs) ScanExpr(e.get(), scan);
          break;
        case StmtKind::kAssign:
          ScanExpr(s->exprs.back().get(), scan);
          for (size_t i = 0; i + 1 < s->exprs.size(); ++i) {
            ScanExpr(s->exprs[i].get(), scan);
            Assigned(s->exprs[i].get(), scan);
          }
          break;
        case StmtKind::kAugAssign:
          ScanExpr(s->exprs[0].get(), scan);
          ScanExpr(s->exprs[1].get(), scan);
          Assigned(s->exprs[0].get(), scan);
          break;
        case StmtKind::kIf:
        case StmtKind::kWhile:
          ScanExpr(s->exprs[0].get(), scan);
          ScanBlock(s->body, scan);
          ScanBlock(s->orelse, scan);
          break;
        case StmtKind::kFor:
          ScanExpr(s->exprs[1].get(), scan);
          ScanExpr(s->exprs[0].get(), scan);
          Assigned(s->exprs[0].get(), scan);
          ScanBlock(s->body, scan);
          ScanBlock(s->orelse, scan);
          break;
        case StmtKind::kDef:
          for (const auto& d : s->def->defaults) ScanExpr(d.get(), scan);
          scan->Use(s->def->name);
          scan->assigned.insert(s->def->name);
          break;
        case StmtKind::kImport:
        case StmtKind::kFromImport:
          for (const auto& n : s->as_names) {
            std::string bound = s->kind == StmtKind::kImport ? n.substr(0, n.find('.')) : n;
            scan->Use(bound);
            scan->assigned.insert(bound);
          }
          break;
        case StmtKind::kGlobal:
          for (const auto& n : s->names) scan->globals.insert(n);
          break;
        default:
          break;
      }
    }
  }

  static void ComputeVarnames(FunctionDef* def) {
    VarScan scan;
    ScanBlock(def->body, &scan);
    def->varnames = def->params;
    std::set<std::string> params(def->params.begin(), def->params.end());
    for (const auto& name : scan.order) {
      if (params.count(name) || scan.globals.count(name) || !scan.assigned.count(name)) continue;
      def->varnames.push_back(name);
    }
    def->globals.assign(scan.globals.begin(), scan.globals.end());
  }

  std::vector<Token> toks_;
  const std::vector<std::string>& lines_;
  size_t pos_ = 0;
  int depth_ = 0;
  int expr_depth_ = 0;
  bool failed_ = false;
  SyntaxErrorInfo error_;
};

std::vector<std::string> SplitLines(const std::string& source) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < source.size()) {
    size_t nl = source.find('\n', start);
    if (nl == std::string::npos) {
      lines.push_back(source.substr(start));
      break;
    }
    std::string line = source.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
    start = nl + 1;
  }
  return lines;
}

}  // namespace

ParseResult ParseModule(const std::string& filename, const std::string& source) {
  ParseResult result;
  auto module = std::make_unique<Module>();
  module->filename = filename;
  module->lines = SplitLines(source);
  SyntaxErrorInfo error;
  std::vector<Token> tokens;
  Lexer lexer(module->lines);
  if (!lexer.Run(&tokens, &error)) {
    error.filename = filename;
    result.error = error;
    return result;
  }
  Parser parser(std::move(tokens), module->lines);
  bool parsed = parser.ParseFile(&module->body, &error);
  if (lexer.unclosed()) {
    parsed = false;
    error = *lexer.unclosed();
  }
  if (!parsed) {
    error.filename = filename;
    result.error = error;
    return result;
  }
  result.module = std::move(module);
  return result;
}

ParseResult ParseExpression(const std::string& source, std::unique_ptr<Expr>* out) {
  ParseResult result;
  auto module = std::make_unique<Module>();
  module->filename = "<string>";
  module->lines = SplitLines(source);
  SyntaxErrorInfo error;
  std::vector<Token> tokens;
  Lexer lexer(module->lines);
  bool ok = lexer.Run(&tokens, &error);
  if (ok) {
    // An expression has no statements: drop the indentation tokens of a leading space.
    std::vector<Token> filtered;
    for (auto& t : tokens)
      if (t.type != Tok::kIndent && t.type != Tok::kDedent) filtered.push_back(t);
    Parser parser(std::move(filtered), module->lines);
    ok = parser.ParseSingleExpression(out, &error);
    if (lexer.unclosed()) {
      ok = false;
      error = *lexer.unclosed();
    }
  }
  if (!ok) {
    error.filename = "<string>";
    result.error = error;
    return result;
  }
  result.module = std::move(module);
  return result;
}

std::string FormatSyntaxError(const SyntaxErrorInfo& error) {
  std::string out = "  File \"" + error.filename + "\", line " + std::to_string(error.line) + "\n";
  const std::string& line = error.source_line;
  size_t first = line.find_first_not_of(" \t\f");
  if (first != std::string::npos) {
    size_t last = line.find_last_not_of(" \t\f\r\n");
    out += "    " + line.substr(first, last - first + 1) + "\n";
    if (error.show_caret) {
      int col = std::max<int>(error.col, static_cast<int>(first));
      int end_col = std::max(error.end_col, col + 1);
      out += "    " + std::string(col - first, ' ') + std::string(end_col - col, '^') + "\n";
    }
  }
  out += error.type + ": " + error.message + "\n";
  return out;
}

}  // namespace tapeloop::debugger
