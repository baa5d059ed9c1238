// Drawing on 8-bit BGR images (gyolo::image_u8, as decoded): alpha-blended masks with outlines,
// rectangles, and anti-aliased text at any pixel size from the embedded DejaVu Sans Bold atlas
// (post/font_data.hpp). Colours are given as RGB. No OpenCV, no font files. Compiled once in gyolo's
// library (src/draw.cpp).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gyolo/io/image_types.hpp"
#include "gyolo/post/masks.hpp"

namespace gyolo::post {

using rgb = std::array<std::uint8_t, 3>;

/// A distinct colour per class id: hues spaced by the golden ratio; saturation and brightness
/// alternate so that the classes whose hues come close (ids 13, 21 or 34 apart) still differ.
rgb palette_color(int i);

/// Black or white, whichever reads better on `bg`.
rgb text_color_on(const rgb& bg);

/// Blends colour c into pixel (x, y) with opacity a in [0, 1]; out-of-image pixels are ignored.
void blend_pixel(image_u8& im, int x, int y, const rgb& c, float a);

/// Filled rectangle [x0, x1) x [y0, y1).
void fill_rect(image_u8& im, int x0, int y0, int x1, int y1, const rgb& c, float a = 1.0f);

/// Rectangle outline of the given thickness drawn inside [x0, x1) x [y0, y1).
void draw_rect(image_u8& im, int x0, int y0, int x1, int y1, const rgb& c, int t);

/// Translucent mask fill with a more opaque 1-pixel outline; the mask must have the image's size.
void draw_mask(image_u8& im, const binary_mask& m, const rgb& c, float fill = 0.4f, float outline = 0.85f);

// ---- text ----------------------------------------------------------------------------------

/// Text metrics at font size `px` (pixels).
struct text_metrics {
  int width = 0;    // advance width, rounded up
  int ascent = 0;   // above the baseline
  int descent = 0;  // below the baseline
  int height() const { return ascent + descent; }
};

/// The advance width, ascent and descent of `s` at font size `px`.
text_metrics measure_text(std::string_view s, float px);

/// Draws `s` with its baseline at y, starting at x, font size px, colour c, opacity a.
void draw_text(image_u8& im, float x, float y, std::string_view s, float px, const rgb& c, float a = 1.0f);

/// Greedy word wrap of `s` into lines no wider than max_w pixels at font size px.
std::vector<std::string> wrap_text(const std::string& s, float px, int max_w);

/// A label box: text on a filled background whose bottom-left corner is at (x, y_bottom); moved
/// inside the image when it would leave it.
void draw_label(image_u8& im, int x, int y_bottom, const std::string& text, float px, const rgb& bg);

/// Line width and font sizes scaled with the image, as Ultralytics' Annotator does.
struct draw_scale {
  int line = 2;        // box line width
  float label_px = 12; // label font size
  float caption_px = 16;
  static draw_scale for_image(int w, int h) {
    const double s = (w + h) / 2.0;
    draw_scale d;
    d.line = std::max(int(std::lround(s * 0.003)), 2);
    d.label_px = float(std::max(12.0, std::round(s * 0.022)));
    d.caption_px = float(std::max(14.0, std::round(s * 0.03)));
    return d;
  }
};

/// A caption banner across the bottom of the image: white text on translucent black, wrapped.
void draw_caption(image_u8& im, const std::string& text, float px);

}  // namespace gyolo::post
