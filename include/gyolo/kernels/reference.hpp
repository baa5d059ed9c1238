// Naive reference kernels: straightforward loops with double accumulation. They define what the
// fast kernels must compute and are the oracle in tests. Not meant to be fast.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gyolo/kernels/desc.hpp"

namespace gyolo {

template <>
struct kernels<reference> {
  using ctx_t = context<reference>;

  /// No packing: the reference kernels read the [cout, cin/g, k, k] layout directly.
  static std::vector<float> prepack(const conv_desc&, const std::vector<float>&) { return {}; }

  /// y = act(conv(x, w) + b) [+ residual]
  static void conv2d(ctx_t&, cview<float> x, conv_weights<> wt, view<float> y, const conv_desc& d,
                     cview<float> residual = {}) {
    const int cin_g = d.cin / d.groups, cout_g = d.cout / d.groups;
    for (int n = 0; n < y.n; ++n)
      for (int co = 0; co < d.cout; ++co) {
        const int g = co / cout_g;
        for (int oy = 0; oy < y.h; ++oy)
          for (int ox = 0; ox < y.w; ++ox) {
            double acc = wt.b ? wt.b[co] : 0.0;
            for (int ci = 0; ci < cin_g; ++ci)
              for (int ky = 0; ky < d.k; ++ky) {
                const int iy = oy * d.stride - d.pad + ky;
                if (iy < 0 || iy >= x.h) continue;
                for (int kx = 0; kx < d.k; ++kx) {
                  const int ix = ox * d.stride - d.pad + kx;
                  if (ix < 0 || ix >= x.w) continue;
                  acc += double(wt.w[((std::int64_t(co) * cin_g + ci) * d.k + ky) * d.k + kx]) *
                         x.at(n, g * cin_g + ci, iy, ix);
                }
              }
            float v = apply_act(d.activation, float(acc));
            if (residual.data) v += residual.at(n, co, oy, ox);
            y.at(n, co, oy, ox) = v;
          }
      }
  }

  /// Max pooling with implicit -inf padding (PyTorch max_pool2d, ceil_mode false).
  static void maxpool2d(ctx_t&, cview<float> x, view<float> y, int k, int s, int p) {
    for (int n = 0; n < y.n; ++n)
      for (int c = 0; c < y.c; ++c)
        for (int oy = 0; oy < y.h; ++oy)
          for (int ox = 0; ox < y.w; ++ox) {
            float m = -std::numeric_limits<float>::infinity();
            for (int ky = 0; ky < k; ++ky)
              for (int kx = 0; kx < k; ++kx) {
                const int iy = oy * s - p + ky, ix = ox * s - p + kx;
                if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) continue;
                const float v = x.at(n, c, iy, ix);
                if (v > m || std::isnan(v)) m = v;
              }
            y.at(n, c, oy, ox) = m;
          }
  }

  /// avg_pool2d(kernel 2, stride 1, no padding): (H, W) -> (H-1, W-1).
  static void avgpool2x2s1(ctx_t&, cview<float> x, view<float> y) {
    for (int n = 0; n < y.n; ++n)
      for (int c = 0; c < y.c; ++c)
        for (int oy = 0; oy < y.h; ++oy)
          for (int ox = 0; ox < y.w; ++ox)
            y.at(n, c, oy, ox) = (x.at(n, c, oy, ox) + x.at(n, c, oy, ox + 1) + x.at(n, c, oy + 1, ox) +
                                  x.at(n, c, oy + 1, ox + 1)) / 4.0f;
  }

  /// Nearest-neighbour x2 upsampling (output index i reads input floor(i/2)).
  static void upsample2x(ctx_t&, cview<float> x, view<float> y) {
    for (int n = 0; n < y.n; ++n)
      for (int c = 0; c < y.c; ++c)
        for (int oy = 0; oy < y.h; ++oy)
          for (int ox = 0; ox < y.w; ++ox) y.at(n, c, oy, ox) = x.at(n, c, oy / 2, ox / 2);
  }

  static void copy(ctx_t&, cview<float> x, view<float> y) {
    for (int n = 0; n < y.n; ++n)
      for (int c = 0; c < y.c; ++c)
        for (int i = 0; i < y.h; ++i)
          for (int j = 0; j < y.w; ++j) y.at(n, c, i, j) = x.at(n, c, i, j);
  }

  /// y = a + b (elementwise).
  static void add(ctx_t&, cview<float> a, cview<float> b, view<float> y) {
    for (int n = 0; n < y.n; ++n)
      for (int c = 0; c < y.c; ++c)
        for (int i = 0; i < y.h; ++i)
          for (int j = 0; j < y.w; ++j) y.at(n, c, i, j) = a.at(n, c, i, j) + b.at(n, c, i, j);
  }

