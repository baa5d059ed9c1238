// upstream's training augmentations (utils/caption/dataloaders.py __getitem__ / load_mosaic,
// utils/caption/augmentations.py, utils/augmentations.py), on our own types:
//   aug_rng                  splitmix64 with explicit float mappings (uniform, randint, normal, beta)
//   aug_hyp              the options, defaults of data/hyps/hyp.scratch-cap.yaml
//   labeled_image        an image with its instances (class, xyxy box, polygon in pixels), semantic
//                        polygons and an optional label map (COCO-stuff png), all in pixels
//   warp_image           cv2.warpAffine / warpPerspective (bilinear, or nearest for label maps)
//   random_perspective   upstream random_perspective incl. box_candidates (area_thr 0.01)
//   augment_hsv          upstream augment_hsv (LUTs in cv2's 8-bit HSV space)
//   mixup                upstream mixup (ratio ~ Beta(32, 32))
// Copy-paste (hyp copy_paste) is left out; so are albumentations.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/core/random.hpp"
#include "gyolo/io/image_types.hpp"

namespace gyolo::data {

/// splitmix64 (core/random.hpp). uniform(): the top 53 bits / 2^53 in [0, 1); uniform(a, b) = a + (b - a) * u;
/// randint(lo, hi) = lo + floor(u * (hi - lo + 1)) (inclusive); normal(): Box-Muller;
/// gamma(a): Marsaglia-Tsang; beta(a, b) = X / (X + Y).
struct aug_rng : splitmix64 {
  explicit aug_rng(std::uint64_t seed = 0) : splitmix64(seed) {}
  /// The generator of one sample: (seed, epoch, position in the epoch, attempt) mixed.
  static aug_rng for_sample(std::uint64_t seed, std::uint64_t epoch, std::uint64_t pos, std::uint64_t attempt = 0) {
    aug_rng r(seed);
    std::uint64_t s = r.next();
    for (std::uint64_t v : {epoch, pos, attempt}) {
      aug_rng m(s ^ (v * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull));
      s = m.next();
    }
    return aug_rng(s);
  }
  int randint(int lo, int hi) {
    const long long span = (long long)hi - lo + 1;
    long long k = (long long)std::floor(uniform() * double(span));
    if (k >= span) k = span - 1;
    return int(lo + k);
  }
  double normal() {
    double u1 = uniform();
    while (u1 <= 0) u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
  }
  double gamma(double a) {  // a >= 1
    const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    while (true) {
      double x, v;
      do {
        x = normal();
        v = 1.0 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const double u = uniform();
      if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
      if (u > 0 && std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
    }
  }
  double beta(double a, double b) {
    const double x = gamma(a), y = gamma(b);
    return x / (x + y);
  }
};

/// The augmentation options (upstream hyp.scratch-cap.yaml).
struct aug_hyp {
  double hsv_h = 0.015, hsv_s = 0.7, hsv_v = 0.4;
  double degrees = 0.0, translate = 0.1, scale = 0.9, shear = 0.0, perspective = 0.0;
  double flipud = 0.0, fliplr = 0.5;
  double mosaic = 1.0, mixup = 0.15;
};

/// An image with its labels in pixel coordinates of `img`.
struct labeled_image {
  image_u8 img;                                // BGR
  std::vector<int> cls;                        // per instance
  std::vector<std::array<double, 4>> boxes;    // per instance, xyxy pixels
  std::vector<std::vector<double>> segs;       // per instance polygon x1 y1 ... (pixels)
  std::vector<int> sem_ch;                     // per semantic polygon: its channel
  std::vector<std::vector<double>> sem_polys;  // semantic polygons (pixels)
  image_u8 label_map;                          // optional 1-channel map, same size as img (255 = ignore)
};

/// cv2.warpAffine / cv2.warpPerspective(src, M, (W, H), borderValue) with M mapping source to
/// destination (3 x 3 row-major; the last row (0, 0, 1) for affine). Bilinear: source coordinates
/// quantised to 1/32 pixel as cv2 (INTER_BITS 5), taps outside the image take `border`, rounded to
/// nearest (not bit-exact with cv2's 15-bit weights). nearest = true: INTER_NEAREST (label maps).
inline image_u8 warp_image(const image_u8& src, const std::array<double, 9>& M, int W, int H, bool nearest,
                           std::uint8_t border) {
  // inverse of M
  const double a = M[0], b = M[1], c = M[2], d = M[3], e = M[4], f = M[5], g = M[6], h = M[7], i = M[8];
  const double A = e * i - f * h, B = -(d * i - f * g), C = d * h - e * g;
  const double det = a * A + b * B + c * C;
  image_u8 dst(H, W, src.channels);
  std::fill(dst.data.begin(), dst.data.end(), border);
  if (std::abs(det) < 1e-300 || src.empty()) return dst;
  const double inv[9] = {A / det, -(b * i - c * h) / det, (b * f - c * e) / det,
                         B / det, (a * i - c * g) / det, -(a * f - c * d) / det,
                         C / det, -(a * h - b * g) / det, (a * e - b * d) / det};
  const int cn = src.channels, sw = src.width, sh = src.height;
  for (int y = 0; y < H; ++y) {
    std::uint8_t* D = dst.row(y);
    for (int x = 0; x < W; ++x) {
      double X = inv[0] * x + inv[1] * y + inv[2], Y = inv[3] * x + inv[4] * y + inv[5];
      const double Wd = inv[6] * x + inv[7] * y + inv[8];
      if (Wd == 0) continue;
      X /= Wd;
      Y /= Wd;
      if (!(std::abs(X) < 1e8 && std::abs(Y) < 1e8)) continue;
      if (nearest) {
        const long long ix = (long long)std::nearbyint(X), iy = (long long)std::nearbyint(Y);
        if (ix < 0 || iy < 0 || ix >= sw || iy >= sh) continue;
        const std::uint8_t* s = src.row(int(iy)) + ix * cn;
        for (int k = 0; k < cn; ++k) D[x * cn + k] = s[k];
        continue;
      }
      const long long qx = (long long)std::nearbyint(X * 32), qy = (long long)std::nearbyint(Y * 32);
      const long long x0 = qx >> 5, y0 = qy >> 5;  // floor
      if (x0 < -1 || y0 < -1 || x0 >= sw || y0 >= sh) continue;
      const double fx = double(qx & 31) / 32, fy = double(qy & 31) / 32;
      const double w[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
      const long long xs[2] = {x0, x0 + 1}, ys[2] = {y0, y0 + 1};
      for (int k = 0; k < cn; ++k) {
        double v = 0;
        for (int t = 0; t < 4; ++t) {
          const long long sx = xs[t & 1], sy = ys[t >> 1];
          const double p = (sx >= 0 && sy >= 0 && sx < sw && sy < sh) ? src.row(int(sy))[sx * cn + k] : border;
          v += w[t] * p;
        }
        D[x * cn + k] = std::uint8_t(std::clamp(std::nearbyint(v), 0.0, 255.0));
      }
    }
  }
  return dst;
}

namespace detail::aug {

/// upstream resample_segments(n=1000): close the polygon, then np.interp at n evenly spaced
/// parameters over the vertex index.
inline std::vector<double> resample(const std::vector<double>& s, int n = 1000) {
  const std::size_t m = s.size() / 2;
  if (m == 0) return {};
  std::vector<double> out(std::size_t(2 * n));
  for (int k = 0; k < n; ++k) {
    const double t = n == 1 ? 0.0 : double(k) * double(m) / double(n - 1);  // linspace(0, m, n)
    std::size_t i = std::size_t(std::floor(t));
    if (i >= m) i = m - 1;
    const double f = t - double(i);
    const std::size_t j = (i + 1) % m;
    out[2 * std::size_t(k)] = s[2 * i] + f * (s[2 * j] - s[2 * i]);
    out[2 * std::size_t(k) + 1] = s[2 * i + 1] + f * (s[2 * j + 1] - s[2 * i + 1]);
  }
  return out;
}

inline void transform_points(std::vector<double>& xy, const std::array<double, 9>& M, bool perspective) {
  for (std::size_t i = 0; i + 1 < xy.size(); i += 2) {
    const double x = xy[i], y = xy[i + 1];
    double X = M[0] * x + M[1] * y + M[2], Y = M[3] * x + M[4] * y + M[5];
    if (perspective) {
      const double w = M[6] * x + M[7] * y + M[8];
      X /= w;
      Y /= w;
    }
    xy[i] = X;
    xy[i + 1] = Y;
  }
}

inline std::array<double, 9> matmul(const std::array<double, 9>& A, const std::array<double, 9>& B) {
  std::array<double, 9> C{};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < 3; ++k) C[std::size_t(r * 3 + c)] += A[std::size_t(r * 3 + k)] * B[std::size_t(k * 3 + c)];
  return C;
}

}  // namespace detail::aug

/// upstream box_candidates(box1 = the box before (times the scale), box2 = after, wh_thr, ar_thr,
/// area_thr): w2 > wh_thr, h2 > wh_thr, area ratio > area_thr, aspect ratio < ar_thr.
inline bool box_candidate(const std::array<double, 4>& b1, const std::array<double, 4>& b2, double wh_thr = 2,
                          double ar_thr = 100, double area_thr = 0.1, double eps = 1e-16) {
  const double w1 = b1[2] - b1[0], h1 = b1[3] - b1[1], w2 = b2[2] - b2[0], h2 = b2[3] - b2[1];
  const double ar = std::max(w2 / (h2 + eps), h2 / (w2 + eps));
  return w2 > wh_thr && h2 > wh_thr && w2 * h2 / (w1 * h1 + eps) > area_thr && ar < ar_thr;
}

/// upstream random_perspective(im, targets, segments, semantic_masks, degrees, translate, scale,
/// shear, perspective, border): M = T S R P C; the image warped to (w + 2 border, h + 2 border)
/// with border 114 (label map: nearest, 255); instance polygons and semantic polygons transformed
/// by M; each instance's box = the extent of its resampled (1000 points) transformed polygon
/// inside the output (segment2box), kept when box_candidates(area_thr 0.01) holds. Unlike
/// upstream, semantic polygons are also transformed when there is no instance (upstream drops them).
/// Random draws, in order: perspective x, y; angle; scale; shear x, y; translate x, y.
inline void random_perspective(labeled_image& s, const aug_hyp& hy, int border, aug_rng& r) {
  using detail::aug::matmul;
  const int H = s.img.height + 2 * border, W = s.img.width + 2 * border;
  GYOLO_CHECK(H > 0 && W > 0, "random_perspective: empty output");
  std::array<double, 9> C{1, 0, -s.img.width / 2.0, 0, 1, -s.img.height / 2.0, 0, 0, 1};
  std::array<double, 9> P{1, 0, 0, 0, 1, 0, 0, 0, 1};
  P[6] = r.uniform(-hy.perspective, hy.perspective);
  P[7] = r.uniform(-hy.perspective, hy.perspective);
  const double ang = r.uniform(-hy.degrees, hy.degrees) * 3.14159265358979323846 / 180.0;
  const double sc = r.uniform(1 - hy.scale, 1 + hy.scale);
  // cv2.getRotationMatrix2D(center (0, 0), angle, scale): [[a, b, 0], [-b, a, 0]], a = s cos, b = s sin
  const double ca = sc * std::cos(ang), sa = sc * std::sin(ang);
  std::array<double, 9> R{ca, sa, 0, -sa, ca, 0, 0, 0, 1};
  std::array<double, 9> S{1, 0, 0, 0, 1, 0, 0, 0, 1};
  S[1] = std::tan(r.uniform(-hy.shear, hy.shear) * 3.14159265358979323846 / 180.0);
  S[3] = std::tan(r.uniform(-hy.shear, hy.shear) * 3.14159265358979323846 / 180.0);
  std::array<double, 9> T{1, 0, 0, 0, 1, 0, 0, 0, 1};
  T[2] = r.uniform(0.5 - hy.translate, 0.5 + hy.translate) * W;
  T[5] = r.uniform(0.5 - hy.translate, 0.5 + hy.translate) * H;
  const auto M = matmul(T, matmul(S, matmul(R, matmul(P, C))));
  const bool persp = hy.perspective != 0;
  const std::array<double, 9> I{1, 0, 0, 0, 1, 0, 0, 0, 1};
  if (border != 0 || M != I) {
    s.img = warp_image(s.img, M, W, H, false, 114);
    if (!s.label_map.empty()) s.label_map = warp_image(s.label_map, M, W, H, true, 255);
  }
  // instances
  std::vector<int> cls;
  std::vector<std::array<double, 4>> boxes;
  std::vector<std::vector<double>> segs;
  for (std::size_t i = 0; i < s.cls.size(); ++i) {
    auto rs = detail::aug::resample(s.segs[i]);
    detail::aug::transform_points(rs, M, persp);
    double x0 = 1e300, y0 = 1e300, x1 = -1e300, y1 = -1e300;
    bool any = false;
    for (std::size_t k = 0; k + 1 < rs.size(); k += 2) {
      const double x = rs[k], y = rs[k + 1];
      if (x >= 0 && y >= 0 && x <= W && y <= H) {
        any = true;
        x0 = std::min(x0, x);
        x1 = std::max(x1, x);
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
    }
    const std::array<double, 4> nb = any ? std::array<double, 4>{x0, y0, x1, y1} : std::array<double, 4>{0, 0, 0, 0};
    const auto& ob = s.boxes[i];
    const std::array<double, 4> b1{ob[0] * sc, ob[1] * sc, ob[2] * sc, ob[3] * sc};
    if (!box_candidate(b1, nb, 2, 100, 0.01)) continue;
    auto poly = s.segs[i];  // projective maps keep straight edges: transform the vertices only
    detail::aug::transform_points(poly, M, persp);
    cls.push_back(s.cls[i]);
    boxes.push_back(nb);
    segs.push_back(std::move(poly));
  }
  s.cls = std::move(cls);
  s.boxes = std::move(boxes);
  s.segs = std::move(segs);
  for (auto& p : s.sem_polys) detail::aug::transform_points(p, M, persp);
}

/// cv2.cvtColor(BGR2HSV) for 8-bit images (H in [0, 180)), cv2's fixed-point rule.
inline void bgr_to_hsv(const std::uint8_t* bgr, std::uint8_t* hsv, std::size_t pixels) {
  constexpr int shift = 12;
  static const auto tables = [] {
    std::array<std::array<int, 256>, 2> t{};
    for (int i = 1; i < 256; ++i) {
      t[0][std::size_t(i)] = int(std::nearbyint((255 << shift) / (1.0 * i)));
      t[1][std::size_t(i)] = int(std::nearbyint((180 << shift) / (6.0 * i)));
    }
    return t;
  }();
  for (std::size_t p = 0; p < pixels; ++p) {
    const int b = bgr[3 * p], g = bgr[3 * p + 1], r = bgr[3 * p + 2];
    const int v = std::max({b, g, r}), vmin = std::min({b, g, r}), diff = v - vmin;
    const int s = (diff * tables[0][std::size_t(v)] + (1 << (shift - 1))) >> shift;
    int h = v == r ? g - b : (v == g ? b - r + 2 * diff : r - g + 4 * diff);
    h = (h * tables[1][std::size_t(diff)] + (1 << (shift - 1))) >> shift;
    if (h < 0) h += 180;
    hsv[3 * p] = std::uint8_t(h);
    hsv[3 * p + 1] = std::uint8_t(s);
    hsv[3 * p + 2] = std::uint8_t(v);
  }
}

/// cv2.cvtColor(HSV2BGR) for 8-bit images (cv2 converts through float: sectors of 60 degrees).
inline void hsv_to_bgr(const std::uint8_t* hsv, std::uint8_t* bgr, std::size_t pixels) {
  static const int sector_data[6][3] = {{1, 3, 0}, {1, 0, 2}, {3, 0, 1}, {0, 2, 1}, {0, 1, 3}, {2, 1, 0}};
  for (std::size_t p = 0; p < pixels; ++p) {
    float h = float(hsv[3 * p]) * (6.f / 180.f);
    const float s = float(hsv[3 * p + 1]) * (1.f / 255.f), v = float(hsv[3 * p + 2]) * (1.f / 255.f);
    float b = v, g = v, r = v;
    if (s != 0) {
      while (h < 0) h += 6;
      while (h >= 6) h -= 6;
      int sector = int(std::floor(h));
      h -= float(sector);
      if (unsigned(sector) >= 6u) {
        sector = 0;
        h = 0;
      }
      const float tab[4] = {v, v * (1.f - s), v * (1.f - s * h), v * (1.f - s * (1.f - h))};
      b = tab[sector_data[sector][0]];
      g = tab[sector_data[sector][1]];
      r = tab[sector_data[sector][2]];
    }
    auto sat = [](float x) { return std::uint8_t(std::clamp(int(std::lrint(x * 255.f)), 0, 255)); };
    bgr[3 * p] = sat(b);
    bgr[3 * p + 1] = sat(g);
    bgr[3 * p + 2] = sat(r);
  }
}

/// upstream augment_hsv: gains g = uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1 (3 draws, in that
/// order); LUTs hue = (x g0) mod 180, sat = clip(x g1, 0, 255), val = clip(x g2, 0, 255), each
/// truncated to uint8, applied in cv2's 8-bit HSV space, back to BGR.
inline void augment_hsv(image_u8& im, double hgain, double sgain, double vgain, aug_rng& r) {
  if (!(hgain != 0 || sgain != 0 || vgain != 0) || im.empty()) return;
  GYOLO_CHECK(im.channels == 3, "augment_hsv: expected a 3-channel image");
  const double g0 = r.uniform(-1, 1) * hgain + 1, g1 = r.uniform(-1, 1) * sgain + 1, g2 = r.uniform(-1, 1) * vgain + 1;
  std::uint8_t lh[256], ls[256], lv[256];
  for (int x = 0; x < 256; ++x) {
    double hv = std::fmod(x * g0, 180.0);
    if (hv < 0) hv += 180.0;
    lh[x] = std::uint8_t(int(hv));
    ls[x] = std::uint8_t(int(std::clamp(x * g1, 0.0, 255.0)));
    lv[x] = std::uint8_t(int(std::clamp(x * g2, 0.0, 255.0)));
  }
  const std::size_t n = std::size_t(im.width) * std::size_t(im.height);
  std::vector<std::uint8_t> hsv(3 * n);
  bgr_to_hsv(im.data.data(), hsv.data(), n);
  for (std::size_t p = 0; p < n; ++p) {
    hsv[3 * p] = lh[hsv[3 * p]];
    hsv[3 * p + 1] = ls[hsv[3 * p + 1]];
    hsv[3 * p + 2] = lv[hsv[3 * p + 2]];
  }
  hsv_to_bgr(hsv.data(), im.data.data(), n);
}

/// upstream mixup: im = uint8(im * ratio + im2 * (1 - ratio)) (truncation), labels concatenated;
/// the label maps blend as "a where a is labelled, else b". Images must have the same size.
inline void mixup(labeled_image& a, labeled_image&& b, double ratio) {
  GYOLO_CHECK(a.img.width == b.img.width && a.img.height == b.img.height && a.img.channels == b.img.channels,
              "mixup: images differ in size");
  for (std::size_t i = 0; i < a.img.data.size(); ++i)
    a.img.data[i] = std::uint8_t(int(a.img.data[i] * ratio + b.img.data[i] * (1 - ratio)));
  a.cls.insert(a.cls.end(), b.cls.begin(), b.cls.end());
  a.boxes.insert(a.boxes.end(), b.boxes.begin(), b.boxes.end());
  for (auto& s : b.segs) a.segs.push_back(std::move(s));
  a.sem_ch.insert(a.sem_ch.end(), b.sem_ch.begin(), b.sem_ch.end());
  for (auto& s : b.sem_polys) a.sem_polys.push_back(std::move(s));
  if (!b.label_map.empty()) {
    if (a.label_map.empty()) {
      a.label_map = std::move(b.label_map);
    } else {
      for (std::size_t i = 0; i < a.label_map.data.size(); ++i)
        if (a.label_map.data[i] == 255) a.label_map.data[i] = b.label_map.data[i];
    }
  }
}

/// cv2.resize(INTER_NEAREST) of a 1-channel map: source index min(floor(x * src / dst), src - 1).
inline image_u8 resize_nearest(const image_u8& src, int W, int H) {
  image_u8 dst(H, W, src.channels);
  const double fx = double(src.width) / W, fy = double(src.height) / H;
  for (int y = 0; y < H; ++y) {
    const int sy = std::min(int(std::floor(y * fy)), src.height - 1);
    for (int x = 0; x < W; ++x) {
      const int sx = std::min(int(std::floor(x * fx)), src.width - 1);
      for (int k = 0; k < src.channels; ++k) dst.row(y)[x * src.channels + k] = src.row(sy)[sx * src.channels + k];
    }
  }
  return dst;
}

}  // namespace gyolo::data
