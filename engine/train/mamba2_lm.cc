#include "engine/train/mamba2_lm.h"

// The elementwise loops here are the trainer's hot path beside BLAS: let GCC vectorize them
// (-O2 alone does not for loops of unknown trip count). No -ffast-math: reductions keep their
// order, so results do not depend on the vector width.
#pragma GCC optimize("O3")

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/check.h"
#include "engine/train/loss.h"
#include "engine/train/vec_math.h"

namespace tapeloop::engine::train {
namespace {

// Row-major C[M, N] = alpha op(A) op(B) + beta C.
inline void Gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
              static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

inline float Softplus(float v) { return v > 20.f ? v : std::log1p(std::exp(v)); }

// Offsets of one layer's tensors in the flat buffer (table order of Mamba2LmSpecs).
struct LayerOff {
  int64_t norm, in_proj, conv_w, conv_b, dt_bias, a_log, d, gnorm, out_proj;
};
constexpr int kTensorsPerLayer = 9;

LayerOff Layer(const ParamTable& t, int l) {
  const int b = 1 + kTensorsPerLayer * l;
  return LayerOff{t.offset(b),     t.offset(b + 1), t.offset(b + 2), t.offset(b + 3), t.offset(b + 4),
                  t.offset(b + 5), t.offset(b + 6), t.offset(b + 7), t.offset(b + 8)};
}

// y = x * r * w per row, r = 1/sqrt(mean(x^2) + eps) saved.
void RmsForward(const float* x, const float* w, int64_t T, int64_t D, float eps, float* r, float* y) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float s = 0;
    for (int64_t i = 0; i < D; ++i) s += xr[i] * xr[i];
    const float rr = 1.f / std::sqrt(s / D + eps);
    r[t] = rr;
    float* yr = y + t * D;
    for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * rr * w[i];
  }
}

// Backward of RmsForward: dx += ..., dw += ...
void RmsBackward(const float* x, const float* w, const float* r, const float* dy, int64_t T,
                 int64_t D, float* dx, float* dw) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    const float* dyr = dy + t * D;
    const float rr = r[t];
    float dot = 0;
    for (int64_t i = 0; i < D; ++i) dot += dyr[i] * w[i] * xr[i];
    for (int64_t i = 0; i < D; ++i) dw[i] += dyr[i] * xr[i] * rr;
    const float k = dot * rr * rr * rr / D;
    float* dxr = dx + t * D;
    for (int64_t i = 0; i < D; ++i) dxr[i] += rr * w[i] * dyr[i] - k * xr[i];
  }
}

// Bump allocator over a workspace buffer.
class Arena {
 public:
  explicit Arena(std::vector<float>* buf) : buf_(buf) {}
  // Reserves n floats; pointers stay valid only after Commit() sized the buffer.
  int64_t Take(int64_t n) {
    const int64_t at = used_;
    used_ += (n + 15) & ~int64_t{15};
    return at;
  }
  void Commit() {
    if (static_cast<int64_t>(buf_->size()) < used_) buf_->resize(used_);
  }
  float* at(int64_t off) { return buf_->data() + off; }

 private:
  std::vector<float>* buf_;
  int64_t used_ = 0;
};

struct Dims {
  int64_t T, D, V, di, C, E, H, P, N, K, Q, nch;
};

// Chunked SSD forward for one layer of one row (see the header). xbc [T, C]; dtT [H, T] (dt
// transposed so each head's values are contiguous); S: [nch + 1][H, P, N] with S[0] the
// incoming state; y [T, di] (includes D x). scratch: SsdScratch(d) floats.
int64_t SsdScratch(const Dims& d) {
  const int64_t Q = d.Q, M = std::max(d.P, d.N);
  return 6 * Q * Q + 4 * Q * M + 8 * Q + 2 * d.H * d.P * d.N;
}

