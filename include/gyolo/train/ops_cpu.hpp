// Fast CPU kernels of the training operations (float, OpenMP), checked against train/ops_ref.hpp.
//   conv2d_backward: dW += dY * im2row(X) and dX += col2im(W^T * dY), both on the run-time chosen
//                    packed GEMM of kernels/cpu_isa.hpp; depthwise convolutions by direct loops.
//   batchnorm_*:     per channel in parallel, sums in double.
// train_kernels<B> picks these for the cpu backend and the reference loops for every other one.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gyolo/core/context.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/kernels/cpu_gemm.hpp"
#include "gyolo/kernels/cpu_isa.hpp"
#include "gyolo/kernels/desc.hpp"
#include "gyolo/train/ops_ref.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace gyolo::train::fast {

namespace detail {
/// Packs rows [0, m) x cols [0, K) of a row-major matrix (row stride ld) into gemm_mr-row panels.
inline void pack_rows(const float* src, std::int64_t ld, int m, int K, float* dst) {
  constexpr int MR = cpu_detail::gemm_mr;
  const int panels = (m + MR - 1) / MR;
  for (int pi = 0; pi < panels; ++pi) {
    float* d = dst + std::int64_t(pi) * K * MR;
    for (int r = 0; r < MR; ++r) {
      const int row = pi * MR + r;
      if (row >= m) {
        for (int k = 0; k < K; ++k) d[std::int64_t(k) * MR + r] = 0.0f;
        continue;
      }
      const float* s = src + std::int64_t(row) * ld;
      for (int k = 0; k < K; ++k) d[std::int64_t(k) * MR + r] = s[k];
    }
  }
}
inline std::int64_t packed_floats(int m, int K) {
  return std::int64_t((m + cpu_detail::gemm_mr - 1) / cpu_detail::gemm_mr) * cpu_detail::gemm_mr * K;
}
/// im2row of output positions [r0, r0 + rows) of one image and group: out[r][ci*k*k + ky*k + kx].
inline void im2row(const float* x, std::int64_t plane, int cin_g, int H, int W, int k, int s, int p, int Wo, std::int64_t r0,
                   int rows, float* out) {
  const int K = cin_g * k * k;
  for (int r = 0; r < rows; ++r) {
    const std::int64_t pos = r0 + r;
    const int oy = int(pos / Wo), ox = int(pos % Wo);
    float* o = out + std::int64_t(r) * K;
    for (int ci = 0; ci < cin_g; ++ci) {
      const float* xc = x + ci * plane;
      for (int ky = 0; ky < k; ++ky) {
        const int iy = oy * s - p + ky;
        for (int kx = 0; kx < k; ++kx) {
          const int ix = ox * s - p + kx;
          *o++ = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xc[std::int64_t(iy) * W + ix] : 0.0f;
        }
      }
    }
  }
}
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
}  // namespace detail

