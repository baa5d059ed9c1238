// Reference forward/backward kernels of the primitive training operations: naive loops that define
// what training must compute (PyTorch semantics) and serve as the oracle for faster kernels.
// Templated on the scalar type T (float and double); sums are accumulated in double.
//
// Conventions:
//  * every tensor is a view<T> / cview<T> (NCHW) and may be a channel slice of a larger tensor;
//    elements are addressed with .at()/.channel(), so batch_stride is respected;
//  * forward functions overwrite their output;
//  * backward functions ACCUMULATE (+=) into every gradient output; a gradient output whose data
//    pointer is null is skipped.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/kernels/desc.hpp"

namespace gyolo::train::ref {

/// Reusable temporary arrays of the kernels below that need some (maxpool2d_backward,
/// resize_nearest(_backward), psa_attention(_backward)): a caller that passes the same workspace
/// to every call (the tape owns one) allocates nothing once it has grown; nullptr: a local one.
/// Not for concurrent calls.
struct workspace {
  std::vector<double> d0, d1;
  std::vector<int> i0, i1;
};

namespace detail {
inline workspace& pick(workspace* ws, workspace& local) { return ws ? *ws : local; }

/// Numerically stable logistic function in double.
inline double sigmoid(double u) {
  if (u >= 0) return 1.0 / (1.0 + std::exp(-u));
  const double e = std::exp(u);
  return e / (1.0 + e);
}

/// Source index of nearest-neighbour resizing exactly as PyTorch's nearest_idx (output size given):
/// scale = (float)in / out, src = min(floor((float)dst * scale), in - 1), in float arithmetic.
inline int nearest_src(int dst, int in, int out) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const float f = std::floor(static_cast<float>(dst) * scale);
  return std::min(static_cast<int>(f), in - 1);
}

/// Flat in-plane index (iy * w + ix) of the element max_pool2d selects for output (oy, ox) of
/// plane `p` (h x w, row-major), PyTorch CPU rule: start at the first in-bounds element, value
/// -inf; scan ky then kx and take v if (v > max || isnan(v)). So the first maximum in row-major
/// window order wins (the last NaN if any). Writes the max value to *out.
template <class T>
inline std::int64_t maxpool_argmax(const T* p, int h, int w, int oy, int ox, int k, int s, int pad, T* out) {
  const int y0 = oy * s - pad, x0 = ox * s - pad;
  const int ys = std::max(y0, 0), xs = std::max(x0, 0);
  const int ye = std::min(y0 + k, h), xe = std::min(x0 + k, w);
  std::int64_t best = std::int64_t(ys) * w + xs;
  T m = -std::numeric_limits<T>::infinity();
  for (int iy = ys; iy < ye; ++iy)
    for (int ix = xs; ix < xe; ++ix) {
      const T v = p[std::int64_t(iy) * w + ix];
      if (v > m || std::isnan(v)) {
        m = v;
        best = std::int64_t(iy) * w + ix;
      }
    }
  *out = m;
  return best;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------------

/// y = conv(x, w) + bias (bias may be null). w layout [cout, cin/groups, k, k]. d.activation is
/// ignored (no activation here).
template <class T>
void conv2d(cview<T> x, const T* w, const T* bias, view<T> y, const conv_desc& d) {
  GYOLO_CHECK(d.groups > 0 && d.cin % d.groups == 0 && d.cout % d.groups == 0, "train::ref::conv2d: bad groups");
  GYOLO_CHECK(x.c == d.cin && y.c == d.cout && x.n == y.n && y.h == d.out_h(x.h) && y.w == d.out_w(x.w),
              "train::ref::conv2d: shape mismatch");
  const int cin_g = d.cin / d.groups, cout_g = d.cout / d.groups;
  for (int n = 0; n < y.n; ++n)
    for (int co = 0; co < d.cout; ++co) {
      const int g = co / cout_g;
      for (int oy = 0; oy < y.h; ++oy)
        for (int ox = 0; ox < y.w; ++ox) {
          double acc = bias ? double(bias[co]) : 0.0;
          for (int ci = 0; ci < cin_g; ++ci) {
            const T* wp = w + (std::int64_t(co) * cin_g + ci) * d.k * d.k;
            for (int ky = 0; ky < d.k; ++ky) {
              const int iy = oy * d.stride - d.pad + ky;
              if (iy < 0 || iy >= x.h) continue;
              for (int kx = 0; kx < d.k; ++kx) {
                const int ix = ox * d.stride - d.pad + kx;
                if (ix < 0 || ix >= x.w) continue;
                acc += double(wp[ky * d.k + kx]) * double(x.at(n, g * cin_g + ci, iy, ix));
              }
            }
          }
          y.at(n, co, oy, ox) = T(acc);
        }
    }
}

/// Given dy (same shape as y): dx += dL/dx, dw += dL/dw (dw may be null), dbias += sum over n,y,x
/// of dy (may be null). dx may be skipped by passing a view with a null data pointer.
template <class T>
void conv2d_backward(cview<T> x, const T* w, cview<T> dy, const conv_desc& d, view<T> dx, T* dw, T* dbias) {
  GYOLO_CHECK(d.groups > 0 && d.cin % d.groups == 0 && d.cout % d.groups == 0,
              "train::ref::conv2d_backward: bad groups");
  GYOLO_CHECK(x.c == d.cin && dy.c == d.cout && x.n == dy.n && dy.h == d.out_h(x.h) && dy.w == d.out_w(x.w),
              "train::ref::conv2d_backward: shape mismatch");
  const int cin_g = d.cin / d.groups, cout_g = d.cout / d.groups, k = d.k, s = d.stride;
  // dbias
  if (dbias)
    for (int co = 0; co < d.cout; ++co) {
      double acc = 0;
      for (int n = 0; n < dy.n; ++n) {
        const T* p = dy.channel(n, co);
        for (std::int64_t i = 0; i < dy.plane(); ++i) acc += double(p[i]);
      }
      dbias[co] = T(double(dbias[co]) + acc);
    }
  // dw[co, ci, ky, kx] = sum_{n,oy,ox} dy[n,co,oy,ox] * x[n, g*cin_g+ci, oy*s-p+ky, ox*s-p+kx]
  if (dw)
    for (int co = 0; co < d.cout; ++co) {
      const int g = co / cout_g;
      for (int ci = 0; ci < cin_g; ++ci)
        for (int ky = 0; ky < k; ++ky)
          for (int kx = 0; kx < k; ++kx) {
            double acc = 0;
            for (int n = 0; n < dy.n; ++n)
              for (int oy = 0; oy < dy.h; ++oy) {
                const int iy = oy * s - d.pad + ky;
                if (iy < 0 || iy >= x.h) continue;
                for (int ox = 0; ox < dy.w; ++ox) {
                  const int ix = ox * s - d.pad + kx;
                  if (ix < 0 || ix >= x.w) continue;
                  acc += double(dy.at(n, co, oy, ox)) * double(x.at(n, g * cin_g + ci, iy, ix));
                }
              }
            T& dst = dw[((std::int64_t(co) * cin_g + ci) * k + ky) * k + kx];
            dst = T(double(dst) + acc);
          }
    }
  // dx[n, ci, iy, ix] = sum_{co in group, ky, kx : iy = oy*s-p+ky, ix = ox*s-p+kx} w * dy (gather)
  if (dx.data) {
    GYOLO_CHECK(dx.n == x.n && dx.c == x.c && dx.h == x.h && dx.w == x.w, "train::ref::conv2d_backward: dx shape");
    for (int n = 0; n < x.n; ++n)
      for (int cx = 0; cx < d.cin; ++cx) {
        const int g = cx / cin_g, ci = cx % cin_g;
        for (int iy = 0; iy < x.h; ++iy)
          for (int ix = 0; ix < x.w; ++ix) {
            double acc = 0;
            for (int co = g * cout_g; co < (g + 1) * cout_g; ++co) {
              const T* wp = w + (std::int64_t(co) * cin_g + ci) * k * k;
              for (int ky = 0; ky < k; ++ky) {
                const int ty = iy + d.pad - ky;
                if (ty < 0 || ty % s) continue;
                const int oy = ty / s;
                if (oy >= dy.h) continue;
                for (int kx = 0; kx < k; ++kx) {
                  const int tx = ix + d.pad - kx;
                  if (tx < 0 || tx % s) continue;
                  const int ox = tx / s;
                  if (ox >= dy.w) continue;
                  acc += double(wp[ky * k + kx]) * double(dy.at(n, co, oy, ox));
                }
              }
            }
            T& dst = dx.at(n, cx, iy, ix);
            dst = T(double(dst) + acc);
          }
      }
  }
}

// ---------------------------------------------------------------------------------------------
// BatchNorm2d
// ---------------------------------------------------------------------------------------------

/// BatchNorm2d, training mode (PyTorch semantics): per channel, mean and biased variance over
/// (N, H, W); y = gamma * (x - mean) * invstd + beta, invstd = 1 / sqrt(var + eps). Writes
/// mean_out[c], invstd_out[c] (saved for backward; either may be null). If running_mean /
/// running_var are non-null: running = (1 - momentum) * running + momentum * stat, with the
/// unbiased variance (count / (count - 1)) for running_var. gamma / beta null mean 1 / 0.
template <class T>
void batchnorm_train(cview<T> x, const T* gamma, const T* beta, view<T> y, T* mean_out, T* invstd_out,
                     T* running_mean, T* running_var, double momentum, double eps) {
  GYOLO_CHECK(x.shape() == y.shape(), "train::ref::batchnorm_train: shape mismatch");
  const std::int64_t count = std::int64_t(x.n) * x.plane();
  GYOLO_CHECK(count > 1, "train::ref::batchnorm_train: expected more than 1 value per channel when training");
  for (int c = 0; c < x.c; ++c) {
    double sum = 0;
    for (int n = 0; n < x.n; ++n) {
      const T* p = x.channel(n, c);
      for (std::int64_t i = 0; i < x.plane(); ++i) sum += double(p[i]);
    }
    const double mean = sum / double(count);
    double sq = 0;
    for (int n = 0; n < x.n; ++n) {
      const T* p = x.channel(n, c);
      for (std::int64_t i = 0; i < x.plane(); ++i) {
        const double t = double(p[i]) - mean;
        sq += t * t;
      }
    }
    const double var = sq / double(count);
    const double invstd = 1.0 / std::sqrt(var + eps);
    const double ga = gamma ? double(gamma[c]) : 1.0, be = beta ? double(beta[c]) : 0.0;
    for (int n = 0; n < x.n; ++n) {
      const T* p = x.channel(n, c);
      T* q = y.channel(n, c);
      for (std::int64_t i = 0; i < x.plane(); ++i) q[i] = T(ga * (double(p[i]) - mean) * invstd + be);
    }
    if (mean_out) mean_out[c] = T(mean);
    if (invstd_out) invstd_out[c] = T(invstd);
    if (running_mean) running_mean[c] = T((1.0 - momentum) * double(running_mean[c]) + momentum * mean);
    if (running_var)
      running_var[c] =
          T((1.0 - momentum) * double(running_var[c]) + momentum * var * double(count) / double(count - 1));
  }
}

/// BatchNorm2d eval: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
template <class T>
void batchnorm_eval(cview<T> x, const T* gamma, const T* beta, const T* running_mean, const T* running_var, double eps,
                    view<T> y) {
  GYOLO_CHECK(x.shape() == y.shape(), "train::ref::batchnorm_eval: shape mismatch");
  for (int c = 0; c < x.c; ++c) {
    const double invstd = 1.0 / std::sqrt(double(running_var[c]) + eps), mean = double(running_mean[c]);
    const double ga = gamma ? double(gamma[c]) : 1.0, be = beta ? double(beta[c]) : 0.0;
    for (int n = 0; n < x.n; ++n) {
      const T* p = x.channel(n, c);
      T* q = y.channel(n, c);
      for (std::int64_t i = 0; i < x.plane(); ++i) q[i] = T(ga * (double(p[i]) - mean) * invstd + be);
    }
  }
}

/// Backward of batchnorm_train w.r.t. x, gamma, beta (the batch statistics are functions of x):
///   xhat = (x - mean) * invstd, dbeta += sum dy, dgamma += sum dy * xhat,
///   dx += gamma * invstd / M * (M * dy - sum dy - xhat * sum(dy * xhat)),  M = N*H*W.
/// mean / invstd are the values batchnorm_train saved. gamma null means 1.
template <class T>
void batchnorm_backward(cview<T> x, const T* gamma, const T* mean, const T* invstd, cview<T> dy, view<T> dx,
                        T* dgamma, T* dbeta) {
  GYOLO_CHECK(x.shape() == dy.shape(), "train::ref::batchnorm_backward: shape mismatch");
  if (dx.data) GYOLO_CHECK(x.shape() == dx.shape(), "train::ref::batchnorm_backward: dx shape");
  const double M = double(std::int64_t(x.n) * x.plane());
  for (int c = 0; c < x.c; ++c) {
    const double mu = double(mean[c]), is = double(invstd[c]);
    double sdy = 0, sdyx = 0;
    for (int n = 0; n < x.n; ++n) {
      const T* p = x.channel(n, c);
      const T* g = dy.channel(n, c);
      for (std::int64_t i = 0; i < x.plane(); ++i) {
        sdy += double(g[i]);
        sdyx += double(g[i]) * (double(p[i]) - mu) * is;
      }
    }
    if (dbeta) dbeta[c] = T(double(dbeta[c]) + sdy);
    if (dgamma) dgamma[c] = T(double(dgamma[c]) + sdyx);
    if (dx.data) {
      const double ga = gamma ? double(gamma[c]) : 1.0, f = ga * is / M;
      for (int n = 0; n < x.n; ++n) {
        const T* p = x.channel(n, c);
        const T* g = dy.channel(n, c);
        T* q = dx.channel(n, c);
        for (std::int64_t i = 0; i < x.plane(); ++i) {
          const double xh = (double(p[i]) - mu) * is;
          q[i] = T(double(q[i]) + f * (M * double(g[i]) - sdy - xh * sdyx));
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------------------------

/// SiLU: y = u * sigmoid(u).
template <class T>
void silu(cview<T> u, view<T> y) {
  GYOLO_CHECK(u.shape() == y.shape(), "train::ref::silu: shape mismatch");
  for (int n = 0; n < u.n; ++n)
    for (int c = 0; c < u.c; ++c) {
      const T* p = u.channel(n, c);
      T* q = y.channel(n, c);
      for (std::int64_t i = 0; i < u.plane(); ++i) {
        const double v = double(p[i]);
        q[i] = T(v * detail::sigmoid(v));
      }
    }
}

/// du += dy * silu'(u), silu'(u) = s * (1 + u * (1 - s)), s = sigmoid(u).
template <class T>
void silu_backward(cview<T> u, cview<T> dy, view<T> du) {
  if (!du.data) return;
  GYOLO_CHECK(u.shape() == dy.shape() && u.shape() == du.shape(),
              "train::ref::silu_backward: shape mismatch");
  for (int n = 0; n < u.n; ++n)
    for (int c = 0; c < u.c; ++c) {
      const T* p = u.channel(n, c);
      const T* g = dy.channel(n, c);
      T* q = du.channel(n, c);
      for (std::int64_t i = 0; i < u.plane(); ++i) {
        const double v = double(p[i]), s = detail::sigmoid(v);
        q[i] = T(double(q[i]) + double(g[i]) * s * (1.0 + v * (1.0 - s)));
      }
    }
}

/// y += x (residuals, gradient fan-in).
template <class T>
void add_into(cview<T> x, view<T> y) {
  if (!y.data) return;
  GYOLO_CHECK(x.shape() == y.shape(), "train::ref::add_into: shape mismatch");
  for (int n = 0; n < x.n; ++n)
    for (int c = 0; c < x.c; ++c) {
      const T* p = x.channel(n, c);
      T* q = y.channel(n, c);
      for (std::int64_t i = 0; i < x.plane(); ++i) q[i] += p[i];
    }
}

// ---------------------------------------------------------------------------------------------
// Pooling and resizing
// ---------------------------------------------------------------------------------------------

/// max_pool2d(k, s, p), -inf padding, ceil_mode false. Tie rule of PyTorch CPU (and
/// kernels<reference>::maxpool2d): the first maximum in row-major window order wins.
template <class T>
void maxpool2d(cview<T> x, view<T> y, int k, int s, int p) {
  GYOLO_CHECK(k > 0 && s > 0 && p >= 0 && 2 * p <= k, "train::ref::maxpool2d: pad should be at most half the kernel");
  GYOLO_CHECK(x.n == y.n && x.c == y.c && y.h == (x.h + 2 * p - k) / s + 1 && y.w == (x.w + 2 * p - k) / s + 1,
              "train::ref::maxpool2d: shape mismatch");
  for (int n = 0; n < y.n; ++n)
    for (int c = 0; c < y.c; ++c) {
      const T* xp = x.channel(n, c);
      for (int oy = 0; oy < y.h; ++oy)
        for (int ox = 0; ox < y.w; ++ox) {
          T m;
          detail::maxpool_argmax(xp, x.h, x.w, oy, ox, k, s, p, &m);
          y.at(n, c, oy, ox) = m;
        }
    }
}

/// dx[argmax] += dy for every output element; the argmax is recomputed from x with the forward's
/// tie rule, so each dy is routed to exactly one input element.
template <class T>
void maxpool2d_backward(cview<T> x, cview<T> dy, int k, int s, int p, view<T> dx, workspace* ws = nullptr) {
  if (!dx.data) return;
  GYOLO_CHECK(k > 0 && s > 0 && p >= 0 && 2 * p <= k,
              "train::ref::maxpool2d_backward: pad should be at most half the kernel");
  GYOLO_CHECK(x.n == dy.n && x.c == dy.c && dy.h == (x.h + 2 * p - k) / s + 1 && dy.w == (x.w + 2 * p - k) / s + 1,
              "train::ref::maxpool2d_backward: shape mismatch");
  GYOLO_CHECK(x.shape() == dx.shape(), "train::ref::maxpool2d_backward: dx shape");
  workspace local;
  std::vector<double>& acc = detail::pick(ws, local).d0;
  acc.resize(std::size_t(x.plane()));
  for (int n = 0; n < x.n; ++n)
    for (int c = 0; c < x.c; ++c) {
      std::fill(acc.begin(), acc.end(), 0.0);
      const T* xp = x.channel(n, c);
      for (int oy = 0; oy < dy.h; ++oy)
        for (int ox = 0; ox < dy.w; ++ox) {
          T m;
          const std::int64_t i = detail::maxpool_argmax(xp, x.h, x.w, oy, ox, k, s, p, &m);
          acc[std::size_t(i)] += double(dy.at(n, c, oy, ox));
        }
      T* q = dx.channel(n, c);
      for (std::int64_t i = 0; i < x.plane(); ++i) q[i] = T(double(q[i]) + acc[std::size_t(i)]);
    }
}

/// avg_pool2d(kernel 2, stride 1, no padding): (H, W) -> (H-1, W-1).
template <class T>
void avgpool2x2s1(cview<T> x, view<T> y) {
  GYOLO_CHECK(x.n == y.n && x.c == y.c && y.h == x.h - 1 && y.w == x.w - 1, "train::ref::avgpool2x2s1: shape mismatch");
  for (int n = 0; n < y.n; ++n)
    for (int c = 0; c < y.c; ++c)
      for (int oy = 0; oy < y.h; ++oy)
        for (int ox = 0; ox < y.w; ++ox)
          y.at(n, c, oy, ox) = T((double(x.at(n, c, oy, ox)) + double(x.at(n, c, oy, ox + 1)) +
                                  double(x.at(n, c, oy + 1, ox)) + double(x.at(n, c, oy + 1, ox + 1))) /
                                 4.0);
}

/// dx[y, x] += (sum of the (up to 4) dy whose window covers (y, x)) / 4.
template <class T>
void avgpool2x2s1_backward(cview<T> dy, view<T> dx) {
  if (!dx.data) return;
  GYOLO_CHECK(dx.n == dy.n && dx.c == dy.c && dy.h == dx.h - 1 && dy.w == dx.w - 1,
              "train::ref::avgpool2x2s1_backward: shape mismatch");
  for (int n = 0; n < dx.n; ++n)
    for (int c = 0; c < dx.c; ++c)
      for (int iy = 0; iy < dx.h; ++iy)
        for (int ix = 0; ix < dx.w; ++ix) {
          double acc = 0;
          for (int oy = std::max(iy - 1, 0); oy <= std::min(iy, dy.h - 1); ++oy)
            for (int ox = std::max(ix - 1, 0); ox <= std::min(ix, dy.w - 1); ++ox) acc += double(dy.at(n, c, oy, ox));
          T& dst = dx.at(n, c, iy, ix);
          dst = T(double(dst) + acc / 4.0);
        }
}

/// Nearest-neighbour resize exactly like torch.nn.functional.interpolate(mode='nearest',
/// size=(y.h, y.w)): src = min(floor(dst * ((float)in / out)), in - 1) in float arithmetic.
/// Covers Upsample x2 and CBFuse's down/up-sampling.
template <class T>
void resize_nearest(cview<T> x, view<T> y, workspace* ws = nullptr) {
  GYOLO_CHECK(x.n == y.n && x.c == y.c && (y.plane() == 0 || x.plane() > 0), "train::ref::resize_nearest: shape mismatch");
  workspace local;
  workspace& w = detail::pick(ws, local);
  std::vector<int>&sy = w.i0, &sx = w.i1;
  sy.resize(std::size_t(y.h));
  sx.resize(std::size_t(y.w));
  for (int i = 0; i < y.h; ++i) sy[std::size_t(i)] = detail::nearest_src(i, x.h, y.h);
  for (int i = 0; i < y.w; ++i) sx[std::size_t(i)] = detail::nearest_src(i, x.w, y.w);
  for (int n = 0; n < y.n; ++n)
    for (int c = 0; c < y.c; ++c)
      for (int oy = 0; oy < y.h; ++oy)
        for (int ox = 0; ox < y.w; ++ox) y.at(n, c, oy, ox) = x.at(n, c, sy[std::size_t(oy)], sx[std::size_t(ox)]);
}

/// dx[src(oy), src(ox)] += dy[oy, ox] (the adjoint of resize_nearest; dx's shape is the input's).
template <class T>
void resize_nearest_backward(cview<T> dy, view<T> dx, workspace* ws = nullptr) {
  if (!dx.data) return;
  GYOLO_CHECK(dx.n == dy.n && dx.c == dy.c && (dy.plane() == 0 || dx.plane() > 0),
              "train::ref::resize_nearest_backward: shape mismatch");
  workspace local;
  workspace& w = detail::pick(ws, local);
  std::vector<int>&sy = w.i0, &sx = w.i1;
  sy.resize(std::size_t(dy.h));
  sx.resize(std::size_t(dy.w));
  for (int i = 0; i < dy.h; ++i) sy[std::size_t(i)] = detail::nearest_src(i, dx.h, dy.h);
  for (int i = 0; i < dy.w; ++i) sx[std::size_t(i)] = detail::nearest_src(i, dx.w, dy.w);
  std::vector<double>& acc = w.d0;
  acc.resize(std::size_t(dx.plane()));
  for (int n = 0; n < dx.n; ++n)
    for (int c = 0; c < dx.c; ++c) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int oy = 0; oy < dy.h; ++oy)
        for (int ox = 0; ox < dy.w; ++ox)
          acc[std::size_t(std::int64_t(sy[std::size_t(oy)]) * dx.w + sx[std::size_t(ox)])] += double(dy.at(n, c, oy, ox));
      T* q = dx.channel(n, c);
      for (std::int64_t i = 0; i < dx.plane(); ++i) q[i] = T(double(q[i]) + acc[std::size_t(i)]);
    }
}

// ---------------------------------------------------------------------------------------------
// PSA attention
// ---------------------------------------------------------------------------------------------

namespace detail {
/// P[i * N + j] = softmax_j(scale * sum_d q[d, i] k[d, j]) for one image and head.
template <class T>
void psa_probs(const T* q, const T* k, int N, int kd, double scale, std::vector<double>& P) {
  P.assign(std::size_t(N) * std::size_t(N), 0.0);
  for (int i = 0; i < N; ++i) {
    double* a = P.data() + std::int64_t(i) * N;
    double mx = -std::numeric_limits<double>::infinity();
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int d = 0; d < kd; ++d) s += double(q[std::int64_t(d) * N + i]) * double(k[std::int64_t(d) * N + j]);
      a[j] = s * scale;
      mx = std::max(mx, a[j]);
    }
    double sum = 0;
    for (int j = 0; j < N; ++j) sum += (a[j] = std::exp(a[j] - mx));
    for (int j = 0; j < N; ++j) a[j] /= sum;
  }
}
}  // namespace detail

/// YOLOv10 PSA attention core, layout of kernels<reference>::psa_attention: qkv is
/// [B, heads*(2kd+hd), H, W], per head q (kd channels), k (kd channels), v (hd channels);
/// y [B, heads*hd, H, W] = v @ softmax_j(scale * q^T k)^T, i.e. y[d, i] = sum_j v[d, j] P[i, j].
template <class T>
void psa_attention(cview<T> qkv, view<T> y, int heads, int kd, int hd, double scale, workspace* ws = nullptr) {
  const int blk = 2 * kd + hd, N = qkv.h * qkv.w;
  GYOLO_CHECK(qkv.c == heads * blk && y.c == heads * hd && y.n == qkv.n && y.h == qkv.h && y.w == qkv.w,
              "train::ref::psa_attention: shape mismatch");
  workspace local;
  std::vector<double>& P = detail::pick(ws, local).d0;
  for (int n = 0; n < qkv.n; ++n)
    for (int h = 0; h < heads; ++h) {
      const T* q = qkv.channel(n, h * blk);
      const T* k = qkv.channel(n, h * blk + kd);
      const T* v = qkv.channel(n, h * blk + 2 * kd);
      detail::psa_probs(q, k, N, kd, scale, P);
      for (int d = 0; d < hd; ++d) {
        T* out = y.channel(n, h * hd + d);
        const T* vd = v + std::int64_t(d) * N;
        for (int i = 0; i < N; ++i) {
          const double* a = P.data() + std::int64_t(i) * N;
          double o = 0;
          for (int j = 0; j < N; ++j) o += double(vd[j]) * a[j];
          out[i] = T(o);
        }
      }
    }
}

/// dqkv += gradient of psa_attention w.r.t. qkv, with (per image and head)
///   dV[d, j] = sum_i dy[d, i] P[i, j],  dP[i, j] = sum_d dy[d, i] v[d, j],
///   dS[i, j] = P[i, j] (dP[i, j] - sum_j' P[i, j'] dP[i, j']),
///   dq[d, i] = scale sum_j dS[i, j] k[d, j],  dk[d, j] = scale sum_i dS[i, j] q[d, i].
template <class T>
void psa_attention_backward(cview<T> qkv, cview<T> dy, int heads, int kd, int hd, double scale, view<T> dqkv,
                            workspace* ws = nullptr) {
  if (!dqkv.data) return;
  const int blk = 2 * kd + hd, N = qkv.h * qkv.w;
  GYOLO_CHECK(qkv.c == heads * blk && dy.c == heads * hd && dy.n == qkv.n && dy.h == qkv.h && dy.w == qkv.w,
              "train::ref::psa_attention_backward: shape mismatch");
  GYOLO_CHECK(qkv.shape() == dqkv.shape(), "train::ref::psa_attention_backward: dqkv shape");
  workspace local;
  workspace& w = detail::pick(ws, local);
  std::vector<double>&P = w.d0, &dS = w.d1;
  dS.resize(std::size_t(N) * std::size_t(N));
  for (int n = 0; n < qkv.n; ++n)
    for (int h = 0; h < heads; ++h) {
      const T* q = qkv.channel(n, h * blk);
      const T* k = qkv.channel(n, h * blk + kd);
      const T* v = qkv.channel(n, h * blk + 2 * kd);
      T* dq = dqkv.channel(n, h * blk);
      T* dk = dqkv.channel(n, h * blk + kd);
      T* dv = dqkv.channel(n, h * blk + 2 * kd);
      detail::psa_probs(q, k, N, kd, scale, P);
      // dV
      for (int d = 0; d < hd; ++d) {
        const T* g = dy.channel(n, h * hd + d);
        for (int j = 0; j < N; ++j) {
          double acc = 0;
          for (int i = 0; i < N; ++i) acc += double(g[i]) * P.data()[std::int64_t(i) * N + j];
          T& dst = dv[std::int64_t(d) * N + j];
          dst = T(double(dst) + acc);
        }
      }
      // dS (dy's channels of this head: g0 + d * gs, gs = the channel stride)
      const T* g0 = dy.channel(n, h * hd);
      const std::int64_t gs = dy.plane();
      for (int i = 0; i < N; ++i) {
        double* ds = dS.data() + std::int64_t(i) * N;
        const double* p = P.data() + std::int64_t(i) * N;
        double dot = 0;
        for (int j = 0; j < N; ++j) {
          double dp = 0;
          for (int d = 0; d < hd; ++d) dp += double(g0[std::int64_t(d) * gs + i]) * double(v[std::int64_t(d) * N + j]);
          ds[j] = dp;
          dot += p[j] * dp;
        }
        for (int j = 0; j < N; ++j) ds[j] = p[j] * (ds[j] - dot);
      }
      // dq, dk
      for (int d = 0; d < kd; ++d) {
        const T* kdp = k + std::int64_t(d) * N;
        const T* qdp = q + std::int64_t(d) * N;
        for (int i = 0; i < N; ++i) {
          double acc = 0;
          for (int j = 0; j < N; ++j) acc += dS.data()[std::int64_t(i) * N + j] * double(kdp[j]);
          T& dst = dq[std::int64_t(d) * N + i];
          dst = T(double(dst) + scale * acc);
        }
        for (int j = 0; j < N; ++j) {
          double acc = 0;
          for (int i = 0; i < N; ++i) acc += dS.data()[std::int64_t(i) * N + j] * double(qdp[i]);
          T& dst = dk[std::int64_t(d) * N + j];
          dst = T(double(dst) + scale * acc);
        }
      }
    }
}

}  // namespace gyolo::train::ref