// Em[i, j] = prod_{j<k<=i} decay_k for j <= i, 0 above the diagonal (row recurrence: one
// multiply per entry, no exp); cum[i] = prod_{k<=i} decay_k.
inline void DecayMatrix(const float* decay, int64_t q, float* Em, float* cum) {
  float run = 1.f;
  for (int64_t i = 0; i < q; ++i) cum[i] = (run *= decay[i]);
  for (int64_t j = 0; j < q; ++j) Em[j] = 0.f;
  Em[0] = 1.f;
  for (int64_t i = 1; i < q; ++i) {
    float* er = Em + i * q;
    const float* prev = er - q;
    const float di = decay[i];
    for (int64_t j = 0; j < q; ++j) er[j] = prev[j] * di;
    er[i] = 1.f;
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void SsdForward(
    const Dims& d, const float* xbc, const float* dtT, const float* a_log,
                const float* dskip, float* S, float* y, float* scratch, bool has_init) {
  const int64_t Q = d.Q, C = d.C, P = d.P, N = d.N, H = d.H, di = d.di, HPN = H * P * N, T = d.T;
  float* G = scratch;
  float* W = G + Q * Q;
  float* tmp = W + Q * Q;                    // Q * max(P, N)
  float* decay = tmp + Q * std::max(P, N);   // Q
  float* cum = decay + Q;                    // Q
  float* wv = cum + Q;                       // Q
  for (int64_t c = 0; c < d.nch; ++c) {
    const int64_t t0 = c * Q, q = std::min(Q, T - t0);
    const float* Bc = xbc + t0 * C + di;
    const float* Cc = Bc + N;
    Gemm(false, true, q, q, N, 1.f, Cc, C, Bc, C, 0.f, G, q);
    const bool state_in = has_init || c > 0;
    for (int64_t h = 0; h < H; ++h) {
      const float a = -std::exp(a_log[h]);
      const float* dtc = dtT + h * T + t0;
      for (int64_t i = 0; i < q; ++i) decay[i] = dtc[i] * a;
      ExpInPlace(decay, q);
      DecayMatrix(decay, q, W, cum);
      // State update: S_out = cum_L S_in + sum_s Em[L, s] dt_s x_s B_s^T.
      const float* last = W + (q - 1) * q;
      for (int64_t s = 0; s < q; ++s) wv[s] = last[s] * dtc[s];
      const float* xh = xbc + t0 * C + h * P;
      float* xh_w = tmp;  // [q, P]
      for (int64_t s = 0; s < q; ++s) {
        const float w = wv[s];
        const float* xr = xh + s * C;
        float* o = xh_w + s * P;
        for (int64_t p = 0; p < P; ++p) o[p] = w * xr[p];
      }
      float* Sin = S + c * HPN + h * P * N;
      float* Sout = S + (c + 1) * HPN + h * P * N;
      const float eL = cum[q - 1];
      for (int64_t k = 0; k < P * N; ++k) Sout[k] = state_in ? eL * Sin[k] : 0.f;
      Gemm(true, false, P, N, q, 1.f, xh_w, P, Bc, C, 1.f, Sout, N);
      // W = Em * G * dt_j (upper triangle stays 0).
      for (int64_t i = 0; i < q; ++i) {
        float* wr = W + i * q;
        const float* gr = G + i * q;
        for (int64_t j = 0; j < q; ++j) wr[j] *= gr[j] * dtc[j];
      }
      float* yh = y + t0 * di + h * P;
      Gemm(false, false, q, P, q, 1.f, W, q, xh, C, 0.f, yh, di);
      if (state_in) {
        Gemm(false, true, q, P, N, 1.f, Cc, C, Sin, N, 0.f, tmp, P);
        for (int64_t i = 0; i < q; ++i) {
          const float e = cum[i];
          float* yr = yh + i * di;
          const float* tr = tmp + i * P;
          for (int64_t p = 0; p < P; ++p) yr[p] += e * tr[p];
        }
      }
      const float Dh = dskip[h];
      for (int64_t i = 0; i < q; ++i) {
        float* yr = yh + i * di;
        const float* xr = xh + i * C;
        for (int64_t p = 0; p < P; ++p) yr[p] += Dh * xr[p];
      }
    }
  }
}

// Backward of SsdForward. dy [T, di]; adds into dxbc [T, C] (x, B, C parts), ddtT [H, T],
// da_log [H], dD [H].
__attribute__((target_clones("avx512f", "avx2", "default"))) void SsdBackward(
    const Dims& d, const float* xbc, const float* dtT, const float* a_log,
                 const float* dskip, const float* S, const float* dy, float* dxbc, float* ddtT,
                 float* da_log, float* dD, float* scratch, bool has_init) {
  const int64_t Q = d.Q, C = d.C, P = d.P, N = d.N, H = d.H, di = d.di, HPN = H * P * N, T = d.T;
  const int64_t M = std::max(P, N);
  float* G = scratch;
  float* Em = G + Q * Q;   // decay products, later dW * Em * G
  float* W = Em + Q * Q;   // W, later dW * W
  float* dW = W + Q * Q;
  float* dG = dW + Q * Q;
  float* tmp = dG + Q * Q;
  float* tmp2 = tmp + Q * M;
  float* tmp3 = tmp2 + Q * M;
  float* dye = tmp3 + Q * M;
  float* decay = dye + Q * M;
  float* cum = decay + Q;
  float* dlc = cum + Q;
  float* ones = dlc + Q;
  float* wv = ones + Q;
  float* dS = wv + Q;        // [H, P, N]: d loss / d state leaving the current chunk
  float* dSprev = dS + HPN;  // [H, P, N]: d loss / d state entering it
  for (int64_t i = 0; i < Q; ++i) ones[i] = 1.f;
  std::fill(dS, dS + HPN, 0.f);
  for (int64_t c = d.nch - 1; c >= 0; --c) {
    const int64_t t0 = c * Q, q = std::min(Q, T - t0);
    const float* Bc = xbc + t0 * C + d.di;
    const float* Cc = Bc + N;
    float* dBc = dxbc + t0 * C + d.di;
    float* dCc = dBc + N;
    Gemm(false, true, q, q, N, 1.f, Cc, C, Bc, C, 0.f, G, q);
    std::fill(dG, dG + q * q, 0.f);
    const bool state_in = has_init || c > 0;
    const bool state_grad = c < d.nch - 1;
    for (int64_t h = 0; h < H; ++h) {
      const float a = -std::exp(a_log[h]);
      const float* dtc = dtT + h * T + t0;
      float* ddtc = ddtT + h * T + t0;
      for (int64_t i = 0; i < q; ++i) decay[i] = dtc[i] * a;
      ExpInPlace(decay, q);
      DecayMatrix(decay, q, Em, cum);
      for (int64_t i = 0; i < q; ++i) {
        float* wr = W + i * q;
        const float* er = Em + i * q;
        const float* gr = G + i * q;
        for (int64_t j = 0; j < q; ++j) wr[j] = er[j] * gr[j] * dtc[j];
      }
      const float* xh = xbc + t0 * C + h * P;
      float* dxh = dxbc + t0 * C + h * P;
      const float* dyh = dy + t0 * di + h * P;
      // D skip.
      const float Dh = dskip[h];
      float dDh = 0;
      for (int64_t i = 0; i < q; ++i) {
        const float* dyr = dyh + i * di;
        const float* xr = xh + i * C;
        float* dxr = dxh + i * C;
        for (int64_t p = 0; p < P; ++p) dDh += dyr[p] * xr[p];
        for (int64_t p = 0; p < P; ++p) dxr[p] += Dh * dyr[p];
      }
      dD[h] += dDh;
      // Intra-chunk: y = W x.
      Gemm(false, true, q, q, P, 1.f, dyh, di, xh, C, 0.f, dW, q);
      Gemm(true, false, q, P, q, 1.f, W, q, dyh, di, 1.f, dxh, C);
      std::fill(dlc, dlc + q, 0.f);
      float dlcL = 0;
      const float* Sin = S + c * HPN + h * P * N;
      const float* dSh = dS + h * P * N;
      float* dSin = dSprev + h * P * N;
      const float eL = cum[q - 1];
      const float* last = Em + (q - 1) * q;
      if (state_grad) {
        // S_out = eL S_in + sum_s last_s dt_s x_s B_s^T.
        Gemm(false, true, q, P, N, 1.f, Bc, C, dSh, N, 0.f, tmp, P);   // [q, P]
        Gemm(false, false, q, N, P, 1.f, xh, C, dSh, N, 0.f, tmp2, N);  // [q, N]
        for (int64_t s = 0; s < q; ++s) wv[s] = last[s] * dtc[s];
        for (int64_t s = 0; s < q; ++s) {
          const float ws = last[s], w = wv[s];
          const float* tr = tmp + s * P;
          const float* xr = xh + s * C;
          float* dxr = dxh + s * C;
          float dw = 0;
          for (int64_t p = 0; p < P; ++p) dw += xr[p] * tr[p];
          for (int64_t p = 0; p < P; ++p) dxr[p] += w * tr[p];
          const float* t2 = tmp2 + s * N;
          float* dbr = dBc + s * C;
          for (int64_t n = 0; n < N; ++n) dbr[n] += w * t2[n];
          dlcL += dw * w;
          dlc[s] -= dw * w;
          ddtc[s] += dw * ws;
        }
        if (state_in) {
          float dot = 0;
          for (int64_t k = 0; k < P * N; ++k) dot += dSh[k] * Sin[k];
          for (int64_t k = 0; k < P * N; ++k) dSin[k] = eL * dSh[k];
          dlcL += eL * dot;
        }
      } else if (state_in) {
        std::fill(dSin, dSin + P * N, 0.f);
      }
      if (state_in) {
        // y_i += cum_i C_i S_in^T.
        Gemm(false, false, q, N, P, 1.f, dyh, di, Sin, N, 0.f, tmp3, N);  // [q, N]
        for (int64_t i = 0; i < q; ++i) {
          const float e = cum[i];
          const float* t3 = tmp3 + i * N;
          const float* cr = Cc + i * C;
          float* dcr = dCc + i * C;
          float de = 0;
          for (int64_t n = 0; n < N; ++n) de += t3[n] * cr[n];
          for (int64_t n = 0; n < N; ++n) dcr[n] += e * t3[n];
          dlc[i] += de * e;
          const float* dyr = dyh + i * di;
          float* o = dye + i * P;
          for (int64_t p = 0; p < P; ++p) o[p] = e * dyr[p];
        }
        Gemm(true, false, P, N, q, 1.f, dye, P, Cc, C, 1.f, dSin, N);
      }
      // W[i, j] = Em[i, j] G[i, j] dt_j: dG += dW Em dt_j; ddt_j += colsum(dW Em G);
      // d lc_i += rowsum(dW W) and d lc_j -= colsum(dW W).
      for (int64_t i = 0; i < q; ++i) {
        float* er = Em + i * q;
        const float* gr = G + i * q;
        const float* dwr = dW + i * q;
        float* wr = W + i * q;
        float* dgr = dG + i * q;
        for (int64_t j = 0; j < q; ++j) {
          const float m = dwr[j] * er[j];
          dgr[j] += m * dtc[j];
          er[j] = m * gr[j];
          wr[j] *= dwr[j];
        }
      }
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(q), static_cast<int>(q), 1.f, Em,
                  static_cast<int>(q), ones, 1, 1.f, ddtc, 1);
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(q), static_cast<int>(q), 1.f, W,
                  static_cast<int>(q), ones, 1, 1.f, dlc, 1);
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(q), static_cast<int>(q), -1.f, W,
                  static_cast<int>(q), ones, 1, 1.f, dlc, 1);
      dlc[q - 1] += dlcL;
      // lc_i = sum_{k<=i} dt_k a.
      float rc = 0, da = 0;
      for (int64_t i = q - 1; i >= 0; --i) {
        rc += dlc[i];
        ddtc[i] += a * rc;
        da += dtc[i] * rc;
      }
      da_log[h] += da * a;
    }
    Gemm(false, false, q, N, q, 1.f, dG, q, Bc, C, 1.f, dCc, C);
    Gemm(true, false, q, N, q, 1.f, dG, q, Cc, C, 1.f, dBc, C);
    std::swap(dS, dSprev);
  }
}

}  // namespace

