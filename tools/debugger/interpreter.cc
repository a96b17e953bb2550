#include "tools/debugger/interpreter.h"

#include <pthread.h>

#include <algorithm>
#include <climits>
#include <set>
#include <unordered_set>
#include <utility>

namespace tapeloop::debugger {

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk: return "ok";
    case Outcome::kException: return "exception";
    case Outcome::kSyntaxError: return "syntax_error";
    case Outcome::kBudgetExhausted: return "budget_exhausted";
    case Outcome::kOutputLimit: return "output_limit";
    case Outcome::kStopped: return "stopped";
  }
  return "unknown";
}

struct StrObject : Object {
  std::string s;
};
struct ListObject : Object {
  std::vector<Value> items;
};
struct RangeObject : Object {
  int64_t start = 0, stop = 0, step = 1;
  int64_t Length() const {
    if (step > 0) return start < stop ? (stop - start - 1) / step + 1 : 0;
    return start > stop ? (start - stop - 1) / (-step) + 1 : 0;
  }
};
struct ModuleObject : Object {
  std::string name;
  std::string filename;
  const Module* ast = nullptr;
  bool initializing = true;
  std::vector<std::pair<std::string, Value>> globals;  // insertion order
  std::unordered_map<std::string, size_t> index;
  Value* Find(const std::string& key) {
    auto it = index.find(key);
    return it == index.end() ? nullptr : &globals[it->second].second;
  }
  void Set(const std::string& key, Value v) {
    if (Value* slot = Find(key)) {
      *slot = v;
      return;
    }
    index[key] = globals.size();
    globals.emplace_back(key, v);
  }
};
struct FunctionObject : Object {
  const FunctionDef* def = nullptr;
  ModuleObject* module = nullptr;
  std::string qualname;
  std::vector<Value> defaults;
};
struct MethodObject : Object {
  Value self;
  std::string name;
};

std::string Frame::name() const { return def ? def->name : "<module>"; }
const std::string& Frame::filename() const { return module->filename; }

namespace {

// CPython's builtins, in the order of builtins.__dict__ (used for "Did you mean" suggestions).
const std::vector<std::string>& BuiltinNames() {
  static const auto* names = new std::vector<std::string>{
      "__name__", "__doc__", "__package__", "__loader__", "__spec__", "__build_class__",
      "__import__", "abs", "all", "any", "ascii", "bin", "breakpoint", "callable", "chr",
      "compile", "delattr", "dir", "divmod", "eval", "exec", "format", "getattr", "globals",
      "hasattr", "hash", "hex", "id", "input", "isinstance", "issubclass", "iter", "aiter", "len",
      "locals", "max", "min", "next", "anext", "oct", "ord", "pow", "print", "repr", "round",
      "setattr", "sorted", "sum", "vars", "None", "Ellipsis", "NotImplemented", "False", "True",
      "bool", "memoryview", "bytearray", "bytes", "classmethod", "complex", "dict", "enumerate",
      "filter", "float", "frozenset", "property", "int", "list", "map", "object", "range",
      "reversed", "set", "slice", "staticmethod", "str", "super", "tuple", "type", "zip",
      "__debug__", "BaseException", "BaseExceptionGroup", "Exception", "GeneratorExit",
      "KeyboardInterrupt", "SystemExit", "ArithmeticError", "AssertionError", "AttributeError",
      "BufferError", "EOFError", "ImportError", "LookupError", "MemoryError", "NameError",
      "OSError", "ReferenceError", "RuntimeError", "StopAsyncIteration", "StopIteration",
      "SyntaxError", "SystemError", "TypeError", "ValueError", "Warning", "FloatingPointError",
      "OverflowError", "ZeroDivisionError", "BytesWarning", "DeprecationWarning",
      "EncodingWarning", "FutureWarning", "ImportWarning", "PendingDeprecationWarning",
      "ResourceWarning", "RuntimeWarning", "SyntaxWarning", "UnicodeWarning", "UserWarning",
      "BlockingIOError", "ChildProcessError", "ConnectionError", "FileExistsError",
      "FileNotFoundError", "InterruptedError", "IsADirectoryError", "NotADirectoryError",
      "PermissionError", "ProcessLookupError", "TimeoutError", "IndentationError", "IndexError",
      "KeyError", "ModuleNotFoundError", "NotImplementedError", "RecursionError",
      "UnboundLocalError", "UnicodeError", "BrokenPipeError", "ConnectionAbortedError",
      "ConnectionRefusedError", "ConnectionResetError", "TabError", "UnicodeDecodeError",
      "UnicodeEncodeError", "UnicodeTranslateError", "ExceptionGroup", "EnvironmentError",
      "IOError", "open", "quit", "exit", "copyright", "credits", "license", "help"};
  return *names;
}

// The builtins this interpreter implements; every other builtin name exists (as in CPython) but
// raises NotImplementedError when called.
enum Builtin {
  kPrint, kRange, kLen, kStr, kInt, kBool, kAbs, kMin, kMax, kSum, kList, kRepr, kUnsupported
};

int BuiltinIndex(const std::string& name) {
  static const std::unordered_map<std::string, int>* table = [] {
    auto* t = new std::unordered_map<std::string, int>{
        {"print", kPrint}, {"range", kRange}, {"len", kLen},   {"str", kStr},
        {"int", kInt},     {"bool", kBool},   {"abs", kAbs},   {"min", kMin},
        {"max", kMax},     {"sum", kSum},     {"list", kList}, {"repr", kRepr}};
    return t;
  }();
  auto it = table->find(name);
  return it == table->end() ? -1 : it->second;
}

// ---- CPython's suggestion algorithm (Python/suggestions.c, 3.11) ----
constexpr int kMoveCost = 2;
constexpr int kCaseCost = 1;
constexpr size_t kMaxStringSize = 40;

int SubstitutionCost(char a, char b) {
  if ((a & 31) != (b & 31)) return kMoveCost;
  if (a == b) return 0;
  if ('A' <= a && a <= 'Z') a += 'a' - 'A';
  if ('A' <= b && b <= 'Z') b += 'a' - 'A';
  if (a == b) return kCaseCost;
  return kMoveCost;
}

int64_t Levenshtein(std::string a, std::string b, int64_t max_cost) {
  if (a == b) return 0;
  size_t pre = 0;
  while (pre < a.size() && pre < b.size() && a[pre] == b[pre]) ++pre;
  a = a.substr(pre);
  b = b.substr(pre);
  while (!a.empty() && !b.empty() && a.back() == b.back()) {
    a.pop_back();
    b.pop_back();
  }
  if (a.empty() || b.empty()) return static_cast<int64_t>(a.size() + b.size()) * kMoveCost;
  if (a.size() > kMaxStringSize || b.size() > kMaxStringSize) return max_cost + 1;
  if (b.size() < a.size()) std::swap(a, b);
  if (static_cast<int64_t>(b.size() - a.size()) * kMoveCost > max_cost) return max_cost + 1;
  std::vector<int64_t> buffer(a.size());
  int64_t tmp = kMoveCost;
  for (size_t i = 0; i < a.size(); ++i) {
    buffer[i] = tmp;
    tmp += kMoveCost;
  }
  int64_t result = 0;
  for (size_t bi = 0; bi < b.size(); ++bi) {
    char code = b[bi];
    int64_t distance = result = static_cast<int64_t>(bi) * kMoveCost;
    int64_t minimum = INT64_MAX;
    for (size_t index = 0; index < a.size(); ++index) {
      int64_t substitute = distance + SubstitutionCost(code, a[index]);
      distance = buffer[index];
      int64_t insert_delete = std::min(result, distance) + kMoveCost;
      result = std::min(insert_delete, substitute);
      buffer[index] = result;
      if (result < minimum) minimum = result;
    }
    if (minimum > max_cost) return max_cost + 1;
  }
  return result;
}

std::optional<std::string> Suggest(const std::vector<std::string>& dir, const std::string& name) {
  if (dir.size() >= 750) return std::nullopt;
  int64_t best_distance = INT64_MAX;
  std::optional<std::string> best;
  for (const auto& item : dir) {
    if (item == name) continue;
    int64_t max_distance =
        static_cast<int64_t>(name.size() + item.size() + 3) * kMoveCost / 6;
    max_distance = std::min(max_distance, best_distance - 1);
    int64_t d = Levenshtein(name, item, max_distance);
    if (d > max_distance) continue;
    if (!best || d < best_distance) {
      best = item;
      best_distance = d;
    }
  }
  return best;
}

// Byte offset -> character offset (UTF-8).
int CharOffset(const std::string& line, int byte_offset) {
  int chars = 0;
  for (int i = 0; i < byte_offset && i < static_cast<int>(line.size()); ++i) {
    if ((static_cast<unsigned char>(line[i]) & 0xC0) != 0x80) ++chars;
  }
  if (byte_offset > static_cast<int>(line.size())) chars += byte_offset - line.size();
  return chars;
}

int CharLength(const std::string& s) { return CharOffset(s, static_cast<int>(s.size())); }

bool IsWs(char c) { return c == ' ' || c == '\t' || c == '\f' || c == '\n' || c == '\r'; }

// Formats one traceback entry the way CPython 3.11's tb_displayline does.
std::string FormatEntry(const std::string& filename, int line, const std::string& function,
                        const Module* module, SourceRange range, const Expr* node) {
  std::string out = "  File \"" + filename + "\", line " + std::to_string(line) + ", in " +
                    function + "\n";
  if (module == nullptr || line < 1 || line > static_cast<int>(module->lines.size())) return out;
  const std::string& src = module->lines[line - 1];
  size_t first = src.find_first_not_of(" \t\f");
  if (first == std::string::npos) return out;
  size_t last = src.find_last_not_of(" \t\f\r\n");
  std::string stripped = src.substr(first, last - first + 1);
  out += "    " + stripped + "\n";
  if (range.line != line) return out;
  int start = CharOffset(src, range.col);
  int end;
  int left_anchor = -1, right_anchor = -1;
  bool anchors = false;
  if (range.end_line == range.line) {
    end = CharOffset(src, range.end_col);
    if (node != nullptr && node->kind == ExprKind::kBinOp) {
      const Expr* left = node->children[0].get();
      const Expr* right = node->children[1].get();
      // Offsets relative to the original line (CPython uses the segment; same characters).
      for (int i = left->range.end_col; i < right->range.col && i < static_cast<int>(src.size());
           ++i) {
        if (IsWs(src[i])) continue;
        left_anchor = i;
        right_anchor = i + 1;
        // CPython 3.11.2 takes the first non-space character after the left operand, even a
        // closing parenthesis, and one more if it is not followed by a space.
        if (i + 1 < right->range.col && !IsWs(src[i + 1])) ++right_anchor;
        anchors = true;
        break;
      }
    } else if (node != nullptr && node->kind == ExprKind::kSubscript && !node->is_slice) {
      left_anchor = node->children[0]->range.end_col;
      right_anchor = node->children[1]->range.end_col + 1;
      anchors = true;
    }
    if (anchors) {
      left_anchor = CharOffset(src, left_anchor);
      right_anchor = CharOffset(src, right_anchor);
    }
  } else {
    end = CharOffset(src, static_cast<int>(last) + 1);
  }
  int stripped_len = CharLength(stripped);
  int leading = CharOffset(src, static_cast<int>(first));
  if (end - start == stripped_len && !anchors) return out;
  out += "    ";
  for (int offset = leading + 1; offset <= end; ++offset) {
    if (offset <= start) {
      out += ' ';
    } else if (anchors && left_anchor < offset && offset <= right_anchor) {
      out += '^';
    } else {
      out += anchors ? '~' : '^';
    }
  }
  out += "\n";
  return out;
}


}  // namespace

