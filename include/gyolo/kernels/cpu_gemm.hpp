// Weight packing for the CPU convolution GEMM: C[cout, px] = W[cout, K] * X[K, px]. Weights are
// packed at load into panels of gemm_mr output channels ([K][gemm_mr] per panel), one layout for
// every instruction set. The micro-kernels (src/isa_*.cpp, chosen at run time, see cpu_isa.hpp)
// broadcast the packed weights and stream contiguous pixels of each input row (an im2col row, or
// the input plane itself for 1x1 convs); all are checked against kernels<reference>.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "gyolo/kernels/cpu_isa.hpp"

namespace gyolo::cpu_detail {

/// Packed layout for `groups` groups of cout_g x K weights (row-major [cout][K] per group):
/// per group, ceil(cout_g / MR) panels of [K][MR], zero-padded.
inline std::int64_t packed_size(int groups, int cout_g, int K) {
  const int panels = (cout_g + gemm_mr - 1) / gemm_mr;
  return std::int64_t(groups) * panels * K * gemm_mr;
}
inline std::vector<float> pack_weights(const float* w, int groups, int cout_g, int K) {
  const int panels = (cout_g + gemm_mr - 1) / gemm_mr;
  std::vector<float> p(std::size_t(packed_size(groups, cout_g, K)), 0.0f);
  for (int g = 0; g < groups; ++g)
    for (int pi = 0; pi < panels; ++pi) {
      float* dst = p.data() + (std::int64_t(g) * panels + pi) * K * gemm_mr;
      for (int r = 0; r < gemm_mr; ++r) {
        const int co = pi * gemm_mr + r;
        if (co >= cout_g) continue;
        const float* src = w + (std::int64_t(g) * cout_g + co) * K;
        for (int k = 0; k < K; ++k) dst[std::int64_t(k) * gemm_mr + r] = src[k];
      }
    }
  return p;
}

}  // namespace gyolo::cpu_detail
