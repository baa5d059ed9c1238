// Fast CPU kernels of the training operations (float, OpenMP), checked against train/ops_ref.hpp.
//   conv2d_backward: dW += dY * col(X)^T on the NT GEMM (both operands read along their rows: X
//                    itself for 1x1 convs, im2col chunks otherwise; no transposes), dX += col2im(W^T *
//                    dY) on the packed GEMM, both of the run-time chosen kernel set (kernels/cpu_isa.hpp);
//                    depthwise convolutions (and grouped ones with one output per group) by
//                    direct loops.
//   batchnorm_train / batchnorm_act_backward: BatchNorm with batch statistics fused with the SiLU
//                    after it (forward: one pass; backward: dL/dz from dL/dy in two passes over a
//                    channel still in cache), per channel in parallel, sums in double.
// train_kernels<B> picks these for the cpu backend and the reference loops for every other one.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gyolo/core/context.hpp"
#include "gyolo/core/parallel.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/kernels/cpu.hpp"
#include "gyolo/kernels/cpu_gemm.hpp"
#include "gyolo/kernels/cpu_isa.hpp"
#include "gyolo/kernels/desc.hpp"
#include "gyolo/train/ops_ref.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace gyolo::train::fast {
namespace detail {
inline std::int64_t packed_floats(int m, int K) {
  return std::int64_t((m + cpu_detail::gemm_mr - 1) / cpu_detail::gemm_mr) * cpu_detail::gemm_mr * K;
}
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}
}  // namespace detail

template <class B> void add_into(context<B>& ctx, cview<float> x, view<float> y);