std::string Mamba2LmConfig::ToHfConfigJson() const {
  return absl::StrCat(
      "{\n  \"architectures\": [\"Mamba2ForCausalLM\"],\n  \"model_type\": \"mamba2\",\n",
      "  \"vocab_size\": ", vocab, ",\n  \"hidden_size\": ", d_model,
      ",\n  \"num_hidden_layers\": ", layers, ",\n  \"state_size\": ", state,
      ",\n  \"expand\": ", expand, ",\n  \"head_dim\": ", head_dim, ",\n  \"num_heads\": ", heads(),
      ",\n  \"n_groups\": 1,\n  \"conv_kernel\": ", conv_kernel, ",\n  \"chunk_size\": ", chunk,
      ",\n  \"layer_norm_epsilon\": ", eps,
      ",\n  \"use_bias\": false,\n  \"use_conv_bias\": true,\n  \"hidden_act\": \"silu\",\n"
      "  \"rms_norm\": true,\n  \"residual_in_fp32\": true,\n  \"norm_before_gate\": false,\n"
      "  \"tie_word_embeddings\": false,\n"
      "  \"time_step_min\": 0.001,\n  \"time_step_max\": 0.1,\n  \"time_step_floor\": 0.0001,\n"
      "  \"bos_token_id\": 256,\n  \"eos_token_id\": 257,\n  \"pad_token_id\": 258,\n"
      "  \"torch_dtype\": \"float32\"\n}\n");
}

