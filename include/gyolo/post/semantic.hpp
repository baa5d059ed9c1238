// Semantic segmentation: per-pixel arg-max over the 173 semantic logits (spec §5.1 "Semantic
// map", hubconf.py's process).
//   input resolution:    logits [C, H/4, W/4] -> bilinear (align_corners=False) to (H, W) -> arg-max
//   original resolution: the same upsampled logits, each channel unletterboxed (crop the padding,
//                        bilinear resize to (h0, w0)) -> arg-max (hubconf.py; predict.py's
//                        centre-crop heuristic is not used: it is off when the padding is uneven)
// Values are semantic channel indices (0..172; see post/coco.hpp for their COCO ids). Ties go to
// the lower channel, as torch.argmax.
//
// The logits are never materialized at full size. PyTorch's value is
// fma(t0, h0, t1 * h1) with t0 = fma(x00, w0, x01 * w1) (post/interp.hpp), and t0 depends only on
// (source row, output column): so each source row is interpolated horizontally once (kept for the
// two most recent rows), and every output row is one vectorizable vertical blend. Same bits as the
// direct formula. The row passes run the kernel set chosen at run time (kernels/cpu_isa.hpp), so
// the fused multiply-adds are instructions where the CPU has them.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "gyolo/core/context.hpp"
#include "gyolo/core/error.hpp"
#include "gyolo/kernels/cpu_isa.hpp"
#include "gyolo/post/interp.hpp"
#include "gyolo/post/masks.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace gyolo::post {

/// Logits of one image: C planes of mh x mw floats, plane c at data + c * plane_stride.
struct logits_view {
  const float* data = nullptr;
  int channels = 0, mh = 0, mw = 0;
  std::int64_t plane_stride = 0;
};

struct semantic_maps {
  xt::xtensor<std::int16_t, 2> input;     // [H, W] (empty if not requested)
  xt::xtensor<std::int16_t, 2> original;  // [h0, w0] (empty if not requested)
};

