// gyolo's random numbers: splitmix64 with explicit integer -> float mappings, so that a seed gives
// the same numbers with every compiler and standard library (never std::*_distribution). Data
// generation (data/scenes.hpp), augmentation (data/augment.hpp) and weight init (train/init.hpp)
// build their distributions on it.
#pragma once
#include <cstdint>

namespace gyolo {

/// splitmix64's output function: a bijective 64-bit mix.
inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The splitmix64 generator.
struct splitmix64 {
  std::uint64_t state = 0;
  explicit splitmix64(std::uint64_t seed) : state(seed) {}
  std::uint64_t next() { return mix64(state += 0x9E3779B97F4A7C15ull); }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [a, b).
  double uniform(double a, double b) { return a + (b - a) * uniform(); }
  /// Uniform float in [0, 1) with 24 random bits.
  float uniform_f() { return float(next() >> 40) * (1.0f / 16777216.0f); }
  float uniform_f(float lo, float hi) { return lo + (hi - lo) * uniform_f(); }
};

}  // namespace gyolo