  /// YOLOv10 PSA attention core: qkv is [B, heads*(2*kd+hd), H, W]; per head h the channel block
  /// h*(2kd+hd) holds q (kd rows), k (kd rows), v (hd rows). y[B, heads*hd, H, W] =
  /// v @ softmax_j(scale * q^T k)^T.
  static void psa_attention(ctx_t&, cview<float> qkv, view<float> y, int heads, int kd, int hd, float scale) {
    const int N = qkv.h * qkv.w, blk = 2 * kd + hd;
    std::vector<double> a(std::size_t(N) * 0 + N);
    for (int n = 0; n < qkv.n; ++n)
      for (int h = 0; h < heads; ++h) {
        const float* q = qkv.channel(n, h * blk);
        const float* k = q + std::int64_t(kd) * N;
        const float* v = k + std::int64_t(kd) * N;
        for (int i = 0; i < N; ++i) {
          double mx = -1e300;
          for (int j = 0; j < N; ++j) {
            double s = 0;
            for (int d = 0; d < kd; ++d) s += double(q[d * N + i]) * k[d * N + j];
            a[j] = s * scale;
            mx = std::max(mx, a[j]);
          }
          double sum = 0;
          for (int j = 0; j < N; ++j) sum += (a[j] = std::exp(a[j] - mx));
          for (int d = 0; d < hd; ++d) {
            double o = 0;
            for (int j = 0; j < N; ++j) o += double(v[d * N + j]) * a[j] / sum;
            y.channel(n, h * hd + d)[i] = float(o);
          }
        }
      }
  }

  /// Decodes one head: per level a [B, 4*reg+nc, H, W] raw map. Writes pred[B, 4+nc, 1, A]
  /// channels 0..3+nc: DFL expectation (bins weighted by dfl_w), dist2bbox xywh * stride,
  /// then sigmoid(class logits). Anchors at (x+0.5, y+0.5) per level, row-major.
  static void detect_decode(ctx_t&, const std::vector<cview<float>>& levels, const std::vector<float>& strides,
                            const float* dfl_w, int reg_max, int nc, view<float> pred) {
    std::int64_t a0 = 0;
    for (std::size_t l = 0; l < levels.size(); ++l) {
      const auto& m = levels[l];
      for (int n = 0; n < m.n; ++n)
        for (int yy = 0; yy < m.h; ++yy)
          for (int xx = 0; xx < m.w; ++xx) {
            const std::int64_t a = a0 + std::int64_t(yy) * m.w + xx;
            double dist[4];
            for (int side = 0; side < 4; ++side) {
              double mx = -1e300;
              for (int b = 0; b < reg_max; ++b) mx = std::max(mx, double(m.at(n, side * reg_max + b, yy, xx)));
              double s = 0, e = 0;
              for (int b = 0; b < reg_max; ++b) {
                const double p = std::exp(double(m.at(n, side * reg_max + b, yy, xx)) - mx);
                s += p;
                e += p * dfl_w[b];
              }
              dist[side] = e / s;
            }
            const double ax = xx + 0.5, ay = yy + 0.5;
            const double x1 = ax - dist[0], y1 = ay - dist[1], x2 = ax + dist[2], y2 = ay + dist[3];
            const double st = strides[l];
            pred.at(n, 0, 0, int(a)) = float((x1 + x2) / 2 * st);
            pred.at(n, 1, 0, int(a)) = float((y1 + y2) / 2 * st);
            pred.at(n, 2, 0, int(a)) = float((x2 - x1) * st);
            pred.at(n, 3, 0, int(a)) = float((y2 - y1) * st);
            for (int c = 0; c < nc; ++c)
              pred.at(n, 4 + c, 0, int(a)) = float(1.0 / (1.0 + std::exp(-double(m.at(n, 4 * reg_max + c, yy, xx)))));
          }
      a0 += std::int64_t(m.h) * m.w;
    }
  }

  /// Flattens x [B, C, H, W] into y [B, C, 1, A] at anchor offset a0 (spatial concat of levels).
  static void flatten_into(ctx_t&, cview<float> x, view<float> y, std::int64_t a0) {
    for (int n = 0; n < x.n; ++n)
      for (int c = 0; c < x.c; ++c)
        for (std::int64_t i = 0; i < x.plane(); ++i) y.channel(n, c)[a0 + i] = x.channel(n, c)[i];
  }
};

}  // namespace gyolo