/// dW += dY (*) X and dX += conv_transpose(dY, W) for y = conv(x, w) (bias handled by the caller).
/// dx.data == nullptr: no input gradient; dw == nullptr: no weight gradient.
inline void conv2d_backward(context<cpu>& ctx, cview<float> x, const float* w, cview<float> dy, const conv_desc& d, view<float> dx,
                            float* dw) {
  const int G = d.groups, cin_g = d.cin / G, cout_g = d.cout / G, k = d.k, s = d.stride, p = d.pad;
  const int K = cin_g * k * k, Ho = dy.h, Wo = dy.w;
  const std::int64_t HWo = std::int64_t(Ho) * Wo, HWi = x.plane();
  const int T = ctx.threads();
  GYOLO_CHECK(x.c == d.cin && dy.c == d.cout && dy.n == x.n, "conv2d_backward: shape mismatch");
  if (cin_g == 1 && cout_g == 1) {  // depthwise: direct loops, parallel over channels
#pragma omp parallel for schedule(static) num_threads(T)
    for (int c = 0; c < d.cout; ++c) {
      const float* wc = w + std::int64_t(c) * k * k;
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx) {
          const float wv = wc[ky * k + kx];
          // output columns whose input column ix = ox*s - p + kx lies inside [0, W)
          int lo = 0, hi = Wo - 1;
          while (lo < Wo && lo * s - p + kx < 0) ++lo;
          while (hi >= 0 && hi * s - p + kx >= x.w) --hi;
          double gw = 0;
          for (int n = 0; n < x.n; ++n) {
            const float* xc = x.channel(n, c);
            const float* g = dy.channel(n, c);
            float* dxc = dx.data ? dx.channel(n, c) : nullptr;
            for (int oy = 0; oy < Ho; ++oy) {
              const int iy = oy * s - p + ky;
              if (iy < 0 || iy >= x.h || lo > hi) continue;
              const float* grow = g + std::int64_t(oy) * Wo;
              const float* xrow = xc + std::int64_t(iy) * x.w + (kx - p);
              if (dw) {  // a row's dot product in float (vectorised), rows summed in double
                float acc = 0.0f;
                if (s == 1) {
#pragma omp simd reduction(+ : acc)
                  for (int ox = lo; ox <= hi; ++ox) acc += grow[ox] * xrow[ox];
                } else {
#pragma omp simd reduction(+ : acc)
                  for (int ox = lo; ox <= hi; ++ox) acc += grow[ox] * xrow[std::int64_t(ox) * s];
                }
                gw += double(acc);
              }
              if (dxc) {
                float* drow = dxc + std::int64_t(iy) * x.w + (kx - p);
                if (s == 1) {
#pragma omp simd
                  for (int ox = lo; ox <= hi; ++ox) drow[ox] += grow[ox] * wv;
                } else {
                  for (int ox = lo; ox <= hi; ++ox) drow[std::int64_t(ox) * s] += grow[ox] * wv;
                }
              }
            }
          }
          if (dw) dw[std::int64_t(c) * k * k + ky * k + kx] += float(gw);
        }
    }
    return;
  }
  const auto& kt = cpu_detail::active_kernels();
  const bool pointwise = k == 1 && s == 1 && p == 0;
  constexpr int col_tile = 256;  // GEMM output columns per call (as the forward's row tiles)
  // W_g^T packed (K rows x cout_g), per group, for the input gradient.
  std::vector<float> wt_packed;
  if (dx.data) {  // W_g^T packed directly: panel pi holds rows kk = pi*MR + r of W^T, i.e. W[co][kk]
    constexpr int MR = cpu_detail::gemm_mr;
    const std::int64_t per = detail::packed_floats(K, cout_g);
    const int panels = (K + MR - 1) / MR;
    wt_packed.resize(std::size_t(G * per));
#pragma omp parallel for schedule(static) num_threads(T) if (std::int64_t(G) * K * cout_g > 65536)
    for (std::int64_t t = 0; t < std::int64_t(G) * panels; ++t) {
      const int g = int(t / panels), pi = int(t % panels);
      const float* wg = w + std::int64_t(g) * cout_g * K;
      float* dst = wt_packed.data() + g * per + std::int64_t(pi) * cout_g * MR;
      for (int co = 0; co < cout_g; ++co)
        for (int r = 0; r < MR; ++r) {
          const int kk = pi * MR + r;
          dst[std::int64_t(co) * MR + r] = kk < K ? wg[std::int64_t(co) * K + kk] : 0.0f;
        }
    }
  }
  // Row chunks of the output positions, one per task.
  const std::int64_t chunk = std::max<std::int64_t>(64, (HWo + T - 1) / T);
  const int nchunks = int((HWo + chunk - 1) / chunk);
  tensor<float> partial;  // per-chunk dW_g [nchunks][cout_g][K]
  if (dw) partial.resize({1, 1, nchunks, cout_g * K});
  tensor<float> dcol;  // [K][HWo] for the input gradient of one image and group
  if (dx.data && !pointwise) dcol.resize({1, 1, K, int(HWo)});
  for (int n = 0; n < x.n; ++n)
    for (int g = 0; g < G; ++g) {
      const float* xg = x.channel(n, g * cin_g);
      const float* dyg = dy.channel(n, g * cout_g);
      if (dw) {
#pragma omp parallel for schedule(static) num_threads(T)
        for (int ci = 0; ci < nchunks; ++ci) {
          const std::int64_t r0 = std::int64_t(ci) * chunk;
          const int rows = int(std::min<std::int64_t>(chunk, HWo - r0));
          const int slot = detail::thread_id();
          // rows in sub-blocks of at most KC (the GEMM's inner chunk) so that im2row's output stays
          // in cache; every sub-block after the first accumulates into C through the epilogue's
          // residual (= C itself: with one inner chunk the kernel reads it before storing).
          const int sub = std::clamp(int((std::int64_t(1) << 19) / std::max(K, 1)), 64, 512);
          float* buf = ctx.scratch(slot, detail::packed_floats(cout_g, sub) + std::int64_t(sub) * K);
          float* a = buf;                                           // dY_g[:, rows] packed
          float* colT = buf + detail::packed_floats(cout_g, sub);   // [sub][K]
          float* C = partial.data() + std::int64_t(ci) * cout_g * K;
          for (int s0 = 0; s0 < rows; s0 += sub) {
            const int sr = std::min(sub, rows - s0);
            const std::int64_t q0 = r0 + s0;
            detail::pack_rows(dyg + q0, dy.plane(), cout_g, sr, a);
            if (pointwise) {  // transpose X[:, q0:q0+sr] in blocks of 8 rows
              int r = 0;
              for (; r + 8 <= sr; r += 8)
                for (int c = 0; c < cin_g; ++c) {
                  const float* src = xg + std::int64_t(c) * HWi + q0 + r;
                  float* dst = colT + std::int64_t(r) * K + c;
                  for (int j = 0; j < 8; ++j) dst[std::int64_t(j) * K] = src[j];
                }
              for (; r < sr; ++r)
                for (int c = 0; c < cin_g; ++c) colT[std::int64_t(r) * K + c] = xg[std::int64_t(c) * HWi + q0 + r];
            } else {
              detail::im2row(xg, HWi, cin_g, x.h, x.w, k, s, p, Wo, q0, sr, colT);
            }
            for (int k0 = 0; k0 < K; k0 += col_tile) {
              cpu_detail::gemm_epilogue acc{nullptr, act::none, C + k0, K};
              kt.gemm(a, cout_g, sr, colT + k0, K, C + k0, K, std::min(col_tile, K - k0), s0 == 0 ? nullptr : &acc);
            }
          }
        }
        float* dwg = dw + std::int64_t(g) * cout_g * K;
        const std::int64_t tot = std::int64_t(cout_g) * K;
#pragma omp parallel for schedule(static) num_threads(T)
        for (std::int64_t i = 0; i < tot; ++i) {
          float acc = 0.0f;
          for (int ci = 0; ci < nchunks; ++ci) acc += partial.data()[std::int64_t(ci) * tot + i];
          dwg[i] += acc;
        }
      }
      if (dx.data) {
        const float* a = wt_packed.data() + g * detail::packed_floats(K, cout_g);
        if (pointwise) {
          // dX_g[:, r0:r1] += W_g^T dY_g[:, r0:r1]
#pragma omp parallel for schedule(static) num_threads(T)
          for (int ci = 0; ci < nchunks; ++ci) {
            const std::int64_t r0 = std::int64_t(ci) * chunk;
            const int rows = int(std::min<std::int64_t>(chunk, HWo - r0));
            const int slot = detail::thread_id();
            float* c = ctx.scratch(slot, std::int64_t(K) * col_tile);
            for (int t0 = 0; t0 < rows; t0 += col_tile) {
              const int tn = std::min(col_tile, rows - t0);
              kt.gemm(a, K, cout_g, dyg + r0 + t0, dy.plane(), c, tn, tn, nullptr);
              for (int kk = 0; kk < K; ++kk) {
                float* dst = dx.channel(n, g * cin_g + kk) + r0 + t0;
                const float* src = c + std::int64_t(kk) * tn;
#pragma omp simd
                for (int r = 0; r < tn; ++r) dst[r] += src[r];
              }
            }
          }
        } else {
#pragma omp parallel for schedule(static) num_threads(T)
          for (int ci = 0; ci < nchunks; ++ci) {
            const std::int64_t r0 = std::int64_t(ci) * chunk;
            const int rows = int(std::min<std::int64_t>(chunk, HWo - r0));
            for (int t0 = 0; t0 < rows; t0 += col_tile)
              kt.gemm(a, K, cout_g, dyg + r0 + t0, dy.plane(), dcol.data() + r0 + t0, HWo, std::min(col_tile, rows - t0), nullptr);
          }
          // col2im, parallel over input channels (each writes only its own plane)
#pragma omp parallel for schedule(static) num_threads(T)
          for (int c = 0; c < cin_g; ++c) {
            float* dxc = dx.channel(n, g * cin_g + c);
            for (int ky = 0; ky < k; ++ky)
              for (int kx = 0; kx < k; ++kx) {
                const float* src = dcol.data() + (std::int64_t(c) * k * k + ky * k + kx) * HWo;
                int lo = 0, hi = Wo - 1;  // columns with ix = ox*s - p + kx inside [0, W)
                while (lo < Wo && lo * s - p + kx < 0) ++lo;
                while (hi >= 0 && hi * s - p + kx >= x.w) --hi;
                for (int oy = 0; oy < Ho; ++oy) {
                  const int iy = oy * s - p + ky;
                  if (iy < 0 || iy >= x.h) continue;
                  float* drow = dxc + std::int64_t(iy) * x.w + (kx - p);
                  const float* srow = src + std::int64_t(oy) * Wo;
                  if (s == 1) {
#pragma omp simd
                    for (int ox = lo; ox <= hi; ++ox) drow[ox] += srow[ox];
                  } else {
                    for (int ox = lo; ox <= hi; ++ox) drow[std::int64_t(ox) * s] += srow[ox];
                  }
                }
              }
          }
        }
      }
    }
}