std::vector<ParamSpec> Mamba2LmSpecs(const Mamba2LmConfig& c) {
  const int64_t D = c.d_model, di = c.inner(), C = c.conv_dim(), E = c.proj_dim();
  const int H = c.heads(), K = c.conv_kernel;
  std::vector<ParamSpec> s;
  s.push_back({"backbone.embeddings.weight", {c.vocab, D}, InitNormal(1.f), false});
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("backbone.layers.", l, ".");
    const std::string m = p + "mixer.";
    s.push_back({p + "norm.weight", {D}, InitConstant(1.f), false});
    s.push_back({m + "in_proj.weight", {E, D}, InitUniform(1.f / std::sqrt(float(D))), true});
    s.push_back({m + "conv1d.weight", {C, 1, K}, InitNormal(1.f / std::sqrt(float(K))), true});
    s.push_back({m + "conv1d.bias", {C}, InitZeros(), false});
    // dt ~ log-uniform in [1e-3, 1e-1]; dt_bias = softplus^-1(dt) (the prototype's init).
    s.push_back({m + "dt_bias", {H},
                 [](Rng& rng, std::span<float> v) {
                   for (float& x : v) {
                     const double dt = std::exp(rng.Uniform() * (std::log(0.1) - std::log(0.001)) +
                                                std::log(0.001));
                     x = static_cast<float>(dt + std::log(-std::expm1(-dt)));
                   }
                 },
                 false});
    s.push_back({m + "A_log", {H},
                 [](Rng& rng, std::span<float> v) {
                   for (float& x : v) x = std::log(rng.Uniform() * 15.f + 1.f);
                 },
                 false});
    s.push_back({m + "D", {H}, InitConstant(1.f), false});
    s.push_back({m + "norm.weight", {di}, InitConstant(1.f), false});
    s.push_back({m + "out_proj.weight", {D, di}, InitUniform(1.f / std::sqrt(float(di))), true});
  }
  s.push_back({"backbone.norm_f.weight", {D}, InitConstant(1.f), false});
  s.push_back({"lm_head.weight", {c.vocab, D}, InitUniform(1.f / std::sqrt(float(D))), true});
  return s;
}