/// dW += dY (*) X and dX += conv_transpose(dY, W) for y = conv(x, w) (bias handled by the caller).
/// dx.data == nullptr: no input gradient; dw == nullptr: no weight gradient.
inline void conv2d_backward(context<cpu>& ctx, cview<float> x, const float* w, cview<float> dy, const conv_desc& d, view<float> dx,
                            float* dw) {
  const int G = d.groups, cin_g = d.cin / G, cout_g = d.cout / G, k = d.k, s = d.stride, p = d.pad;
  const int K = cin_g * k * k, Ho = dy.h, Wo = dy.w;
  const std::int64_t HWo = std::int64_t(Ho) * Wo, HWi = x.plane();
  const int T = ctx.threads();
  GYOLO_CHECK(x.c == d.cin && dy.c == d.cout && dy.n == x.n, "conv2d_backward: shape mismatch");
  if (cout_g == 1) {
    // Depthwise (and one output per group, cin_g > 1): direct loops, parallel over input
    // channels ci; ci feeds output channel ci / cin_g through the weights at ci * k * k.
    par::for_static(T, int(d.cin), [&](int ci) {
      const int c = ci / cin_g;
      const float* wc = w + std::int64_t(ci) * k * k;
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx) {
          const float wv = wc[ky * k + kx];
          // output columns whose input column ix = ox*s - p + kx lies inside [0, W)
          int lo = 0, hi = Wo - 1;
          while (lo < Wo && lo * s - p + kx < 0) ++lo;
          while (hi >= 0 && hi * s - p + kx >= x.w) --hi;
          double gw = 0;
          for (int n = 0; n < x.n; ++n) {
            const float* xc = x.channel(n, ci);
            const float* g = dy.channel(n, c);
            float* dxc = dx.data ? dx.channel(n, ci) : nullptr;
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
          if (dw) dw[std::int64_t(ci) * k * k + ky * k + kx] += float(gw);
        }
    });
    return;
  }
  const auto& kt = cpu_detail::active_kernels();
  const bool pointwise = k == 1 && s == 1 && p == 0;
  if (dw) {
    // dW_g[co][kk] += sum_p dY_g[co][p] * col_g[kk][p] (col = X itself for pointwise convs, else
    // im2col rows built per chunk of positions): the NT GEMM reads both operands along their rows.
    // Threads split the columns kk of dW (each builds only its own col rows; no reduction).
    constexpr int LCH = 1024, NBK = 96;  // positions per im2col chunk, col rows per block
par::team(T, [&] {
      const int nt = detail::team_size(), tid = detail::thread_id();
      const int per = ((K + nt - 1) / nt + 3) / 4 * 4;
      const int k_lo = std::min(K, tid * per), k_hi = std::min(K, k_lo + per);
      float* col = pointwise || k_lo >= k_hi ? nullptr : ctx.scratch(tid, std::int64_t(NBK) * LCH);
      for (int n = 0; n < x.n && k_lo < k_hi; ++n)
        for (int g = 0; g < G; ++g) {
          const float* xg = x.channel(n, g * cin_g);
          const float* dyg = dy.channel(n, g * cout_g);
          float* dwg = dw + std::int64_t(g) * cout_g * K;
          if (pointwise) {
            kt.gemm_nt(dyg, dy.plane(), cout_g, xg + std::int64_t(k_lo) * HWi, HWi, k_hi - k_lo, int(HWo), dwg + k_lo, K);
            continue;
          }
          for (std::int64_t p0 = 0; p0 < HWo; p0 += LCH) {
            const int len = int(std::min<std::int64_t>(LCH, HWo - p0));
            for (int kb = k_lo; kb < k_hi; kb += NBK) {
              const int nb = std::min(NBK, k_hi - kb);
              cpu_detail::im2col_rows(xg, x.h, x.w, k, s, p, Wo, kb, nb, p0, len, col);
              kt.gemm_nt(dyg + p0, dy.plane(), cout_g, col, len, nb, len, dwg + kb, K);
            }
          }
        }
    });
  }
  if (!dx.data) return;
  if (G == 1 && s == 1 && k > 1 && 2 * p == k - 1) {
    // Stride 1, same padding: dX = conv(dY, W') with W'[ci][co][ky][kx] = W[co][ci][k-1-ky][k-1-kx], on
    // the forward convolution kernel (its im2col tiles stay in cache; no full-size column buffer and
    // col2im), into a workspace, then added to dX.
    const std::int64_t kk2 = std::int64_t(k) * k, wn = std::int64_t(d.cout) * d.cin * kk2;
    float* wf = ctx.workspace(2, wn);
    par::for_static(wn > 65536 ? T : 1, d.cin, [&](int ci) {
      for (int co = 0; co < d.cout; ++co)
        for (std::int64_t q = 0; q < kk2; ++q)
          wf[(std::int64_t(ci) * d.cout + co) * kk2 + q] = w[(std::int64_t(co) * d.cin + ci) * kk2 + (kk2 - 1 - q)];
    });
    const std::int64_t per_img = std::int64_t(d.cin) * x.h * x.w;
    const view<float> t{ctx.workspace(3, x.n * per_img), x.n, d.cin, x.h, x.w, per_img};
    kernels<cpu>::conv2d(ctx, dy, conv_weights<>{wf, nullptr, nullptr}, t, conv_desc{d.cout, d.cin, k, 1, p, 1, act::none});
    add_into(ctx, t, dx);
    return;
  }
  // W_g^T packed (K rows x cout_g), per group: panel pi holds rows kk = pi*MR + r of W^T, i.e. W[co][kk].
  constexpr int MR = cpu_detail::gemm_mr;
  const std::int64_t per_g = detail::packed_floats(K, cout_g);
  float* wt_packed = ctx.workspace(0, G * per_g);
  {
    const int panels = (K + MR - 1) / MR;
    par::for_static((std::int64_t(G) * K * cout_g > 65536) ? T : 1, std::int64_t(std::int64_t(G) * panels), [&](std::int64_t t) {
      const int g = int(t / panels), pi = int(t % panels);
      const float* wg = w + std::int64_t(g) * cout_g * K;
      float* dst = wt_packed + g * per_g + std::int64_t(pi) * cout_g * MR;
      for (int co = 0; co < cout_g; ++co)
        for (int r = 0; r < MR; ++r) {
          const int kk = pi * MR + r;
          dst[std::int64_t(co) * MR + r] = kk < K ? wg[std::int64_t(co) * K + kk] : 0.0f;
        }
    });
  }
  constexpr int col_tile = 256;  // GEMM output columns per call (as the forward's row tiles)
  // Row chunks of the output positions, one per task.
  const std::int64_t chunk = std::max<std::int64_t>(64, (HWo + T - 1) / T);
  const int nchunks = int((HWo + chunk - 1) / chunk);
  float* dcol = pointwise ? nullptr : ctx.workspace(1, std::int64_t(K) * HWo);  // [K][HWo], one image and group
  for (int n = 0; n < x.n; ++n)
    for (int g = 0; g < G; ++g) {
      const float* dyg = dy.channel(n, g * cout_g);
      const float* a = wt_packed + g * per_g;
      if (pointwise) {
        // dX_g[:, r0:r1] += W_g^T dY_g[:, r0:r1]; with one inner chunk of the GEMM (cout_g <= its KC)
        // the product is added to dX in the GEMM's epilogue, else through a scratch tile.
        const bool direct = cout_g <= cpu_detail::gemm_kc;
        par::for_static(T, int(nchunks), [&](int ci) {
          const std::int64_t r0 = std::int64_t(ci) * chunk;
          const int rows = int(std::min<std::int64_t>(chunk, HWo - r0));
          if (direct) {  // C = dX itself, accumulated through the epilogue's residual (read before the store)
            float* c = dx.channel(n, g * cin_g) + r0;
            const cpu_detail::gemm_epilogue acc{nullptr, act::none, c, dx.plane()};
            for (int t0 = 0; t0 < rows; t0 += col_tile) {
              cpu_detail::gemm_epilogue e = acc;
              e.residual += t0;
              kt.gemm(a, K, cout_g, dyg + r0 + t0, dy.plane(), c + t0, dx.plane(), std::min(col_tile, rows - t0), &e);
            }
            return;
          }
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
        });
        continue;
      }
      {
        par::for_static(T, int(nchunks), [&](int ci) {
          const std::int64_t r0 = std::int64_t(ci) * chunk;
          const int rows = int(std::min<std::int64_t>(chunk, HWo - r0));
          for (int t0 = 0; t0 < rows; t0 += col_tile)
            kt.gemm(a, K, cout_g, dyg + r0 + t0, dy.plane(), dcol + r0 + t0, HWo, std::min(col_tile, rows - t0), nullptr);
        });
      }
      // col2im, parallel over input channels (each writes only its own plane)
      par::for_static(T, int(cin_g), [&](int c) {
        float* dxc = dx.channel(n, g * cin_g + c);
        for (int ky = 0; ky < k; ++ky)
          for (int kx = 0; kx < k; ++kx) {
            const float* src = dcol + (std::int64_t(c) * k * k + ky * k + kx) * HWo;
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
      });
    }
}

/// BatchNorm2d training forward (as ref::batchnorm_train) followed by the activation `a` (none or
/// SiLU), channels in parallel, on the run-time chosen kernel set.
inline void batchnorm_train(context<cpu>& ctx, cview<float> x, const float* gamma, const float* beta, view<float> y, float* mean_out,
                            float* invstd_out, float* running_mean, float* running_var, double momentum, double eps,
                            act a = act::none) {
  const std::int64_t P = x.plane(), cnt = std::int64_t(x.n) * P;
  GYOLO_CHECK(cnt > 1, "batchnorm_train: expected more than 1 value per channel when training");
  const auto& kt = cpu_detail::active_kernels();
  par::for_static(ctx.threads(), int(x.c), [&](int c) {
    double s = 0, v = 0;
    for (int n = 0; n < x.n; ++n) kt.bn_sums(x.channel(n, c), P, 0.0f, &s, nullptr);
    const double mean = s / double(cnt);
    double s1 = 0;  // sum (x - float(mean)): corrects for the rounding of the centre
    for (int n = 0; n < x.n; ++n) kt.bn_sums(x.channel(n, c), P, float(mean), &s1, &v);
    const double dm = s1 / double(cnt);
    const double var = std::max(0.0, v / double(cnt) - dm * dm), invstd = 1.0 / std::sqrt(var + eps);
    const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
    const float sc = float(g * invstd), sh = float(b - g * invstd * mean);
    for (int n = 0; n < x.n; ++n) kt.bn_act(x.channel(n, c), y.channel(n, c), P, sc, sh, a);
    if (mean_out) mean_out[c] = float(mean);
    if (invstd_out) invstd_out[c] = float(invstd);
    if (running_mean) running_mean[c] = float((1.0 - momentum) * running_mean[c] + momentum * mean);
    if (running_var) running_var[c] = float((1.0 - momentum) * running_var[c] + momentum * var * double(cnt) / double(cnt - 1));
  });
}

/// The backward of y = a(BatchNorm(z)) in training mode (batch statistics mean/invstd saved by
/// batchnorm_train): dz = (overwritten, not accumulated) dL/dz, dgamma/dbeta accumulated.
/// Per channel: one pass computes du = dy * a'(u) into dz and the two sums, a second turns it into
/// dz in place (the plane is still in cache).
inline void batchnorm_act_backward(context<cpu>& ctx, cview<float> z, const float* gamma, const float* beta, const float* mean,
                                   const float* invstd, cview<float> dy, act a, view<float> dz, float* dgamma, float* dbeta) {
  const std::int64_t P = z.plane(), cnt = std::int64_t(z.n) * P;
  const auto& kt = cpu_detail::active_kernels();
  par::for_static(ctx.threads(), int(z.c), [&](int c) {
    const double mu = mean[c], is = invstd[c], g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
    const float sc = float(g * is), sh = float(b - g * is * mu);
    double sdy = 0, sdyx = 0;
    for (int n = 0; n < z.n; ++n)
      kt.bn_act_bwd(z.channel(n, c), dy.channel(n, c), dz.channel(n, c), P, sc, sh, float(mu), a, &sdy, &sdyx);
    const double xhat_dot = sdyx * is;  // sum du * xhat
    if (dgamma) dgamma[c] += float(xhat_dot);
    if (dbeta) dbeta[c] += float(sdy);
    const double k1 = g * is, m1 = sdy / double(cnt), m2 = xhat_dot / double(cnt);
    for (int n = 0; n < z.n; ++n)
      kt.bn_dx(z.channel(n, c), dz.channel(n, c), dz.channel(n, c), P, float(mu), float(is), float(k1), float(m1), float(m2), false);
  });
}

/// y += x over same-shaped (possibly sliced) views, planes in parallel.
template <class B>
void add_into(context<B>& ctx, cview<float> x, view<float> y) {
  const std::int64_t planes = std::int64_t(y.n) * y.c, P = y.plane();
  par::for_static((planes * P > 32768) ? ctx.threads() : 1, std::int64_t(planes), [&](std::int64_t t) {
    const float* a = x.channel(int(t / y.c), int(t % y.c));
    float* b = y.channel(int(t / y.c), int(t % y.c));
#pragma omp simd
    for (std::int64_t i = 0; i < P; ++i) b[i] += a[i];
  });
}

/// y = silu(y) in place (the run-time chosen kernel set's vectorised SiLU), planes in parallel.
template <class B>
void silu_inplace(context<B>& ctx, view<float> y) {
  const auto& kt = cpu_detail::active_kernels();
  const std::int64_t planes = std::int64_t(y.n) * y.c, P = y.plane();
  par::for_static(ctx.threads(), planes, [&](std::int64_t t) {
    kt.epilogue(y.channel(int(t / y.c), int(t % y.c)), P, int(P), 1, nullptr, act::silu, nullptr, 0);
  });
}

/// du = dy * silu'(u) with u = (z - mean) * invstd * gamma + beta per channel (BatchNorm's output,
/// recomputed) or, with mean == nullptr, u = z. silu'(u) = s (1 + u (1 - s)), s = sigmoid(u).
template <class B>
void silu_backward(context<B>& ctx, cview<float> z, const float* mean, const float* invstd, const float* gamma, const float* beta,
                   cview<float> dy, view<float> du) {
  const auto& kt = cpu_detail::active_kernels();
  const std::int64_t planes = std::int64_t(z.n) * z.c, P = z.plane();
  const int T = ctx.threads();
par::team(T, [&] {
    float* u = ctx.scratch(detail::thread_id(), 2 * P);
    float* sg = u + P;
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
  });
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
  /// y = a(BatchNorm(x)) with batch statistics (a = none or silu).
  static void batchnorm_act_train(context<B>& ctx, cview<float> x, const float* g, const float* b, view<float> y, float* mu, float* is,
                                  float* rm, float* rv, double mom, double eps, act a) {
    batchnorm_train(ctx, x, g, b, y, mu, is, rm, rv, mom, eps);
    if (a == act::silu) silu_inplace(ctx, y);
  }
  /// dz = (overwritten) the gradient of y = a(BatchNorm(z)) (batch statistics), dg/db accumulated;
  /// `work`: z.numel() floats of scratch.
  static void batchnorm_act_backward(context<B>& ctx, cview<float> z, const float* g, const float* b, const float* mu, const float* is,
                                     cview<float> dy, act a, view<float> dz, float* dg, float* db, float* work) {
    const shape4 s = z.shape();
    const view<float> du = {work, s.n, s.c, s.h, s.w, std::int64_t(s.c) * s.h * s.w};
    if (a == act::silu) silu_backward(ctx, z, mu, is, g, b, dy, du);
    for (int n = 0; n < s.n; ++n)
      for (int c = 0; c < s.c; ++c) std::fill(dz.channel(n, c), dz.channel(n, c) + dz.plane(), 0.0f);
    batchnorm_backward(ctx, z, g, mu, is, a == act::silu ? cview<float>(du) : dy, dz, dg, db);
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
  static void batchnorm_act_train(context<cpu>& ctx, cview<float> x, const float* g, const float* b, view<float> y, float* mu, float* is,
                                  float* rm, float* rv, double mom, double eps, act a) {
    train::fast::batchnorm_train(ctx, x, g, b, y, mu, is, rm, rv, mom, eps, a);
  }
  static void batchnorm_act_backward(context<cpu>& ctx, cview<float> z, const float* g, const float* b, const float* mu, const float* is,
                                     cview<float> dy, act a, view<float> dz, float* dg, float* db, float*) {
    train::fast::batchnorm_act_backward(ctx, z, g, b, mu, is, dy, a, dz, dg, db);
  }
};

}  // namespace gyolo