namespace detail {

/// Horizontal pass of one source row of C channels: dst[c][x] = fma(s[i0], w0, s[i1] * w1).
inline void hpass(const float* src, std::int64_t cstride, int C, const interp_axis& ax, float* dst) {
  cpu_detail::active_kernels().hlerp(src, cstride, C, ax.out, ax.i0.data(), ax.i1.data(), ax.l0.data(), ax.l1.data(), dst);
}

/// Vertical blend: dst = fma(a, h0, b * h1) over n floats.
inline void vpass(const float* a, const float* b, float h0, float h1, std::size_t n, float* dst) {
  cpu_detail::active_kernels().lerp(a, b, h0, h1, std::int64_t(n), dst);
}

/// Running arg-max over channel rows ([C][n], channels c_first + 0..C-1) into best / idx;
/// `init`: the first row initializes. A later channel wins only if strictly greater.
inline void argmax_update(const float* rows, int C, int n, int c_first, bool init, float* best, std::int16_t* idx) {
  cpu_detail::active_kernels().argmax_rows(rows, C, n, c_first, init, best, idx);
}

/// The streaming computation for channels [c0, c1): updates best/idx maps at the input
/// ([H][W], if bin) and original ([h0][w0], if bor) resolution.
inline void semantic_channels(const float* data, std::int64_t plane_stride, int mw, int c0, int c1, const interp_axis& ay,
                              const interp_axis& ax, const interp_axis* uy, const interp_axis* ux, int top, int left,
                              int H, float* bin, std::int16_t* iin, float* bor, std::int16_t* ior) {
  const int C = c1 - c0, W = ax.out;
  const int ch = uy ? uy->in : 0, w0 = ux ? ux->out : 0, h0 = uy ? uy->out : 0;
  row_ring T, R, U;  // low-res rows after the horizontal pass, input rows, input rows after the unletterbox pass
  T.init(C, W);
  R.init(C, W);
  if (uy) U.init(C, w0);
  std::vector<float> orow(uy ? std::size_t(C) * std::size_t(w0) : 0);
  const float* base = data + std::int64_t(c0) * plane_stride;
  auto low_row = [&](int r, int keep) {
    return T.get(r, keep, [&](float* dst) { hpass(base + std::int64_t(r) * mw, plane_stride, C, ax, dst); });
  };
  int next_out = 0;
  const int y_end = bin ? H : top + ch;
  for (int y = 0; y < y_end; ++y) {
    const auto ky = std::size_t(y);
    const float* a = low_row(ay.i0[ky], ay.i1[ky]);
    const float* b = low_row(ay.i1[ky], ay.i0[ky]);
    float* r = R.slot(R.claim(y, y - 1));
    vpass(a, b, ay.l0[ky], ay.l1[ky], std::size_t(C) * std::size_t(W), r);
    if (bin) argmax_update(r, C, W, c0, true, bin + ky * std::size_t(W), iin + ky * std::size_t(W));
    if (!uy || y < top || y >= top + ch) continue;
    // Unletterbox: horizontal pass of this input row's crop, then every original row whose lower
    // tap is this row (its upper tap is this row or the previous one).
    float* u = U.slot(U.claim(y - top, y - top - 1));
    hpass(r + left, W, C, *ux, u);
    while (next_out < h0 && uy->i1[std::size_t(next_out)] == y - top) {
      const auto ko = std::size_t(next_out);
      const float* ua = U.slot(U.find(uy->i0[ko]));
      vpass(ua, u, uy->l0[ko], uy->l1[ko], std::size_t(C) * std::size_t(w0), orow.data());
      argmax_update(orow.data(), C, w0, c0, true, bor + ko * std::size_t(w0), ior + ko * std::size_t(w0));
      ++next_out;
    }
  }
  GYOLO_CHECK(!uy || next_out == h0, "semantic_argmax: internal error (rows not emitted)");
}

/// The original-resolution map alone, computing only the channels that can win. Every value is
/// a convex combination of its low-resolution taps (two bilinear stages), so it lies within
/// [min, max] of them up to rounding (`margin` covers it with a wide berth). For a group of output
/// rows sharing their low-resolution rows, a channel whose maximum over a pixel's taps is below
/// the best minimum over the same taps (less 2 margins) is strictly below the winner there; the
/// channels left are computed exactly as in semantic_channels, in ascending order, so the result
/// is the same (ties included).
inline void semantic_original_pruned(const logits_view& L, const letterbox_geometry& g, const interp_axis& ay,
                                     const interp_axis& ax, const interp_axis& uy, const interp_axis& ux, float margin,
                                     int threads, std::int16_t* out) {
  const auto& kt = cpu_detail::active_kernels();
  const int C = L.channels, mw = L.mw, cw = g.crop_w(), h0 = g.orig_h, w0 = g.orig_w;
  // low-resolution columns the crop reads, and the widest span of one output pixel's taps
  const int xlo = ax.i0[std::size_t(g.left)], xhi = ax.i1[std::size_t(g.left + cw - 1)], nx = xhi - xlo + 1;
  int wnd = 1;
  for (int X = 0; X < w0; ++X) {
    const int ca = g.left + ux.i0[std::size_t(X)], cb = g.left + ux.i1[std::size_t(X)];
    wnd = std::max(wnd, ax.i1[std::size_t(cb)] - ax.i0[std::size_t(ca)] + 1);
  }
  // groups of output rows with the same low-resolution row range
  struct group { int y0, y1, rlo, rhi; };
  std::vector<group> groups;
  for (int Y = 0; Y < h0; ++Y) {
    const int ra = g.top + uy.i0[std::size_t(Y)], rb = g.top + uy.i1[std::size_t(Y)];
    const int rlo = ay.i0[std::size_t(ra)], rhi = ay.i1[std::size_t(rb)];
    if (!groups.empty() && groups.back().rlo == rlo && groups.back().rhi == rhi) groups.back().y1 = Y + 1;
    else groups.push_back({Y, Y + 1, rlo, rhi});
  }
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    auto buf = [](std::int64_t n) { return std::vector<float>(static_cast<std::size_t>(n)); };
    auto cmin = buf(std::int64_t(C) * nx), cmax = buf(std::int64_t(C) * nx), best = buf(nx);
    auto ta = buf(cw), tb = buf(cw), va = buf(cw), vb = buf(cw);
    auto ua = buf(w0), ub = buf(w0), o = buf(w0), obest = buf(w0);
    std::vector<int> cand;
#pragma omp for schedule(dynamic)
    for (int gi = 0; gi < int(groups.size()); ++gi) {
      const group& G = groups[std::size_t(gi)];
      // per channel: min / max over the group's rows, then over a window of wnd columns
      for (int c = 0; c < C; ++c) {
        const float* plane = L.data + std::int64_t(c) * L.plane_stride;
        float* mn = cmin.data() + std::size_t(c) * nx;
        float* mx = cmax.data() + std::size_t(c) * nx;
        const float* r0 = plane + std::int64_t(G.rlo) * mw + xlo;
        for (int x = 0; x < nx; ++x) mn[x] = mx[x] = r0[x];
        for (int r = G.rlo + 1; r <= G.rhi; ++r) {
          const float* rr = plane + std::int64_t(r) * mw + xlo;
          for (int x = 0; x < nx; ++x) {
            mn[x] = std::min(mn[x], rr[x]);
            mx[x] = std::max(mx[x], rr[x]);
          }
        }
        for (int x = 0; x < nx; ++x)
          for (int j = 1; j < wnd; ++j) {
            const int xj = std::min(x + j, nx - 1);
            mn[x] = std::min(mn[x], mn[xj]);  // mn[xj] is still the row minimum: xj > x
            mx[x] = std::max(mx[x], mx[xj]);
          }
      }
      std::fill(best.begin(), best.end(), -std::numeric_limits<float>::infinity());
      for (int c = 0; c < C; ++c) {
        const float* mn = cmin.data() + std::size_t(c) * nx;
        for (int x = 0; x < nx; ++x) best[std::size_t(x)] = std::max(best[std::size_t(x)], mn[x]);
      }
      cand.clear();
      for (int c = 0; c < C; ++c) {
        const float* mx = cmax.data() + std::size_t(c) * nx;
        bool keep = false;
        for (int x = 0; x < nx && !keep; ++x) keep = mx[x] >= best[std::size_t(x)] - 2 * margin;
        if (keep) cand.push_back(c);
      }
      // the candidates, exactly as the dense path computes them
      for (int Y = G.y0; Y < G.y1; ++Y) {
        const auto kY = std::size_t(Y);
        const int ra = g.top + uy.i0[kY], rb = g.top + uy.i1[kY];
        std::int16_t* dst = out + kY * std::size_t(w0);
        bool first = true;
        for (int c : cand) {
          const float* plane = L.data + std::int64_t(c) * L.plane_stride;
          auto input_row = [&](int r, float* v) {  // input row r, crop columns, of channel c
            const auto kr = std::size_t(r);
            const auto lc = std::size_t(g.left);
            kt.hlerp(plane + std::int64_t(ay.i0[kr]) * mw, 0, 1, cw, ax.i0.data() + lc, ax.i1.data() + lc, ax.l0.data() + lc,
                     ax.l1.data() + lc, ta.data());
            kt.hlerp(plane + std::int64_t(ay.i1[kr]) * mw, 0, 1, cw, ax.i0.data() + lc, ax.i1.data() + lc, ax.l0.data() + lc,
                     ax.l1.data() + lc, tb.data());
            kt.lerp(ta.data(), tb.data(), ay.l0[kr], ay.l1[kr], cw, v);
          };
          input_row(ra, va.data());
          input_row(rb, vb.data());
          hpass(va.data(), 0, 1, ux, ua.data());
          hpass(vb.data(), 0, 1, ux, ub.data());
          vpass(ua.data(), ub.data(), uy.l0[kY], uy.l1[kY], std::size_t(w0), o.data());
          argmax_update(o.data(), 1, w0, c, first, obest.data(), dst);
          first = false;
        }
      }
    }
  }
}

}  // namespace detail

