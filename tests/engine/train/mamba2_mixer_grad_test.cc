#include "engine/train/mamba2_mixer_grad.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "engine/train/rng.h"

namespace tapeloop::engine::train {
namespace {

// Equal bit for bit, except that +0 and -0 count as equal (the plain backward starts its sums
// from a filled +0, the fast one from the first product).
bool SameFloats(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i] || (a[i] != 0.f && std::memcmp(&a[i], &b[i], sizeof(float)) != 0))
      return false;
  return true;
}

// The register-blocked conv (64- and 16-column blocks and a ragged tail) equals the plain loops
// bit for bit: widths below, at and around the blocks, kernels 1..5, rows shorter than the
// kernel, with and without an incoming conv state, inputs strided as in the mixer's proj.
TEST(Mamba2Conv, FastEqualsPlainLoopsBitForBit) {
  Rng rng(21);
  for (int64_t C : {5, 16, 40, 64, 85, 288}) {
    for (int64_t K : {1, 2, 4, 5}) {
      for (int64_t T : {1, 3, 17}) {
        for (bool with_state : {false, true}) {
          SCOPED_TRACE(testing::Message()
                       << "C=" << C << " K=" << K << " T=" << T << " state=" << with_state);
          const int64_t ldi = C + 7;
          std::vector<float> in(T * ldi), state((K - 1) * C), cwt(K * C), cb(C), dp(T * C);
          rng.FillNormal(in, 1.f);
          rng.FillNormal(state, 1.f);
          rng.FillNormal(cwt, 0.5f);
          rng.FillNormal(cb, 0.5f);
          rng.FillNormal(dp, 1.f);
          const float* conv_in = with_state && K > 1 ? state.data() : nullptr;
          std::vector<float> pre(T * C), pre_ref(T * C);
          Mamba2ConvForward(in.data(), ldi, conv_in, T, C, K, cwt.data(), cb.data(), pre.data());
          Mamba2ConvForwardRef(in.data(), ldi, conv_in, T, C, K, cwt.data(), cb.data(),
                               pre_ref.data());
          EXPECT_TRUE(SameFloats(pre, pre_ref));
          // dcb is added to (start both from the same nonzero values); dcwt and din are
          // overwritten (start them from different garbage; din's gaps between rows stay).
          std::vector<float> dcb(C), dcwt(K * C, 3.f), din(T * ldi, 5.f);
          rng.FillNormal(dcb, 1.f);
          std::vector<float> dcb_ref = dcb, dcwt_ref(K * C, -1.f), din_ref = din;
          for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < C; ++c) din_ref[t * ldi + c] = -2.f;
          Mamba2ConvBackward(dp.data(), T, C, K, cwt.data(), in.data(), ldi, conv_in, dcb.data(),
                             dcwt.data(), din.data());
          Mamba2ConvBackwardRef(dp.data(), T, C, K, cwt.data(), in.data(), ldi, conv_in,
                                dcb_ref.data(), dcwt_ref.data(), din_ref.data());
          EXPECT_TRUE(SameFloats(dcb, dcb_ref));
          EXPECT_TRUE(SameFloats(dcwt, dcwt_ref));
          EXPECT_TRUE(SameFloats(din, din_ref));
        }
      }
    }
  }
}

// The plain forward is the definition (in double), so the comparison above is not vacuous.
TEST(Mamba2Conv, ForwardMatchesDefinition) {
  const int64_t T = 6, C = 3, K = 4;
  Rng rng(22);
  std::vector<float> in(T * C), state((K - 1) * C), cwt(K * C), cb(C), pre(T * C);
  rng.FillNormal(in, 1.f);
  rng.FillNormal(state, 1.f);
  rng.FillNormal(cwt, 1.f);
  rng.FillNormal(cb, 1.f);
  Mamba2ConvForward(in.data(), C, state.data(), T, C, K, cwt.data(), cb.data(), pre.data());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) {
      double want = cb[c];
      for (int64_t k = 0; k < K; ++k) {
        const int64_t src = t - (K - 1) + k;
        want +=
            double{cwt[k * C + c]} * (src >= 0 ? in[src * C + c] : state[(src + K - 1) * C + c]);
      }
      EXPECT_NEAR(pre[t * C + c], want, 1e-5);
    }
}

}  // namespace
}  // namespace tapeloop::engine::train
