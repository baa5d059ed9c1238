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
/// Packs into p (packed_size(groups, cout_g, K) floats, every one written).
inline void pack_weights_into(const float* w, int groups, int cout_g, int K, float* p) {
  const int panels = (cout_g + gemm_mr - 1) / gemm_mr;
  for (int g = 0; g < groups; ++g)
    for (int pi = 0; pi < panels; ++pi) {
      float* dst = p + (std::int64_t(g) * panels + pi) * K * gemm_mr;
      for (int r = 0; r < gemm_mr; ++r) {
        const int co = pi * gemm_mr + r;
        if (co >= cout_g) {
          for (int k = 0; k < K; ++k) dst[std::int64_t(k) * gemm_mr + r] = 0.0f;
          continue;
        }
        const float* src = w + (std::int64_t(g) * cout_g + co) * K;
        for (int k = 0; k < K; ++k) dst[std::int64_t(k) * gemm_mr + r] = src[k];
      }
    }
}
inline std::vector<float> pack_weights(const float* w, int groups, int cout_g, int K) {
  std::vector<float> p(std::size_t(packed_size(groups, cout_g, K)));
  pack_weights_into(w, groups, cout_g, K, p.data());
  return p;
}

}  // namespace gyolo::cpu_detail
