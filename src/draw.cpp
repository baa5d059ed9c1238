// Drawing on 8-bit BGR images (post/draw.hpp), compiled once in gyolo's library.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gyolo/post/draw.hpp"
#include "gyolo/post/font_data.hpp"

namespace gyolo::post {


rgb palette_color(int i) {
  i = i < 0 ? -i : i;
  const double h = std::fmod(0.11 + 0.6180339887498949 * i, 1.0) * 6.0;
  const double s = (i / 2) % 2 ? 0.65 : 0.9, v = i % 2 ? 0.78 : 1.0;
  const int k = int(h);
  const double f = h - k, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r = v, g = t, b = p;
  switch (k % 6) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q; break;
  }
  return {std::uint8_t(std::lround(r * 255)), std::uint8_t(std::lround(g * 255)), std::uint8_t(std::lround(b * 255))};
}

rgb text_color_on(const rgb& bg) {
  const double l = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2];
  return l > 150 ? rgb{0, 0, 0} : rgb{255, 255, 255};
}

void blend_pixel(image_u8& im, int x, int y, const rgb& c, float a) {
  if (x < 0 || y < 0 || x >= im.width || y >= im.height || a <= 0.0f) return;
  a = std::min(a, 1.0f);
  std::uint8_t* p = im.row(y) + std::size_t(x) * std::size_t(im.channels);
  const std::uint8_t bgr[3] = {c[2], c[1], c[0]};
  for (int k = 0; k < 3 && k < im.channels; ++k) p[k] = std::uint8_t(std::lround(p[k] + (bgr[k] - p[k]) * a));
}

void fill_rect(image_u8& im, int x0, int y0, int x1, int y1, const rgb& c, float a) {
  x0 = std::max(x0, 0), y0 = std::max(y0, 0), x1 = std::min(x1, im.width), y1 = std::min(y1, im.height);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) blend_pixel(im, x, y, c, a);
}

void draw_rect(image_u8& im, int x0, int y0, int x1, int y1, const rgb& c, int t) {
  t = std::max(1, std::min({t, (x1 - x0 + 1) / 2, (y1 - y0 + 1) / 2}));
  fill_rect(im, x0, y0, x1, y0 + t, c);
  fill_rect(im, x0, y1 - t, x1, y1, c);
  fill_rect(im, x0, y0 + t, x0 + t, y1 - t, c);
  fill_rect(im, x1 - t, y0 + t, x1, y1 - t, c);
}

void draw_mask(image_u8& im, const binary_mask& m, const rgb& c, float fill, float outline) {
  if (m.height != im.height || m.width != im.width) return;
  // (the mask's own buffer, read directly: a pixel outside the mask's region counts as unset)
  const int rows = m.rows(), cols = m.cols();
  const std::uint8_t* d = m.data.data();
  auto set = [&](int r, int q) { return r >= 0 && q >= 0 && r < rows && q < cols && d[std::size_t(r) * std::size_t(cols) + std::size_t(q)] != 0; };
  for (int r = 0; r < rows; ++r)
    for (int q = 0; q < cols; ++q) {
      if (!set(r, q)) continue;
      const bool edge = !set(r - 1, q) || !set(r + 1, q) || !set(r, q - 1) || !set(r, q + 1);
      blend_pixel(im, m.x0 + q, m.y0 + r, c, edge ? outline : fill);
    }
}

// ---- text ----------------------------------------------------------------------------------

namespace detail {
const font_data::glyph& glyph_of(char ch) {
  int code = static_cast<unsigned char>(ch);
  if (code < font_data::first || code > font_data::last) code = '?';
  return font_data::glyphs[code - font_data::first];
}
float glyph_cov(const font_data::glyph& g, int x, int y) {
  if (x < 0 || y < 0 || x >= g.w || y >= g.h) return 0.0f;
  const char c = g.bits[std::size_t(y) * std::size_t(g.w) + std::size_t(x)];
  return float(c <= '9' ? c - '0' : c - 'a' + 10) / 15.0f;
}
float glyph_area(const font_data::glyph& g, float fx0, float fy0, float fx1, float fy1) {
  const int ix0 = int(std::floor(fx0)), ix1 = int(std::ceil(fx1)), iy0 = int(std::floor(fy0)), iy1 = int(std::ceil(fy1));
  float s = 0.0f;
  for (int y = iy0; y < iy1; ++y) {
    const float wy = std::min(fy1, float(y + 1)) - std::max(fy0, float(y));
    if (wy <= 0) continue;
    for (int x = ix0; x < ix1; ++x) {
      const float wx = std::min(fx1, float(x + 1)) - std::max(fx0, float(x));
      if (wx > 0) s += wx * wy * glyph_cov(g, x, y);
    }
  }
  return s / ((fx1 - fx0) * (fy1 - fy0));
}
float glyph_bilinear(const font_data::glyph& g, float sx, float sy) {
  sx -= 0.5f, sy -= 0.5f;
  const int x0 = int(std::floor(sx)), y0 = int(std::floor(sy));
  const float ax = sx - x0, ay = sy - y0;
  return (1 - ay) * ((1 - ax) * glyph_cov(g, x0, y0) + ax * glyph_cov(g, x0 + 1, y0)) +
         ay * ((1 - ax) * glyph_cov(g, x0, y0 + 1) + ax * glyph_cov(g, x0 + 1, y0 + 1));
}
}  // namespace detail