class Interpreter::Impl {
 public:
  Impl(const FileMap& files, RunLimits limits) : files_(files), limits_(limits) {}

  RunResult Run(const std::string& main_file, LineHook* hook);
  std::vector<std::shared_ptr<Frame>> Stack() const {
    if (!stack_.empty()) return stack_;
    if (error_) return error_->snapshot;
    return post_mortem_;
  }
  std::string EvalInFrame(const std::string& expression, size_t frame_index, bool* ok);
  const std::string& output() const { return output_; }

 private:
  struct Entry {
    std::string filename;
    int line;
    std::string function;
    std::string text;
  };
  struct Error {
    std::string type;
    std::string message;
    std::string name;  // NameError: the missing name (for suggestions)
    Outcome outcome = Outcome::kException;
    std::vector<Entry> entries;  // innermost first
    int64_t last_frame_id = -1;
    std::optional<SyntaxErrorInfo> syntax;
    std::vector<std::shared_ptr<Frame>> snapshot;
  };
  enum class Flow { kNormal, kReturn, kBreak, kContinue };

  // ---- errors ----
  bool Raise(const std::string& type, const std::string& message) {
    if (error_) return false;
    error_ = std::make_unique<Error>();
    error_->type = type;
    error_->message = message;
    error_->snapshot = stack_;
    return false;
  }
  bool RaiseFatal(Outcome outcome, const std::string& type, const std::string& message) {
    Raise(type, message);
    error_->outcome = outcome;
    return false;
  }
  bool TypeError(const std::string& message) { return Raise("TypeError", message); }

  // Records where the error passed through the current frame: the first node noted in a frame
  // (the innermost one) is the one CPython's traceback shows.
  void Note(SourceRange range, const Expr* node) {
    if (!error_ || stack_.empty() || eval_depth_ > 0) return;
    const Frame& frame = *stack_.back();
    if (error_->last_frame_id == frame.id) return;
    error_->last_frame_id = frame.id;
    error_->entries.push_back(Entry{frame.filename(), range.line, frame.name(),
                                    FormatEntry(frame.filename(), range.line, frame.name(),
                                                frame.module->ast, range, node)});
  }

  // ---- allocation ----
  bool Charge(int64_t size, const char* what) {
    if (size > limits_.max_object_size) {
      return Raise("MemoryError", std::string(what) + " of " + std::to_string(size) +
                                      " items exceeds the tapeloop interpreter's size cap (" +
                                      std::to_string(limits_.max_object_size) + ")");
    }
    allocated_ += size;
    if (allocated_ > limits_.max_allocated) {
      return Raise("MemoryError", "the program allocated more than " +
                                      std::to_string(limits_.max_allocated) +
                                      " list items / string bytes (the tapeloop interpreter's "
                                      "memory cap)");
    }
    steps_ += size / 64;
    return true;
  }
  template <typename T>
  T* New() {
    auto owned = std::make_unique<T>();
    T* raw = owned.get();
    arena_.push_back(std::move(owned));
    return raw;
  }
  Value Str(std::string s) {
    auto* o = New<StrObject>();
    o->s = std::move(s);
    return Value{Value::Type::kStr, 0, o};
  }
  bool MakeStr(std::string s, Value* out) {
    if (!Charge(static_cast<int64_t>(s.size()), "str")) return false;
    *out = Str(std::move(s));
    return true;
  }
  bool MakeList(std::vector<Value> items, Value* out) {
    if (!Charge(static_cast<int64_t>(items.size()), "list")) return false;
    auto* o = New<ListObject>();
    o->items = std::move(items);
    *out = Value{Value::Type::kList, 0, o};
    return true;
  }
  static Value Int(int64_t v) { return Value{Value::Type::kInt, v, nullptr}; }
  static Value Bool(bool v) { return Value{Value::Type::kBool, v ? 1 : 0, nullptr}; }
  static Value None() { return Value{}; }
  static const std::string& S(const Value& v) { return static_cast<StrObject*>(v.obj)->s; }
  static std::vector<Value>& L(const Value& v) { return static_cast<ListObject*>(v.obj)->items; }
  static bool IsIntLike(const Value& v) {
    return v.type == Value::Type::kInt || v.type == Value::Type::kBool;
  }

  static std::string TypeName(const Value& v) {
    switch (v.type) {
      case Value::Type::kNone: return "NoneType";
      case Value::Type::kBool: return "bool";
      case Value::Type::kInt: return "int";
      case Value::Type::kStr: return "str";
      case Value::Type::kList: return "list";
      case Value::Type::kRange: return "range";
      case Value::Type::kFunction: return "function";
      case Value::Type::kBuiltin: return "builtin_function_or_method";
      case Value::Type::kModule: return "module";
      case Value::Type::kMethod: return "builtin_function_or_method";
    }
    return "object";
  }

