#include "engine/train/ssd.h"

#include <cblas.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/train/rng.h"
#include "engine/train/row_math.h"

namespace tapeloop::engine::train {
namespace {

// One random problem: inputs a bit away from init (dt up to 0.5, decays from ~0.4 to ~1 per
// token) so every term of the chunked form matters.
struct Problem {
  SsdDims d;
  std::vector<float> xbc, dtT, a_log, dskip, S0, dy;

  Problem(const SsdDims& dims, uint64_t seed) : d(dims) {
    Rng rng(seed);
    xbc.resize(d.T * d.C());
    dtT.resize(d.H * d.T);
    a_log.resize(d.H);
    dskip.resize(d.H);
    S0.resize(d.H * d.P * d.N);
    dy.resize(d.T * d.di());
    rng.FillNormal(xbc, 1.f);
    for (float& v : dtT) v = rng.Uniform(0.01f, 0.5f);
    for (float& v : a_log) v = rng.Uniform(-1.f, 0.5f);
    rng.FillNormal(dskip, 1.f);
    rng.FillNormal(S0, 0.5f);
    rng.FillNormal(dy, 1.f);
  }
};

struct Outputs {
  std::vector<float> S, y, dxbc, ddtT, da_log, dD;
};

using ForwardFn = void (*)(const SsdDims&, const float*, const float*, const float*, const float*,
                           float*, float*, float*, bool);
using BackwardFn = void (*)(const SsdDims&, const float*, const float*, const float*, const float*,
                            const float*, const float*, float*, float*, float*, float*, float*,
                            bool);

// Runs forward then backward; the gradient buffers start from the same nonzero values so the
// check covers that the backward pass adds into them.
Outputs RunSsd(const Problem& p, bool has_init, ForwardFn fwd, BackwardFn bwd) {
  const SsdDims& d = p.d;
  Outputs o;
  o.S.assign((d.nch() + 1) * d.H * d.P * d.N, 0.f);
  if (has_init) std::copy(p.S0.begin(), p.S0.end(), o.S.begin());
  o.y.assign(d.T * d.di(), 0.f);
  std::vector<float> scratch(SsdScratchSize(d), 0.f);
  fwd(d, p.xbc.data(), p.dtT.data(), p.a_log.data(), p.dskip.data(), o.S.data(), o.y.data(),
      scratch.data(), has_init);
  o.dxbc.assign(d.T * d.C(), 0.25f);
  o.ddtT.assign(d.H * d.T, -0.5f);
  o.da_log.assign(d.H, 1.f);
  o.dD.assign(d.H, 2.f);
  std::fill(scratch.begin(), scratch.end(), 0.f);
  bwd(d, p.xbc.data(), p.dtT.data(), p.a_log.data(), p.dskip.data(), o.S.data(), p.dy.data(),
      o.dxbc.data(), o.ddtT.data(), o.da_log.data(), o.dD.data(), scratch.data(), has_init);
  return o;
}

// max |a - b| / max(max |b|, 1e-3) for one output.
double RelErr(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double err = 0, scale = 1e-3;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return err / scale;
}

// The plain recurrence in double: y [T, di] and the final state [H, P, N].
void Recurrence(const Problem& p, bool has_init, std::vector<double>* y, std::vector<double>* S) {
  const SsdDims& d = p.d;
  const int64_t C = d.C(), di = d.di(), P = d.P, N = d.N;
  S->assign(d.H * P * N, 0.0);
  if (has_init) std::copy(p.S0.begin(), p.S0.end(), S->begin());
  y->assign(d.T * di, 0.0);
  for (int64_t t = 0; t < d.T; ++t) {
    const float* x = p.xbc.data() + t * C;
    const float* B = x + di;
    const float* Cv = B + N;
    for (int64_t h = 0; h < d.H; ++h) {
      const double dt = p.dtT[h * d.T + t];
      const double decay = std::exp(dt * -std::exp(double(p.a_log[h])));
      for (int64_t q = 0; q < P; ++q) {
        double* s = S->data() + (h * P + q) * N;
        const double xv = x[h * P + q];
        double acc = 0;
        for (int64_t n = 0; n < N; ++n) {
          s[n] = decay * s[n] + dt * xv * B[n];
          acc += s[n] * Cv[n];
        }
        (*y)[t * di + h * P + q] = acc + p.dskip[h] * xv;
      }
    }
  }
}

struct Shape {
  int64_t T, H, P, N, Q;
};

// Ragged last chunks (T not a multiple of Q), one chunk longer than T, Q = 1 (the recurrence),
// several heads, P != N both ways; head dims 16 and 32 take the batched path's vector kernels
// (also with Q and the last chunk not multiples of 16), the others its Gemm fallback.
// With P and N multiples of 16 the products over all heads run as SsdProduct (also with N = 32,
// and with di = 320 > kSsdProductMaxK, where those of depth di fall back to sgemm).
const Shape kShapes[] = {
    {37, 3, 5, 4, 8},     {37, 4, 4, 6, 16},    {20, 2, 3, 7, 64},   {9, 3, 4, 4, 1},
    {37, 2, 16, 4, 16},   {50, 3, 32, 8, 24},   {21, 2, 16, 16, 5},  {130, 16, 16, 16, 64},
    {100, 3, 16, 32, 24}, {70, 20, 16, 16, 64}, {45, 2, 32, 16, 37},
};

TEST(Ssd, BatchedEqualsPerHeadAndTheRecurrence) {
  uint64_t seed = 1;
  for (const Shape& sh : kShapes) {
    for (bool has_init : {false, true}) {
      SCOPED_TRACE(testing::Message() << "T=" << sh.T << " H=" << sh.H << " P=" << sh.P
                                      << " N=" << sh.N << " Q=" << sh.Q << " init=" << has_init);
      SsdDims d;
      d.T = sh.T;
      d.H = sh.H;
      d.P = sh.P;
      d.N = sh.N;
      d.Q = sh.Q;
      const Problem p(d, ++seed);
      const Outputs fast = RunSsd(p, has_init, SsdForward, SsdBackward);
      const Outputs ref = RunSsd(p, has_init, SsdForwardPerHead, SsdBackwardPerHead);
      EXPECT_LT(RelErr(fast.y, ref.y), 1e-5);
      EXPECT_LT(RelErr(fast.S, ref.S), 1e-5);
      EXPECT_LT(RelErr(fast.dxbc, ref.dxbc), 1e-5);
      EXPECT_LT(RelErr(fast.ddtT, ref.ddtT), 1e-5);
      EXPECT_LT(RelErr(fast.da_log, ref.da_log), 1e-5);
      EXPECT_LT(RelErr(fast.dD, ref.dD), 1e-5);
      // Both against the plain recurrence (forward).
      std::vector<double> y, S;
      Recurrence(p, has_init, &y, &S);
      const std::vector<float> yf(y.begin(), y.end()), Sf(S.begin(), S.end());
      const int64_t HPN = d.H * d.P * d.N;
      const std::vector<float> fast_last(fast.S.end() - HPN, fast.S.end());
      const std::vector<float> ref_last(ref.S.end() - HPN, ref.S.end());
      EXPECT_LT(RelErr(fast.y, yf), 1e-5);
      EXPECT_LT(RelErr(ref.y, yf), 1e-5);
      EXPECT_LT(RelErr(fast_last, Sf), 1e-5);
      EXPECT_LT(RelErr(ref_last, Sf), 1e-5);
      // The gradients are not vacuous: every part moved away from its starting value.
      double moved_x = 0, moved_b = 0, moved_c = 0;
      for (int64_t t = 0; t < d.T; ++t)
        for (int64_t k = 0; k < d.C(); ++k) {
          const double m = std::abs(fast.dxbc[t * d.C() + k] - 0.25);
          (k < d.di() ? moved_x : k < d.di() + d.N ? moved_b : moved_c) += m;
        }
      EXPECT_GT(moved_x, 1e-3);
      EXPECT_GT(moved_b, 1e-3);
      EXPECT_GT(moved_c, 1e-3);
    }
  }
}

// SsdProduct against sgemm for the batched path's product shapes (its call forms, full and
// ragged chunks, depths up to kSsdProductMaxK, the NT ones of depth 16): bit for bit on AVX-512
// with OpenBLAS's SkylakeX kernels (what the trainer runs on; the reason SsdProduct may replace
// sgemm without changing results), to float rounding elsewhere.
TEST(Ssd, ProductMatchesSgemm) {
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool exact = avx512 && std::string(openblas_get_corename()) == "SkylakeX";
  if (avx512 && !exact && std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    // OpenBLAS chose other kernels for this process (Debian's 0.3.21 picks Prescott on recent
    // Xeons); the trainer runs with SkylakeX ones, so check those bit for bit in a child.
    const std::string cmd = "OPENBLAS_CORETYPE=SkylakeX '" +
                            std::filesystem::read_symlink("/proc/self/exe").string() +
                            "' --gtest_filter=Ssd.ProductMatchesSgemm >/dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  if (!exact) std::printf("(here not AVX-512 + OpenBLAS SkylakeX: checked to rounding)\n");
  struct Case {
    bool ta, tb;
    int64_t M, Nc, K;
    bool accumulate;
  };
  const Case cases[] = {
      {false, true, 64, 64, 16, false},  {false, true, 37, 37, 16, false},
      {false, true, 5, 5, 16, false},    {false, true, 64, 256, 16, false},
      {false, true, 3, 48, 16, false},   {false, true, 37, 320, 16, false},
      {true, false, 256, 16, 64, true},  {true, false, 48, 32, 5, true},
      {false, false, 64, 16, 256, true}, {false, false, 37, 32, 48, true},
      {true, false, 64, 16, 64, true},   {true, false, 37, 16, 37, true},
      {false, false, 64, 16, 64, true},  {false, false, 1, 16, 1, true},
      {true, false, 1024, 64, 64, true},
  };
  Rng rng(31);
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << (c.ta ? "T" : "N") << (c.tb ? "T" : "N") << " M=" << c.M
                                    << " N=" << c.Nc << " K=" << c.K);
    // op(A) [M, K], op(B) [K, Nc]; SsdProduct reads B as [K, Nc] rows, so for tb pass B^T.
    const int64_t lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.Nc;
    std::vector<float> A(c.M * c.K), B(c.K * c.Nc), C0(c.M * c.Nc);
    rng.FillNormal(A, 1.f);
    rng.FillNormal(B, 1.f);
    rng.FillNormal(C0, 1.f);
    std::vector<float> want = C0;
    Gemm(c.ta, c.tb, c.M, c.Nc, c.K, 1.f, A.data(), lda, B.data(), ldb, c.accumulate ? 1.f : 0.f,
         want.data(), c.Nc);
    const int64_t ldr = (c.Nc + 15) / 16 * 16;  // rows readable to whole vectors
    std::vector<float> Bk(c.K * ldr, 0.f);
    for (int64_t k = 0; k < c.K; ++k)
      for (int64_t j = 0; j < c.Nc; ++j) Bk[k * ldr + j] = c.tb ? B[j * ldb + k] : B[k * ldb + j];
    std::vector<float> got = C0;
    SsdProduct(c.M, c.Nc, c.K, A.data(), c.ta ? 1 : lda, c.ta ? lda : 1, Bk.data(), ldr,
               c.accumulate, got.data(), c.Nc);
    if (exact) {
      EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * got.size()), 0);
    } else {
      EXPECT_LT(RelErr(got, want), 1e-5);
    }
    EXPECT_GT(RelErr(got, C0), 1e-3);  // not vacuous
  }
}

}  // namespace
}  // namespace tapeloop::engine::train
