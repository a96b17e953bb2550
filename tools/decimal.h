// Exact signed integers of any (bounded) length, parsed from and printed as decimal strings.
// Numbers never pass through floating point: digits are held in base-1e9 limbs.
//
// Cost: Add / Sub / Compare O(n); Mul O(n*m) limb products with 128-bit column sums
// (about 0.1 s for two 100,000-digit operands on one core).
#ifndef TAPELOOP_TOOLS_DECIMAL_H_
#define TAPELOOP_TOOLS_DECIMAL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tapeloop::tools {

class Decimal {
 public:
  Decimal() = default;  // zero

  // Parses "-?[0-9]+" (leading zeros allowed, "-0" is zero). INVALID_ARGUMENT naming the first
  // bad character, or OUT_OF_RANGE if there are more than `max_digits` digits.
  static absl::StatusOr<Decimal> Parse(std::string_view text, size_t max_digits);

  // Canonical decimal form: no leading zeros, "-" only for negative numbers.
  std::string ToString() const;
  // Number of digits of |x| (1 for zero).
  size_t Digits() const;
  bool IsZero() const { return limbs_.empty(); }
  bool negative() const { return negative_; }

  // -1, 0 or 1 as a < b, a == b, a > b.
  static int Compare(const Decimal& a, const Decimal& b);
  static Decimal Add(const Decimal& a, const Decimal& b);
  static Decimal Sub(const Decimal& a, const Decimal& b);
  static Decimal Mul(const Decimal& a, const Decimal& b);

 private:
  static constexpr uint32_t kBase = 1'000'000'000;
  static int CompareAbs(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b);
  static std::vector<uint32_t> AddAbs(const std::vector<uint32_t>& a,
                                      const std::vector<uint32_t>& b);
  // REQUIRES |a| >= |b|.
  static std::vector<uint32_t> SubAbs(const std::vector<uint32_t>& a,
                                      const std::vector<uint32_t>& b);
  void Trim();

  bool negative_ = false;
  std::vector<uint32_t> limbs_;  // little-endian base-1e9; empty for zero
};

}  // namespace tapeloop::tools

#endif  // TAPELOOP_TOOLS_DECIMAL_H_