  // ---- conversions ----
  static std::string ReprStr(const std::string& s) {
    char quote = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"'
                                                                                         : '\'';
    std::string out(1, quote);
    for (unsigned char c : s) {
      if (c == quote || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c < 0x20 || c == 0x7f) {
        static const char* hex = "0123456789abcdef";
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 15];
      } else {
        out += static_cast<char>(c);
      }
    }
    out += quote;
    return out;
  }

  std::string Repr(const Value& v, int depth = 0) {
    switch (v.type) {
      case Value::Type::kStr: return ReprStr(S(v));
      case Value::Type::kList: {
        if (depth > 50) return "[...]";
        std::string out = "[";
        const auto& items = L(v);
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out += ", ";
          if (items[i].obj == v.obj) {
            out += "[...]";
          } else {
            out += Repr(items[i], depth + 1);
          }
        }
        return out + "]";
      }
      default: return ToStr(v);
    }
  }

  std::string ToStr(const Value& v) {
    switch (v.type) {
      case Value::Type::kNone: return "None";
      case Value::Type::kBool: return v.i ? "True" : "False";
      case Value::Type::kInt: return std::to_string(v.i);
      case Value::Type::kStr: return S(v);
      case Value::Type::kList: return Repr(v);
      case Value::Type::kRange: {
        auto* r = static_cast<RangeObject*>(v.obj);
        std::string out = "range(" + std::to_string(r->start) + ", " + std::to_string(r->stop);
        if (r->step != 1) out += ", " + std::to_string(r->step);
        return out + ")";
      }
      case Value::Type::kFunction:
        return "<function " + static_cast<FunctionObject*>(v.obj)->qualname + ">";
      case Value::Type::kBuiltin:
        return "<built-in function " + builtin_names_[v.i >= 1000 ? v.i - 1000 : v.i] + ">";
      case Value::Type::kModule:
        return "<module '" + static_cast<ModuleObject*>(v.obj)->name + "' from '" +
               static_cast<ModuleObject*>(v.obj)->filename + "'>";
      case Value::Type::kMethod: {
        auto* m = static_cast<MethodObject*>(v.obj);
        return "<built-in method " + m->name + " of " + TypeName(m->self) + " object>";
      }
    }
    return "?";
  }

  static bool Truthy(const Value& v) {
    switch (v.type) {
      case Value::Type::kNone: return false;
      case Value::Type::kBool:
      case Value::Type::kInt: return v.i != 0;
      case Value::Type::kStr: return !S(v).empty();
      case Value::Type::kList: return !L(v).empty();
      case Value::Type::kRange: return static_cast<RangeObject*>(v.obj)->Length() != 0;
      default: return true;
    }
  }

  bool Equal(const Value& a, const Value& b, int depth = 0) {
    if (IsIntLike(a) && IsIntLike(b)) return a.i == b.i;
    if (a.type != b.type) return false;
    switch (a.type) {
      case Value::Type::kNone: return true;
      case Value::Type::kStr: return S(a) == S(b);
      case Value::Type::kList: {
        if (a.obj == b.obj) return true;
        const auto& x = L(a);
        const auto& y = L(b);
        if (x.size() != y.size()) return false;
        if (depth > 200) return false;
        for (size_t i = 0; i < x.size(); ++i)
          if (!Equal(x[i], y[i], depth + 1)) return false;
        return true;
      }
      case Value::Type::kRange: {
        auto* r = static_cast<RangeObject*>(a.obj);
        auto* s = static_cast<RangeObject*>(b.obj);
        int64_t n = r->Length();
        if (n != s->Length()) return false;
        if (n == 0) return true;
        if (r->start != s->start) return false;
        return n == 1 || r->step == s->step;
      }
      case Value::Type::kMethod: return a.obj == b.obj;
      default: return a.obj == b.obj && a.i == b.i;
    }
  }

  // *out = a < b. Returns false with a TypeError when the operands cannot be ordered; the
  // message names the operands of `op` as written: (a, b), or (b, a) when `swapped` (a > b is
  // computed as b < a).
  bool Less(const Value& a, const Value& b, const std::string& op, bool* out,
            bool swapped = false) {
    if (IsIntLike(a) && IsIntLike(b)) {
      *out = a.i < b.i;
      return true;
    }
    if (a.type == Value::Type::kStr && b.type == Value::Type::kStr) {
      *out = S(a) < S(b);
      return true;
    }
    if (a.type == Value::Type::kList && b.type == Value::Type::kList) {
      const auto& x = L(a);
      const auto& y = L(b);
      for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
        if (!Equal(x[i], y[i])) return Less(x[i], y[i], op, out, swapped);
      }
      *out = x.size() < y.size();
      return true;
    }
    const Value& left = swapped ? b : a;
    const Value& right = swapped ? a : b;
    return TypeError("'" + op + "' not supported between instances of '" + TypeName(left) +
                     "' and '" + TypeName(right) + "'");
  }

  bool Compare(const std::string& op, const Value& a, const Value& b, bool* out) {
    if (op == "==") {
      *out = Equal(a, b);
      return true;
    }
    if (op == "!=") {
      *out = !Equal(a, b);
      return true;
    }
    if (op == "is" || op == "is not") {
      bool same = a.type == b.type &&
                  (a.obj != nullptr ? a.obj == b.obj : a.i == b.i);
      *out = op == "is" ? same : !same;
      return true;
    }
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.type == Value::Type::kStr) {
        if (a.type != Value::Type::kStr) {
          return TypeError("'in <string>' requires string as left operand, not " + TypeName(a));
        }
        found = S(b).find(S(a)) != std::string::npos;
        steps_ += static_cast<int64_t>(S(b).size()) / 64;
      } else if (b.type == Value::Type::kList) {
        for (const auto& item : L(b)) {
          if (Equal(item, a)) {
            found = true;
            break;
          }
        }
        steps_ += static_cast<int64_t>(L(b).size()) / 64;
      } else if (b.type == Value::Type::kRange) {
        auto* r = static_cast<RangeObject*>(b.obj);
        if (IsIntLike(a)) {
          int64_t n = r->Length();
          int64_t d = a.i - r->start;
          found = n > 0 && d % r->step == 0 && d / r->step >= 0 && d / r->step < n;
        }
      } else {
        return TypeError("argument of type '" + TypeName(b) + "' is not iterable");
      }
      *out = op == "in" ? found : !found;
      return true;
    }
    bool lt;
    if (op == "<") return Less(a, b, op, out);
    if (op == ">") return Less(b, a, op, out, true);
    if (op == "<=") {
      if (!Less(b, a, op, &lt, true)) return false;
      *out = !lt;
      return true;
    }
    if (op == ">=") {
      if (!Less(a, b, op, &lt)) return false;
      *out = !lt;
      return true;
    }
    return TypeError("unknown comparison " + op);
  }

  bool Overflow() {
    return Raise("OverflowError",
                 "integer overflow (the tapeloop interpreter's ints are 64-bit)");
  }

  bool Binary(const std::string& op, const Value& a, const Value& b, bool inplace, Value* out) {
    std::string shown = inplace ? op + "=" : op;
    if (IsIntLike(a) && IsIntLike(b)) {
      int64_t x = a.i, y = b.i, r = 0;
      if (op == "+") {
        if (__builtin_add_overflow(x, y, &r)) return Overflow();
      } else if (op == "-") {
        if (__builtin_sub_overflow(x, y, &r)) return Overflow();
      } else if (op == "*") {
        if (__builtin_mul_overflow(x, y, &r)) return Overflow();
      } else if (op == "//" || op == "%") {
        if (y == 0) {
          return Raise("ZeroDivisionError", op == "//" ? "integer division or modulo by zero"
                                                       : "integer modulo by zero");
        }
        if (x == INT64_MIN && y == -1) return Overflow();
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          q -= 1;
          m += y;
        }
        r = op == "//" ? q : m;
      } else if (op == "**") {
        if (y < 0) {
          return Raise("NotImplementedError",
                       "negative exponents give floats, which the tapeloop interpreter does not "
                       "support");
        }
        r = 1;
        int64_t base = x;
        while (y > 0) {
          if (y & 1) {
            if (__builtin_mul_overflow(r, base, &r)) return Overflow();
          }
          y >>= 1;
          if (y > 0 && __builtin_mul_overflow(base, base, &base)) return Overflow();
        }
      } else if (op == "/") {
        if (y == 0) return Raise("ZeroDivisionError", "division by zero");
        return Raise("NotImplementedError",
                     "true division '/' gives a float, which the tapeloop interpreter does not "
                     "support; use '//'");
      }
      *out = Int(r);
      return true;
    }
    if (op == "+") {
      if (a.type == Value::Type::kStr) {
        if (b.type != Value::Type::kStr) {
          return TypeError("can only concatenate str (not \"" + TypeName(b) + "\") to str");
        }
        return MakeStr(S(a) + S(b), out);
      }
      if (a.type == Value::Type::kList) {
        if (b.type != Value::Type::kList) {
          if (inplace && (b.type == Value::Type::kStr || b.type == Value::Type::kRange)) {
            std::vector<Value> items;
            if (!Materialize(b, &items)) return false;
            if (!Charge(static_cast<int64_t>(items.size()), "list")) return false;
            L(a).insert(L(a).end(), items.begin(), items.end());
            *out = a;
            return true;
          }
          if (!inplace) {
            return TypeError("can only concatenate list (not \"" + TypeName(b) + "\") to list");
          }
          return TypeError("'" + TypeName(b) + "' object is not iterable");
        }
        if (inplace) {
          std::vector<Value> copy = L(b);
          if (!Charge(static_cast<int64_t>(copy.size()), "list")) return false;
          L(a).insert(L(a).end(), copy.begin(), copy.end());
          *out = a;
          return true;
        }
        std::vector<Value> items = L(a);
        items.insert(items.end(), L(b).begin(), L(b).end());
        return MakeList(std::move(items), out);
      }
    }
    if (op == "*") {
      const Value* seq = nullptr;
      const Value* count = nullptr;
      if ((a.type == Value::Type::kStr || a.type == Value::Type::kList) && IsIntLike(b)) {
        seq = &a;
        count = &b;
      } else if ((b.type == Value::Type::kStr || b.type == Value::Type::kList) && IsIntLike(a)) {
        seq = &b;
        count = &a;
      }
      if (seq != nullptr) {
        int64_t n = std::max<int64_t>(count->i, 0);
        int64_t unit = seq->type == Value::Type::kStr ? static_cast<int64_t>(S(*seq).size())
                                                      : static_cast<int64_t>(L(*seq).size());
        int64_t total = 0;
        if (__builtin_mul_overflow(n, unit, &total)) total = INT64_MAX;
        if (!Charge(total, seq->type == Value::Type::kStr ? "str" : "list")) return false;
        if (seq->type == Value::Type::kStr) {
          std::string s;
          s.reserve(total);
          for (int64_t i = 0; i < n; ++i) s += S(*seq);
          *out = Str(std::move(s));
          return true;
        }
        std::vector<Value> items;
        items.reserve(total);
        for (int64_t i = 0; i < n; ++i) items.insert(items.end(), L(*seq).begin(), L(*seq).end());
        if (inplace && seq == &a) {
          L(a) = std::move(items);
          *out = a;
          return true;
        }
        auto* o = New<ListObject>();
        o->items = std::move(items);
        *out = Value{Value::Type::kList, 0, o};
        return true;
      }
      if (a.type == Value::Type::kStr || a.type == Value::Type::kList) {
        return TypeError("can't multiply sequence by non-int of type '" + TypeName(b) + "'");
      }
      if (b.type == Value::Type::kStr || b.type == Value::Type::kList) {
        return TypeError("can't multiply sequence by non-int of type '" + TypeName(a) + "'");
      }
    }
    if (op == "%" && a.type == Value::Type::kStr) {
      return Raise("NotImplementedError",
                   "'%' string formatting is not supported by the tapeloop interpreter");
    }
    if (op == "**") {
      return TypeError("unsupported operand type(s) for " + std::string(inplace ? "**=" : "** or pow()") +
                       ": '" + TypeName(a) + "' and '" + TypeName(b) + "'");
    }
    return TypeError("unsupported operand type(s) for " + shown + ": '" + TypeName(a) + "' and '" +
                     TypeName(b) + "'");
  }

  // Expands an iterable into its items.
  bool Materialize(const Value& v, std::vector<Value>* items) {
    switch (v.type) {
      case Value::Type::kList: *items = L(v); return true;
      case Value::Type::kStr:
        for (char c : S(v)) items->push_back(Str(std::string(1, c)));
        return true;
      case Value::Type::kRange: {
        auto* r = static_cast<RangeObject*>(v.obj);
        int64_t n = r->Length();
        if (!Charge(n, "list")) return false;
        items->reserve(n);
        for (int64_t i = 0; i < n; ++i) items->push_back(Int(r->start + i * r->step));
        return true;
      }
      default:
        return TypeError("'" + TypeName(v) + "' object is not iterable");
    }
  }

  // ---- names ----
  const std::unordered_set<std::string>& LocalSet(const FunctionDef* def) {
    auto it = local_sets_.find(def);
    if (it != local_sets_.end()) return it->second;
    std::unordered_set<std::string> set(def->varnames.begin(), def->varnames.end());
    return local_sets_.emplace(def, std::move(set)).first->second;
  }

  bool IsLocal(const Frame& f, const std::string& name) {
    return f.def != nullptr && LocalSet(f.def).count(name) > 0;
  }

  bool LoadName(const std::string& name, Value* out) {
    Frame& f = *stack_.back();
    if (IsLocal(f, name)) {
      auto it = f.locals.find(name);
      if (it == f.locals.end()) {
        return Raise("UnboundLocalError", "cannot access local variable '" + name +
                                              "' where it is not associated with a value");
      }
      *out = it->second;
      return true;
    }
    if (Value* v = f.module->Find(name)) {
      *out = *v;
      return true;
    }
    int b = BuiltinIndex(name);
    if (b >= 0) {
      *out = Value{Value::Type::kBuiltin, b, nullptr};
      return true;
    }
    auto all = std::find(BuiltinNames().begin(), BuiltinNames().end(), name);
    if (all != BuiltinNames().end()) {
      if (name == "True" || name == "False" || name == "None") {
        *out = name == "None" ? None() : Bool(name == "True");
        return true;
      }
      builtin_names_.push_back(name);
      *out = Value{Value::Type::kBuiltin, static_cast<int64_t>(builtin_names_.size() - 1) +
                                              1000, nullptr};
      return true;
    }
    Raise("NameError", "name '" + name + "' is not defined");
    error_->name = name;
    return false;
  }

  void StoreName(const std::string& name, const Value& v) {
    Frame& f = *stack_.back();
    if (IsLocal(f, name)) {
      f.locals[name] = v;
    } else {
      f.module->Set(name, v);
    }
  }

  // ---- expressions ----
  bool Eval(const Expr* e, Value* out) {
    bool ok = EvalInner(e, out);
    if (!ok) Note(e->range, e);
    return ok;
  }

  bool EvalInner(const Expr* e, Value* out) {
    switch (e->kind) {
      case ExprKind::kName: return LoadName(e->name, out);
      case ExprKind::kInt: *out = Int(e->int_value); return true;
      case ExprKind::kStr: {
        auto it = constants_.find(e);
        if (it == constants_.end()) it = constants_.emplace(e, Str(e->str_value)).first;
        *out = it->second;
        return true;
      }
      case ExprKind::kTrue: *out = Bool(true); return true;
      case ExprKind::kFalse: *out = Bool(false); return true;
      case ExprKind::kNone: *out = None(); return true;
      case ExprKind::kList: {
        std::vector<Value> items;
        for (const auto& c : e->children) {
          Value v;
          if (!Eval(c.get(), &v)) return false;
          items.push_back(v);
        }
        return MakeList(std::move(items), out);
      }
      case ExprKind::kBinOp: {
        Value a, b;
        if (!Eval(e->children[0].get(), &a) || !Eval(e->children[1].get(), &b)) return false;
        return Binary(e->op, a, b, false, out);
      }
      case ExprKind::kUnaryOp: {
        Value a;
        if (!Eval(e->children[0].get(), &a)) return false;
        if (e->op == "not") {
          *out = Bool(!Truthy(a));
          return true;
        }
        if (!IsIntLike(a)) {
          return TypeError("bad operand type for unary " + e->op + ": '" + TypeName(a) + "'");
        }
        if (e->op == "-") {
          if (a.i == INT64_MIN) return Overflow();
          *out = Int(-a.i);
        } else {
          *out = Int(a.i);
        }
        return true;
      }
      case ExprKind::kBoolOp: {
        for (size_t i = 0; i < e->children.size(); ++i) {
          if (!Eval(e->children[i].get(), out)) return false;
          bool t = Truthy(*out);
          if (e->op == "and" ? !t : t) return true;
        }
        return true;
      }
      case ExprKind::kCompare: {
        Value left;
        if (!Eval(e->children[0].get(), &left)) return false;
        for (size_t i = 0; i < e->compare_ops.size(); ++i) {
          Value right;
          if (!Eval(e->children[i + 1].get(), &right)) return false;
          bool r;
          if (!Compare(e->compare_ops[i], left, right, &r)) return false;
          if (!r) {
            *out = Bool(false);
            return true;
          }
          left = right;
        }
        *out = Bool(true);
        return true;
      }
      case ExprKind::kIfExp: {
        Value test;
        if (!Eval(e->children[0].get(), &test)) return false;
        return Eval(e->children[Truthy(test) ? 1 : 2].get(), out);
      }
      case ExprKind::kAttribute: {
        Value v;
        if (!Eval(e->children[0].get(), &v)) return false;
        return GetAttr(v, e->name, out);
      }
      case ExprKind::kSubscript: return EvalSubscript(e, out);
      case ExprKind::kCall: {
        Value fn;
        if (!Eval(e->children[0].get(), &fn)) return false;
        size_t npos = e->children.size() - 1 - e->keywords.size();
        std::vector<Value> args;
        for (size_t i = 0; i < npos; ++i) {
          Value v;
          if (!Eval(e->children[1 + i].get(), &v)) return false;
          args.push_back(v);
        }
        std::vector<std::pair<std::string, Value>> kwargs;
        for (size_t i = 0; i < e->keywords.size(); ++i) {
          Value v;
          if (!Eval(e->children[1 + npos + i].get(), &v)) return false;
          kwargs.emplace_back(e->keywords[i], v);
        }
        return Call(fn, args, kwargs, out);
      }
    }
    return TypeError("unsupported expression");
  }

  static const std::vector<std::string>& ListMethods() {
    static const auto* m = new std::vector<std::string>{
        "__add__", "__class__", "__class_getitem__", "__contains__", "__delattr__", "__delitem__",
        "__dir__", "__doc__", "__eq__", "__format__", "__ge__", "__getattribute__", "__getitem__",
        "__getstate__", "__gt__", "__hash__", "__iadd__", "__imul__", "__init__",
        "__init_subclass__", "__iter__", "__le__", "__len__", "__lt__", "__mul__", "__ne__",
        "__new__", "__reduce__", "__reduce_ex__", "__repr__", "__reversed__", "__rmul__",
        "__setattr__", "__setitem__", "__sizeof__", "__str__", "__subclasshook__", "append",
        "clear", "copy", "count", "extend", "index", "insert", "pop", "remove", "reverse",
        "sort"};
    return *m;
  }
  static const std::vector<std::string>& StrMethods() {
    static const auto* m = new std::vector<std::string>{
        "__add__", "__class__", "__contains__", "__delattr__", "__dir__", "__doc__", "__eq__",
        "__format__", "__ge__", "__getattribute__", "__getitem__", "__getnewargs__",
        "__getstate__", "__gt__", "__hash__", "__init__", "__init_subclass__", "__iter__",
        "__le__", "__len__", "__lt__", "__mod__", "__mul__", "__ne__", "__new__", "__reduce__",
        "__reduce_ex__", "__repr__", "__rmod__", "__rmul__", "__setattr__", "__sizeof__",
        "__str__", "__subclasshook__", "capitalize", "casefold", "center", "count", "encode",
        "endswith", "expandtabs", "find", "format", "format_map", "index", "isalnum", "isalpha",
        "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable",
        "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip", "maketrans",
        "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust",
        "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip",
        "swapcase", "title", "translate", "upper", "zfill"};
    return *m;
  }

  bool GetAttr(const Value& v, const std::string& name, Value* out) {
    if (v.type == Value::Type::kModule) {
      auto* m = static_cast<ModuleObject*>(v.obj);
      if (Value* found = m->Find(name)) {
        *out = *found;
        return true;
      }
      std::vector<std::string> dir;
      for (const auto& [k, unused] : m->globals) dir.push_back(k);
      std::sort(dir.begin(), dir.end());
      return AttributeError("module '" + m->name + "' has no attribute '" + name + "'", dir,
                            name);
    }
    const std::vector<std::string>* methods = nullptr;
    if (v.type == Value::Type::kList) methods = &ListMethods();
    if (v.type == Value::Type::kStr) methods = &StrMethods();
    static const std::set<std::string> kSupported = {
        "append", "pop", "insert", "index", "count", "extend", "reverse", "clear", "copy",
        "remove", "sort", "upper", "lower", "strip", "join", "split", "replace", "startswith",
        "endswith", "find"};
    if (methods != nullptr &&
        std::find(methods->begin(), methods->end(), name) != methods->end()) {
      if (!kSupported.count(name)) {
        return Raise("NotImplementedError", "method '" + name + "' of '" + TypeName(v) +
                                                "' is not supported by the tapeloop interpreter");
      }
      auto* m = New<MethodObject>();
      m->self = v;
      m->name = name;
      *out = Value{Value::Type::kMethod, 0, m};
      return true;
    }
    return AttributeError("'" + TypeName(v) + "' object has no attribute '" + name + "'",
                          methods ? *methods : std::vector<std::string>{}, name);
  }

  bool AttributeError(const std::string& message, const std::vector<std::string>& dir,
                      const std::string& name) {
    Raise("AttributeError", message);
    if (auto s = Suggest(dir, name)) error_->name = *s;
    return false;
  }

  bool Index(const Value& index, int64_t size, const char* what, int64_t* out) {
    if (!IsIntLike(index)) {
      return TypeError(std::string(what) + " indices must be integers or slices, not " +
                       TypeName(index));
    }
    int64_t i = index.i < 0 ? index.i + size : index.i;
    if (i < 0 || i >= size) {
      return Raise("IndexError", std::string(what) + " index out of range");
    }
    *out = i;
    return true;
  }

  bool EvalSubscript(const Expr* e, Value* out) {
    Value v;
    if (!Eval(e->children[0].get(), &v)) return false;
    if (e->is_slice) {
      Value lo = None(), hi = None();
      if (e->children[1] && !Eval(e->children[1].get(), &lo)) return false;
      if (e->children[2] && !Eval(e->children[2].get(), &hi)) return false;
      int64_t size;
      if (v.type == Value::Type::kStr) {
        size = static_cast<int64_t>(S(v).size());
      } else if (v.type == Value::Type::kList) {
        size = static_cast<int64_t>(L(v).size());
      } else {
        return TypeError("'" + TypeName(v) + "' object is not subscriptable");
      }
      auto bound = [&](const Value& b, int64_t fallback, int64_t* r) {
        if (b.type == Value::Type::kNone) {
          *r = fallback;
          return true;
        }
        if (!IsIntLike(b)) {
          return TypeError("slice indices must be integers or None or have an __index__ method");
        }
        int64_t x = b.i < 0 ? std::max<int64_t>(b.i + size, 0) : std::min(b.i, size);
        *r = x;
        return true;
      };
      int64_t a = 0, z = 0;
      if (!bound(lo, 0, &a) || !bound(hi, size, &z)) return false;
      if (z < a) z = a;
      if (v.type == Value::Type::kStr) return MakeStr(S(v).substr(a, z - a), out);
      return MakeList(std::vector<Value>(L(v).begin() + a, L(v).begin() + z), out);
    }
    Value index;
    if (!Eval(e->children[1].get(), &index)) return false;
    int64_t i;
    switch (v.type) {
      case Value::Type::kList:
        if (!Index(index, static_cast<int64_t>(L(v).size()), "list", &i)) return false;
        *out = L(v)[i];
        return true;
      case Value::Type::kStr:
        if (!Index(index, static_cast<int64_t>(S(v).size()), "string", &i)) return false;
        *out = Str(std::string(1, S(v)[i]));
        return true;
      case Value::Type::kRange: {
        auto* r = static_cast<RangeObject*>(v.obj);
        if (!Index(index, r->Length(), "range object", &i)) return false;
        *out = Int(r->start + i * r->step);
        return true;
      }
      default:
        return TypeError("'" + TypeName(v) + "' object is not subscriptable");
    }
  }

  // ---- calls ----
  bool Call(const Value& fn, const std::vector<Value>& args,
            const std::vector<std::pair<std::string, Value>>& kwargs, Value* out) {
    if (++steps_ > limits_.max_steps) return BudgetExhausted();
    switch (fn.type) {
      case Value::Type::kFunction:
        return CallFunction(static_cast<FunctionObject*>(fn.obj), args, kwargs, out);
      case Value::Type::kBuiltin: return CallBuiltin(fn.i, args, kwargs, out);
      case Value::Type::kMethod:
        return CallMethod(static_cast<MethodObject*>(fn.obj), args, kwargs, out);
      default:
        return TypeError("'" + TypeName(fn) + "' object is not callable");
    }
  }

  static std::string QuotedList(const std::vector<std::string>& names) {
    std::string out;
    for (size_t i = 0; i < names.size(); ++i) {
      if (i > 0) out += names.size() == 2 ? " and " : (i + 1 == names.size() ? ", and " : ", ");
      out += "'" + names[i] + "'";
    }
    return out;
  }

  bool CallFunction(FunctionObject* fn, const std::vector<Value>& args,
                    const std::vector<std::pair<std::string, Value>>& kwargs, Value* out) {
    const FunctionDef* def = fn->def;
    size_t n = def->params.size();
    size_t ndefaults = fn->defaults.size();
    std::vector<std::optional<Value>> bound(n);
    for (size_t i = 0; i < args.size() && i < n; ++i) bound[i] = args[i];
    for (const auto& [key, value] : kwargs) {
      auto it = std::find(def->params.begin(), def->params.end(), key);
      if (it == def->params.end()) {
        return TypeError(fn->qualname + "() got an unexpected keyword argument '" + key + "'");
      }
      size_t i = it - def->params.begin();
      if (bound[i]) {
        return TypeError(fn->qualname + "() got multiple values for argument '" + key + "'");
      }
      bound[i] = value;
    }
    if (args.size() > n) {
      std::string sig = ndefaults > 0 ? "from " + std::to_string(n - ndefaults) + " to " +
                                            std::to_string(n)
                                      : std::to_string(n);
      bool plural = ndefaults > 0 || n != 1;
      return TypeError(fn->qualname + "() takes " + sig + " positional argument" +
                       (plural ? "s" : "") + " but " + std::to_string(args.size()) + " " +
                       (args.size() == 1 ? "was" : "were") + " given");
    }
    std::vector<std::string> missing;
    for (size_t i = 0; i < n - ndefaults; ++i) {
      if (!bound[i]) missing.push_back(def->params[i]);
    }
    if (!missing.empty()) {
      return TypeError(fn->qualname + "() missing " + std::to_string(missing.size()) +
                       " required positional argument" + (missing.size() == 1 ? "" : "s") +
                       ": " + QuotedList(missing));
    }
    if (static_cast<int>(stack_.size()) >= max_depth_) {
      return Raise("RecursionError", "maximum recursion depth exceeded");
    }
    auto frame = std::make_shared<Frame>();
    frame->id = ++next_frame_id_;
    frame->def = def;
    frame->module = fn->module;
    frame->line = def->line;
    for (size_t i = 0; i < n; ++i) {
      frame->locals[def->params[i]] = bound[i] ? *bound[i] : fn->defaults[i - (n - ndefaults)];
    }
    stack_.push_back(frame);
    Flow flow = Flow::kNormal;
    Value result = None();
    bool ok = ExecBlock(def->body, &flow, &result);
    stack_.pop_back();
    if (!ok) return false;
    *out = flow == Flow::kReturn ? result : None();
    return true;
  }

  bool NoKeywords(const std::string& name,
                  const std::vector<std::pair<std::string, Value>>& kwargs) {
    if (kwargs.empty()) return true;
    return TypeError(name + "() takes no keyword arguments");
  }

  bool ArgCount(const std::string& name, const std::vector<Value>& args, size_t lo, size_t hi) {
    if (args.size() >= lo && args.size() <= hi) return true;
    if (lo == hi) {
      if (lo == 1) {
        return TypeError(name + "() takes exactly one argument (" + std::to_string(args.size()) +
                         " given)");
      }
      return TypeError(name + " expected " + std::to_string(lo) + " arguments, got " +
                       std::to_string(args.size()));
    }
    if (args.size() < lo) {
      return TypeError(name + " expected at least " + std::to_string(lo) + " argument" +
                       (lo == 1 ? "" : "s") + ", got " + std::to_string(args.size()));
    }
    return TypeError(name + " expected at most " + std::to_string(hi) + " argument" +
                     (hi == 1 ? "" : "s") + ", got " + std::to_string(args.size()));
  }

  bool Print(const std::string& text) {
    output_ += text;
    if (static_cast<int64_t>(output_.size()) > limits_.max_output_bytes) {
      output_.resize(limits_.max_output_bytes);
      return RaiseFatal(Outcome::kOutputLimit, "OutputLimitExceeded",
                        "the program printed more than " +
                            std::to_string(limits_.max_output_bytes) +
                            " bytes (the tapeloop interpreter's output cap)");
    }
    return true;
  }

  bool CallBuiltin(int64_t id, const std::vector<Value>& args,
                   const std::vector<std::pair<std::string, Value>>& kwargs, Value* out) {
    *out = None();
    if (id >= 1000) {
      return Raise("NotImplementedError", "builtin '" + builtin_names_[id - 1000] +
                                              "' is not available in the tapeloop interpreter");
    }
    switch (id) {
      case kPrint: {
        std::string sep = " ", end = "\n";
        for (const auto& [key, value] : kwargs) {
          if (key != "sep" && key != "end") {
            return TypeError("'" + key + "' is an invalid keyword argument for print()");
          }
          if (value.type != Value::Type::kStr && value.type != Value::Type::kNone) {
            return TypeError(key + " must be None or a string, not " + TypeName(value));
          }
          if (value.type == Value::Type::kStr) (key == "sep" ? sep : end) = S(value);
        }
        std::string text;
        for (size_t i = 0; i < args.size(); ++i) {
          if (i) text += sep;
          text += ToStr(args[i]);
        }
        text += end;
        steps_ += static_cast<int64_t>(text.size()) / 64;
        return Print(text);
      }
      case kRange: {
        if (!NoKeywords("range", kwargs) || !ArgCount("range", args, 1, 3)) return false;
        for (const auto& a : args) {
          if (!IsIntLike(a)) {
            return TypeError("'" + TypeName(a) + "' object cannot be interpreted as an integer");
          }
        }
        auto* r = New<RangeObject>();
        if (args.size() == 1) {
          r->stop = args[0].i;
        } else {
          r->start = args[0].i;
          r->stop = args[1].i;
          if (args.size() == 3) r->step = args[2].i;
        }
        if (r->step == 0) return Raise("ValueError", "range() arg 3 must not be zero");
        *out = Value{Value::Type::kRange, 0, r};
        return true;
      }
      case kLen: {
        if (!NoKeywords("len", kwargs) || !ArgCount("len", args, 1, 1)) return false;
        const Value& v = args[0];
        if (v.type == Value::Type::kStr) *out = Int(static_cast<int64_t>(S(v).size()));
        else if (v.type == Value::Type::kList) *out = Int(static_cast<int64_t>(L(v).size()));
        else if (v.type == Value::Type::kRange) *out = Int(static_cast<RangeObject*>(v.obj)->Length());
        else return TypeError("object of type '" + TypeName(v) + "' has no len()");
        return true;
      }
      case kStr:
      case kRepr: {
        if (!NoKeywords(id == kStr ? "str" : "repr", kwargs)) return false;
        if (id == kStr && args.empty()) return MakeStr("", out);
        if (!ArgCount(id == kStr ? "str" : "repr", args, 1, 1)) return false;
        return MakeStr(id == kStr ? ToStr(args[0]) : Repr(args[0]), out);
      }
      case kInt: {
        if (!NoKeywords("int", kwargs)) return false;
        if (args.empty()) {
          *out = Int(0);
          return true;
        }
        if (args.size() > 1) return TypeError("int() takes at most 1 argument (" +
                                              std::to_string(args.size()) + " given)");
        const Value& v = args[0];
        if (IsIntLike(v)) {
          *out = Int(v.i);
          return true;
        }
        if (v.type == Value::Type::kStr) {
          std::string s = S(v);
          size_t a = s.find_first_not_of(" \t\n\r\f\v");
          size_t b = s.find_last_not_of(" \t\n\r\f\v");
          std::string t = a == std::string::npos ? "" : s.substr(a, b - a + 1);
          size_t p = (!t.empty() && (t[0] == '-' || t[0] == '+')) ? 1 : 0;
          bool ok = t.size() > p && t.size() - p <= 18 &&
                    std::all_of(t.begin() + p, t.end(), [](char c) { return c >= '0' && c <= '9'; });
          if (!ok) {
            return Raise("ValueError", "invalid literal for int() with base 10: " + ReprStr(s));
          }
          *out = Int(std::stoll(t));
          return true;
        }
        return TypeError("int() argument must be a string, a bytes-like object or a real number, "
                         "not '" + TypeName(v) + "'");
      }
      case kBool: {
        if (!NoKeywords("bool", kwargs)) return false;
        if (args.size() > 1) return TypeError("bool expected at most 1 argument, got " +
                                              std::to_string(args.size()));
        *out = Bool(!args.empty() && Truthy(args[0]));
        return true;
      }
      case kAbs: {
        if (!NoKeywords("abs", kwargs) || !ArgCount("abs", args, 1, 1)) return false;
        if (!IsIntLike(args[0])) {
          return TypeError("bad operand type for abs(): '" + TypeName(args[0]) + "'");
        }
        if (args[0].i == INT64_MIN) return Overflow();
        *out = Int(args[0].i < 0 ? -args[0].i : args[0].i);
        return true;
      }
      case kMin:
      case kMax: {
        std::string name = id == kMin ? "min" : "max";
        if (!kwargs.empty()) {
          return TypeError("'" + kwargs[0].first + "' is an invalid keyword argument for " +
                           name + "()");
        }
        if (args.empty()) {
          return TypeError(name + " expected at least 1 argument, got 0");
        }
        std::vector<Value> items;
        if (args.size() == 1) {
          if (!Materialize(args[0], &items)) return false;
          if (items.empty()) return Raise("ValueError", name + "() arg is an empty sequence");
        } else {
          items = args;
        }
        Value best = items[0];
        for (size_t i = 1; i < items.size(); ++i) {
          bool lt;
          if (id == kMin) {
            if (!Less(items[i], best, "<", &lt)) return false;
          } else {
            // CPython's max tests item > best.
            if (!Less(best, items[i], ">", &lt, true)) return false;
          }
          if (lt) best = items[i];
        }
        *out = best;
        return true;
      }
      case kSum: {
        if (!NoKeywords("sum", kwargs) || !ArgCount("sum", args, 1, 2)) return false;
        std::vector<Value> items;
        if (!Materialize(args[0], &items)) return false;
        Value total = args.size() == 2 ? args[1] : Int(0);
        if (total.type == Value::Type::kStr) {
          return TypeError("sum() can't sum strings [use ''.join(seq) instead]");
        }
        for (const auto& item : items) {
          if (!Binary("+", total, item, false, &total)) return false;
        }
        *out = total;
        return true;
      }
      case kList: {
        if (!NoKeywords("list", kwargs)) return false;
        if (args.size() > 1) {
          return TypeError("list expected at most 1 argument, got " + std::to_string(args.size()));
        }
        std::vector<Value> items;
        if (!args.empty() && !Materialize(args[0], &items)) return false;
        return MakeList(std::move(items), out);
      }
    }
    return TypeError("unknown builtin");
  }

  bool CallMethod(MethodObject* m, const std::vector<Value>& args,
                  const std::vector<std::pair<std::string, Value>>& kwargs, Value* out) {
    *out = None();
    const std::string& name = m->name;
    std::string qual = TypeName(m->self) + "." + name;
    if (!NoKeywords(name, kwargs)) return false;
    auto exactly = [&](size_t k) {
      if (args.size() == k) return true;
      if (k == 0) {
        return TypeError(qual + "() takes no arguments (" + std::to_string(args.size()) +
                         " given)");
      }
      return TypeError(qual + "() takes exactly one argument (" + std::to_string(args.size()) +
                       " given)");
    };
    if (m->self.type == Value::Type::kList) {
      auto& items = L(m->self);
      if (name == "append") {
        if (!exactly(1) || !Charge(1, "list")) return false;
        if (static_cast<int64_t>(items.size()) + 1 > limits_.max_object_size) {
          return Charge(limits_.max_object_size + 1, "list");
        }
        items.push_back(args[0]);
        return true;
      }
      if (name == "extend") {
        if (!exactly(1)) return false;
        std::vector<Value> more;
        if (!Materialize(args[0], &more)) return false;
        if (!Charge(static_cast<int64_t>(items.size() + more.size()), "list")) return false;
        items.insert(items.end(), more.begin(), more.end());
        return true;
      }
      if (name == "pop") {
        if (args.size() > 1) return TypeError("pop expected at most 1 argument, got " +
                                              std::to_string(args.size()));
        if (items.empty()) return Raise("IndexError", "pop from empty list");
        int64_t i = static_cast<int64_t>(items.size()) - 1;
        if (!args.empty()) {
          if (!IsIntLike(args[0])) {
            return TypeError("'" + TypeName(args[0]) +
                             "' object cannot be interpreted as an integer");
          }
          i = args[0].i < 0 ? args[0].i + static_cast<int64_t>(items.size()) : args[0].i;
          if (i < 0 || i >= static_cast<int64_t>(items.size())) {
            return Raise("IndexError", "pop index out of range");
          }
        }
        *out = items[i];
        items.erase(items.begin() + i);
        return true;
      }
      if (name == "insert") {
        if (args.size() != 2) return TypeError("insert expected 2 arguments, got " +
                                               std::to_string(args.size()));
        if (!IsIntLike(args[0])) {
          return TypeError("'" + TypeName(args[0]) +
                           "' object cannot be interpreted as an integer");
        }
        if (!Charge(1, "list")) return false;
        int64_t size = static_cast<int64_t>(items.size());
        int64_t i = args[0].i < 0 ? std::max<int64_t>(args[0].i + size, 0)
                                  : std::min(args[0].i, size);
        items.insert(items.begin() + i, args[1]);
        return true;
      }
      if (name == "index" || name == "count" || name == "remove") {
        if (!exactly(1)) return false;
        int64_t count = 0;
        for (size_t i = 0; i < items.size(); ++i) {
          if (Equal(items[i], args[0])) {
            if (name == "index") {
              *out = Int(static_cast<int64_t>(i));
              return true;
            }
            if (name == "remove") {
              items.erase(items.begin() + i);
              return true;
            }
            ++count;
          }
        }
        if (name == "count") {
          *out = Int(count);
          return true;
        }
        if (name == "index") return Raise("ValueError", Repr(args[0]) + " is not in list");
        return Raise("ValueError", "list.remove(x): x not in list");
      }
      if (name == "reverse") {
        if (!exactly(0)) return false;
        std::reverse(items.begin(), items.end());
        return true;
      }
      if (name == "clear") {
        if (!exactly(0)) return false;
        items.clear();
        return true;
      }
      if (name == "copy") {
        if (!exactly(0)) return false;
        return MakeList(items, out);
      }
      if (name == "sort") {
        if (!exactly(0)) return false;
        bool failed = false;
        std::vector<Value> sorted = items;
        std::stable_sort(sorted.begin(), sorted.end(), [&](const Value& a, const Value& b) {
          bool lt = false;
          if (failed) return false;
          if (!Less(a, b, "<", &lt)) failed = true;
          return lt;
        });
        if (failed) return false;
        items = std::move(sorted);
        return true;
      }
    }
    if (m->self.type == Value::Type::kStr) {
      const std::string& s = S(m->self);
      if (name == "upper" || name == "lower" || name == "strip") {
        if (!exactly(0)) return false;
        std::string r = s;
        if (name == "upper") for (auto& c : r) c = static_cast<char>(std::toupper(c));
        if (name == "lower") for (auto& c : r) c = static_cast<char>(std::tolower(c));
        if (name == "strip") {
          size_t a = r.find_first_not_of(" \t\n\r\f\v");
          size_t b = r.find_last_not_of(" \t\n\r\f\v");
          r = a == std::string::npos ? "" : r.substr(a, b - a + 1);
        }
        return MakeStr(r, out);
      }
      if (name == "startswith" || name == "endswith" || name == "find") {
        if (!exactly(1)) return false;
        if (args[0].type != Value::Type::kStr) {
          return TypeError(name == "find" ? "must be str, not " + TypeName(args[0])
                                          : name + " first arg must be str or a tuple of str, "
                                                   "not " + TypeName(args[0]));
        }
        const std::string& t = S(args[0]);
        if (name == "find") {
          size_t at = s.find(t);
          *out = Int(at == std::string::npos ? -1 : static_cast<int64_t>(at));
        } else if (name == "startswith") {
          *out = Bool(s.compare(0, t.size(), t) == 0 && s.size() >= t.size());
        } else {
          *out = Bool(s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0);
        }
        return true;
      }
      if (name == "join") {
        if (!exactly(1)) return false;
        std::vector<Value> items;
        if (!Materialize(args[0], &items)) return false;
        std::string r;
        for (size_t i = 0; i < items.size(); ++i) {
          if (items[i].type != Value::Type::kStr) {
            return TypeError("sequence item " + std::to_string(i) + ": expected str instance, " +
                             TypeName(items[i]) + " found");
          }
          if (i) r += s;
          r += S(items[i]);
        }
        return MakeStr(r, out);
      }
      if (name == "split") {
        if (args.size() > 1) return TypeError("split() takes at most 1 argument");
        std::vector<Value> parts;
        if (args.empty() || args[0].type == Value::Type::kNone) {
          size_t i = 0;
          while (i < s.size()) {
            while (i < s.size() && IsWs(s[i])) ++i;
            size_t j = i;
            while (j < s.size() && !IsWs(s[j])) ++j;
            if (j > i) parts.push_back(Str(s.substr(i, j - i)));
            i = j;
          }
        } else {
          if (args[0].type != Value::Type::kStr) {
            return TypeError("must be str or None, not " + TypeName(args[0]));
          }
          const std::string& sep = S(args[0]);
          if (sep.empty()) return Raise("ValueError", "empty separator");
          size_t start = 0;
          while (true) {
            size_t at = s.find(sep, start);
            if (at == std::string::npos) {
              parts.push_back(Str(s.substr(start)));
              break;
            }
            parts.push_back(Str(s.substr(start, at - start)));
            start = at + sep.size();
          }
        }
        return MakeList(std::move(parts), out);
      }
      if (name == "replace") {
        if (args.size() != 2) return TypeError("replace expected 2 arguments, got " +
                                               std::to_string(args.size()));
        if (args[0].type != Value::Type::kStr || args[1].type != Value::Type::kStr) {
          return TypeError("replace() argument must be str");
        }
        const std::string& from = S(args[0]);
        const std::string& to = S(args[1]);
        std::string r;
        if (from.empty()) {
          r = to;
          for (char c : s) {
            r += c;
            r += to;
          }
        } else {
          size_t start = 0;
          while (true) {
            size_t at = s.find(from, start);
            if (at == std::string::npos) {
              r += s.substr(start);
              break;
            }
            r += s.substr(start, at - start) + to;
            start = at + from.size();
          }
        }
        return MakeStr(r, out);
      }
    }
    return TypeError("unsupported method " + qual);
  }

  // ---- statements ----
  bool BudgetExhausted() {
    return RaiseFatal(Outcome::kBudgetExhausted, "BudgetExhausted",
                      "instruction budget exhausted after " + std::to_string(limits_.max_steps) +
                          " steps (the program may loop forever)");
  }

  // A "line" event: counts a step and lets the debugger stop here.
  bool LineEvent(int line) {
    if (++steps_ > limits_.max_steps) return BudgetExhausted();
    stack_.back()->line = line;
    if (hook_ != nullptr && eval_depth_ == 0) {
      if (!hook_->OnLine(stack_)) {
        return RaiseFatal(Outcome::kStopped, "Stopped", "the run was stopped by the debugger");
      }
    }
    return true;
  }

  bool ExecBlock(const Block& block, Flow* flow, Value* result) {
    for (const auto& s : block) {
      if (!Exec(s.get(), flow, result)) {
        Note(s->range, nullptr);
        return false;
      }
      if (*flow != Flow::kNormal) return true;
    }
    return true;
  }

  bool Store(const Expr* target, const Value& v) {
    if (target->kind == ExprKind::kName) {
      StoreName(target->name, v);
      return true;
    }
    // Subscript target.
    Value container, index;
    if (!Eval(target->children[0].get(), &container)) return false;
    if (!Eval(target->children[1].get(), &index)) return false;
    bool ok = true;
    if (container.type == Value::Type::kList) {
      int64_t i;
      auto& items = L(container);
      if (!IsIntLike(index)) {
        ok = TypeError("list indices must be integers or slices, not " + TypeName(index));
      } else {
        i = index.i < 0 ? index.i + static_cast<int64_t>(items.size()) : index.i;
        if (i < 0 || i >= static_cast<int64_t>(items.size())) {
          ok = Raise("IndexError", "list assignment index out of range");
        } else {
          items[i] = v;
        }
      }
    } else {
      ok = TypeError("'" + TypeName(container) + "' object does not support item assignment");
    }
    if (!ok) Note(target->range, target);
    return ok;
  }

  bool Exec(const Stmt* s, Flow* flow, Value* result) {
    if (!LineEvent(s->range.line)) return false;
    switch (s->kind) {
      case StmtKind::kExpr: {
        Value v;
        return Eval(s->exprs[0].get(), &v);
      }
      case StmtKind::kAssign: {
        Value v;
        if (!Eval(s->exprs.back().get(), &v)) return false;
        for (size_t i = 0; i + 1 < s->exprs.size(); ++i) {
          if (!Store(s->exprs[i].get(), v)) return false;
        }
        return true;
      }
      case StmtKind::kAugAssign: {
        const Expr* target = s->exprs[0].get();
        Value current, operand, r;
        if (target->kind == ExprKind::kName) {
          if (!Eval(target, &current)) return false;
          if (!Eval(s->exprs[1].get(), &operand)) return false;
          if (!Binary(s->op, current, operand, true, &r)) return false;
          StoreName(target->name, r);
          return true;
        }
        Value container, index;
        if (!Eval(target->children[0].get(), &container) ||
            !Eval(target->children[1].get(), &index))
          return false;
        // Load through the subscript node so errors point at it.
        if (!Eval(target, &current)) return false;
        if (!Eval(s->exprs[1].get(), &operand)) return false;
        if (!Binary(s->op, current, operand, true, &r)) return false;
        return Store(target, r);
      }
      case StmtKind::kIf: {
        Value test;
        if (!Eval(s->exprs[0].get(), &test)) return false;
        return ExecBlock(Truthy(test) ? s->body : s->orelse, flow, result);
      }
      case StmtKind::kWhile: {
        bool first = true;
        while (true) {
          if (!first && !LineEvent(s->range.line)) return false;
          first = false;
          Value test;
          if (!Eval(s->exprs[0].get(), &test)) return false;
          if (!Truthy(test)) return ExecBlock(s->orelse, flow, result);
          if (!ExecBlock(s->body, flow, result)) return false;
          if (*flow == Flow::kBreak) {
            *flow = Flow::kNormal;
            return true;
          }
          if (*flow == Flow::kReturn) return true;
          *flow = Flow::kNormal;
        }
      }
      case StmtKind::kFor: {
        Value iterable;
        if (!Eval(s->exprs[1].get(), &iterable)) return false;
        const Expr* target = s->exprs[0].get();
        if (iterable.type != Value::Type::kList && iterable.type != Value::Type::kStr &&
            iterable.type != Value::Type::kRange) {
          return TypeError("'" + TypeName(iterable) + "' object is not iterable");
        }
        for (int64_t i = 0;; ++i) {
          if (i > 0 && !LineEvent(s->range.line)) return false;
          Value item;
          if (iterable.type == Value::Type::kList) {
            if (i >= static_cast<int64_t>(L(iterable).size())) break;
            item = L(iterable)[i];
          } else if (iterable.type == Value::Type::kStr) {
            if (i >= static_cast<int64_t>(S(iterable).size())) break;
            item = Str(std::string(1, S(iterable)[i]));
          } else {
            auto* r = static_cast<RangeObject*>(iterable.obj);
            if (i >= r->Length()) break;
            item = Int(r->start + i * r->step);
          }
          if (!Store(target, item)) return false;
          if (!ExecBlock(s->body, flow, result)) return false;
          if (*flow == Flow::kBreak) {
            *flow = Flow::kNormal;
            return true;
          }
          if (*flow == Flow::kReturn) return true;
          *flow = Flow::kNormal;
        }
        return ExecBlock(s->orelse, flow, result);
      }
      case StmtKind::kDef: {
        auto* fn = New<FunctionObject>();
        fn->def = s->def.get();
        fn->module = stack_.back()->module;
        const Frame& f = *stack_.back();
        fn->qualname = f.def ? f.def->name + ".<locals>." + s->def->name : s->def->name;
        for (const auto& d : s->def->defaults) {
          Value v;
          if (!Eval(d.get(), &v)) return false;
          fn->defaults.push_back(v);
        }
        StoreName(s->def->name, Value{Value::Type::kFunction, 0, fn});
        return true;
      }
      case StmtKind::kReturn: {
        *result = None();
        if (!s->exprs.empty() && !Eval(s->exprs[0].get(), result)) return false;
        *flow = Flow::kReturn;
        return true;
      }
      case StmtKind::kPass:
      case StmtKind::kGlobal: return true;
      case StmtKind::kBreak:
        *flow = Flow::kBreak;
        return true;
      case StmtKind::kContinue:
        *flow = Flow::kContinue;
        return true;
      case StmtKind::kImport: {
        for (size_t i = 0; i < s->names.size(); ++i) {
          ModuleObject* m;
          if (!Import(s->names[i], &m)) return false;
          StoreName(s->as_names[i], Value{Value::Type::kModule, 0, m});
        }
        return true;
      }
      case StmtKind::kFromImport: {
        ModuleObject* m;
        if (!Import(s->module, &m)) return false;
        for (size_t i = 0; i < s->names.size(); ++i) {
          Value* v = m->Find(s->names[i]);
          if (v == nullptr) {
            if (m->initializing) {
              return Raise("ImportError", "cannot import name '" + s->names[i] +
                                              "' from partially initialized module '" + m->name +
                                              "' (most likely due to a circular import) (" +
                                              m->filename + ")");
            }
            return Raise("ImportError", "cannot import name '" + s->names[i] + "' from '" +
                                            m->name + "' (" + m->filename + ")");
          }
          StoreName(s->as_names[i], *v);
        }
        return true;
      }
    }
    return TypeError("unsupported statement");
  }

  ModuleObject* NewModule(const std::string& name, const std::string& filename,
                          const Module* ast, bool main) {
    auto* m = New<ModuleObject>();
    m->name = name;
    m->filename = filename;
    m->ast = ast;
    m->Set("__name__", Str(name));
    m->Set("__doc__", None());
    m->Set("__package__", main ? None() : Str(""));
    m->Set("__loader__", None());
    m->Set("__spec__", None());
    if (main) m->Set("__annotations__", None());
    if (main) m->Set("__builtins__", None());
    m->Set("__file__", Str(filename));
    m->Set("__cached__", None());
    if (!main) m->Set("__builtins__", None());
    return m;
  }

  bool ExecModule(ModuleObject* m) {
    if (static_cast<int>(stack_.size()) >= max_depth_) {
      return Raise("RecursionError", "maximum recursion depth exceeded");
    }
    auto frame = std::make_shared<Frame>();
    frame->id = ++next_frame_id_;
    frame->module = m;
    frame->line = 1;
    stack_.push_back(frame);
    Flow flow = Flow::kNormal;
    Value result;
    bool ok = ExecBlock(m->ast->body, &flow, &result);
    stack_.pop_back();
    m->initializing = false;
    return ok;
  }

  bool Import(const std::string& name, ModuleObject** out) {
    auto loaded = modules_.find(name);
    if (loaded != modules_.end()) {
      *out = loaded->second;
      return true;
    }
    std::string filename = name + ".py";
    auto file = files_.find(filename);
    if (name.find('.') != std::string::npos || file == files_.end()) {
      return Raise("ModuleNotFoundError", "No module named '" + name + "'");
    }
    ParseResult parsed = ParseModule(filename, file->second);
    if (parsed.error) {
      Raise("SyntaxError", parsed.error->message);
      error_->type = parsed.error->type;
      error_->syntax = parsed.error;
      return false;
    }
    const Module* ast = parsed.module.get();
    asts_.push_back(std::move(parsed.module));
    ModuleObject* m = NewModule(name, filename, ast, false);
    modules_[name] = m;
    if (!ExecModule(m)) {
      modules_.erase(name);
      return false;
    }
    *out = m;
    return true;
  }

  std::string SuggestionFor(const Error& e) {
    if (e.type == "AttributeError") {
      return e.name.empty() ? "" : ". Did you mean: '" + e.name + "'?";
    }
    if (e.type != "NameError" || e.name.empty() || e.snapshot.empty()) return "";
    const Frame& f = *e.snapshot.back();
    if (f.def != nullptr) {
      if (auto s = Suggest(f.def->varnames, e.name)) return ". Did you mean: '" + *s + "'?";
    }
    std::vector<std::string> globals;
    for (const auto& [k, unused] : f.module->globals) globals.push_back(k);
    if (auto s = Suggest(globals, e.name)) return ". Did you mean: '" + *s + "'?";
    if (auto s = Suggest(BuiltinNames(), e.name)) return ". Did you mean: '" + *s + "'?";
    return "";
  }

  void FillResult(RunResult* r) {
    r->output = output_;
    r->steps = steps_;
    if (!error_) return;
    const Error& e = *error_;
    r->outcome = e.outcome;
    r->exception_type = e.type;
    r->exception_message = e.message;
    // Outermost first; CPython prints at most sys.tracebacklimit (1000) entries, the innermost.
    std::vector<const Entry*> entries;
    for (auto it = e.entries.rbegin(); it != e.entries.rend(); ++it) entries.push_back(&*it);
    if (entries.size() > 1000) entries.erase(entries.begin(), entries.end() - 1000);
    for (const Entry* entry : entries) {
      r->frames.push_back(TraceFrame{entry->filename, entry->line, entry->function});
    }
    std::string text;
    if (!entries.empty()) text = "Traceback (most recent call last):\n";
    std::string last_file, last_name;
    int last_line = -1;
    int count = 0;
    auto repeated = [&]() {
      if (count > 3) {
        int more = count - 3;
        text += "  [Previous line repeated " + std::to_string(more) + " more time" +
                (more > 1 ? "s" : "") + "]\n";
      }
    };
    for (const Entry* entry : entries) {
      if (entry->filename != last_file || entry->line != last_line ||
          entry->function != last_name) {
        repeated();
        last_file = entry->filename;
        last_line = entry->line;
        last_name = entry->function;
        count = 0;
      }
      ++count;
      if (count <= 3) text += entry->text;
    }
    repeated();
    if (e.syntax) {
      text += FormatSyntaxError(*e.syntax);
    } else {
      text += e.type + ": " + e.message + SuggestionFor(e) + "\n";
    }
    r->error_text = text;
  }

  const FileMap& files_;
  RunLimits limits_;
  int max_depth_ = 1000;
  LineHook* hook_ = nullptr;
  std::vector<std::unique_ptr<Object>> arena_;
  std::vector<std::unique_ptr<Module>> asts_;
  std::map<std::string, ModuleObject*> modules_;
  std::vector<std::shared_ptr<Frame>> stack_;
  std::vector<std::shared_ptr<Frame>> post_mortem_;
  std::unique_ptr<Error> error_;
  std::unordered_map<const FunctionDef*, std::unordered_set<std::string>> local_sets_;
  std::unordered_map<const Expr*, Value> constants_;
  std::vector<std::string> builtin_names_ = {"print", "range", "len", "str", "int", "bool",
                                             "abs",   "min",   "max", "sum", "list", "repr"};
  std::string output_;
  int64_t steps_ = 0;
  int64_t allocated_ = 0;
  int64_t next_frame_id_ = 0;
  int eval_depth_ = 0;
  bool ran_ = false;
};