/// BatchNorm2d training forward (as ref::batchnorm_train), channels in parallel.
inline void batchnorm_train(context<cpu>& ctx, cview<float> x, const float* gamma, const float* beta, view<float> y, float* mean_out,
                            float* invstd_out, float* running_mean, float* running_var, double momentum, double eps) {
  const std::int64_t P = x.plane(), cnt = std::int64_t(x.n) * P;
  GYOLO_CHECK(cnt > 1, "batchnorm_train: expected more than 1 value per channel when training");
#pragma omp parallel for schedule(static) num_threads(ctx.threads())
  for (int c = 0; c < x.c; ++c) {
    double s = 0;
    for (int n = 0; n < x.n; ++n) {
      const float* p = x.channel(n, c);
      for (std::int64_t i = 0; i < P; ++i) s += p[i];
    }
    const double mean = s / double(cnt);
    double v = 0;
    for (int n = 0; n < x.n; ++n) {
      const float* p = x.channel(n, c);
      for (std::int64_t i = 0; i < P; ++i) {
        const double d = p[i] - mean;
        v += d * d;
      }
    }
    const double var = v / double(cnt), invstd = 1.0 / std::sqrt(var + eps);
    const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
    const float sc = float(g * invstd), sh = float(b - g * invstd * mean);
    for (int n = 0; n < x.n; ++n) {
      const float* p = x.channel(n, c);
      float* o = y.channel(n, c);
      for (std::int64_t i = 0; i < P; ++i) o[i] = p[i] * sc + sh;
    }
    if (mean_out) mean_out[c] = float(mean);
    if (invstd_out) invstd_out[c] = float(invstd);
    if (running_mean) running_mean[c] = float((1.0 - momentum) * running_mean[c] + momentum * mean);
    if (running_var) running_var[c] = float((1.0 - momentum) * running_var[c] + momentum * var * double(cnt) / double(cnt - 1));
  }
}