text_metrics measure_text(std::string_view s, float px) {
  const float k = px / float(font_data::size);
  float w = 0;
  for (char ch : s) w += detail::glyph_of(ch).advance;
  return {int(std::ceil(w * k)), int(std::ceil(font_data::ascent * k)), int(std::ceil(font_data::descent * k))};
}

void draw_text(image_u8& im, float x, float y, std::string_view s, float px, const rgb& c, float a) {
  const float k = px / float(font_data::size);
  float pen = x;
  for (char ch : s) {
    const auto& g = detail::glyph_of(ch);
    if (g.w > 0 && g.h > 0) {
      const float gx = pen + g.x0 * k, gy = y + g.y0 * k;  // top-left of the glyph bitmap
      const int dx0 = int(std::floor(gx)), dy0 = int(std::floor(gy));
      const int dx1 = int(std::ceil(gx + g.w * k)), dy1 = int(std::ceil(gy + g.h * k));
      for (int dy = std::max(dy0, 0); dy < std::min(dy1, im.height); ++dy)
        for (int dx = std::max(dx0, 0); dx < std::min(dx1, im.width); ++dx) {
          float cov;
          if (k < 1.0f) {
            cov = detail::glyph_area(g, (dx - gx) / k, (dy - gy) / k, (dx + 1 - gx) / k, (dy + 1 - gy) / k);
          } else {
            cov = detail::glyph_bilinear(g, (dx + 0.5f - gx) / k, (dy + 0.5f - gy) / k);
          }
          if (cov > 0.0f) blend_pixel(im, dx, dy, c, cov * a);
        }
    }
    pen += g.advance * k;
  }
}

std::vector<std::string> wrap_text(const std::string& s, float px, int max_w) {
  std::vector<std::string> lines;
  std::string cur;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    std::size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j == i) break;
    const std::string word = s.substr(i, j - i);
    const std::string trial = cur.empty() ? word : cur + " " + word;
    if (!cur.empty() && measure_text(trial, px).width > max_w) {
      lines.push_back(cur);
      cur = word;
    } else {
      cur = trial;
    }
    i = j;
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

void draw_label(image_u8& im, int x, int y_bottom, const std::string& text, float px, const rgb& bg) {
  const auto m = measure_text(text, px);
  const int pad = std::max(1, int(std::lround(px * 0.2f)));
  const int w = m.width + 2 * pad, h = m.height() + pad;
  x = std::max(0, std::min(x, im.width - w));
  int top = y_bottom - h;
  if (top < 0) top = std::min(std::max(0, y_bottom), std::max(0, im.height - h));  // inside the box instead
  fill_rect(im, x, top, x + w, top + h, bg);
  draw_text(im, float(x + pad), float(top + pad / 2 + m.ascent), text, px, text_color_on(bg));
}

void draw_caption(image_u8& im, const std::string& text, float px) {
  if (text.empty()) return;
  const int pad = std::max(2, int(std::lround(px * 0.4f)));
  auto lines = wrap_text(text, px, std::max(1, im.width - 2 * pad));
  const auto m = measure_text("Ag", px);
  const int lh = int(std::lround(m.height() * 1.1));
  const int h = int(lines.size()) * lh + 2 * pad;
  const int top = std::max(0, im.height - h);
  fill_rect(im, 0, top, im.width, im.height, {0, 0, 0}, 0.55f);
  for (std::size_t i = 0; i < lines.size(); ++i)
    draw_text(im, float(pad), float(top + pad + int(i) * lh + m.ascent), lines[i], px, {255, 255, 255});
}

}  // namespace gyolo::post