/// Arg-max maps at the input and/or the original resolution. threads <= 0: OpenMP default. The
/// channels are split among the threads (one parallel region); partial arg-maxes are merged in
/// channel order, so the result does not depend on the thread count.
inline semantic_maps semantic_argmax(const logits_view& L, const letterbox_geometry& g, bool want_input,
                                     bool want_original, int threads = 0) {
  GYOLO_CHECK(L.channels > 0 && L.channels <= 32767 && L.mh > 0 && L.mw > 0, "semantic_argmax: empty logits");
  const int C = L.channels, H = g.input_h, W = g.input_w;
  GYOLO_CHECK(H > 0 && W > 0, "semantic_argmax: empty input size");
  semantic_maps out;
  out.input = xt::xtensor<std::int16_t, 2>::from_shape({want_input ? std::size_t(H) : 0, want_input ? std::size_t(W) : 0});
  out.original = xt::xtensor<std::int16_t, 2>::from_shape(
      {want_original ? std::size_t(g.orig_h) : 0, want_original ? std::size_t(g.orig_w) : 0});
  if (!want_input && !want_original) return out;
  (void)cpu_detail::active_kernels();  // resolved (and a bad GYOLO_ISA reported) outside the parallel region
  threads = std::max(1, std::min(resolve_threads(threads), C));
  const interp_axis ay(L.mh, H), ax(L.mw, W);
  const int ch = g.crop_h(), cw = g.crop_w();
  interp_axis uy, ux;
  if (want_original) {
    GYOLO_CHECK(ch > 0 && cw > 0 && g.orig_h > 0 && g.orig_w > 0 && g.top >= 0 && g.left >= 0 && g.top + ch <= H &&
                    g.left + cw <= W,
                "semantic_argmax: bad letterbox geometry");
    uy = interp_axis(ch, g.orig_h);
    ux = interp_axis(cw, g.orig_w);
  }
  if (!want_input) {
    // Only the original-resolution map (the pipeline's default): prune channels, unless a logit
    // is not finite (the bounds need finite values; the dense path handles the rest as before).
    const std::int64_t plane = std::int64_t(L.mh) * L.mw;
    float maxabs = 0;
    bool finite = true;
    for (int c = 0; c < C && finite; ++c) {
      const float* p = L.data + std::int64_t(c) * L.plane_stride;
      for (std::int64_t i = 0; i < plane; ++i) {
        if (!std::isfinite(p[i])) {
          finite = false;
          break;
        }
        maxabs = std::max(maxabs, std::abs(p[i]));
      }
    }
    if (finite) {
      detail::semantic_original_pruned(L, g, ay, ax, uy, ux, 1e-5f * maxabs + 1e-30f, threads, out.original.data());
      return out;
    }
  }
  const std::size_t nin = want_input ? std::size_t(H) * std::size_t(W) : 0;
  const std::size_t nor = want_original ? std::size_t(g.orig_h) * std::size_t(g.orig_w) : 0;
  // Per thread: best value and channel maps (thread 0 writes straight into the outputs).
  std::vector<std::vector<float>> bin(static_cast<std::size_t>(threads)), bor(static_cast<std::size_t>(threads));
  std::vector<std::vector<std::int16_t>> iin(static_cast<std::size_t>(threads)), ior(static_cast<std::size_t>(threads));
#pragma omp parallel for num_threads(threads) schedule(static, 1) if (threads > 1)
  for (int t = 0; t < threads; ++t) {
    const int c0 = int(std::int64_t(C) * t / threads), c1 = int(std::int64_t(C) * (t + 1) / threads);
    const auto k = std::size_t(t);
    bin[k].resize(nin);
    bor[k].resize(nor);
    std::int16_t* pi = want_input ? (t == 0 ? out.input.data() : (iin[k].resize(nin), iin[k].data())) : nullptr;
    std::int16_t* po = want_original ? (t == 0 ? out.original.data() : (ior[k].resize(nor), ior[k].data())) : nullptr;
    detail::semantic_channels(L.data, L.plane_stride, L.mw, c0, c1, ay, ax, want_original ? &uy : nullptr,
                              want_original ? &ux : nullptr, g.top, g.left, H, want_input ? bin[k].data() : nullptr, pi,
                              want_original ? bor[k].data() : nullptr, po);
  }
  // Merge in channel order: a later range wins only where strictly greater.
  for (int t = 1; t < threads; ++t) {
    const auto k = std::size_t(t);
    auto merge = [](float* b0, std::int16_t* i0, const float* b, const std::int16_t* i, std::size_t n) {
      for (std::size_t p = 0; p < n; ++p)
        if (b[p] > b0[p]) b0[p] = b[p], i0[p] = i[p];
    };
    if (want_input) merge(bin[0].data(), out.input.data(), bin[k].data(), iin[k].data(), nin);
    if (want_original) merge(bor[0].data(), out.original.data(), bor[k].data(), ior[k].data(), nor);
  }
  return out;
}

}  // namespace gyolo::post
