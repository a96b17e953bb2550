// Deterministic random numbers for training: parameter init, data order, state noise.
//
// Rng is xoshiro256** seeded through splitmix64: the same seed gives the same stream on every
// platform (no std:: distributions, whose output is implementation-defined). The whole state is
// four 64-bit words, so a training checkpoint saves and restores it exactly.
//
// Thread safety: an Rng is a plain value; use one per thread.
#ifndef TAPELOOP_ENGINE_TRAIN_RNG_H_
#define TAPELOOP_ENGINE_TRAIN_RNG_H_

#include <array>
#include <cstdint>
#include <span>

namespace tapeloop::engine::train {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { Seed(seed); }

  void Seed(uint64_t seed);

  // Next raw 64 bits.
  uint64_t Next();
  // Uniform in [0, 1) with 24 random bits (exactly representable as float).
  float Uniform();
  // Uniform in [lo, hi).
  float Uniform(float lo, float hi) { return lo + (hi - lo) * Uniform(); }
  // Uniform integer in [lo, hi] (inclusive). REQUIRES lo <= hi.
  int64_t UniformInt(int64_t lo, int64_t hi);
  // Standard normal (Box-Muller on two uniforms; no cached second value, so the state is
  // only the four words).
  float Normal();

  // Fills `out` with Normal() * stddev.
  void FillNormal(std::span<float> out, float stddev);
  // Fills `out` with Uniform(-bound, bound).
  void FillUniform(std::span<float> out, float bound);

  // An independent stream derived from this one's seed material and `stream` (does not
  // advance this one).
  Rng Fork(uint64_t stream) const;

  const std::array<uint64_t, 4>& state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }

 private:
  std::array<uint64_t, 4> s_;
};

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_RNG_H_
