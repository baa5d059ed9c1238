// PyTorch's bilinear resize, bit for bit: F.interpolate(x, size=(H, W), mode='bilinear',
// align_corners=False) on a CPU float32 NCHW tensor in PyTorch 1.13 (checked against torch on
// up- and down-scaling, cropped views and equal sizes; see tests/test_post.cpp).
//
//   scale = float(in) / float(out)                      (float32)
//   src   = max(0, double(scale) * (dst + 0.5) - 0.5)    (double)
//   i0 = int(src), i1 = i0 + (i0 < in - 1),  l1 = float(clamp(src - i0, 0, 1)),  l0 = 1 - l1 (float)
//   in == out: identity (i0 = i1 = dst, l0 = 1, l1 = 0)
//   out = fma(fma(x00, w0, x01 * w1), h0, fma(x10, w0, x11 * w1) * h1)
// (the fused multiply-adds are those of PyTorch's compiled kernel). Everything that upstream
// resizes bilinearly goes through this: mask upsampling, semantic logits, unletterboxing.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gyolo/core/error.hpp"

namespace gyolo::post {

/// Source indices and weights of one output axis.
struct interp_axis {
  int in = 0, out = 0;
  std::vector<int> i0, i1;
  std::vector<float> l0, l1;

  interp_axis() = default;
  interp_axis(int in_size, int out_size) : in(in_size), out(out_size) {
    GYOLO_CHECK(in_size > 0 && out_size > 0, "bilinear resize: sizes must be positive");
    i0.resize(std::size_t(out_size));
    i1.resize(std::size_t(out_size));
    l0.resize(std::size_t(out_size));
    l1.resize(std::size_t(out_size));
    const float scale = float(in_size) / float(out_size);
    for (int d = 0; d < out_size; ++d) {
      const auto k = std::size_t(d);
      if (in_size == out_size) {
        i0[k] = i1[k] = d;
        l0[k] = 1.0f;
        l1[k] = 0.0f;
        continue;
      }
      double src = double(scale) * (d + 0.5) - 0.5;
      if (src < 0) src = 0;
      const auto a = static_cast<std::int64_t>(src);
      i0[k] = int(a);
      i1[k] = int(a + (a < in_size - 1 ? 1 : 0));
      l1[k] = float(std::min(std::max(src - double(a), 0.0), 1.0));
      l0[k] = 1.0f - l1[k];
    }
  }

  /// Output range [first, last] whose source taps touch input range [s0, s1]; empty (first >
  /// last) if none. Indices are non-decreasing, so the range is contiguous.
  std::pair<int, int> touching(int s0, int s1) const {
    if (s0 > s1) return {0, -1};
    const auto lo = std::lower_bound(i1.begin(), i1.end(), s0);
    const auto hi = std::upper_bound(i0.begin(), i0.end(), s1);
    return {int(lo - i1.begin()), int(hi - i0.begin()) - 1};
  }
};

/// One output value; r0/r1 are the two source rows, (ax, x) the column taps, (ay, y) the row weights.
inline float bilinear_tap(const float* r0, const float* r1, const interp_axis& ax, int x, float h0, float h1) {
  const auto k = std::size_t(x);
  const float w0 = ax.l0[k], w1 = ax.l1[k];
  const float t0 = std::fma(r0[ax.i0[k]], w0, r0[ax.i1[k]] * w1);
  const float t1 = std::fma(r1[ax.i0[k]], w0, r1[ax.i1[k]] * w1);
  return std::fma(t0, h0, t1 * h1);
}

/// Resizes one float plane (rows of `sstride` floats) to ay.out x ax.out, writing only output
/// rows [y0, y1] and columns [x0, x1] (inclusive) to dst (rows of `dstride` floats).
inline void resize_plane(const float* src, std::int64_t sstride, const interp_axis& ay, const interp_axis& ax, float* dst,
                         std::int64_t dstride, int y0, int y1, int x0, int x1) {
  for (int y = y0; y <= y1; ++y) {
    const auto k = std::size_t(y);
    const float* r0 = src + ay.i0[k] * sstride;
    const float* r1 = src + ay.i1[k] * sstride;
    float* d = dst + y * dstride;
    for (int x = x0; x <= x1; ++x) d[x] = bilinear_tap(r0, r1, ax, x, ay.l0[k], ay.l1[k]);
  }
}

namespace detail {

/// Two rows of C channels of `width` floats each, tagged with the source row they hold.
struct row_ring {
  int C = 0, width = 0;
  std::vector<float> buf;
  int tag[2] = {-1, -1};
  void init(int c, int w) {
    C = c, width = w;
    buf.assign(2 * std::size_t(c) * std::size_t(w), 0.0f);
    tag[0] = tag[1] = -1;
  }
  float* slot(int s) { return buf.data() + std::size_t(s) * std::size_t(C) * std::size_t(width); }
  /// The slot holding row r, or -1.
  int find(int r) const { return tag[0] == r ? 0 : (tag[1] == r ? 1 : -1); }
  /// A slot for row r that does not evict `keep`.
  int claim(int r, int keep) {
    const int s = (tag[0] == keep) ? 1 : 0;
    tag[s] = r;
    return s;
  }
  /// Row r: the slot holding it, or one claimed for it (not evicting `keep`) and filled by fill(dst).
  template <class Fill>
  const float* get(int r, int keep, Fill&& fill) {
    int s = find(r);
    if (s < 0) {
      s = claim(r, keep);
      fill(slot(s));
    }
    return slot(s);
  }
};

}  // namespace detail

}  // namespace gyolo::post
