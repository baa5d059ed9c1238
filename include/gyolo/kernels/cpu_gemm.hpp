// AVX-512 convolution GEMM for the CPU backend: C[cout, px] = W[cout, K] * X[K, px].
// Weights are pre-packed at load into panels of MR output channels ([K][MR] per panel), the
// micro-kernel keeps MR x 64 outputs in 24 zmm registers, broadcasting weights and streaming
// 64 contiguous pixels of each input row (an im2col row, or the input plane itself for 1x1
// convs). K is processed in chunks so the X panel stays in L2. Built only with AVX-512F; other
// machines use the Eigen path in cpu.hpp, and both are checked against kernels<reference>.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#define GYOLO_HAVE_AVX512 1
#else
#define GYOLO_HAVE_AVX512 0
#endif

namespace gyolo::cpu_detail {

constexpr int gemm_mr = 6;          // output channels per micro-tile
constexpr int gemm_nr = 64;         // pixels per micro-tile (4 zmm)
constexpr int gemm_kc = 512;        // K chunk

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

#if GYOLO_HAVE_AVX512
/// C rows i < m_valid, pixels < n_valid: C[i][0:64] (+)= sum_k wp[k][i] * x[k*ldx + 0:64].
inline void ukernel_6x64(int K, const float* wp, const float* x, std::int64_t ldx, float* c, std::int64_t ldc,
                         bool accumulate, int m_valid, int n_valid) {
  __mmask16 mk[4];
  for (int v = 0; v < 4; ++v) {
    const int rem = n_valid - 16 * v;
    mk[v] = rem >= 16 ? __mmask16(0xffff) : rem <= 0 ? __mmask16(0) : __mmask16((1u << rem) - 1);
  }
  __m512 acc[6][4];
  for (int i = 0; i < 6; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_ps();
  if (n_valid == 64) {
    for (int k = 0; k < K; ++k) {
      const float* xr = x + std::int64_t(k) * ldx;
      const __m512 x0 = _mm512_loadu_ps(xr), x1 = _mm512_loadu_ps(xr + 16), x2 = _mm512_loadu_ps(xr + 32),
                   x3 = _mm512_loadu_ps(xr + 48);
      const float* w = wp + std::int64_t(k) * 6;
#define GYOLO_ROW(i)                                       \
  {                                                        \
    const __m512 b = _mm512_set1_ps(w[i]);                 \
    acc[i][0] = _mm512_fmadd_ps(b, x0, acc[i][0]);         \
    acc[i][1] = _mm512_fmadd_ps(b, x1, acc[i][1]);         \
    acc[i][2] = _mm512_fmadd_ps(b, x2, acc[i][2]);         \
    acc[i][3] = _mm512_fmadd_ps(b, x3, acc[i][3]);         \
  }
      GYOLO_ROW(0) GYOLO_ROW(1) GYOLO_ROW(2) GYOLO_ROW(3) GYOLO_ROW(4) GYOLO_ROW(5)
    }
  } else {
    for (int k = 0; k < K; ++k) {
      const float* xr = x + std::int64_t(k) * ldx;
      const __m512 x0 = _mm512_maskz_loadu_ps(mk[0], xr), x1 = _mm512_maskz_loadu_ps(mk[1], xr + 16),
                   x2 = _mm512_maskz_loadu_ps(mk[2], xr + 32), x3 = _mm512_maskz_loadu_ps(mk[3], xr + 48);
      const float* w = wp + std::int64_t(k) * 6;
      GYOLO_ROW(0) GYOLO_ROW(1) GYOLO_ROW(2) GYOLO_ROW(3) GYOLO_ROW(4) GYOLO_ROW(5)
#undef GYOLO_ROW
    }
  }
  for (int i = 0; i < m_valid; ++i) {
    float* cr = c + std::int64_t(i) * ldc;
    for (int v = 0; v < 4; ++v) {
      if (!mk[v]) continue;
      __m512 r = acc[i][v];
      if (accumulate) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mk[v], cr + 16 * v));
      _mm512_mask_storeu_ps(cr + 16 * v, mk[v], r);
    }
  }
}

/// C[m, n] = Wpanels[m, K] * X[K, n] for one group: X row k at x + k*ldx (n_total pixels),
/// C row co at c + co*ldc. Pixels [p0, p0 + n) and all m output channels.
inline void gemm_block(const float* packed, int m, int K, const float* x, std::int64_t ldx, float* c, std::int64_t ldc,
                       int n) {
  const int panels = (m + gemm_mr - 1) / gemm_mr;
  for (int k0 = 0; k0 < K; k0 += gemm_kc) {
    const int kc = std::min(gemm_kc, K - k0);
    for (int pi = 0; pi < panels; ++pi) {
      const float* wp = packed + std::int64_t(pi) * K * gemm_mr + std::int64_t(k0) * gemm_mr;
      const int mv = std::min(gemm_mr, m - pi * gemm_mr);
      for (int p = 0; p < n; p += gemm_nr)
        ukernel_6x64(kc, wp, x + std::int64_t(k0) * ldx + p, ldx, c + std::int64_t(pi) * gemm_mr * ldc + p, ldc, k0 > 0,
                     mv, std::min(gemm_nr, n - p));
    }
  }
}
#endif

}  // namespace gyolo::cpu_detail
