#include "engine/train/vec_math.h"

#include <cstring>

// The vector helpers below are always inlined, so their by-value vector ABI never matters.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace tapeloop::engine::train {
namespace {

constexpr int kLanes = 16;
typedef float VF __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t VI __attribute__((vector_size(kLanes * sizeof(int32_t))));

// Cephes-style expf on kLanes lanes (also used for the scalar tail, one lane at a time).
template <typename F, typename I>
__attribute__((always_inline)) inline F ExpPoly(F x) {
  x = x < 88.7f ? x : F{} + 88.7f;
  x = x > -87.3f ? x : F{} - 87.3f;
  F t = x * 1.44269504088896341f + 12582912.f;  // round to nearest via the 1.5*2^23 trick
  F n = t - 12582912.f;
  F r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  F p = 1.9875691500e-4f * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;
  I bits = (__builtin_convertvector(n, I) + 127) << 23;
  F scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline float ExpScalar(float x) {
  typedef float V1 __attribute__((vector_size(4)));
  typedef int32_t I1 __attribute__((vector_size(4)));
  V1 v = {x};
  return ExpPoly<V1, I1>(v)[0];
}

inline VF Load(const float* p) {
  VF v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store(float* p, VF v) { std::memcpy(p, &v, sizeof(v)); }

}  // namespace

__attribute__((target_clones("avx512f", "avx2", "default"))) void ExpInPlace(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) Store(x + i, ExpPoly<VF, VI>(Load(x + i)));
  for (; i < n; ++i) x[i] = ExpScalar(x[i]);
}

// 1 + exp(-v): SiLU's denominator, the one expression every function below computes it with
// (so each target contracts it alike, and a stored den equals a recomputed one bit for bit).
template <typename F, typename I>
__attribute__((always_inline)) inline F SiluDen(F v) {
  return 1.f + ExpPoly<F, I>(-v);
}
inline float SiluDenScalar(float x) { return 1.f + ExpScalar(-x); }

__attribute__((target_clones("avx512f", "avx2", "default"))) void SiluArray(const float* x,
                                                                            float* y, int64_t n,
                                                                            float* den) {
  int64_t i = 0;
  if (den) {
    for (; i + kLanes <= n; i += kLanes) {
      const VF v = Load(x + i), dv = SiluDen<VF, VI>(v);
      Store(den + i, dv);
      Store(y + i, v / dv);
    }
    for (; i < n; ++i) {
      den[i] = SiluDenScalar(x[i]);
      y[i] = x[i] / den[i];
    }
    return;
  }
  for (; i + kLanes <= n; i += kLanes) {
    const VF v = Load(x + i);
    Store(y + i, v / SiluDen<VF, VI>(v));
  }
  for (; i < n; ++i) y[i] = x[i] / SiluDenScalar(x[i]);
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void SiluGrad(
    const float* z, float* dz, int64_t n, const float* y, float* dg, const float* den) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const VF zv = Load(z + i);
    const VF s = 1.f / (den ? Load(den + i) : SiluDen<VF, VI>(zv));
    const VF g = Load(dg + i);
    Store(dz + i, g * Load(y + i) * (s * (1.f + zv * (1.f - s))));
    Store(dg + i, g * (zv * s));
  }
  for (; i < n; ++i) {
    const float s = 1.f / (den ? den[i] : SiluDenScalar(z[i]));
    dz[i] = dg[i] * y[i] * (s * (1.f + z[i] * (1.f - s)));
    dg[i] *= z[i] * s;
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void SiluGradInPlace(
    const float* x, float* d, int64_t n, const float* den) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const VF xv = Load(x + i);
    const VF s = 1.f / (den ? Load(den + i) : SiluDen<VF, VI>(xv));
    Store(d + i, Load(d + i) * (s * (1.f + xv * (1.f - s))));
  }
  for (; i < n; ++i) {
    const float s = 1.f / (den ? den[i] : SiluDenScalar(x[i]));
    d[i] *= s * (1.f + x[i] * (1.f - s));
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void Relu2Array(const float* x,
                                                                             float* y, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const VF v = Load(x + i);
    const VF r = v > 0.f ? v : VF{};
    Store(y + i, r * r);
  }
  for (; i < n; ++i) {
    const float r = x[i] > 0.f ? x[i] : 0.f;
    y[i] = r * r;
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void Relu2Grad(const float* x,
                                                                            const float* dy,
                                                                            float* dx, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const VF v = Load(x + i);
    const VF g = Load(dy + i) * 2.f * v;
    Store(dx + i, v > 0.f ? g : VF{});
  }
  for (; i < n; ++i) dx[i] = x[i] > 0.f ? dy[i] * 2.f * x[i] : 0.f;
}

}  // namespace tapeloop::engine::train
