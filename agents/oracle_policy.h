// OraclePolicy: plays each episode's expert trajectory through the agent loop. It emits the
// expert's generated tokens and checks that every token the loop appends (the tools'
// observations) is exactly the expert's; a mismatch is a FAILED_PRECONDITION naming the
// position, so a tool that disagrees with the task's expert is caught. In the tool-free modes
// (cot, direct) it produces the whole trajectory itself.
#ifndef TAPELOOP_AGENTS_ORACLE_POLICY_H_
#define TAPELOOP_AGENTS_ORACLE_POLICY_H_

#include <map>

#include "agents/policy.h"

namespace tapeloop::agents {

class OraclePolicy final : public Policy {
 public:
  std::string name() const override { return "oracle"; }
  // INVALID_ARGUMENT if the context has no expert or the prompt is not the expert's prefix.
  absl::StatusOr<int> Open(const EpisodeContext& context,
                           std::span<const TokenId> prompt) override;
  absl::Status Append(int slot, std::span<const TokenId> tokens) override;
  // Past the expert's end it emits [EOS].
  absl::StatusOr<std::vector<TokenId>> Step(std::span<const int> slots) override;
  void Close(int slot) override { slots_.erase(slot); }

 private:
  struct Slot {
    const tasks::Trajectory* expert = nullptr;
    size_t cursor = 0;
  };
  std::map<int, Slot> slots_;
  int next_slot_ = 0;
};

}  // namespace tapeloop::agents

#endif  // TAPELOOP_AGENTS_ORACLE_POLICY_H_
