// The OpenMP CPU kernels of the vision network (kernels<cpu>, kernels/cpu.hpp), compiled once in
// gyolo's library; the GEMM microkernels they call are the run-time chosen instruction set's
// (src/isa_*.cpp).
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "gyolo/kernels/cpu.hpp"

namespace gyolo {


std::vector<float> kernels<cpu>::prepack(const conv_desc& d, const std::vector<float>& w) {
  (void)cpu_detail::active_kernels();
  const int cin_g = d.cin / d.groups, cout_g = d.cout / d.groups;
  if (cout_g == 1) return {};  // depthwise (and one output per group): direct loops
  return cpu_detail::pack_weights(w.data(), d.groups, cout_g, cin_g * d.k * d.k);
}

void kernels<cpu>::conv2d(context<cpu>& ctx, cview<float> x, conv_weights<> wt, view<float> y, const conv_desc& d,
    cview<float> residual) {
  const int cin_g = d.cin / d.groups, cout_g = d.cout / d.groups;
  ctx.add_flop(2.0 * double(y.n) * d.cout * cin_g * d.k * d.k * double(y.plane()));
  if (auto* p = ctx.profiler(); p && p->record_convs)
    p->convs.push_back({"", x.n, d.cin, x.h, x.w, d.cout, d.k, d.stride, d.pad, d.groups, int(d.activation), residual.data != nullptr});
  if (cout_g == 1) return depthwise(ctx, x, wt, y, d, residual);
  return conv2d_gemm(ctx, x, wt, y, d, residual);
}

template <class Gemm>
void kernels<cpu>::conv_tasks(context<cpu>& ctx, cview<float> x, conv_weights<> wt, view<float> y, const conv_desc& d,
    cview<float> residual, int block, int cgran, Gemm&& gemm) {
  const int cin_g = d.cin / d.groups, cout_g = d.cout / d.groups;
  const int K = cin_g * d.k * d.k;
  const std::int64_t HWo = y.plane();
  const bool direct = d.k == 1 && d.stride == 1 && d.pad == 0;
  const int tiles = int((HWo + block - 1) / block);
  const std::int64_t tasks0 = std::int64_t(tiles) * d.groups * y.n;
  const int units = (cout_g + cgran - 1) / cgran;
  int cblocks = 1;
  if (tasks0 < 4 * ctx.threads()) cblocks = int(std::min<std::int64_t>((4 * ctx.threads() + tasks0 - 1) / tasks0, units));
  const int uper = (units + cblocks - 1) / cblocks;
  cblocks = (units + uper - 1) / uper;
  const std::int64_t ntasks = tasks0 * cblocks;
  par::for_dynamic((ntasks > 1) ? ctx.threads() : 1, std::int64_t(ntasks), [&](std::int64_t t) {
    std::int64_t rem = t;
    const int cbi = int(rem % cblocks); rem /= cblocks;
    const int tile = int(rem % tiles); rem /= tiles;
    const int g = int(rem % d.groups); rem /= d.groups;
    conv_task task{};
    task.n = int(rem);
    task.g = g;
    task.r0 = std::int64_t(tile) * block;
    task.rows = int(std::min<std::int64_t>(block, HWo - task.r0));
    const int co_local = cbi * uper * cgran;
    task.cols = std::min(uper * cgran, cout_g - co_local);
    if (task.cols <= 0) return;
    task.co0 = g * cout_g + co_local;
    const float* xin = x.channel(task.n, g * cin_g);
    if (direct) {
      task.x = xin + task.r0;
      task.ldx = x.plane();
    } else {
      const int slot = omp_in_parallel() ? omp_get_thread_num() : ctx.threads();
      float* col = ctx.scratch(slot, std::int64_t(task.rows) * K);
      cpu_detail::im2col(xin, cin_g, x.h, x.w, d.k, d.stride, d.pad, y.w, task.r0, task.rows, col);
      task.x = col;
      task.ldx = task.rows;
    }
    float* yp = y.channel(task.n, task.co0) + task.r0;
    cpu_detail::gemm_epilogue epi{wt.b ? wt.b + task.co0 : nullptr, d.activation,
                                  residual.data ? residual.channel(task.n, task.co0) + task.r0 : nullptr, HWo};
    gemm(task, K, yp, HWo, epi);
  });
}

void kernels<cpu>::conv2d_gemm(context<cpu>& ctx, cview<float> x, conv_weights<> wt, view<float> y, const conv_desc& d,
    cview<float> residual) {
  const auto& kt = cpu_detail::active_kernels();  // resolved outside the parallel region
  const int cout_g = d.cout / d.groups, K = d.cin / d.groups * d.k * d.k;
  const float* pk = wt.packed;
  if (!pk) {  // unpacked weights (train-mode convs: they change every step): pack per call
    float* buf = ctx.pack_scratch(cpu_detail::packed_size(d.groups, cout_g, K));
    cpu_detail::pack_weights_into(wt.w, d.groups, cout_g, K, buf);
    pk = buf;
  }
  const int panels = (cout_g + cpu_detail::gemm_mr - 1) / cpu_detail::gemm_mr;
  conv_tasks(ctx, x, wt, y, d, residual, row_tile, cpu_detail::gemm_mr,
             [&](const conv_task& t, int K_, float* yp, std::int64_t ldy, const cpu_detail::gemm_epilogue& epi) {
               const int panel0 = (t.co0 - t.g * cout_g) / cpu_detail::gemm_mr;
               kt.gemm(pk + (std::int64_t(t.g) * panels + panel0) * K_ * cpu_detail::gemm_mr, t.cols, K_, t.x, t.ldx, yp,
                       ldy, t.rows, &epi);
             });
}

void kernels<cpu>::depthwise(context<cpu>& ctx, cview<float> x, conv_weights<> wt, view<float> y, const conv_desc& d,
    cview<float> residual) {
  const auto& kt = cpu_detail::active_kernels();
  const int k = d.k, s = d.stride, p = d.pad, cin_g = d.cin / d.groups;  // cout_g == 1
  const std::int64_t total = std::int64_t(y.n) * y.c;
  par::for_static(ctx.threads(), std::int64_t(total), [&](std::int64_t t) {
    const int n = int(t / y.c), c = int(t % y.c);
    const float* src = x.channel(n, c * cin_g);
    float* dst = y.channel(n, c);
    const float* w = wt.w + std::int64_t(c) * cin_g * k * k;
    const float b = wt.b ? wt.b[c] : 0.0f;
    kt.depthwise_plane(src, x.h, x.w, w, k, s, p, dst, y.h, y.w, cin_g, x.plane());
    kt.epilogue(dst, y.plane(), int(y.plane()), 1, wt.b ? &b : nullptr, d.activation,
                residual.data ? residual.channel(n, c) : nullptr, y.plane());
  });
}

void kernels<cpu>::maxpool2d(context<cpu>& ctx, cview<float> x, view<float> y, int k, int s, int p) {
  const std::int64_t total = std::int64_t(y.n) * y.c;
  auto mx = [](float m, float v) { return (v > m || std::isnan(v)) ? v : m; };
par::team(ctx.threads(), [&] {
    std::vector<float> tmp(std::size_t(x.h) * y.w);
#pragma omp for schedule(static)
    for (std::int64_t t = 0; t < total; ++t) {
      const int n = int(t / y.c), c = int(t % y.c);
      const float* src = x.channel(n, c);
      float* dst = y.channel(n, c);
      for (int iy = 0; iy < x.h; ++iy) {
        const float* row = src + std::int64_t(iy) * x.w;
        float* trow = tmp.data() + std::int64_t(iy) * y.w;
        for (int ox = 0; ox < y.w; ++ox) {
          const int x0 = std::max(0, ox * s - p), x1 = std::min(x.w, ox * s - p + k);
          float m = -std::numeric_limits<float>::infinity();
          for (int ix = x0; ix < x1; ++ix) m = mx(m, row[ix]);
          trow[ox] = m;
        }
      }
      for (int oy = 0; oy < y.h; ++oy) {
        const int y0 = std::max(0, oy * s - p), y1 = std::min(x.h, oy * s - p + k);
        float* drow = dst + std::int64_t(oy) * y.w;
        std::fill(drow, drow + y.w, -std::numeric_limits<float>::infinity());
        for (int iy = y0; iy < y1; ++iy) {
          const float* trow = tmp.data() + std::int64_t(iy) * y.w;
          for (int ox = 0; ox < y.w; ++ox) drow[ox] = mx(drow[ox], trow[ox]);
        }
      }
    }
  });
}

namespace {
/// Runs f(n, c) for every (image, channel) plane of y, the planes split statically over the threads
/// (the per-plane kernels: average pooling, upsampling, copy, add).
template <class F>
void for_each_plane(context<cpu>& ctx, cview<float> y, F&& f) {
  par::for_static(ctx.threads(), std::int64_t(y.n) * y.c, [&](std::int64_t t) { f(int(t / y.c), int(t % y.c)); });
}
}  // namespace

void kernels<cpu>::avgpool2x2s1(context<cpu>& ctx, cview<float> x, view<float> y) {
  for_each_plane(ctx, y, [&](int n, int c) {
    const float* src = x.channel(n, c);
    float* dst = y.channel(n, c);
    for (int oy = 0; oy < y.h; ++oy) {
      const float* r0 = src + std::int64_t(oy) * x.w;
      const float* r1 = r0 + x.w;
      for (int ox = 0; ox < y.w; ++ox) dst[std::int64_t(oy) * y.w + ox] = (r0[ox] + r0[ox + 1] + r1[ox] + r1[ox + 1]) / 4.0f;
    }
  });
}

void kernels<cpu>::upsample2x(context<cpu>& ctx, cview<float> x, view<float> y) {
  for_each_plane(ctx, y, [&](int n, int c) {
    const float* src = x.channel(n, c);
    float* dst = y.channel(n, c);
    for (int oy = 0; oy < y.h; ++oy) {
      const float* srow = src + std::int64_t(oy / 2) * x.w;
      float* drow = dst + std::int64_t(oy) * y.w;
      for (int ox = 0; ox < y.w; ++ox) drow[ox] = srow[ox / 2];
    }
  });
}

void kernels<cpu>::copy(context<cpu>& ctx, cview<float> x, view<float> y) {
  for_each_plane(ctx, y, [&](int n, int c) { std::copy_n(x.channel(n, c), y.plane(), y.channel(n, c)); });
}

void kernels<cpu>::add(context<cpu>& ctx, cview<float> a, cview<float> b, view<float> y) {
  for_each_plane(ctx, y, [&](int n, int c) {
    const float* pa = a.channel(n, c);
    const float* pb = b.channel(n, c);
    float* py = y.channel(n, c);
    for (std::int64_t i = 0; i < y.plane(); ++i) py[i] = pa[i] + pb[i];
  });
}

void kernels<cpu>::psa_attention(context<cpu>& ctx, cview<float> qkv, view<float> y, int heads, int kd, int hd, float scale) {
  const int N = qkv.h * qkv.w, blk = 2 * kd + hd;
  ctx.add_flop(2.0 * qkv.n * heads * double(N) * N * (kd + hd));
  const int total = qkv.n * heads;
  // Parallel over (image, head, query block): each task owns a block of query rows.
  const int qb = std::max(1, std::min(N, 128));
  const int nqb = (N + qb - 1) / qb;
  par::for_dynamic(ctx.threads(), int(total * nqb), [&](int t) {
    const int nh = t / nqb, qi = t % nqb;
    const int n = nh / heads, h = nh % heads;
    const int i0 = qi * qb, rows = std::min(qb, N - i0);
    const float* q = qkv.channel(n, h * blk);
    const float* k = q + std::int64_t(kd) * N;
    const float* v = k + std::int64_t(kd) * N;
    Eigen::Map<const Eigen::MatrixXf, 0, Eigen::OuterStride<>> Qt(q + i0, rows, kd, Eigen::OuterStride<>(N));
    Eigen::Map<const Eigen::MatrixXf> Kt(k, N, kd);
    Eigen::Map<const Eigen::MatrixXf> Vt(v, N, hd);
    // St (N x rows, column-major): column i holds query i's scores over all keys, contiguous.
    Eigen::MatrixXf St(N, rows);
    St.noalias() = Kt * Qt.transpose();
    for (int i = 0; i < rows; ++i) {
      auto col = St.col(i).array();
      col *= scale;
      const float mx = col.maxCoeff();
      col = (col - mx).exp();
      col /= col.sum();
    }
    Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>> O(y.channel(n, h * hd) + i0, rows, hd, Eigen::OuterStride<>(N));
    O.noalias() = St.transpose() * Vt;
  });
}

void kernels<cpu>::detect_decode(context<cpu>& ctx, const std::vector<cview<float>>& levels, const std::vector<float>& strides,
    const float* dfl_w, int reg_max, int nc, view<float> pred) {
  context<reference> rctx(1);
  (void)ctx;
  kernels<reference>::detect_decode(rctx, levels, strides, dfl_w, reg_max, nc, pred);
}

void kernels<cpu>::flatten_into(context<cpu>& ctx, cview<float> x, view<float> y, std::int64_t a0) {
  const std::int64_t total = std::int64_t(x.n) * x.c;
  par::for_static(ctx.threads(), std::int64_t(total), [&](std::int64_t t) {
    const int n = int(t / x.c), c = int(t % x.c);
    std::copy_n(x.channel(n, c), x.plane(), y.channel(n, c) + a0);
  });
}

}  // namespace gyolo
