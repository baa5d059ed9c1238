// nn.Linear forward and backward for the CPU backend's train mode (Grit's linear layers), on
// Eigen's GEMMs in float. train::ref::linear / linear_backward (double sums) stay the reference
// backend's and the tests' oracle. Compiled once in gyolo's library (src/linear_cpu.cpp).
#pragma once
#include <cstdint>

#include "gyolo/core/error.hpp"
#include "gyolo/kernels/transformer.hpp"

namespace gyolo::train::fast {

/// y = x W^T + b (W: [N, K] row-major, as torch's weight).
void linear(mat_view<const float> x, const float* w, const float* b, mat_view<float> y);

/// dx += dy W, dW += dy^T x, db += column sums of dy (each skipped when null).
void linear_backward(mat_view<const float> x, const float* w, mat_view<const float> dy, mat_view<float> dx, float* dw, float* db);

}  // namespace gyolo::train::fast
