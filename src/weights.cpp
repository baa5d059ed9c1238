// Deterministic random weights (model/weights.hpp), compiled once in gyolo's library: a full GYOLO
// draws ~60 million normal deviates, which took half a minute in an unoptimised program.
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gyolo/model/weights.hpp"

namespace gyolo {

std::vector<float> random_weights::get(const std::string& name, const dims& shape) {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  std::vector<float> v(static_cast<std::size_t>(n));
  std::mt19937_64 rng(seed_ ^ std::hash<std::string>{}(name));
  auto ends = [&](const char* s) {
    const std::string e(s);
    return name.size() >= e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0;
  };
  if (name.find(".dfl") != std::string::npos) {
    for (std::int64_t i = 0; i < n; ++i) v[std::size_t(i)] = float(i);
  } else if (ends("running_var")) {
    std::uniform_real_distribution<float> d(0.5f, 2.0f);
    for (auto& x : v) x = d(rng);
  } else if (ends("bn.weight")) {
    std::uniform_real_distribution<float> d(0.5f, 1.5f);
    for (auto& x : v) x = d(rng);
  } else if (ends("bias") || ends("running_mean")) {
    std::normal_distribution<float> d(0.0f, 0.1f);
    for (auto& x : v) x = d(rng);
  } else {
    std::int64_t fan_in = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    std::normal_distribution<float> d(0.0f, float(1.0 / std::sqrt(double(std::max<std::int64_t>(fan_in, 1)))));
    for (auto& x : v) x = d(rng);
  }
  return v;
}

}  // namespace gyolo
