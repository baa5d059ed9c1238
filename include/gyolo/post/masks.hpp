// Instance masks and geometry between the letterboxed network input and the original image.
//
//   letterbox_geometry   the letterbox that made the input (predict/hub: letterbox(); val: the
//                        INTER_AREA load resize then a square letterbox), as upstream records it
//   scale_box            utils/general.py::scale_boxes (+ clip_boxes) for one box, in float32
//                        like torch: (x - float(pad)) / float(gain), clipped to the image
//   process_mask         utils/segment/general.py::process_mask(upsample=True) for one detection:
//                        sigmoid(coef . proto); zero outside the box scaled to the prototype grid
//                        (integer pixel index c kept iff x1 <= c < x2, no +0.5); bilinear
//                        (align_corners=False) to the input size; > 0.5
//   unletterbox_mask     hubconf.py::_unletterbox on a binary mask, then > 0.5: crop the padding
//                        rows [round(dh-0.1), H-round(dh+0.1)) and columns likewise, bilinear
//                        resize to the original size
// Masks are stored as binary_mask: the full image size plus a tight bounding region of the set
// pixels (everything outside is 0), so a thousand detections do not need a thousand full frames.
// Only the pixels that can be non-zero are computed; the values are bit-exact with the full
// computation (see post/interp.hpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "gyolo/core/error.hpp"
#include "gyolo/io/image.hpp"
#include "gyolo/kernels/cpu_isa.hpp"
#include "gyolo/post/interp.hpp"

namespace gyolo::post {

/// A binary mask of a height x width image, stored as the tight region [y0, y0 + rows) x
/// [x0, x0 + cols) that holds all its set pixels. An empty mask has a 0 x 0 region.
struct binary_mask {
  int height = 0, width = 0;          // size of the image the mask belongs to
  int y0 = 0, x0 = 0;                 // top-left corner of `data` in the image
  xt::xtensor<std::uint8_t, 2> data;  // [rows, cols], values 0 / 1