void Mamba2Lm::NoiseState(Rng& rng, float stddev, float* state) const {
  const int64_t conv = (config_.conv_kernel - 1) * config_.conv_dim();
  for (int l = 0; l < config_.layers; ++l) {
    float* st = state + l * config_.layer_state_size();
    std::fill(st, st + conv, 0.f);
    rng.FillNormal(std::span<float>(st + conv, config_.layer_state_size() - conv), stddev);
  }
}

std::string Mamba2Lm::Describe() const {
  const Mamba2LmConfig& m = config_;
  return absl::StrCat("mamba2 V=", m.vocab, " D=", m.d_model, " L=", m.layers, " N=", m.state,
                      " P=", m.head_dim, " expand=", m.expand, " K=", m.conv_kernel, " chunk=",
                      m.chunk, " eps=", m.eps);
}

Mamba2Lm::Mamba2Lm(const Mamba2LmConfig& config)
    : config_(config), table_(Mamba2LmSpecs(config)) {
  TL_CHECK(config.inner() % config.head_dim == 0);
  TL_CHECK(config.chunk >= 1 && config.conv_kernel >= 1);
}

RowResult Mamba2Lm::RowForwardBackward(const float* params, std::span<const int32_t> ids,
                                       std::span<const float> target_mask, double denom,
                                       const float* init_state, float* final_state, float* grads,
                                       Mamba2Workspace* ws, std::vector<int32_t>* argmax) const {
  const Mamba2LmConfig& cf = config_;
  Dims d;
  d.T = static_cast<int64_t>(ids.size()) - 1;
  TL_CHECK(d.T >= 1 && static_cast<int64_t>(target_mask.size()) == d.T);
  d.D = cf.d_model;
  d.V = cf.vocab;
  d.di = cf.inner();
  d.C = cf.conv_dim();
  d.E = cf.proj_dim();
  d.H = cf.heads();
  d.P = cf.head_dim;
  d.N = cf.state;
  d.K = cf.conv_kernel;
  d.Q = cf.chunk;
  d.nch = (d.T + d.Q - 1) / d.Q;
  const int64_t T = d.T, D = d.D, V = d.V, di = d.di, C = d.C, E = d.E, H = d.H, K = d.K;
  const int L = cf.layers;
  const int64_t HPN = H * d.P * d.N;
  const bool backward = grads != nullptr;

  // Workspace layout.
  Arena ar(&ws->buf);
  const int64_t o_h = ar.Take((L + 1) * T * D);  // residual stream before layer l; [L] final
  const int64_t o_r = ar.Take(L * T);
  const int64_t o_un = ar.Take(L * T * D);
  const int64_t o_proj = ar.Take(L * T * E);
  const int64_t o_pre = ar.Take(L * T * C);   // conv output before SiLU
  const int64_t o_xbc = ar.Take(L * T * C);
  const int64_t o_dt = ar.Take(L * T * H);  // per layer [H, T] (transposed)
  const int64_t o_y = ar.Take(L * T * di);
  const int64_t o_g = ar.Take(L * T * di);
  const int64_t o_rg = ar.Take(L * T);
  const int64_t o_yn = ar.Take(L * T * di);
  const int64_t o_S = ar.Take(L * (d.nch + 1) * HPN);
  const int64_t o_rf = ar.Take(T);
  const int64_t o_hn = ar.Take(T * D);
  const int64_t o_logits = ar.Take(T * V);
  const int64_t o_scratch = ar.Take(SsdScratch(d));
  const int64_t o_cwt = ar.Take(2 * K * C);  // conv weight and its gradient as [K, C]
  const int64_t o_dh = ar.Take(T * D);
  const int64_t o_dun = ar.Take(T * D);
  const int64_t o_dyn = ar.Take(T * di);
  const int64_t o_dy = ar.Take(T * di);
  const int64_t o_dproj = ar.Take(T * E);
  const int64_t o_dxbc = ar.Take(T * C);
  const int64_t o_ddt = ar.Take(T * H);
  ar.Commit();
  float* scratch = ar.at(o_scratch);

  // Embedding.
  const float* emb = params + table_.offset(0);
  for (int64_t t = 0; t < T; ++t) {
    const int32_t id = ids[t];
    TL_CHECK(id >= 0 && id < V);
    std::memcpy(ar.at(o_h) + t * D, emb + id * D, sizeof(float) * D);
  }

  for (int l = 0; l < L; ++l) {
    const LayerOff lo = Layer(table_, l);
    const float* h = ar.at(o_h) + l * T * D;
    float* hnext = ar.at(o_h) + (l + 1) * T * D;
    float* r = ar.at(o_r) + l * T;
    float* un = ar.at(o_un) + l * T * D;
    float* proj = ar.at(o_proj) + l * T * E;
    float* pre = ar.at(o_pre) + l * T * C;
    float* xbc = ar.at(o_xbc) + l * T * C;
    float* dt = ar.at(o_dt) + l * T * H;
    float* y = ar.at(o_y) + l * T * di;
    float* g = ar.at(o_g) + l * T * di;
    float* rg = ar.at(o_rg) + l * T;
    float* yn = ar.at(o_yn) + l * T * di;
    float* S = ar.at(o_S) + l * (d.nch + 1) * HPN;
    const float* st_conv = init_state ? init_state + l * cf.layer_state_size() : nullptr;
    const float* st_ssm = st_conv ? st_conv + (K - 1) * C : nullptr;

    RmsForward(h, params + lo.norm, T, D, cf.eps, r, un);
    Gemm(false, true, T, E, D, 1.f, un, D, params + lo.in_proj, D, 0.f, proj, E);
    // Causal depthwise conv over xBC (proj columns [di, di + C)).
    const float* cw_raw = params + lo.conv_w;  // [C, K]
    float* cwt = ar.at(o_cwt);                 // [K, C]
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < K; ++k) cwt[k * C + c] = cw_raw[c * K + k];
    const float* cb = params + lo.conv_b;
    for (int64_t t = 0; t < T; ++t) {
      float* o = pre + t * C;
      for (int64_t c = 0; c < C; ++c) o[c] = cb[c];
      for (int64_t k = 0; k < K; ++k) {
        const float* cw = cwt + k * C;
        const int64_t src = t - (K - 1) + k;
        const float* in;
        if (src >= 0) {
          in = proj + src * E + di;
        } else if (st_conv) {
          in = st_conv + (src + K - 1) * C;
        } else {
          continue;
        }
        for (int64_t c = 0; c < C; ++c) o[c] += cw[c] * in[c];
      }
    }
    SiluArray(pre, xbc, T * C);
    const float* dtb = params + lo.dt_bias;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t hh = 0; hh < H; ++hh)
        dt[hh * T + t] = Softplus(proj[t * E + di + C + hh] + dtb[hh]);
    if (st_ssm) {
      std::memcpy(S, st_ssm, sizeof(float) * HPN);
    } else {
      std::fill(S, S + HPN, 0.f);
    }
    SsdForward(d, xbc, dt, params + lo.a_log, params + lo.d, S, y, scratch, st_ssm != nullptr);
    // Gated RMSNorm: g = y * silu(z); yn = g * rg * w.
    for (int64_t t = 0; t < T; ++t) SiluArray(proj + t * E, g + t * di, di);
    for (int64_t i = 0; i < T * di; ++i) g[i] *= y[i];
    RmsForward(g, params + lo.gnorm, T, di, cf.eps, rg, yn);
    std::memcpy(hnext, h, sizeof(float) * T * D);
    Gemm(false, true, T, D, di, 1.f, yn, di, params + lo.out_proj, di, 1.f, hnext, D);

    if (final_state) {
      float* fc = final_state + l * cf.layer_state_size();
      for (int64_t i = 0; i < K - 1; ++i) {
        const int64_t src = T - (K - 1) + i;
        const float* in = src >= 0 ? proj + src * E + di
                          : st_conv ? st_conv + (src + K - 1) * C
                                    : nullptr;
        if (in) {
          std::memcpy(fc + i * C, in, sizeof(float) * C);
        } else {
          std::fill(fc + i * C, fc + (i + 1) * C, 0.f);
        }
      }
      std::memcpy(fc + (K - 1) * C, S + d.nch * HPN, sizeof(float) * HPN);
    }
  }

  // Head.
  const int64_t off_nf = table_.offset(1 + kTensorsPerLayer * L);
  const int64_t off_head = table_.offset(2 + kTensorsPerLayer * L);
  const float* hL = ar.at(o_h) + L * T * D;
  float* rf = ar.at(o_rf);
  float* hn = ar.at(o_hn);
  float* logits = ar.at(o_logits);
  RmsForward(hL, params + off_nf, T, D, cf.eps, rf, hn);
  Gemm(false, true, T, V, D, 1.f, hn, D, params + off_head, D, 0.f, logits, V);
  if (argmax) {
    argmax->resize(T);
    for (int64_t t = 0; t < T; ++t) {
      const float* z = logits + t * V;
      (*argmax)[t] = static_cast<int32_t>(std::max_element(z, z + V) - z);
    }
  }
  // Loss (dlogits written in place of the logits, which are not needed afterwards).
  CrossEntropyResult ce =
      MaskedCrossEntropy(std::span<const float>(logits, T * V), ids.subspan(1), target_mask, T, V,
                         denom, backward ? std::span<float>(logits, T * V) : std::span<float>());
  RowResult res{ce.loss_sum, ce.counted, ce.correct};
  if (!backward) return res;

  // ---- Backward ----
  float* dlogits = logits;
  float* dh = ar.at(o_dh);
  float* dun = ar.at(o_dun);
  Gemm(true, false, V, D, T, 1.f, dlogits, V, hn, D, 1.f, grads + off_head, D);
  Gemm(false, false, T, D, V, 1.f, dlogits, V, params + off_head, D, 0.f, dun, D);
  std::fill(dh, dh + T * D, 0.f);
  RmsBackward(hL, params + off_nf, rf, dun, T, D, dh, grads + off_nf);

  float* dyn = ar.at(o_dyn);
  float* dy = ar.at(o_dy);
  float* dproj = ar.at(o_dproj);
  float* dxbc = ar.at(o_dxbc);
  float* ddt = ar.at(o_ddt);
  for (int l = L - 1; l >= 0; --l) {
    const LayerOff lo = Layer(table_, l);
    const float* h = ar.at(o_h) + l * T * D;
    const float* r = ar.at(o_r) + l * T;
    const float* un = ar.at(o_un) + l * T * D;
    const float* proj = ar.at(o_proj) + l * T * E;
    const float* pre = ar.at(o_pre) + l * T * C;
    const float* xbc = ar.at(o_xbc) + l * T * C;
    const float* dt = ar.at(o_dt) + l * T * H;
    const float* y = ar.at(o_y) + l * T * di;
    const float* g = ar.at(o_g) + l * T * di;
    const float* rg = ar.at(o_rg) + l * T;
    const float* yn = ar.at(o_yn) + l * T * di;
    const float* S = ar.at(o_S) + l * (d.nch + 1) * HPN;
    const float* st_conv = init_state ? init_state + l * cf.layer_state_size() : nullptr;

    // out_proj: hnext = h + yn Wout^T.
    Gemm(true, false, D, di, T, 1.f, dh, D, yn, di, 1.f, grads + lo.out_proj, di);
    Gemm(false, false, T, di, D, 1.f, dh, D, params + lo.out_proj, di, 0.f, dyn, di);
    // Gated norm: dg into dy's buffer first.
    float* dg = dy;
    std::fill(dg, dg + T * di, 0.f);
    RmsBackward(g, params + lo.gnorm, rg, dyn, T, di, dg, grads + lo.gnorm);
    // g = y * silu(z): dz into dproj[:, :di], dy = dg * silu(z).
    for (int64_t t = 0; t < T; ++t) {
      const float* z = proj + t * E;
      float* dz = dproj + t * E;
      SiluGrad(z, dz, di, y + t * di, dg + t * di);  // dz = dg * y * silu'(z), then dg *= silu(z)
    }
    // SSD backward.
    std::fill(dxbc, dxbc + T * C, 0.f);
    std::fill(ddt, ddt + T * H, 0.f);
    SsdBackward(d, xbc, dt, params + lo.a_log, params + lo.d, S, dy, dxbc, ddt,
                grads + lo.a_log, grads + lo.d, scratch, init_state != nullptr);
    // dt = softplus(v): dv = ddt * sigmoid(v) = ddt * (1 - exp(-dt)).
    float* ddtb = grads + lo.dt_bias;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t hh = 0; hh < H; ++hh) {
        const float dv = ddt[hh * T + t] * -std::expm1(-dt[hh * T + t]);
        dproj[t * E + di + C + hh] = dv;
        ddtb[hh] += dv;
      }
    // xbc = silu(pre): dpre in place of dxbc.
    SiluGradInPlace(pre, dxbc, T * C);
    // Conv: dW, db, d input (into dproj's xBC columns).
    const float* cw_raw = params + lo.conv_w;  // [C, K]
    float* cwt = ar.at(o_cwt);                 // [K, C]
    float* dcwt = cwt + K * C;                 // [K, C]
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < K; ++k) cwt[k * C + c] = cw_raw[c * K + k];
    std::fill(dcwt, dcwt + K * C, 0.f);
    float* dcb = grads + lo.conv_b;
    for (int64_t t = 0; t < T; ++t) {
      float* dst = dproj + t * E + di;
      std::fill(dst, dst + C, 0.f);
    }
    for (int64_t t = 0; t < T; ++t) {
      const float* dp = dxbc + t * C;
      for (int64_t c = 0; c < C; ++c) dcb[c] += dp[c];
      for (int64_t k = 0; k < K; ++k) {
        const int64_t src = t - (K - 1) + k;
        const float* cw = cwt + k * C;
        float* dcw = dcwt + k * C;
        const float* in;
        if (src >= 0) {
          in = proj + src * E + di;
          float* din = dproj + src * E + di;
          for (int64_t c = 0; c < C; ++c) din[c] += cw[c] * dp[c];
        } else if (st_conv) {
          in = st_conv + (src + K - 1) * C;
        } else {
          continue;
        }
        for (int64_t c = 0; c < C; ++c) dcw[c] += dp[c] * in[c];
      }
    }
    float* dcw_raw = grads + lo.conv_w;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < K; ++k) dcw_raw[c * K + k] += dcwt[k * C + c];
    // in_proj.
    Gemm(true, false, E, D, T, 1.f, dproj, E, un, D, 1.f, grads + lo.in_proj, D);
    Gemm(false, false, T, D, E, 1.f, dproj, E, params + lo.in_proj, D, 0.f, dun, D);
    RmsBackward(h, params + lo.norm, r, dun, T, D, dh, grads + lo.norm);
  }
  float* demb = grads + table_.offset(0);
  for (int64_t t = 0; t < T; ++t) {
    float* dst = demb + ids[t] * D;
    const float* src = dh + t * D;
    for (int64_t i = 0; i < D; ++i) dst[i] += src[i];
  }
  return res;
}

