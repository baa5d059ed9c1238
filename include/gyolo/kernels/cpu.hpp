// OpenMP CPU kernels. Same signatures as kernels<reference>, which is their oracle.
// Convolution: output rows (pixels) are tiled; each task im2col's its tile into per-thread scratch
// (1x1 stride-1 convs read the input in place) and runs the packed-weight GEMM of the instruction
// set chosen at run time (cpu_isa.hpp), which applies bias, activation and residual while the tile
// is in registers. Parallelism is over tiles.
#pragma once
// gyolo schedules its own threads (OpenMP over tiles); Eigen must not spawn nested teams inside
// them. The CMake target defines this too, so it holds even if Eigen was included first.
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif
#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <limits>
#include <vector>

#include "gyolo/core/parallel.hpp"
#include "gyolo/kernels/cpu_gemm.hpp"
#include "gyolo/kernels/desc.hpp"
#include "gyolo/kernels/reference.hpp"

namespace gyolo {

namespace cpu_detail {

/// im2col rows kk in [kb, kb + nb) (kk = (ci*k + ky)*k + kx) of output positions [r0, r0+rows) of
/// one image, col-major: col[(kk - kb) * rows + r] (0 outside the input).
inline void im2col_rows(const float* x, int H, int W, int k, int s, int p, int Wo, int kb, int nb, std::int64_t r0, int rows,
                        float* col) {
  const std::int64_t plane = std::int64_t(H) * W;
  for (int kk = kb; kk < kb + nb; ++kk) {
    const int ci = kk / (k * k), ky = kk / k % k, kx = kk % k;
    float* dst = col + std::int64_t(kk - kb) * rows;
    const float* src = x + ci * plane;
    int oy = int(r0 / Wo), ox = int(r0 % Wo);
    for (int r = 0; r < rows;) {
      const int iy = oy * s - p + ky;
      const int run = std::min(rows - r, Wo - ox);
      if (iy < 0 || iy >= H) {
        std::fill(dst + r, dst + r + run, 0.0f);
      } else {
        const float* row = src + std::int64_t(iy) * W;
        if (s == 1) {
          // ix = ox + t - p + kx is contiguous: zeros left of 0, a copy, zeros right of W.
          const int ix0 = ox - p + kx;
          const int lo = std::clamp(-ix0, 0, run), hi = std::clamp(W - ix0, lo, run);
          std::fill(dst + r, dst + r + lo, 0.0f);
          std::copy(row + ix0 + lo, row + ix0 + hi, dst + r + lo);
          std::fill(dst + r + hi, dst + r + run, 0.0f);
        } else {
          for (int t = 0; t < run; ++t) {
            const int ix = (ox + t) * s - p + kx;
            dst[r + t] = (ix >= 0 && ix < W) ? row[ix] : 0.0f;
          }
        }
      }
      r += run;
      ox = 0;
      ++oy;
    }
  }
}

/// im2col of every row (input channels [0, cin)) of output positions [r0, r0+rows).
inline void im2col(const float* x, int cin, int H, int W, int k, int s, int p, int Wo, std::int64_t r0, int rows,
                   float* col) {
  im2col_rows(x, H, W, k, s, p, Wo, 0, cin * k * k, r0, rows, col);
}

}  // namespace cpu_detail

/// Compiled once in gyolo's library (src/kernels_cpu.cpp).
template <>
struct kernels<cpu> {
  using ctx_t = context<cpu>;
  static constexpr int row_tile = 256;

  /// Packs weights for the GEMM (empty for depthwise convs). Resolves the kernel set in use, so a
  /// bad GYOLO_ISA is reported at load.
  static std::vector<float> prepack(const conv_desc& d, const std::vector<float>& w);

  static void conv2d(ctx_t& ctx, cview<float> x, conv_weights<> wt, view<float> y, const conv_desc& d,
                     cview<float> residual = {});

  /// One unit of conv work: image n, group g, output pixels [r0, r0+rows), output channels
  /// [co0, co0+cols) (co0 absolute), X = the GEMM's input rows (ld elements apart) for that block.
  struct conv_task {
    int n, g, rows, co0, cols;
    std::int64_t r0;
    const float* x;
    std::int64_t ldx;
  };

  /// Splits a convolution into tasks over (image, group, pixel block, channel block) and runs them
  /// on the context's threads, im2col'ing each k x k block into per-thread scratch (1x1 stride-1
  /// convs read the input in place); `gemm` computes the tile and its epilogue.
  /// Channel blocks are multiples of `cgran` and are split only when pixel blocks are too few.
  template <class Gemm>
  static void conv_tasks(ctx_t& ctx, cview<float> x, conv_weights<> wt, view<float> y, const conv_desc& d,
                         cview<float> residual, int block, int cgran, Gemm&& gemm);

  static void conv2d_gemm(ctx_t& ctx, cview<float> x, conv_weights<> wt, view<float> y, const conv_desc& d,
                          cview<float> residual);

  static void depthwise(ctx_t& ctx, cview<float> x, conv_weights<> wt, view<float> y, const conv_desc& d,
                        cview<float> residual);

  /// Max pooling, separably: a horizontal max per input row, then a vertical max (exact, and
  /// NaN-propagating like PyTorch: once a NaN enters a window's running max it stays).
  static void maxpool2d(ctx_t& ctx, cview<float> x, view<float> y, int k, int s, int p);

  static void avgpool2x2s1(ctx_t& ctx, cview<float> x, view<float> y);

  static void upsample2x(ctx_t& ctx, cview<float> x, view<float> y);

  static void copy(ctx_t& ctx, cview<float> x, view<float> y);

  static void add(ctx_t& ctx, cview<float> a, cview<float> b, view<float> y);

  static void psa_attention(ctx_t& ctx, cview<float> qkv, view<float> y, int heads, int kd, int hd, float scale);

  static void detect_decode(ctx_t& ctx, const std::vector<cview<float>>& levels, const std::vector<float>& strides,
                            const float* dfl_w, int reg_max, int nc, view<float> pred);

  static void flatten_into(ctx_t& ctx, cview<float> x, view<float> y, std::int64_t a0);
};

}  // namespace gyolo
