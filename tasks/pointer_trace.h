// Builds a pointer-mode trajectory while running the real pointer memory (tools/), so every
// observation in an expert trajectory is exactly what the tool answers. Used by the tasks'
// experts; not thread-safe.
#ifndef TAPELOOP_TASKS_POINTER_TRACE_H_
#define TAPELOOP_TASKS_POINTER_TRACE_H_

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tokenizer.h"
#include "tasks/trajectory.h"
#include "tools/pointer_memory.h"

namespace tapeloop::tasks {

class PointerTrace {
 public:
  // `prompt`: [BOS] followed by the input; memory starts as the input.
  explicit PointerTrace(const std::vector<TokenId>& prompt, int max_pointers);
  PointerTrace(const PointerTrace&) = delete;
  PointerTrace& operator=(const PointerTrace&) = delete;

  void New(int k) { Command(k, tokens::PointerOp::kNew); }
  void Left(int k) { Command(k, tokens::PointerOp::kLeft); }
  void Right(int k) { Command(k, tokens::PointerOp::kRight); }
  // [Pk.READ] and its observation; returns the observed token ([END] after an error).
  TokenId Read(int k);
  // A thought (stored in memory) / [ANS] / an output token (stored too) / [EOS].
  void Think(TokenId t);
  void Answer();
  void Output(TokenId t);
  void Eos();

  // The trajectory, or the first error the memory reported (an expert bug).
  absl::StatusOr<Trajectory> Finish();

 private:
  std::optional<TokenId> Command(int k, tokens::PointerOp op);
  void Emit(TokenId t, Role role);

  tools::PointerMemory memory_;
  Trajectory trajectory_;
  absl::Status status_;
};

inline int DigitValue(TokenId t) { return tokens::IsDigit(t) ? t - '0' : -1; }
inline TokenId DigitToken(int d) { return static_cast<TokenId>('0' + d); }

}  // namespace tapeloop::tasks

#endif  // TAPELOOP_TASKS_POINTER_TRACE_H_
