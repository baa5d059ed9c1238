// cv2.resize for 8-bit images, bit for bit (io/image_resize.hpp has the rules), compiled once in
// gyolo's library.
#include "gyolo/io/image_resize.hpp"
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/core/fp_contract.hpp"
#include "gyolo/io/image_types.hpp"


namespace gyolo {

namespace detail::rs {

constexpr int coef_bits = 11;
constexpr int coef_scale = 1 << coef_bits;  // INTER_RESIZE_COEF_SCALE

inline int cv_round(double v) { return static_cast<int>(std::lrint(v)); }  // cvRound: nearest, ties even
inline int cv_round(float v) { return static_cast<int>(std::lrint(v)); }
inline int cv_floor(float v) {
  int i = static_cast<int>(v);
  return i - (static_cast<float>(i) > v);
}
inline int cv_floor(double v) {
  int i = static_cast<int>(v);
  return i - (static_cast<double>(i) > v);
}
inline int cv_ceil(double v) {
  int i = static_cast<int>(v);
  return i + (static_cast<double>(i) < v);
}
inline short sat_short(float v) {
  int i = cv_round(v);
  return static_cast<short>(std::clamp(i, -32768, 32767));
}
inline std::uint8_t sat_u8(float v) {
  int i = cv_round(v);
  return static_cast<std::uint8_t>(std::clamp(i, 0, 255));
}
inline int sat_int(double v) { return cv_round(v); }

inline void check_args(const image_u8& src, int new_w, int new_h, const char* what) {
  if (src.width <= 0 || src.height <= 0 || src.channels <= 0)
    throw error(std::string(what) + ": source image is empty");
  if (src.data.size() != static_cast<std::size_t>(src.width) * src.height * src.channels)
    throw error(std::string(what) + ": image buffer size does not match its shape");
  if (new_w <= 0 || new_h <= 0)
    throw error(std::string(what) + ": target size " + std::to_string(new_w) + "x" + std::to_string(new_h) +
                " is not positive");
}

struct linear_tables {
  std::vector<int> xofs;      // width*cn
  std::vector<short> ialpha;  // width*cn*2
  std::vector<int> yofs;      // dst_h
  std::vector<short> ibeta;   // dst_h*2
  int xmin = 0, xmax = 0;     // in pixels
};

// hal::resize coefficient set-up for ksize 2 (INTER_LINEAR, or INTER_AREA when enlarging).
GYOLO_NO_FP_CONTRACT_ATTR inline linear_tables make_linear_tables(int sw, int /*sh*/, int dw, int dh, int cn,
                                                                  double inv_scale_x, double inv_scale_y,
                                                                  bool area_mode) {
  GYOLO_NO_FP_CONTRACT_BODY
  const double scale_x = 1. / inv_scale_x, scale_y = 1. / inv_scale_y;
  linear_tables t;
  t.xofs.resize(static_cast<std::size_t>(dw) * cn);
  t.ialpha.resize(static_cast<std::size_t>(dw) * cn * 2);
  t.yofs.resize(static_cast<std::size_t>(dh));
  t.ibeta.resize(static_cast<std::size_t>(dh) * 2);
  t.xmin = 0;
  t.xmax = dw;
  for (int dx = 0; dx < dw; ++dx) {
    float fx;
    int sx;
    if (!area_mode) {
      fx = static_cast<float>((dx + 0.5) * scale_x - 0.5);
      sx = cv_floor(fx);
      fx -= static_cast<float>(sx);
    } else {
      sx = cv_floor(dx * scale_x);
      fx = static_cast<float>((dx + 1) - (sx + 1) * inv_scale_x);
      fx = fx <= 0 ? 0.f : fx - static_cast<float>(cv_floor(fx));
    }
    if (sx < 0) {  // sx < ksize2 - 1
      t.xmin = dx + 1;
      fx = 0, sx = 0;
    }
    if (sx + 1 >= sw) {
      t.xmax = std::min(t.xmax, dx);
      if (sx >= sw - 1) fx = 0, sx = sw - 1;
    }
    for (int k = 0; k < cn; ++k) t.xofs[static_cast<std::size_t>(dx) * cn + k] = sx * cn + k;
    const float c0 = 1.f - fx, c1 = fx;
    const short a0 = sat_short(c0 * static_cast<float>(coef_scale));
    const short a1 = sat_short(c1 * static_cast<float>(coef_scale));
    for (int k = 0; k < cn; ++k) {
      t.ialpha[(static_cast<std::size_t>(dx) * cn + k) * 2 + 0] = a0;
      t.ialpha[(static_cast<std::size_t>(dx) * cn + k) * 2 + 1] = a1;
    }
  }
  for (int dy = 0; dy < dh; ++dy) {
    float fy;
    int sy;
    if (!area_mode) {
      fy = static_cast<float>((dy + 0.5) * scale_y - 0.5);
      sy = cv_floor(fy);
      fy -= static_cast<float>(sy);
    } else {
      sy = cv_floor(dy * scale_y);
      fy = static_cast<float>((dy + 1) - (sy + 1) * inv_scale_y);
      fy = fy <= 0 ? 0.f : fy - static_cast<float>(cv_floor(fy));
    }
    t.yofs[static_cast<std::size_t>(dy)] = sy;
    t.ibeta[static_cast<std::size_t>(dy) * 2 + 0] = sat_short((1.f - fy) * static_cast<float>(coef_scale));
    t.ibeta[static_cast<std::size_t>(dy) * 2 + 1] = sat_short(fy * static_cast<float>(coef_scale));
  }
  return t;
}

// resizeGeneric_ with HResizeLinear<uchar,int,short,2048> + VResizeLinear<uchar,int,short,...>.
inline void resize_generic_linear(const image_u8& src, image_u8& dst, const linear_tables& t) {
  const int cn = src.channels;
  const int dwidth = dst.width * cn;
  const int xmax = t.xmax * cn;
  std::vector<int> rows0(static_cast<std::size_t>(dwidth)), rows1(static_cast<std::size_t>(dwidth));
  int prev_sy[2] = {-1, -1};  // cache of horizontally resized source rows
  auto hresize = [&](int sy, std::vector<int>& D) {
    const std::uint8_t* S = src.row(sy);
    int dx = 0;
    for (; dx < xmax; ++dx) {
      const int sx = t.xofs[static_cast<std::size_t>(dx)];
      D[static_cast<std::size_t>(dx)] = S[sx] * t.ialpha[static_cast<std::size_t>(dx) * 2] +
                                        S[sx + cn] * t.ialpha[static_cast<std::size_t>(dx) * 2 + 1];
    }
    for (; dx < dwidth; ++dx) D[static_cast<std::size_t>(dx)] = S[t.xofs[static_cast<std::size_t>(dx)]] * coef_scale;
  };
  auto clip = [](int x, int a, int b) { return x >= a ? (x < b ? x : b - 1) : a; };
  for (int dy = 0; dy < dst.height; ++dy) {
    const int sy0 = t.yofs[static_cast<std::size_t>(dy)];
    const int s0 = clip(sy0, 0, src.height), s1 = clip(sy0 + 1, 0, src.height);
    // reuse rows when possible (results do not depend on it)
    if (prev_sy[0] != s0) {
      if (prev_sy[1] == s0) {
        std::swap(rows0, rows1);
        prev_sy[0] = s0;
        prev_sy[1] = -1;
      } else {
        hresize(s0, rows0);
        prev_sy[0] = s0;
      }
    }
    if (prev_sy[1] != s1) {
      if (s1 == s0)
        rows1 = rows0;
      else
        hresize(s1, rows1);
      prev_sy[1] = s1;
    }
    const int b0 = t.ibeta[static_cast<std::size_t>(dy) * 2], b1 = t.ibeta[static_cast<std::size_t>(dy) * 2 + 1];
    std::uint8_t* D = dst.row(dy);
    const int* S0 = rows0.data();
    const int* S1 = rows1.data();
    for (int x = 0; x < dwidth; ++x)
      D[x] = static_cast<std::uint8_t>((((b0 * (S0[x] >> 4)) >> 16) + ((b1 * (S1[x] >> 4)) >> 16) + 2) >> 2);
  }
}

// resizeAreaFast_<uchar,int,ResizeAreaFastVec<uchar,...>> for an exact integer scale.
GYOLO_NO_FP_CONTRACT_ATTR inline void resize_area_fast(const image_u8& src, image_u8& dst, int sx_, int sy_) {
  GYOLO_NO_FP_CONTRACT_BODY
  const int cn = src.channels;
  const int area = sx_ * sy_;
  const float scale = 1.f / static_cast<float>(area);
  const int dwidth = dst.width * cn;
  const bool fast2 = sx_ == 2 && sy_ == 2 && (cn == 1 || cn == 3 || cn == 4);
  for (int dy = 0; dy < dst.height; ++dy) {
    std::uint8_t* D = dst.row(dy);
    const int sy0 = dy * sy_;
    if (fast2) {
      const std::uint8_t* S = src.row(sy0);
      const std::uint8_t* N = src.row(sy0 + 1);
      for (int dx = 0; dx < dwidth; dx += cn) {
        const int index = dx * 2;
        for (int k = 0; k < cn; ++k)
          D[dx + k] = static_cast<std::uint8_t>((S[index + k] + S[index + cn + k] + N[index + k] + N[index + cn + k] + 2) >> 2);
      }
      continue;
    }
    for (int dx = 0; dx < dwidth; ++dx) {
      const int c = dx % cn;
      const int sxb = (dx / cn) * sx_;
      int sum = 0;
      for (int yy = 0; yy < sy_; ++yy) {
        const std::uint8_t* S = src.row(sy0 + yy);
        for (int xx = 0; xx < sx_; ++xx) sum += S[(sxb + xx) * cn + c];
      }
      D[dx] = sat_u8(static_cast<float>(sum) * scale);
    }
  }
}

struct decimate_alpha {
  int si, di;
  float alpha;
};

GYOLO_NO_FP_CONTRACT_ATTR inline int compute_area_tab(int ssize, int dsize, int cn, double scale,
                                                      decimate_alpha* tab) {
  GYOLO_NO_FP_CONTRACT_BODY
  int k = 0;
  for (int dx = 0; dx < dsize; dx++) {
    const double fsx1 = dx * scale;
    const double fsx2 = fsx1 + scale;
    const double cellWidth = std::min(scale, ssize - fsx1);
    int sx1 = cv_ceil(fsx1), sx2 = cv_floor(fsx2);
    sx2 = std::min(sx2, ssize - 1);
    sx1 = std::min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) {
      tab[k].di = dx * cn;
      tab[k].si = (sx1 - 1) * cn;
      tab[k++].alpha = static_cast<float>((sx1 - fsx1) / cellWidth);
    }
    for (int sx = sx1; sx < sx2; sx++) {
      tab[k].di = dx * cn;
      tab[k].si = sx * cn;
      tab[k++].alpha = static_cast<float>(1.0 / cellWidth);
    }
    if (fsx2 - sx2 > 1e-3) {
      tab[k].di = dx * cn;
      tab[k].si = sx2 * cn;
      tab[k++].alpha = static_cast<float>(std::min(std::min(fsx2 - sx2, 1.), cellWidth) / cellWidth);
    }
  }
  return k;
}

// resizeArea_<uchar,float> (ResizeArea_Invoker), single range.
GYOLO_NO_FP_CONTRACT_ATTR inline void resize_area_general(const image_u8& src, image_u8& dst, double scale_x,
                                                          double scale_y) {
  GYOLO_NO_FP_CONTRACT_BODY
  const int cn = src.channels;
  std::vector<decimate_alpha> xtab(static_cast<std::size_t>(src.width) * 2 + 2),
      ytab(static_cast<std::size_t>(src.height) * 2 + 2);
  const int xtab_size = compute_area_tab(src.width, dst.width, cn, scale_x, xtab.data());
  const int ytab_size = compute_area_tab(src.height, dst.height, 1, scale_y, ytab.data());
  const int dwidth = dst.width * cn;
  std::vector<float> buf(static_cast<std::size_t>(dwidth)), sum(static_cast<std::size_t>(dwidth), 0.f);
  int prev_dy = ytab[0].di;
  for (int j = 0; j < ytab_size; ++j) {
    const float beta = ytab[static_cast<std::size_t>(j)].alpha;
    const int dy = ytab[static_cast<std::size_t>(j)].di;
    const int sy = ytab[static_cast<std::size_t>(j)].si;
    const std::uint8_t* S = src.row(sy);
    std::fill(buf.begin(), buf.end(), 0.f);
    for (int k = 0; k < xtab_size; ++k) {
      const int sxn = xtab[static_cast<std::size_t>(k)].si;
      const int dxn = xtab[static_cast<std::size_t>(k)].di;
      const float alpha = xtab[static_cast<std::size_t>(k)].alpha;
      for (int c = 0; c < cn; ++c) {
        const float p = static_cast<float>(S[sxn + c]) * alpha;
        buf[static_cast<std::size_t>(dxn + c)] = buf[static_cast<std::size_t>(dxn + c)] + p;
      }
    }
    if (dy != prev_dy) {
      std::uint8_t* D = dst.row(prev_dy);
      for (int dx = 0; dx < dwidth; ++dx) {
        D[dx] = sat_u8(sum[static_cast<std::size_t>(dx)]);
        sum[static_cast<std::size_t>(dx)] = beta * buf[static_cast<std::size_t>(dx)];
      }
      prev_dy = dy;
    } else {
      for (int dx = 0; dx < dwidth; ++dx) {
        const float p = beta * buf[static_cast<std::size_t>(dx)];
        sum[static_cast<std::size_t>(dx)] = sum[static_cast<std::size_t>(dx)] + p;
      }
    }
  }
  std::uint8_t* D = dst.row(prev_dy);
  for (int dx = 0; dx < dwidth; ++dx) D[dx] = sat_u8(sum[static_cast<std::size_t>(dx)]);
}

enum class interp { linear, area };

inline image_u8 resize_impl(const image_u8& src, int new_w, int new_h, interp mode, const char* what) {
  check_args(src, new_w, new_h, what);
  if (new_w == src.width && new_h == src.height) return src;  // cv::resize copies
  const int cn = src.channels;
  const double inv_scale_x = static_cast<double>(new_w) / src.width;
  const double inv_scale_y = static_cast<double>(new_h) / src.height;
  // hal::resize recomputes the size from the scales
  const int dw = sat_int(src.width * inv_scale_x), dh = sat_int(src.height * inv_scale_y);
  image_u8 dst(dh, dw, cn);
  const double scale_x = 1. / inv_scale_x, scale_y = 1. / inv_scale_y;
  const int iscale_x = sat_int(scale_x), iscale_y = sat_int(scale_y);
  const bool is_area_fast = std::abs(scale_x - iscale_x) < DBL_EPSILON && std::abs(scale_y - iscale_y) < DBL_EPSILON;
  bool area = mode == interp::area;
  if (mode == interp::linear && is_area_fast && iscale_x == 2 && iscale_y == 2) area = true;
  if (area && scale_x >= 1 && scale_y >= 1) {
    if (is_area_fast)
      resize_area_fast(src, dst, iscale_x, iscale_y);
    else
      resize_area_general(src, dst, scale_x, scale_y);
    return dst;
  }
  const linear_tables t = make_linear_tables(src.width, src.height, dw, dh, cn, inv_scale_x, inv_scale_y, area);
  resize_generic_linear(src, dst, t);
  return dst;
}

}  // namespace detail::rs

/// cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for 8-bit images, bit-exact.
image_u8 resize_linear(const image_u8& src, int new_w, int new_h) {
  return detail::rs::resize_impl(src, new_w, new_h, detail::rs::interp::linear, "resize_linear");
}

/// cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA) for 8-bit images, bit-exact.
image_u8 resize_area(const image_u8& src, int new_w, int new_h) {
  return detail::rs::resize_impl(src, new_w, new_h, detail::rs::interp::area, "resize_area");
}

}  // namespace gyolo