/// BatchNorm2d training backward (as ref::batchnorm_backward), channels in parallel.
inline void batchnorm_backward(context<cpu>& ctx, cview<float> x, const float* gamma, const float* mean, const float* invstd,
                               cview<float> dy, view<float> dx, float* dgamma, float* dbeta) {
  const std::int64_t P = x.plane(), cnt = std::int64_t(x.n) * P;
#pragma omp parallel for schedule(static) num_threads(ctx.threads())
  for (int c = 0; c < x.c; ++c) {
    const double mu = mean[c], is = invstd[c];
    double sdy = 0, sdyx = 0;
    for (int n = 0; n < x.n; ++n) {
      const float* p = x.channel(n, c);
      const float* g = dy.channel(n, c);
      for (std::int64_t i = 0; i < P; ++i) {
        sdy += g[i];
        sdyx += double(g[i]) * (p[i] - mu);
      }
    }
    const double xhat_dot = sdyx * is;  // sum dy * xhat
    if (dgamma) dgamma[c] += float(xhat_dot);
    if (dbeta) dbeta[c] += float(sdy);
    if (!dx.data) continue;
    const double g = gamma ? gamma[c] : 1.0;
    const double k1 = g * is, m1 = sdy / double(cnt), m2 = xhat_dot / double(cnt);
    for (int n = 0; n < x.n; ++n) {
      const float* p = x.channel(n, c);
      const float* gy = dy.channel(n, c);
      float* o = dx.channel(n, c);
      for (std::int64_t i = 0; i < P; ++i) {
        const double xh = (p[i] - mu) * is;
        o[i] += float(k1 * (gy[i] - m1 - xh * m2));
      }
    }
  }
}

