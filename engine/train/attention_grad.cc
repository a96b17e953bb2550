#include "engine/train/attention_grad.h"

// As mamba2_mixer_grad.cc: let GCC vectorize the elementwise loops (RoPE, the softmax
// backward); reductions keep their order.
#pragma GCC optimize("O3")

#include <algorithm>
#include <cmath>
#include <vector>

namespace tapeloop::engine::train {
namespace {

// RoPE's rotation for positions 0..T-1: f32 [T, 2, hd/2], per position the cosines, then the
// sines, of the angles t * theta^(-2i/hd) of pairs i = 0..hd/2-1. The same for every row and
// layer, so each thread keeps one table per (hd, theta), extended when a longer row comes.
const float* RopeTable(int64_t T, int hd, double theta) {
  struct Table {
    int hd = 0;
    double theta = 0;
    int64_t T = 0;
    std::vector<float> cs;
  };
  thread_local Table tab;
  if (tab.hd != hd || tab.theta != theta) tab = Table{hd, theta, 0, {}};
  if (tab.T < T) {
    const int half = hd / 2;
    tab.cs.resize(T * hd);
    for (int64_t t = tab.T; t < T; ++t)
      for (int i = 0; i < half; ++i) {
        const double ang = static_cast<double>(t) * std::pow(theta, -2.0 * i / hd);
        tab.cs[t * hd + i] = static_cast<float>(std::cos(ang));
        tab.cs[t * hd + half + i] = static_cast<float>(std::sin(ang));
      }
    tab.T = T;
  }
  return tab.cs.data();
}

// In-place RoPE over [T, heads, hd] (row stride ld); sign = -1 applies the inverse rotation
// (the backward pass of the forward one).
void Rope(float* x, int64_t T, int heads, int hd, int64_t ld, double theta, float sign) {
  const int half = hd / 2;
  const float* table = RopeTable(T, hd, theta);
  for (int64_t t = 0; t < T; ++t) {
    const float* cos = table + t * hd;
    const float* sin = cos + half;
    for (int h = 0; h < heads; ++h) {
      float* v = x + t * ld + h * hd;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half], c = cos[i], s = sign * sin[i];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace

void AppendAttentionSpecs(const std::string& p, const AttentionDims& d,
                          std::vector<ParamSpec>* specs) {
  const int64_t D = d.D, q = d.q_dim(), kv = d.kv_dim();
  auto lin = [](int64_t fan_in) {
    return InitUniform(1.f / std::sqrt(static_cast<float>(fan_in)));
  };
  specs->push_back({p + "q_proj.weight", {q, D}, lin(D), true});
  specs->push_back({p + "k_proj.weight", {kv, D}, lin(D), true});
  specs->push_back({p + "v_proj.weight", {kv, D}, lin(D), true});
  specs->push_back({p + "o_proj.weight", {D, q}, lin(q), true});
}

AttentionSaved AttentionSaved::Carve(const AttentionDims& d, Carver& c) {
  const int64_t T = d.T;
  AttentionSaved s;
  s.q = c.Take(T * d.q_dim());
  s.k = c.Take(T * d.kv_dim());
  s.v = c.Take(T * d.kv_dim());
  s.P = c.Take(d.Hq * T * T);
  s.o = c.Take(T * d.q_dim());
  return s;
}

AttentionScratch AttentionScratch::Carve(const AttentionDims& d, Carver& c) {
  const int64_t T = d.T;
  AttentionScratch s;
  s.dq = c.Take(T * d.q_dim());
  s.dk = c.Take(T * d.kv_dim());
  s.dv = c.Take(T * d.kv_dim());
  s.dO = c.Take(T * d.q_dim());
  s.dP = c.Take(T * T);
  return s;
}

void AttentionForward(const AttentionDims& d, const AttentionWeights& w, const float* u,
                      const AttentionSaved& s, float* out) {
  const int64_t T = d.T, D = d.D, hd = d.hd, Hq = d.Hq, Hk = d.Hkv, Q = d.q_dim(), KV = d.kv_dim(),
                G = Hq / Hk;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  Gemm(false, true, T, Q, D, 1.f, u, D, w.q, D, 0.f, s.q, Q);
  Gemm(false, true, T, KV, D, 1.f, u, D, w.k, D, 0.f, s.k, KV);
  Gemm(false, true, T, KV, D, 1.f, u, D, w.v, D, 0.f, s.v, KV);
  if (d.rope) {
    Rope(s.q, T, static_cast<int>(Hq), static_cast<int>(hd), Q, d.theta, 1.f);
    Rope(s.k, T, static_cast<int>(Hk), static_cast<int>(hd), KV, d.theta, 1.f);
  }
  for (int64_t hh = 0; hh < Hq; ++hh) {
    const int64_t kh = hh / G;
    float* P = s.P + hh * T * T;
    Gemm(false, true, T, T, hd, scale, s.q + hh * hd, Q, s.k + kh * hd, KV, 0.f, P, T);
    for (int64_t t = 0; t < T; ++t) {
      float* row = P + t * T;
      const int64_t lo = d.window > 0 ? std::max<int64_t>(0, t - d.window + 1) : 0;
      float mx = -INFINITY;
      for (int64_t j = lo; j <= t; ++j) mx = std::max(mx, row[j]);
      float sum = 0;
      std::fill(row, row + lo, 0.f);
      for (int64_t j = lo; j <= t; ++j) {
        row[j] = std::exp(row[j] - mx);
        sum += row[j];
      }
      std::fill(row + t + 1, row + T, 0.f);
      for (int64_t j = lo; j <= t; ++j) row[j] /= sum;
    }
    Gemm(false, false, T, hd, T, 1.f, P, T, s.v + kh * hd, KV, 0.f, s.o + hh * hd, Q);
  }
  Gemm(false, true, T, D, Q, 1.f, s.o, Q, w.o, Q, 1.f, out, D);
}

void AttentionBackward(const AttentionDims& d, const AttentionWeights& w, const float* u,
                       const AttentionSaved& s, const AttentionScratch& sc, const float* dout,
                       float* du, const AttentionGrads& g) {
  const int64_t T = d.T, D = d.D, hd = d.hd, Hq = d.Hq, Hk = d.Hkv, Q = d.q_dim(), KV = d.kv_dim(),
                G = Hq / Hk;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  float *dq = sc.dq, *dk = sc.dk, *dv = sc.dv, *dO = sc.dO, *dP = sc.dP;
  // out += o Wo^T.
  Gemm(true, false, D, Q, T, 1.f, dout, D, s.o, Q, 1.f, g.o, Q);
  Gemm(false, false, T, Q, D, 1.f, dout, D, w.o, Q, 0.f, dO, Q);
  std::fill(dk, dk + T * KV, 0.f);
  std::fill(dv, dv + T * KV, 0.f);
  for (int64_t hh = 0; hh < Hq; ++hh) {
    const int64_t kh = hh / G;
    const float* P = s.P + hh * T * T;
    Gemm(false, true, T, T, hd, 1.f, dO + hh * hd, Q, s.v + kh * hd, KV, 0.f, dP, T);
    Gemm(true, false, T, hd, T, 1.f, P, T, dO + hh * hd, Q, 1.f, dv + kh * hd, KV);
    // Softmax backward over each row's visible keys [lo, t] (P is 0 elsewhere).
    for (int64_t t = 0; t < T; ++t) {
      float* dr = dP + t * T;
      const float* pr = P + t * T;
      const int64_t lo = d.window > 0 ? std::max<int64_t>(0, t - d.window + 1) : 0;
      float dot = 0;
      for (int64_t j = lo; j <= t; ++j) dot += dr[j] * pr[j];
      std::fill(dr, dr + lo, 0.f);
      for (int64_t j = lo; j <= t; ++j) dr[j] = pr[j] * (dr[j] - dot);
      std::fill(dr + t + 1, dr + T, 0.f);
    }
    Gemm(false, false, T, hd, T, scale, dP, T, s.k + kh * hd, KV, 0.f, dq + hh * hd, Q);
    Gemm(true, false, T, hd, T, scale, dP, T, s.q + hh * hd, Q, 1.f, dk + kh * hd, KV);
  }
  if (d.rope) {
    Rope(dq, T, static_cast<int>(Hq), static_cast<int>(hd), Q, d.theta, -1.f);
    Rope(dk, T, static_cast<int>(Hk), static_cast<int>(hd), KV, d.theta, -1.f);
  }
  Gemm(true, false, Q, D, T, 1.f, dq, Q, u, D, 1.f, g.q, D);
  Gemm(true, false, KV, D, T, 1.f, dk, KV, u, D, 1.f, g.k, D);
  Gemm(true, false, KV, D, T, 1.f, dv, KV, u, D, 1.f, g.v, D);
  Gemm(false, false, T, D, Q, 1.f, dq, Q, w.q, D, 0.f, du, D);
  Gemm(false, false, T, D, KV, 1.f, dk, KV, w.k, D, 1.f, du, D);
  Gemm(false, false, T, D, KV, 1.f, dv, KV, w.v, D, 1.f, du, D);
}

}  // namespace tapeloop::engine::train
