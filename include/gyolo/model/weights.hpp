// Where layer parameters come from: a converted GGUF file, or deterministic random values for the
// demo and tests. Every tensor is requested by its upstream state_dict name with the shape the
// compile-time variant predicts; a mismatch is a one-line error naming tensor and shapes.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/io/gguf.hpp"

namespace gyolo {

using dims = std::vector<std::int64_t>;

struct weight_source {
  virtual ~weight_source() = default;
  /// fp32 values of tensor `name`, whose shape must be `shape` (PyTorch order).
  virtual std::vector<float> get(const std::string& name, const dims& shape) = 0;
  virtual std::string describe() const = 0;
};

class gguf_weights final : public weight_source {
 public:
  explicit gguf_weights(const gguf::file& f) : f_(f) {}
  std::vector<float> get(const std::string& name, const dims& shape) override {
    const auto* t = f_.find(name);
    if (!t) f_.fail("tensor '" + name + "' is missing (expected shape " + gguf::shape_str(shape) + ")");
    if (t->torch_shape() != shape)
      f_.fail("tensor '" + name + "': expected shape " + gguf::shape_str(shape) + ", found " +
              gguf::shape_str(t->torch_shape()));
    used_.insert(name);
    auto v = f_.read_f32(*t);
    for (float x : v)
      if (!std::isfinite(x)) f_.fail("tensor '" + name + "' contains NaN or Inf");
    return v;
  }
  std::string describe() const override { return f_.path(); }
  const std::set<std::string>& used() const { return used_; }

 private:
  const gguf::file& f_;
  std::set<std::string> used_;
};

/// Deterministic pseudo-random weights (seeded by tensor name), in a range that keeps activations
/// sane: conv weights ~ N(0, 1/fan_in), BN statistics non-trivial, DFL = 0..15.
class random_weights final : public weight_source {
 public:
  explicit random_weights(std::uint64_t seed = 0) : seed_(seed) {}
  std::vector<float> get(const std::string& name, const dims& shape) override;  // src/weights.cpp
  std::string describe() const override { return "deterministic random weights (seed " + std::to_string(seed_) + ")"; }

 private:
  std::uint64_t seed_;
};

}  // namespace gyolo
