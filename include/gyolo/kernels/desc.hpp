// Kernel descriptors shared by every backend. Kernels of all backends have identical signatures:
//   kernels<B>::conv2d(ctx, x, weight, bias, y, desc, residual)
// and so on, so layer code is written once.
#pragma once
#include <cmath>

#include "gyolo/core/backend.hpp"
#include "gyolo/core/context.hpp"
#include "gyolo/core/tensor.hpp"

namespace gyolo {

struct conv_desc {
  int cin = 0, cout = 0, k = 1, stride = 1, pad = 0, groups = 1;
  act activation = act::none;

  int out_h(int h) const { return (h + 2 * pad - k) / stride + 1; }
  int out_w(int w) const { return (w + 2 * pad - k) / stride + 1; }
  int weight_numel() const { return cout * (cin / groups) * k * k; }
};

/// Convolution weights after Conv+BN (and RepConv) folding: [cout, cin/groups, k, k] + bias[cout].
template <class Space = host_space>
struct conv_weights {
  const float* w = nullptr;
  const float* b = nullptr;
  const float* packed = nullptr;  // backend-specific pre-packed copy of w (optional)
};

template <class B> struct kernels;  // specialised per backend

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
inline float sigmoidf(float x) { return 1.0f / (1.0f + std::exp(-x)); }

inline float apply_act(act a, float v) {
  switch (a) {
    case act::silu: return silu(v);
    case act::relu: return v > 0.f ? v : 0.f;
    case act::sigmoid: return sigmoidf(v);
    default: return v;
  }
}

/// Per-level description for detect_decode.
struct level_desc {
  int h = 0, w = 0;
  float stride = 0;
};

}  // namespace gyolo