RunResult Interpreter::Impl::Run(const std::string& main_file, LineHook* hook) {
  RunResult result;
  if (ran_) {
    result.outcome = Outcome::kException;
    result.exception_type = "RuntimeError";
    result.exception_message = "Interpreter::Run called twice";
    result.error_text = "RuntimeError: Interpreter::Run called twice\n";
    return result;
  }
  ran_ = true;
  hook_ = hook;
  max_depth_ = limits_.max_depth;
  auto file = files_.find(main_file);
  if (file == files_.end()) {
    result.outcome = Outcome::kException;
    result.exception_type = "FileNotFoundError";
    result.exception_message = "can't open file '" + main_file + "': [Errno 2] No such file or directory";
    result.error_text = "python3: " + result.exception_message + "\n";
    return result;
  }
  ParseResult parsed = ParseModule(main_file, file->second);
  if (parsed.error) {
    result.outcome = Outcome::kSyntaxError;
    result.exception_type = parsed.error->type;
    result.exception_message = parsed.error->message;
    result.error_text = FormatSyntaxError(*parsed.error);
    result.frames.push_back(TraceFrame{main_file, parsed.error->line, ""});
    return result;
  }
  const Module* ast = parsed.module.get();
  asts_.push_back(std::move(parsed.module));
  ModuleObject* main = NewModule("__main__", main_file, ast, true);
  modules_["__main__"] = main;
  ExecModule(main);
  if (error_) {
    if (error_->syntax) {
      // A SyntaxError raised by an import is an ordinary exception of the importer.
      error_->outcome = Outcome::kSyntaxError;
    }
    post_mortem_ = error_->snapshot;
  }
  FillResult(&result);
  return result;
}