void Mamba2Lm::Step(const float* params, std::span<const int32_t> tokens, float* states,
                    float* logits) const {
  const Mamba2LmConfig& cf = config_;
  const int64_t R = static_cast<int64_t>(tokens.size());
  const int64_t D = cf.d_model, V = cf.vocab, di = cf.inner(), C = cf.conv_dim(),
                E = cf.proj_dim(), H = cf.heads(), P = cf.head_dim, N = cf.state,
                K = cf.conv_kernel;
  std::vector<float> h(R * D), un(R * D), r(R), proj(R * E), xbc(C), g(di), rg(1), yn(R * di),
      y(di);
  const float* emb = params + table_.offset(0);
  for (int64_t b = 0; b < R; ++b) std::memcpy(&h[b * D], emb + tokens[b] * D, sizeof(float) * D);
  for (int l = 0; l < cf.layers; ++l) {
    const LayerOff lo = Layer(table_, l);
    RmsForward(h.data(), params + lo.norm, R, D, cf.eps, r.data(), un.data());
    Gemm(false, true, R, E, D, 1.f, un.data(), D, params + lo.in_proj, D, 0.f, proj.data(), E);
    const float* cw = params + lo.conv_w;
    const float* cb = params + lo.conv_b;
    for (int64_t b = 0; b < R; ++b) {
      float* st = states + b * cf.state_size() + l * cf.layer_state_size();
      float* ssm = st + (K - 1) * C;
      const float* in = &proj[b * E + di];
      for (int64_t c = 0; c < C; ++c) {
        float acc = cb[c] + cw[c * K + K - 1] * in[c];
        for (int64_t k = 0; k < K - 1; ++k) acc += cw[c * K + k] * st[k * C + c];
        xbc[c] = acc / (1.f + std::exp(-acc));
      }
      // Shift the conv state.
      if (K > 1) {
        std::memmove(st, st + C, sizeof(float) * (K - 2) * C);
        std::memcpy(st + (K - 2) * C, in, sizeof(float) * C);
      }
      const float* xb = xbc.data();
      const float* Bv = xb + di;
      const float* Cv = Bv + N;
      for (int64_t hh = 0; hh < H; ++hh) {
        const float dtv = Softplus(proj[b * E + di + C + hh] + params[lo.dt_bias + hh]);
        const float dA = std::exp(dtv * -std::exp(params[lo.a_log + hh]));
        for (int64_t p = 0; p < P; ++p) {
          float* sr = ssm + (hh * P + p) * N;
          const float xv = xb[hh * P + p];
          float acc = 0;
          for (int64_t n = 0; n < N; ++n) {
            sr[n] = sr[n] * dA + dtv * xv * Bv[n];
            acc += sr[n] * Cv[n];
          }
          y[hh * P + p] = acc + params[lo.d + hh] * xv;
        }
      }
      const float* z = &proj[b * E];
      for (int64_t i = 0; i < di; ++i) g[i] = y[i] * z[i] / (1.f + std::exp(-z[i]));
      RmsForward(g.data(), params + lo.gnorm, 1, di, cf.eps, rg.data(), &yn[b * di]);
    }
    Gemm(false, true, R, D, di, 1.f, yn.data(), di, params + lo.out_proj, di, 1.f, h.data(), D);
  }
  const int L = cf.layers;
  RmsForward(h.data(), params + table_.offset(1 + kTensorsPerLayer * L), R, D, cf.eps, r.data(),
             un.data());
  Gemm(false, true, R, V, D, 1.f, un.data(), D, params + table_.offset(2 + kTensorsPerLayer * L), D,
       0.f, logits, V);
}

}  // namespace tapeloop::engine::train