/// y += x over same-shaped (possibly sliced) views, planes in parallel.
template <class B>
void add_into(context<B>& ctx, cview<float> x, view<float> y) {
  const std::int64_t planes = std::int64_t(y.n) * y.c, P = y.plane();
#pragma omp parallel for schedule(static) num_threads(ctx.threads()) if (planes * P > 32768)
  for (std::int64_t t = 0; t < planes; ++t) {
    const float* a = x.channel(int(t / y.c), int(t % y.c));
    float* b = y.channel(int(t / y.c), int(t % y.c));
#pragma omp simd
    for (std::int64_t i = 0; i < P; ++i) b[i] += a[i];
  }
}

/// y = silu(y) in place (the run-time chosen kernel set's vectorised SiLU), planes in parallel.
template <class B>
void silu_inplace(context<B>& ctx, view<float> y) {
  const auto& kt = cpu_detail::active_kernels();
  const std::int64_t planes = std::int64_t(y.n) * y.c, P = y.plane();
#pragma omp parallel for schedule(static) num_threads(ctx.threads())
  for (std::int64_t t = 0; t < planes; ++t) kt.epilogue(y.channel(int(t / y.c), int(t % y.c)), P, int(P), 1, nullptr, act::silu, nullptr, 0);
}

/// du = dy * silu'(u) with u = (z - mean) * invstd * gamma + beta per channel (BatchNorm's output,
/// recomputed) or, with mean == nullptr, u = z. silu'(u) = s (1 + u (1 - s)), s = sigmoid(u).
template <class B>
void silu_backward(context<B>& ctx, cview<float> z, const float* mean, const float* invstd, const float* gamma, const float* beta,
                   cview<float> dy, view<float> du) {
  const auto& kt = cpu_detail::active_kernels();
  const std::int64_t planes = std::int64_t(z.n) * z.c, P = z.plane();
  const int T = ctx.threads();
#pragma omp parallel num_threads(T)
  {
    std::vector<float> ub(std::size_t(2 * P));
    float *u = ub.data(), *sg = ub.data() + P;
#pragma omp for schedule(static)
    for (std::int64_t t = 0; t < planes; ++t) {
      const int n = int(t / z.c), c = int(t % z.c);
      const float* zp = z.channel(n, c);
      if (mean) {
        const float sc = invstd[c] * (gamma ? gamma[c] : 1.0f), sh = beta ? beta[c] : 0.0f, m = mean[c];
        for (std::int64_t i = 0; i < P; ++i) u[i] = (zp[i] - m) * sc + sh;
      } else {
        std::memcpy(u, zp, sizeof(float) * std::size_t(P));
      }
      std::memcpy(sg, u, sizeof(float) * std::size_t(P));
      kt.epilogue(sg, P, int(P), 1, nullptr, act::sigmoid, nullptr, 0);
      const float* g = dy.channel(n, c);
      float* o = du.channel(n, c);
      for (std::int64_t i = 0; i < P; ++i) o[i] = g[i] * sg[i] * (1.0f + u[i] * (1.0f - sg[i]));
    }
  }
}

}  // namespace gyolo::train::fast