  int rows() const { return int(data.shape()[0]); }
  int cols() const { return int(data.shape()[1]); }
  bool empty_region() const { return data.size() == 0; }
  std::uint8_t at(int y, int x) const {
    const int r = y - y0, c = x - x0;
    return (r >= 0 && c >= 0 && r < rows() && c < cols()) ? data(std::size_t(r), std::size_t(c)) : std::uint8_t(0);
  }
  std::int64_t area() const {
    std::int64_t a = 0;
    for (auto v : data) a += v;
    return a;
  }
  /// The whole [height, width] mask.
  xt::xtensor<std::uint8_t, 2> dense() const {
    xt::xtensor<std::uint8_t, 2> m = xt::zeros<std::uint8_t>({std::size_t(height), std::size_t(width)});
    for (int r = 0; r < rows(); ++r)
      for (int c = 0; c < cols(); ++c) m(std::size_t(y0 + r), std::size_t(x0 + c)) = data(std::size_t(r), std::size_t(c));
    return m;
  }
};

namespace detail {
/// Shrinks a [rows, cols] 0/1 buffer at (y0, x0) to the tight region of its set pixels.
inline binary_mask tight_mask(int height, int width, int y0, int x0, int rows, int cols, const std::uint8_t* v) {
  binary_mask m;
  m.height = height;
  m.width = width;
  int r0 = rows, r1 = -1, c0 = cols, c1 = -1;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      if (v[std::size_t(r) * std::size_t(cols) + std::size_t(c)]) {
        r0 = std::min(r0, r);
        r1 = std::max(r1, r);
        c0 = std::min(c0, c);
        c1 = std::max(c1, c);
      }
  if (r1 < 0) {
    m.data = xt::xtensor<std::uint8_t, 2>::from_shape({0, 0});
    return m;
  }
  m.y0 = y0 + r0;
  m.x0 = x0 + c0;
  m.data = xt::xtensor<std::uint8_t, 2>::from_shape({std::size_t(r1 - r0 + 1), std::size_t(c1 - c0 + 1)});
  for (int r = r0; r <= r1; ++r)
    for (int c = c0; c <= c1; ++c)
      m.data(std::size_t(r - r0), std::size_t(c - c0)) = v[std::size_t(r) * std::size_t(cols) + std::size_t(c)];
  return m;
}
}  // namespace detail

/// (letterbox_geometry lives with the letterbox in gyolo/io/image.hpp.)
using gyolo::letterbox_geometry;


/// scale_boxes + clip_boxes on one xyxy box (float32 arithmetic, as torch on a float tensor).
inline void scale_box(const letterbox_geometry& g, float b[4]) {
  double gain, padx, pady;
  if (g.has_ratio_pad) {
    gain = g.ratio_gain;
    padx = g.dw;
    pady = g.dh;
  } else {
    gain = std::min(double(g.input_h) / g.orig_h, double(g.input_w) / g.orig_w);
    padx = (g.input_w - g.orig_w * gain) / 2;
    pady = (g.input_h - g.orig_h * gain) / 2;
  }
  const float fg = float(gain), fx = float(padx), fy = float(pady);
  b[0] = (b[0] - fx) / fg;
  b[2] = (b[2] - fx) / fg;
  b[1] = (b[1] - fy) / fg;
  b[3] = (b[3] - fy) / fg;
  b[0] = std::min(std::max(b[0], 0.0f), float(g.orig_w));
  b[1] = std::min(std::max(b[1], 0.0f), float(g.orig_h));
  b[2] = std::min(std::max(b[2], 0.0f), float(g.orig_w));
  b[3] = std::min(std::max(b[3], 0.0f), float(g.orig_h));
}

/// Prototypes of one image: nm planes of mh x mw floats, plane k at data + k * plane_stride.
struct proto_view {
  const float* data = nullptr;
  int nm = 0, mh = 0, mw = 0;
  std::int64_t plane_stride = 0;
};

/// Scratch planes reused across detections (one per thread).
struct mask_scratch {
  std::vector<float> low, full;
  std::vector<std::uint8_t> bits;
};

/// An empty (all-zero) H x W mask.
inline binary_mask empty_mask(int H, int W) {
  binary_mask m;
  m.height = H;
  m.width = W;
  m.data = xt::xtensor<std::uint8_t, 2>::from_shape({0, 0});
  return m;
}

/// Bilinear (align_corners=False) upsample of the src_h x src_w plane `src`, whose nonzero values
/// lie in rows [r0, r1] and columns [c0, c1], to H x W, then > 0.5; only the output pixels whose
/// taps touch that region are computed (all others interpolate zeros).
inline binary_mask upsample_threshold(const float* src, int src_h, int src_w, int r0, int r1, int c0, int c1, int H, int W,
                                      std::vector<std::uint8_t>& bits) {
  const interp_axis ay(src_h, H), ax(src_w, W);
  const auto ty = ay.touching(r0, r1), tx = ax.touching(c0, c1);
  const int oy0 = ty.first, oy1 = ty.second, ox0 = tx.first, ox1 = tx.second;  // (lambdas below capture them)
  if (oy0 > oy1 || ox0 > ox1) return empty_mask(H, W);
  const int rows = oy1 - oy0 + 1, cols = ox1 - ox0 + 1;
  bits.assign(std::size_t(rows) * std::size_t(cols), 0);
  // bilinear_tap's value, row by row: each source row's horizontal pass over the output columns
  // is computed once (two cached), then one vertical blend per output row.
  const auto& kt = cpu_detail::active_kernels();
  detail::row_ring h;
  h.init(1, cols);
  std::vector<float> v(static_cast<std::size_t>(cols));
  auto hrow = [&](int r, int keep) {
    return h.get(r, keep, [&](float* dst) {
      kt.hlerp(src + std::int64_t(r) * src_w, 0, 1, cols, ax.i0.data() + ox0, ax.i1.data() + ox0, ax.l0.data() + ox0,
               ax.l1.data() + ox0, dst);
    });
  };
  for (int y = oy0; y <= oy1; ++y) {
    const auto k = std::size_t(y);
    const float* a = hrow(ay.i0[k], ay.i1[k]);
    const float* b = hrow(ay.i1[k], ay.i0[k]);
    kt.lerp(a, b, ay.l0[k], ay.l1[k], cols, v.data());
    std::uint8_t* d = bits.data() + std::size_t(y - oy0) * std::size_t(cols);
    for (int x = 0; x < cols; ++x) d[x] = v[std::size_t(x)] > 0.5f;
  }
  return detail::tight_mask(H, W, oy0, ox0, rows, cols, bits.data());
}

/// process_mask(protos, coef, box, (H, W), upsample=True) for one detection; box in input pixels.
inline binary_mask process_mask(const proto_view& p, const float* coef, const float box[4], int H, int W,
                                mask_scratch& s) {
  GYOLO_CHECK(p.nm > 0 && p.mh > 0 && p.mw > 0 && H > 0 && W > 0, "process_mask: empty prototypes or input");
  const std::size_t lowsz = std::size_t(p.mh) * std::size_t(p.mw);
  if (s.low.size() != lowsz) s.low.assign(lowsz, 0.0f);
  // Box on the prototype grid (torch: float tensor *= python float mw / iw).
  const float sx = float(double(p.mw) / W), sy = float(double(p.mh) / H);
  const float bx1 = box[0] * sx, bx2 = box[2] * sx, by1 = box[1] * sy, by2 = box[3] * sy;
  int c0 = p.mw, c1 = -1, r0 = p.mh, r1 = -1;
  for (int c = 0; c < p.mw; ++c)
    if (float(c) >= bx1 && float(c) < bx2) c0 = std::min(c0, c), c1 = std::max(c1, c);
  for (int r = 0; r < p.mh; ++r)
    if (float(r) >= by1 && float(r) < by2) r0 = std::min(r0, r), r1 = std::max(r1, r);
  if (c1 < 0 || r1 < 0) return empty_mask(H, W);
  // sigmoid(coef . proto) inside the crop; zero elsewhere (s.low is all-zero between calls).
  const auto& kt = cpu_detail::active_kernels();
  for (int r = r0; r <= r1; ++r) {
    float* row = s.low.data() + std::int64_t(r) * p.mw + c0;
    kt.fma_dot(coef, p.nm, p.data + std::int64_t(r) * p.mw + c0, p.plane_stride, c1 - c0 + 1, row);
    for (int c = 0; c <= c1 - c0; ++c) row[c] = 1.0f / (1.0f + std::exp(-row[c]));
  }
  binary_mask m = upsample_threshold(s.low.data(), p.mh, p.mw, r0, r1, c0, c1, H, W, s.bits);
  for (int r = r0; r <= r1; ++r) std::fill_n(s.low.begin() + std::ptrdiff_t(r) * p.mw + c0, c1 - c0 + 1, 0.0f);
  return m;
}

/// hubconf _unletterbox of a binary input-resolution mask, then > 0.5: the mask at the original
/// image resolution.
inline binary_mask unletterbox_mask(const binary_mask& in, const letterbox_geometry& g, mask_scratch& s) {
  GYOLO_CHECK(in.height == g.input_h && in.width == g.input_w, "unletterbox_mask: mask is not at the input size");
  const int ch = g.crop_h(), cw = g.crop_w();
  GYOLO_CHECK(ch > 0 && cw > 0 && g.orig_h > 0 && g.orig_w > 0, "unletterbox_mask: empty crop or image");
  // Set region in crop coordinates.
  const int r0 = std::max(in.y0 - g.top, 0), r1 = std::min(in.y0 + in.rows() - 1 - g.top, ch - 1);
  const int c0 = std::max(in.x0 - g.left, 0), c1 = std::min(in.x0 + in.cols() - 1 - g.left, cw - 1);
  if (in.empty_region() || r0 > r1 || c0 > c1) return empty_mask(g.orig_h, g.orig_w);
  const std::size_t fullsz = std::size_t(ch) * std::size_t(cw);
  if (s.full.size() != fullsz) s.full.assign(fullsz, 0.0f);
  for (int r = r0; r <= r1; ++r)
    for (int c = c0; c <= c1; ++c) s.full[std::size_t(r) * std::size_t(cw) + std::size_t(c)] = float(in.at(r + g.top, c + g.left));
  binary_mask m = upsample_threshold(s.full.data(), ch, cw, r0, r1, c0, c1, g.orig_h, g.orig_w, s.bits);
  for (int r = r0; r <= r1; ++r) std::fill_n(s.full.begin() + std::ptrdiff_t(r) * cw + c0, c1 - c0 + 1, 0.0f);
  return m;
}

}  // namespace gyolo::post
