#include "tools/decimal.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tapeloop::tools {

absl::StatusOr<Decimal> Decimal::Parse(std::string_view text, size_t max_digits) {
  Decimal d;
  size_t start = 0;
  if (!text.empty() && text[0] == '-') {
    d.negative_ = true;
    start = 1;
  }
  if (start == text.size()) {
    return absl::InvalidArgumentError(
        text.empty() ? "not a decimal integer: empty string"
                     : "not a decimal integer: \"-\" without digits");
  }
  for (size_t i = start; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') {
      std::string ch = (text[i] >= 32 && text[i] < 127) ? std::string(1, text[i])
                                                        : absl::StrCat("\\x", int{static_cast<unsigned char>(text[i])});
      return absl::InvalidArgumentError(absl::StrCat(
          "not a decimal integer: character '", ch, "' at position ", i));
    }
  }
  const size_t digits = text.size() - start;
  if (digits > max_digits) {
    return absl::OutOfRangeError(absl::StrCat("operand has ", digits,
                                              " digits, more than the limit of ", max_digits));
  }
  d.limbs_.reserve(digits / 9 + 1);
  // Limbs from the least significant end, 9 digits each.
  for (size_t end = text.size(); end > start;) {
    size_t begin = end >= start + 9 ? end - 9 : start;
    uint32_t limb = 0;
    for (size_t i = begin; i < end; ++i) limb = limb * 10 + static_cast<uint32_t>(text[i] - '0');
    d.limbs_.push_back(limb);
    end = begin;
  }
  d.Trim();
  return d;
}

void Decimal::Trim() {
  while (!limbs_.empty() && limbs_.back() == 0) limbs_.pop_back();
  if (limbs_.empty()) negative_ = false;
}

std::string Decimal::ToString() const {
  if (limbs_.empty()) return "0";
  std::string s;
  s.reserve(limbs_.size() * 9 + 1);
  if (negative_) s.push_back('-');
  s += std::to_string(limbs_.back());
  char buf[9];
  for (size_t i = limbs_.size() - 1; i-- > 0;) {
    uint32_t limb = limbs_[i];
    for (int k = 8; k >= 0; --k) {
      buf[k] = static_cast<char>('0' + limb % 10);
      limb /= 10;
    }
    s.append(buf, 9);
  }
  return s;
}

size_t Decimal::Digits() const {
  if (limbs_.empty()) return 1;
  return (limbs_.size() - 1) * 9 + std::to_string(limbs_.back()).size();
}

int Decimal::CompareAbs(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  for (size_t i = a.size(); i-- > 0;) {
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}

int Decimal::Compare(const Decimal& a, const Decimal& b) {
  if (a.negative_ != b.negative_) return a.negative_ ? -1 : 1;
  int c = CompareAbs(a.limbs_, b.limbs_);
  return a.negative_ ? -c : c;
}

std::vector<uint32_t> Decimal::AddAbs(const std::vector<uint32_t>& a,
                                      const std::vector<uint32_t>& b) {
  std::vector<uint32_t> r(std::max(a.size(), b.size()) + 1, 0);
  uint32_t carry = 0;
  for (size_t i = 0; i + 1 < r.size(); ++i) {
    uint32_t s = carry + (i < a.size() ? a[i] : 0) + (i < b.size() ? b[i] : 0);
    carry = s >= kBase ? 1 : 0;
    r[i] = s - carry * kBase;
  }
  r.back() = carry;
  return r;
}

std::vector<uint32_t> Decimal::SubAbs(const std::vector<uint32_t>& a,
                                      const std::vector<uint32_t>& b) {
  std::vector<uint32_t> r(a.size(), 0);
  int64_t borrow = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    int64_t s = int64_t{a[i]} - borrow - (i < b.size() ? int64_t{b[i]} : 0);
    borrow = s < 0 ? 1 : 0;
    r[i] = static_cast<uint32_t>(s + borrow * kBase);
  }
  return r;
}

Decimal Decimal::Add(const Decimal& a, const Decimal& b) {
  Decimal r;
  if (a.negative_ == b.negative_) {
    r.limbs_ = AddAbs(a.limbs_, b.limbs_);
    r.negative_ = a.negative_;
  } else if (CompareAbs(a.limbs_, b.limbs_) >= 0) {
    r.limbs_ = SubAbs(a.limbs_, b.limbs_);
    r.negative_ = a.negative_;
  } else {
    r.limbs_ = SubAbs(b.limbs_, a.limbs_);
    r.negative_ = b.negative_;
  }
  r.Trim();
  return r;
}

Decimal Decimal::Sub(const Decimal& a, const Decimal& b) {
  Decimal negated_b = b;
  if (!negated_b.IsZero()) negated_b.negative_ = !negated_b.negative_;
  return Add(a, negated_b);
}

Decimal Decimal::Mul(const Decimal& a, const Decimal& b) {
  Decimal r;
  if (a.IsZero() || b.IsZero()) return r;
  const size_t n = a.limbs_.size(), m = b.limbs_.size();
  r.limbs_.assign(n + m, 0);
  // Column k collects a[i] * b[k - i]; each product < 1e18 and a column has at most
  // min(n, m) <= ~1.2e6 of them (operands are bounded), so 128 bits never overflow.
  unsigned __int128 carry = 0;
  for (size_t k = 0; k + 1 < n + m; ++k) {
    unsigned __int128 sum = carry;
    const size_t lo = k >= m - 1 ? k - (m - 1) : 0;
    const size_t hi = std::min(k, n - 1);
    for (size_t i = lo; i <= hi; ++i) {
      sum += static_cast<uint64_t>(a.limbs_[i]) * b.limbs_[k - i];
    }
    r.limbs_[k] = static_cast<uint32_t>(sum % kBase);
    carry = sum / kBase;
  }
  r.limbs_[n + m - 1] = static_cast<uint32_t>(carry);
  r.negative_ = a.negative_ != b.negative_;
  r.Trim();
  return r;
}

}  // namespace tapeloop::tools