namespace gyolo {

/// The training kernels of a backend: the reference loops by default, the fast ones on cpu.
template <class B>
struct train_kernels {
  static void silu_inplace(context<B>&, view<float> y) {
    for (int n = 0; n < y.n; ++n)
      for (int c = 0; c < y.c; ++c) {
        float* p = y.channel(n, c);
        for (std::int64_t i = 0; i < y.plane(); ++i) p[i] = float(double(p[i]) / (1.0 + std::exp(-double(p[i]))));
      }
  }
  static void silu_backward(context<B>&, cview<float> z, const float* mean, const float* invstd, const float* gamma, const float* beta,
                            cview<float> dy, view<float> du) {
    for (int n = 0; n < z.n; ++n)
      for (int c = 0; c < z.c; ++c) {
        const float* zp = z.channel(n, c);
        const float* g = dy.channel(n, c);
        float* o = du.channel(n, c);
        for (std::int64_t i = 0; i < z.plane(); ++i) {
          const double u = mean ? (double(zp[i]) - mean[c]) * invstd[c] * (gamma ? gamma[c] : 1.0) + (beta ? beta[c] : 0.0) : zp[i];
          const double sg = 1.0 / (1.0 + std::exp(-u));
          o[i] = float(g[i] * sg * (1.0 + u * (1.0 - sg)));
        }
      }
  }
  static void conv2d_backward(context<B>&, cview<float> x, const float* w, cview<float> dy, const conv_desc& d, view<float> dx, float* dw,
                              float* db) {
    train::ref::conv2d_backward<float>(x, w, dy, d, dx, dw, db);
  }
  static void batchnorm_train(context<B>&, cview<float> x, const float* g, const float* b, view<float> y, float* mu, float* is, float* rm,
                              float* rv, double mom, double eps) {
    train::ref::batchnorm_train<float>(x, g, b, y, mu, is, rm, rv, mom, eps);
  }
  static void batchnorm_backward(context<B>&, cview<float> x, const float* g, const float* mu, const float* is, cview<float> dy,
                                 view<float> dx, float* dg, float* db) {
    train::ref::batchnorm_backward<float>(x, g, mu, is, dy, dx, dg, db);
  }
};

template <>
struct train_kernels<cpu> {
  static void silu_inplace(context<cpu>& ctx, view<float> y) { train::fast::silu_inplace(ctx, y); }
  static void silu_backward(context<cpu>& ctx, cview<float> z, const float* mean, const float* invstd, const float* gamma,
                            const float* beta, cview<float> dy, view<float> du) {
    train::fast::silu_backward(ctx, z, mean, invstd, gamma, beta, dy, du);
  }
  static void conv2d_backward(context<cpu>& ctx, cview<float> x, const float* w, cview<float> dy, const conv_desc& d, view<float> dx,
                              float* dw, float* db) {
    train::fast::conv2d_backward(ctx, x, w, dy, d, dx, dw);
    if (db) {
      const std::int64_t P = dy.plane();
      for (int c = 0; c < dy.c; ++c) {
        double s = 0;
        for (int n = 0; n < dy.n; ++n) {
          const float* g = dy.channel(n, c);
          for (std::int64_t i = 0; i < P; ++i) s += g[i];
        }
        db[c] += float(s);
      }
    }
  }
  static void batchnorm_train(context<cpu>& ctx, cview<float> x, const float* g, const float* b, view<float> y, float* mu, float* is,
                              float* rm, float* rv, double mom, double eps) {
    train::fast::batchnorm_train(ctx, x, g, b, y, mu, is, rm, rv, mom, eps);
  }
  static void batchnorm_backward(context<cpu>& ctx, cview<float> x, const float* g, const float* mu, const float* is, cview<float> dy,
                                 view<float> dx, float* dg, float* db) {
    train::fast::batchnorm_backward(ctx, x, g, mu, is, dy, dx, dg, db);
  }
};

}  // namespace gyolo
