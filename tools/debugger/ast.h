// The syntax tree of the Python subset the debugger runs (see docs/debugger.md).
//
// Positions follow CPython's AST: lines are 1-based, columns are 0-based byte offsets into the
// line. Every node also keeps its "outer" extent, which includes enclosing parentheses, because a
// parent node's range starts at its first token (CPython ranges `(a + b) * c` from the `(`).
#ifndef TAPELOOP_TOOLS_DEBUGGER_AST_H_
#define TAPELOOP_TOOLS_DEBUGGER_AST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tapeloop::debugger {

struct SourceRange {
  int line = 0;
  int col = 0;
  int end_line = 0;
  int end_col = 0;
};

enum class ExprKind {
  kName,       // name
  kInt,        // int_value
  kStr,        // str_value
  kTrue,
  kFalse,
  kNone,
  kList,       // children: elements
  kBinOp,      // op, children: left, right
  kUnaryOp,    // op, children: operand
  kBoolOp,     // op ("and" / "or"), children: operands (>= 2)
  kCompare,    // compare_ops, children: left, comparators...
  kCall,       // children: func, positional args..., keyword values...; keywords: names
  kAttribute,  // name (the attribute), children: value
  kSubscript,  // children: value, index            (slice: see is_slice)
  kIfExp,      // children: test, body, orelse
};

struct Expr {
  ExprKind kind = ExprKind::kNone;
  SourceRange range;  // the node itself
  SourceRange outer;  // including enclosing parentheses
  std::string name;
  int64_t int_value = 0;
  std::string str_value;
  std::string op;                       // "+", "-", "*", "//", "%", "/", "**", "not", "and", "or"
  std::vector<std::string> compare_ops;  // "==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"
  std::vector<std::string> keywords;     // kCall: names of the trailing keyword arguments
  // kSubscript with a slice: children are value, lower, upper (null when omitted).
  bool is_slice = false;
  std::vector<std::unique_ptr<Expr>> children;
};

struct Stmt;
using Block = std::vector<std::unique_ptr<Stmt>>;

struct FunctionDef {
  std::string name;
  std::vector<std::string> params;
  // defaults[i] belongs to params[params.size() - defaults.size() + i].
  std::vector<std::unique_ptr<Expr>> defaults;
  Block body;
  // Names local to the function (parameters and every assigned name), in CPython's co_varnames
  // order: parameters first, then other locals in order of first use by the compiler.
  std::vector<std::string> varnames;
  std::vector<std::string> globals;  // names declared `global`
  int line = 0;
};

enum class StmtKind {
  kExpr,        // exprs[0]
  kAssign,      // exprs: targets..., value (last)
  kAugAssign,   // op, exprs: target, value
  kIf,          // exprs[0] test, body, orelse (an elif is an If alone in orelse)
  kWhile,       // exprs[0] test, body, orelse
  kFor,         // exprs: target, iterable; body, orelse
  kDef,         // def
  kReturn,      // exprs: [value]
  kPass,
  kBreak,
  kContinue,
  kGlobal,      // names
  kImport,      // names (module), as_names
  kFromImport,  // module, names, as_names
};

struct Stmt {
  StmtKind kind = StmtKind::kPass;
  SourceRange range;
  std::string op;
  std::vector<std::unique_ptr<Expr>> exprs;
  Block body;
  Block orelse;
  std::unique_ptr<FunctionDef> def;
  std::string module;
  std::vector<std::string> names;
  std::vector<std::string> as_names;
};

// A parsed source file.
struct Module {
  std::string filename;
  std::vector<std::string> lines;  // source lines without their newline
  Block body;
};

}  // namespace tapeloop::debugger

#endif  // TAPELOOP_TOOLS_DEBUGGER_AST_H_