std::string Interpreter::Impl::EvalInFrame(const std::string& expression, size_t frame_index,
                                           bool* ok_out) {
  bool ignored;
  bool& ok = ok_out ? *ok_out : ignored;
  ok = false;
  std::unique_ptr<Expr> expr;
  ParseResult parsed = ParseExpression(expression, &expr);
  if (parsed.error) return parsed.error->type + ": " + parsed.error->message;
  std::vector<std::shared_ptr<Frame>> frames = Stack();
  if (frames.empty()) return "no frame: the program is not running";
  if (frame_index >= frames.size()) return "no such frame";
  // Evaluate with the selected frame on top, a fresh error slot, output and budget.
  std::vector<std::shared_ptr<Frame>> saved_stack = std::move(stack_);
  std::unique_ptr<Error> saved_error = std::move(error_);
  std::string saved_output = std::move(output_);
  int64_t saved_steps = steps_;
  int64_t saved_max_steps = limits_.max_steps;
  int64_t saved_max_output = limits_.max_output_bytes;
  int saved_depth = max_depth_;
  stack_.assign(frames.begin(), frames.begin() + frame_index + 1);
  output_.clear();
  steps_ = 0;
  limits_.max_steps = 100'000;
  limits_.max_output_bytes = 64 << 10;
  max_depth_ = std::min<int>(max_depth_, static_cast<int>(stack_.size()) + 100);
  ++eval_depth_;
  Value v;
  ok = Eval(expr.get(), &v);
  --eval_depth_;
  std::string text = output_;
  if (ok) {
    text += Repr(v);
  } else {
    text += error_->type + ": " + error_->message + SuggestionFor(*error_);
  }
  stack_ = std::move(saved_stack);
  error_ = std::move(saved_error);
  output_ = std::move(saved_output);
  steps_ = saved_steps;
  limits_.max_steps = saved_max_steps;
  limits_.max_output_bytes = saved_max_output;
  max_depth_ = saved_depth;
  return text;
}

Interpreter::Interpreter(FileMap files, RunLimits limits) : files_(std::move(files)) {
  impl_ = std::make_unique<Impl>(files_, limits);
}
Interpreter::~Interpreter() = default;

RunResult Interpreter::Run(const std::string& main_file, LineHook* hook) {
  return impl_->Run(main_file, hook);
}
std::vector<std::shared_ptr<Frame>> Interpreter::Stack() const { return impl_->Stack(); }
std::string Interpreter::output() const { return impl_->output(); }
std::string Interpreter::EvalInFrame(const std::string& expression, size_t frame_index,
                                     bool* ok) {
  return impl_->EvalInFrame(expression, frame_index, ok);
}

namespace {
void* ThreadMain(void* arg) {
  (*static_cast<const std::function<void()>*>(arg))();
  return nullptr;
}
}  // namespace

void RunOnLargeStack(const std::function<void()>& fn, size_t stack_bytes) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, stack_bytes);
  pthread_t thread;
  if (pthread_create(&thread, &attr, ThreadMain, const_cast<std::function<void()>*>(&fn)) != 0) {
    pthread_attr_destroy(&attr);
    fn();  // no thread available: run here (shallow programs still work)
    return;
  }
  pthread_attr_destroy(&attr);
  pthread_join(thread, nullptr);
}

RunResult RunProgram(const FileMap& files, const std::string& main_file, RunLimits limits) {
  RunResult result;
  Interpreter interpreter(files, limits);
  RunOnLargeStack([&] { result = interpreter.Run(main_file); });
  return result;
}

}  // namespace tapeloop::debugger
