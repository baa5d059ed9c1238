// Deterministic synthetic scenes for training and checking gyolo end to end (`gyolo datagen`):
// flat-coloured shapes (the detection classes) on textured backgrounds (the stuff classes), with
// exact instance polygons, an exclusive semantic label map and a caption that is a deterministic
// function of the scene.
//
//   things (nc = 5):  circle (48-gon), square (rotated up to +-20 degrees), triangle, star (10
//                     vertices), heart (40 vertices); 1..4 per image, 0.12..0.35 of the short side
//                     (clamped to 28..96 px), fully inside the image, bounding boxes grown by 4 px
//                     never intersect.
//   colours:          red, green, blue, yellow, white, black, orange, purple (a caption attribute,
//                     not a class); colours close to the background's are never drawn on it.
//   stuff (7):        sky, grass, water, sand, snow, road, wall; one region, or two stacked (sky above
//                     grass/water/sand/snow/road, wall above road) with a straight or wavy boundary
//                     at 30..70 % of the height. Semantic channel of stuff i = nc + i.
//   captions:         objects grouped by (colour, shape), groups ordered by their leftmost object's
//                     left edge, joined by " and " (the vocabulary has no comma), then where they are:
//                     "a red circle and two blue squares on the grass below the sky".
//
// Pixels: an object covers exactly the pixels whose centres lie inside its polygon (the polygon
// written to the labels file, vertices quantised to the 6 decimals of the normalised form), so
// masks made from the labels match the image. Randomness: splitmix64 with explicit integer ->
// float mapping (no std:: distributions); scene k of seed s depends only on (options, s, k).
// write_dataset lays a dataset out as gyolo's loader and upstream's caption/train.py read it
// (images/, labels/, stuff/, annotations/captions_<split>.json, data.yaml); train image ids are
// 1..N and val ids 1000001.., each its own random stream, so val images are never train images.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "gyolo/core/error.hpp"
#include "gyolo/core/parallel.hpp"
#include "gyolo/core/random.hpp"
#include "gyolo/io/image_types.hpp"
#include "gyolo/post/png.hpp"

namespace gyolo::data {

// ---------------------------------------------------------------------------------------------
// Names

/// Detection classes (labels' class ids and the first semantic channels).
inline constexpr std::array<const char*, 5> thing_names = {"circle", "square", "triangle", "star", "heart"};
/// Plural of each thing, for captions.
inline constexpr std::array<const char*, 5> thing_plurals = {"circles", "squares", "triangles", "stars", "hearts"};
/// Stuff classes: semantic channel of stuff i is thing_names.size() + i.
inline constexpr std::array<const char*, 7> stuff_names = {"sky", "grass", "water", "sand", "snow", "road", "wall"};
/// Object colours (caption attributes).
inline constexpr std::array<const char*, 8> colour_names = {"red", "green", "blue", "yellow", "white", "black", "orange", "purple"};

enum class thing : int { circle = 0, square, triangle, star, heart };
enum class stuff : int { sky = 0, grass, water, sand, snow, road, wall };
enum class colour : int { red = 0, green, blue, yellow, white, black, orange, purple };

inline constexpr int num_things = int(thing_names.size());
inline constexpr int num_stuff = int(stuff_names.size());
inline constexpr int num_colours = int(colour_names.size());

/// Base BGR value of each colour (before the per-object brightness jitter).
inline constexpr std::array<std::array<int, 3>, 8> colour_bgr = {{
    {40, 40, 220},    // red
    {40, 190, 40},    // green
    {220, 90, 30},    // blue
    {30, 220, 240},   // yellow
    {245, 245, 245},  // white
    {25, 25, 25},     // black
    {20, 140, 250},   // orange
    {160, 40, 150},   // purple
}};

/// Colours too close to a stuff's dominant colour to be drawn on it (bit i = colour i).
inline constexpr std::array<unsigned, 7> stuff_forbidden_colours = {
    (1u << int(colour::blue)) | (1u << int(colour::white)),  // sky: blue gradient to pale blue
    (1u << int(colour::green)),                              // grass
    (1u << int(colour::blue)),                               // water
    (1u << int(colour::yellow)),                             // sand (beige)
    (1u << int(colour::white)),                              // snow
    0u,                                                      // road (mid gray: white and black both stand out)
    (1u << int(colour::red)),                                // wall (red-brown bricks)
};

// ---------------------------------------------------------------------------------------------
// Random numbers (identical on every platform: integer arithmetic, explicit float mapping)

/// splitmix64 (core/random.hpp: next, uniform) with the scenes' integer and coin draws.
struct rng : splitmix64 {
  explicit rng(std::uint64_t seed) : splitmix64(seed) {}
  /// Uniform integer in [lo, hi] (hi - lo < 2^32).
  int range(int lo, int hi) {
    const std::uint64_t n = std::uint64_t(std::int64_t(hi) - lo) + 1;
    return lo + int(((next() >> 32) * n) >> 32);
  }
  bool chance(double p) { return uniform() < p; }
};

/// The random stream of scene `index` of `seed`.
inline std::uint64_t scene_seed(std::uint64_t seed, int index) {
  return mix64(mix64(seed + 0x6A09E667F3BCC909ull) ^ (std::uint64_t(std::uint32_t(index)) * 0xD1B54A32D192ED03ull));
}

/// A hash of (key, x, y) uniform in [0, 1): position-addressed noise needs no state.
inline double hash01(std::uint64_t key, int x, int y) {
  const std::uint64_t h = mix64(key ^ (std::uint64_t(std::uint32_t(x)) * 0x9E3779B97F4A7C15ull) ^
                                (std::uint64_t(std::uint32_t(y)) * 0xC2B2AE3D27D4EB4Full));
  return double(h >> 11) * 0x1.0p-53;
}

/// Smooth value noise in [0, 1): random values on a lattice of `cell` px, smoothstep-interpolated.
inline double value_noise(std::uint64_t key, double x, double y, double cell) {
  const double fx = x / cell, fy = y / cell;
  const double flx = std::floor(fx), fly = std::floor(fy);
  const int ix = int(flx), iy = int(fly);
  double tx = fx - flx, ty = fy - fly;
  tx = tx * tx * (3 - 2 * tx);
  ty = ty * ty * (3 - 2 * ty);
  const double a = hash01(key, ix, iy), b = hash01(key, ix + 1, iy);
  const double c = hash01(key, ix, iy + 1), d = hash01(key, ix + 1, iy + 1);
  return (a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty;
}

// ---------------------------------------------------------------------------------------------
// Polygons

struct point {
  double x = 0, y = 0;
};

/// Calls span(y, x0, x1) for each run of pixels x0..x1 (inclusive) of row y whose centres
/// (x + 0.5, y + 0.5) lie inside `poly` (even-odd rule; an edge owns the centres on its lower-y
/// side), clipped to a width x height image. This defines which pixels an object covers.
template <class F>
void for_each_polygon_span(const std::vector<point>& poly, int width, int height, F&& span) {
  const std::size_t n = poly.size();
  if (n < 3) return;
  double ymin = poly[0].y, ymax = poly[0].y;
  for (const auto& p : poly) {
    ymin = std::min(ymin, p.y);
    ymax = std::max(ymax, p.y);
  }
  const int r0 = std::max(0, int(std::floor(ymin - 0.5))), r1 = std::min(height - 1, int(std::ceil(ymax)));
  std::vector<double> xs;
  for (int y = r0; y <= r1; ++y) {
    const double yc = y + 0.5;
    xs.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const point& a = poly[i];
      const point& b = poly[(i + 1) % n];
      if ((a.y <= yc) != (b.y <= yc)) xs.push_back(a.x + (yc - a.y) * (b.x - a.x) / (b.y - a.y));
    }
    std::sort(xs.begin(), xs.end());
    for (std::size_t k = 0; k + 1 < xs.size(); k += 2) {
      // pixels with xs[k] <= x + 0.5 < xs[k + 1]
      const int x0 = std::max(0, int(std::ceil(xs[k] - 0.5)));
      const int x1 = std::min(width - 1, int(std::ceil(xs[k + 1] - 0.5)) - 1);
      if (x0 <= x1) span(y, x0, x1);
    }
  }
}

/// 0/1 mask (height x width, row-major) of the pixels `poly` covers (for_each_polygon_span).
inline std::vector<std::uint8_t> polygon_mask(const std::vector<point>& poly, int width, int height) {
  std::vector<std::uint8_t> m(std::size_t(width) * std::size_t(height), 0);
  for_each_polygon_span(poly, width, height, [&](int y, int x0, int x1) {
    std::fill(m.begin() + std::ptrdiff_t(std::size_t(y) * std::size_t(width) + std::size_t(x0)),
              m.begin() + std::ptrdiff_t(std::size_t(y) * std::size_t(width) + std::size_t(x1) + 1), std::uint8_t(1));
  });
  return m;
}

/// Rounds a pixel coordinate to what the 6-decimal normalised form (coordinate / size) holds.
inline double quantise_coordinate(double v, int size) { return std::round(v / size * 1e6) / 1e6 * size; }

// ---------------------------------------------------------------------------------------------
// Scenes

/// What a scene may contain.
struct scene_options {
  int min_size = 192, max_size = 320;           // width and height, each uniform in [min_size, max_size]
  int min_objects = 1, max_objects = 4;         // objects per image (fewer when placements fail)
  double min_rel_size = 0.12, max_rel_size = 0.35;  // object extent relative to the short side
  int min_object_px = 28, max_object_px = 96;   // ...clamped to this range
  int box_margin = 4;                           // px by which bounding boxes grow before the overlap test
  int captions = 1;                             // captions per image: the canonical one, then paraphrases (<= 5)
  double two_region_probability = 0.6;          // backgrounds of two stacked stuff regions
  double repeat_probability = 0.3;              // an object repeats an earlier one's colour and shape
};

struct scene_object {
  int cls = 0;                          // thing class
  int colour = 0;                       // index into colour_names
  std::array<std::uint8_t, 3> fill{};   // BGR fill (base colour with this object's brightness jitter)
  std::vector<point> polygon;           // pixel coordinates (quantised as the labels file holds them)
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // bounding box of the polygon, pixels
};

/// A stuff region of the background and its polygon (pixel coordinates).
struct stuff_region {
  int stuff = 0;  // index into stuff_names
  std::vector<point> polygon;
};

struct scene {
  image_u8 image;                      // BGR
  std::vector<scene_object> objects;
  std::vector<stuff_region> regions;   // 1, or 2 (upper first)
  std::vector<std::uint8_t> semantic;  // height x width: thing class at object pixels, else num_things + stuff
  std::vector<std::string> captions;   // canonical first
};

namespace scene_detail {

inline std::uint8_t clamp_u8(double v) { return std::uint8_t(std::clamp(int(std::floor(v + 0.5)), 0, 255)); }

/// Texture parameters of one stuff region (drawn from the scene's stream).
struct texture {
  int kind = 0;
  std::uint64_t key = 0;
  double top = 0, bottom = 0;  // vertical extent of the region (sky gradient, road lane)
  double a = 0, b = 0, c = 0;  // per-kind parameters
};

inline texture make_texture(rng& r, int kind, double top, double bottom) {
  texture t;
  t.kind = kind;
  t.key = r.next();
  t.top = top;
  t.bottom = bottom;
  switch (stuff(kind)) {
    case stuff::water: t.a = r.uniform(7, 13); t.b = r.uniform(0, 6.2831853); t.c = r.uniform(40, 90); break;  // period, phase, wave length
    case stuff::road: t.a = r.uniform(0.4, 0.6); t.b = r.uniform(0, 40); break;  // lane position, dash phase
    case stuff::wall: t.a = r.range(26, 36); t.b = r.range(11, 15); t.c = r.range(0, 30); break;  // brick w, h, offset
    default: t.a = r.uniform(0.9, 1.1); break;  // brightness
  }
  return t;
}

/// BGR of texture `t` at pixel (x, y). Textures are smooth value noise, stripes and bricks: no
/// per-pixel white noise, which would make the PNGs large and slow to encode.
inline std::array<std::uint8_t, 3> texture_pixel(const texture& t, int x, int y) {
  switch (stuff(t.kind)) {
    case stuff::sky: {
      const double h = std::max(1.0, t.bottom - t.top);
      const double v = std::clamp((y + 0.5 - t.top) / h, 0.0, 1.0);
      const double n = 6 * (value_noise(t.key + 1, x, y, 40) - 0.5);
      return {clamp_u8((205 + 40 * v) * t.a + n), clamp_u8((140 + 75 * v) * t.a + n), clamp_u8((70 + 100 * v) * t.a + n)};
    }
    case stuff::grass: {
      const double n = value_noise(t.key + 1, x, y, 24) * 0.6 + value_noise(t.key + 2, x, y, 6) * 0.4;
      const double blade = value_noise(t.key + 3, x, 0.2 * y, 4) - 0.5;  // vertical streaks
      const double g = (110 + 80 * n + 30 * blade) * t.a;
      return {clamp_u8(35 + 20 * n), clamp_u8(g), clamp_u8(45 + 35 * n + 10 * blade)};
    }
    case stuff::water: {
      const double wave = std::sin(6.2831853 * (y + 3.0 * std::sin(6.2831853 * x / t.c + t.b)) / t.a);
      const double n = value_noise(t.key + 1, x, y, 20);
      const double s = 0.82 + 0.12 * wave + 0.1 * n;
      return {clamp_u8(175 * s), clamp_u8(110 * s), clamp_u8(35 * s)};
    }
    case stuff::sand: {
      const double n = value_noise(t.key + 1, x, y, 16), grain = value_noise(t.key + 2, x, y, 4) - 0.5;
      const double s = (0.9 + 0.12 * n + 0.12 * grain) * t.a;
      return {clamp_u8(135 * s), clamp_u8(188 * s), clamp_u8(222 * s)};
    }
    case stuff::snow: {
      const double n = value_noise(t.key + 1, x, y, 28), grain = value_noise(t.key + 2, x, y, 4) - 0.5;
      const double v = 234 + 14 * n + 8 * grain;
      return {clamp_u8(v + 6), clamp_u8(v), clamp_u8(v - 4)};
    }
    case stuff::road: {
      const double n = value_noise(t.key + 1, x, y, 12), grain = value_noise(t.key + 2, x, y, 4) - 0.5;
      double v = 92 + 22 * n + 14 * grain;
      const double lane = t.top + (t.bottom - t.top) * t.a;
      const bool dash = std::fmod(x + t.b, 36.0) < 22.0;
      if (dash && std::fabs(y + 0.5 - lane) < 2.0) v = 228;
      return {clamp_u8(v), clamp_u8(v), clamp_u8(v + 2)};
    }
    case stuff::wall: {
      const int bw = int(t.a), bh = int(t.b), off = int(t.c);
      const int row = (y + off) / bh;
      const int xs = x + off + (row % 2) * (bw / 2);
      const int col = xs / bw;
      if ((y + off) % bh < 2 || xs % bw < 2) return {185, 185, 185};
      const double j = 0.85 + 0.3 * hash01(t.key + 1, col, row) + 0.1 * (value_noise(t.key + 2, x, y, 5) - 0.5);
      return {clamp_u8(55 * j), clamp_u8(75 * j), clamp_u8(155 * j)};
    }
  }
  return {0, 0, 0};
}

/// Unit-size outline of a thing (before rotation and scaling).
inline std::vector<point> unit_shape(int cls) {
  std::vector<point> p;
  constexpr double pi = 3.14159265358979323846;
  switch (thing(cls)) {
    case thing::circle:
      for (int i = 0; i < 48; ++i) p.push_back({std::cos(2 * pi * i / 48), std::sin(2 * pi * i / 48)});
      break;
    case thing::square:
      p = {{-1, -1}, {1, -1}, {1, 1}, {-1, 1}};
      break;
    case thing::triangle:
      for (int i = 0; i < 3; ++i) p.push_back({std::sin(2 * pi * i / 3), -std::cos(2 * pi * i / 3)});
      break;
    case thing::star:
      for (int i = 0; i < 10; ++i) {
        const double r = i % 2 ? 0.45 : 1.0;
        p.push_back({r * std::sin(pi * i / 5), -r * std::cos(pi * i / 5)});
      }
      break;
    case thing::heart:
      for (int i = 0; i < 40; ++i) {
        const double t = 2 * pi * i / 40, s = std::sin(t);
        p.push_back({16 * s * s * s, -(13 * std::cos(t) - 5 * std::cos(2 * t) - 2 * std::cos(3 * t) - std::cos(4 * t))});
      }
      break;
  }
  return p;
}

/// Maximum rotation (radians) of a thing.
inline double max_rotation(int cls) {
  constexpr double deg = 3.14159265358979323846 / 180;
  switch (thing(cls)) {
    case thing::circle: return 0;
    case thing::square: return 20 * deg;
    case thing::triangle: return 15 * deg;
    case thing::star: return 15 * deg;
    case thing::heart: return 10 * deg;
  }
  return 0;
}

/// The outline rotated by `angle`, scaled so that its bounding box's larger side is `extent`
/// and centred at (cx, cy); vertices quantised to the labels' 6 decimals.
inline std::vector<point> place_shape(const std::vector<point>& unit, double angle, double extent, double cx, double cy, int width,
                                      int height) {
  const double c = std::cos(angle), s = std::sin(angle);
  std::vector<point> p;
  double x0 = 1e30, y0 = 1e30, x1 = -1e30, y1 = -1e30;
  for (const auto& u : unit) {
    const point q{c * u.x - s * u.y, s * u.x + c * u.y};
    x0 = std::min(x0, q.x);
    x1 = std::max(x1, q.x);
    y0 = std::min(y0, q.y);
    y1 = std::max(y1, q.y);
    p.push_back(q);
  }
  const double k = extent / std::max(x1 - x0, y1 - y0), mx = (x0 + x1) / 2, my = (y0 + y1) / 2;
  for (auto& q : p) q = {quantise_coordinate(cx + k * (q.x - mx), width), quantise_coordinate(cy + k * (q.y - my), height)};
  return p;
}

inline void bounds(scene_object& o) {
  o.x0 = o.y0 = 1e30;
  o.x1 = o.y1 = -1e30;
  for (const auto& q : o.polygon) {
    o.x0 = std::min(o.x0, q.x);
    o.x1 = std::max(o.x1, q.x);
    o.y0 = std::min(o.y0, q.y);
    o.y1 = std::max(o.y1, q.y);
  }
}

/// Number word for captions ("a"/"an" for one).
inline std::string count_phrase(int n, const std::string& colour_word) {
  static const char* words[] = {"no", "a", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"};
  if (n == 1) return colour_word[0] == 'o' ? "an" : "a";
  return n < 11 ? words[n] : "many";
}

struct caption_group {
  int cls = 0, colour = 0, count = 0;
  double left = 0;
};

inline std::string group_phrase(const caption_group& g) {
  const std::string c = colour_names[std::size_t(g.colour)];
  return count_phrase(g.count, c) + " " + c + " " + (g.count == 1 ? thing_names : thing_plurals)[std::size_t(g.cls)];
}

inline std::string join_groups(const std::vector<caption_group>& gs) {
  std::string s;
  for (std::size_t i = 0; i < gs.size(); ++i) s += (i ? " and " : "") + group_phrase(gs[i]);
  return s;
}

}  // namespace scene_detail

/// Where the objects are: " on the grass", " in the sky", " on the road below the wall".
inline std::string place_phrase(const std::vector<stuff_region>& regions) {
  if (regions.empty()) return "";
  const auto& lower = regions.back();
  std::string s = lower.stuff == int(stuff::sky) ? " in the " : " on the ";
  s += stuff_names[std::size_t(lower.stuff)];
  if (regions.size() > 1) s += std::string(" below the ") + stuff_names[std::size_t(regions.front().stuff)];
  return s;
}

/// Captions of a scene: [0] canonical (groups by (colour, shape) ordered by their leftmost
/// object's left edge), then `count` - 1 (<= 4) distinct paraphrases. Every word is in upstream's vocabulary.
inline std::vector<std::string> scene_captions(const std::vector<scene_object>& objects, const std::vector<stuff_region>& regions,
                                               int count) {
  using scene_detail::caption_group;
  std::vector<caption_group> gs;
  for (const auto& o : objects) {
    auto it = std::find_if(gs.begin(), gs.end(), [&](const caption_group& g) { return g.cls == o.cls && g.colour == o.colour; });
    if (it == gs.end()) gs.push_back({o.cls, o.colour, 1, o.x0});
    else {
      ++it->count;
      it->left = std::min(it->left, o.x0);
    }
  }
  std::stable_sort(gs.begin(), gs.end(), [](const caption_group& a, const caption_group& b) {
    if (a.left != b.left) return a.left < b.left;
    return a.cls * num_colours + a.colour < b.cls * num_colours + b.colour;
  });
  const std::string objs = scene_detail::join_groups(gs), where = place_phrase(regions);
  std::vector<std::string> out;
  out.push_back(objs + where);
  int total = 0;
  for (const auto& g : gs) total += g.count;
  auto rev = gs;
  std::reverse(rev.begin(), rev.end());
  const std::string robjs = scene_detail::join_groups(rev);
  const std::vector<std::string> para = {
      std::string(total == 1 ? "there is " : "there are ") + objs + where,
      robjs + where,
      "a picture of " + objs + where,
      "an image of " + robjs + where,
      "a photo of " + objs + where,
  };
  for (const auto& p : para) {
    if (int(out.size()) >= count) break;
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  return out;
}

/// Scene `index` of `seed`: a pure function of its arguments.
inline scene make_scene(const scene_options& opt, std::uint64_t seed, int index) {
  using namespace scene_detail;
  GYOLO_CHECK(opt.min_size >= 32 && opt.max_size >= opt.min_size && opt.max_size <= 8192,
              "make_scene: image sizes must satisfy 32 <= min_size <= max_size <= 8192, got " + std::to_string(opt.min_size) +
                  ".." + std::to_string(opt.max_size));
  GYOLO_CHECK(opt.min_objects >= 1 && opt.max_objects >= opt.min_objects && opt.max_objects <= 10,
              "make_scene: objects per image must satisfy 1 <= min <= max <= 10");
  GYOLO_CHECK(opt.captions >= 1 && opt.captions <= 5, "make_scene: captions per image must be in [1, 5], got " + std::to_string(opt.captions));
  GYOLO_CHECK(opt.min_rel_size > 0 && opt.max_rel_size >= opt.min_rel_size && opt.max_rel_size <= 0.9 && opt.min_object_px >= 4 &&
                  opt.max_object_px >= opt.min_object_px && opt.min_object_px + 4 <= opt.min_size,
              "make_scene: bad object size range (need 0 < min_rel_size <= max_rel_size <= 0.9, 4 <= min_object_px <= "
              "max_object_px, min_object_px + 4 <= min_size)");
  rng r(scene_seed(seed, index));
  scene sc;
  const int W = r.range(opt.min_size, opt.max_size), H = r.range(opt.min_size, opt.max_size);
  sc.image = image_u8(H, W, 3);
  sc.semantic.assign(std::size_t(W) * std::size_t(H), 0);

  // background: one region, or two stacked (upper, lower) with a straight or wavy boundary
  const double Wd = W, Hd = H;
  std::vector<texture> tex;
  std::vector<std::uint8_t> lower_mask;
  if (r.chance(opt.two_region_probability)) {
    int upper = int(stuff::sky), lower;
    if (r.chance(0.15)) {
      upper = int(stuff::wall);
      lower = int(stuff::road);
    } else {
      static constexpr stuff lowers[] = {stuff::grass, stuff::water, stuff::sand, stuff::snow, stuff::road};
      lower = int(lowers[r.range(0, 4)]);
    }
    const double y0 = Hd * r.uniform(0.3, 0.7);
    std::vector<point> edge;
    if (r.chance(0.6)) {  // wavy
      const double amp = r.uniform(2, std::max(2.5, 0.04 * Hd)), period = Wd * r.uniform(0.5, 1.5), phase = r.uniform(0, 6.2831853);
      for (int x = 0;; x += 8) {
        const double xx = std::min(double(x), Wd);
        edge.push_back({xx, quantise_coordinate(y0 + amp * std::sin(6.2831853 * xx / period + phase), H)});
        if (xx >= Wd) break;
      }
    } else {
      edge = {{0, quantise_coordinate(y0, H)}, {Wd, quantise_coordinate(y0, H)}};
    }
    double emin = Hd, emax = 0;
    for (const auto& e : edge) {
      emin = std::min(emin, e.y);
      emax = std::max(emax, e.y);
    }
    stuff_region up{upper, {{0, 0}, {Wd, 0}}}, lo{lower, {}};
    for (auto it = edge.rbegin(); it != edge.rend(); ++it) up.polygon.push_back(*it);
    lo.polygon = edge;
    lo.polygon.push_back({Wd, Hd});
    lo.polygon.push_back({0, Hd});
    tex.push_back(make_texture(r, upper, 0, emax));
    tex.push_back(make_texture(r, lower, emin, Hd));
    lower_mask = polygon_mask(lo.polygon, W, H);
    sc.regions = {up, lo};
  } else {
    const int k = r.range(0, num_stuff - 1);
    sc.regions = {stuff_region{k, {{0, 0}, {Wd, 0}, {Wd, Hd}, {0, Hd}}}};
    tex.push_back(make_texture(r, k, 0, Hd));
  }
  for (int y = 0; y < H; ++y) {
    std::uint8_t* row = sc.image.row(y);
    for (int x = 0; x < W; ++x) {
      const std::size_t i = std::size_t(y) * std::size_t(W) + std::size_t(x);
      const std::size_t reg = lower_mask.empty() ? 0 : lower_mask[i];
      const auto c = texture_pixel(tex[reg], x, y);
      row[3 * x] = c[0];
      row[3 * x + 1] = c[1];
      row[3 * x + 2] = c[2];
      sc.semantic[i] = std::uint8_t(num_things + sc.regions[reg].stuff);
    }
  }

  // colours that stand out from every region
  unsigned forbidden = 0;
  for (const auto& g : sc.regions) forbidden |= stuff_forbidden_colours[std::size_t(g.stuff)];
  std::vector<int> allowed;
  for (int c = 0; c < num_colours; ++c)
    if (!(forbidden & (1u << c))) allowed.push_back(c);

  // objects: rejection-sampled placements whose grown boxes do not intersect
  const int n = r.range(opt.min_objects, opt.max_objects);
  const double short_side = std::min(Wd, Hd);
  for (int k = 0; k < n; ++k) {
    int cls, col;
    if (!sc.objects.empty() && r.chance(opt.repeat_probability)) {
      const auto& prev = sc.objects[std::size_t(r.range(0, int(sc.objects.size()) - 1))];
      cls = prev.cls;
      col = prev.colour;
    } else {
      cls = r.range(0, num_things - 1);
      col = allowed[std::size_t(r.range(0, int(allowed.size()) - 1))];
    }
    const auto unit = unit_shape(cls);
    const double jitter = r.uniform(0.9, 1.1);
    for (int attempt = 0; attempt < 60; ++attempt) {
      const double extent = std::clamp(short_side * r.uniform(opt.min_rel_size, opt.max_rel_size), double(opt.min_object_px),
                                       std::min(double(opt.max_object_px), short_side - 4));
      const double angle = max_rotation(cls) * r.uniform(-1, 1);
      const double half = extent / 2 + 1;
      const double cx = r.uniform(half, Wd - half), cy = r.uniform(half, Hd - half);
      scene_object o;
      o.cls = cls;
      o.colour = col;
      o.polygon = place_shape(unit, angle, extent, cx, cy, W, H);
      bounds(o);
      if (o.x0 < 0.5 || o.y0 < 0.5 || o.x1 > Wd - 0.5 || o.y1 > Hd - 0.5) continue;
      const double m = opt.box_margin;
      bool clash = false;
      for (const auto& p : sc.objects)
        if (o.x0 - m < p.x1 + m && p.x0 - m < o.x1 + m && o.y0 - m < p.y1 + m && p.y0 - m < o.y1 + m) clash = true;
      if (clash) continue;
      for (int ch = 0; ch < 3; ++ch) o.fill[std::size_t(ch)] = clamp_u8(colour_bgr[std::size_t(col)][std::size_t(ch)] * jitter);
      sc.objects.push_back(std::move(o));
      break;
    }
  }

  // paint objects: flat fill with slight per-pixel noise, exactly the pixels their polygons cover
  const std::uint64_t noise_key = r.next();
  for (const auto& o : sc.objects) {
    for_each_polygon_span(o.polygon, W, H, [&](int y, int x0, int x1) {
      std::uint8_t* row = sc.image.row(y);
      for (int x = x0; x <= x1; ++x) {
        const double d = 3 * (std::floor(hash01(noise_key, x, y) * 3) - 1);  // -3, 0 or +3
        for (int ch = 0; ch < 3; ++ch) row[3 * x + ch] = clamp_u8(o.fill[std::size_t(ch)] + d);
        sc.semantic[std::size_t(y) * std::size_t(W) + std::size_t(x)] = std::uint8_t(o.cls);
      }
    });
  }
  sc.captions = scene_captions(sc.objects, sc.regions, opt.captions);
  return sc;
}

// ---------------------------------------------------------------------------------------------
// Files

/// Normalised coordinates "x1 y1 x2 y2 ..." (6 decimals) of a pixel polygon.
inline std::string polygon_text(const std::vector<point>& poly, int width, int height) {
  std::string s;
  char buf[64];
  for (const auto& p : poly) {
    std::snprintf(buf, sizeof buf, " %.6f %.6f", std::clamp(p.x / width, 0.0, 1.0), std::clamp(p.y / height, 0.0, 1.0));
    s += buf;
  }
  return s;
}

/// `labels/<split>/<id>.txt`: one "cls x1 y1 ..." line per object.
inline std::string labels_text(const scene& sc) {
  std::string s;
  for (const auto& o : sc.objects) s += std::to_string(o.cls) + polygon_text(o.polygon, sc.image.width, sc.image.height) + "\n";
  return s;
}

/// `stuff/<split>/<id>.txt`: one "channel x1 y1 ..." line per stuff region (channel num_things +
/// stuff), then one per object (its class). The regions' polygons overlap the objects'.
inline std::string stuff_polygons_text(const scene& sc) {
  std::string s;
  for (const auto& g : sc.regions)
    s += std::to_string(num_things + g.stuff) + polygon_text(g.polygon, sc.image.width, sc.image.height) + "\n";
  return s + labels_text(sc);
}

/// The semantic label map as an 8-bit gray PNG without row filters (`stuff/<split>/<id>.png`).
inline std::vector<std::uint8_t> semantic_png(const scene& sc) {
  return post::encode_png(sc.semantic.data(), sc.image.width, sc.image.height, 1, post::png_filter::none);
}

enum class semantic_format { png, polygons };

struct dataset_gen_options {
  std::string out;                // dataset root (created; an earlier datagen dataset there is replaced)
  int train = 1000, val = 200;    // images per split
  std::uint64_t seed = 0;
  scene_options scene;
  semantic_format semantic = semantic_format::png;
  int threads = 1;                // parallel scene generation and file writing
};

/// Image id of the i-th image (0-based) of a split: train 1.., val 1000001.. .
inline int image_id(bool val, int i) { return (val ? 1000001 : 1) + i; }

inline constexpr const char* datagen_marker = "# written by gyolo datagen";

/// data.yaml of a generated dataset.
inline std::string data_yaml(const dataset_gen_options& o) {
  auto list = [](const auto& names) {
    std::string s = "[";
    for (std::size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + std::string(names[i]);
    return s + "]";
  };
  std::string s = std::string(datagen_marker) + ": seed " + std::to_string(o.seed) + ", " + std::to_string(o.train) + " train and " +
                  std::to_string(o.val) + " val images\n";
  s += "path: .\ntrain: images/train\nval: images/val\n";
  s += "nc: " + std::to_string(num_things) + "\n";
  s += "names: " + list(thing_names) + "\n";
  s += "stuff_names: " + list(stuff_names) + "\n";
  return s;
}

/// Writes a dataset: `images/<split>/<id>.png`, `labels/<split>/<id>.txt`, `stuff/<split>/<id>.png`
/// (or .txt polygons), `annotations/captions_<split>.json`, data.yaml, for split train and val.
/// Refuses a non-empty `out` that is not a dataset written by datagen; replaces the split folders
/// (and upstream's *.cache files) of one that is.
inline void write_dataset(const dataset_gen_options& o) {
  namespace fs = std::filesystem;
  GYOLO_CHECK(!o.out.empty(), "datagen: no output folder");
  GYOLO_CHECK(o.train >= 0 && o.train <= 1000000 && o.val >= 0 && o.val <= 1000000,
              "datagen: images per split must be in [0, 1000000]");
  const fs::path root(o.out);
  std::error_code ec;
  if (fs::exists(root, ec) && !fs::is_empty(root, ec)) {
    std::ifstream y(root / "data.yaml");
    std::string first;
    std::getline(y, first);
    if (first.rfind(datagen_marker, 0) != 0)
      throw error("datagen: '" + root.string() + "' is not empty and holds no data.yaml written by gyolo datagen; refusing to write into it");
    for (const char* top : {"images", "labels", "stuff"})
      for (const char* split : {"train", "val"}) fs::remove_all(root / top / split, ec);
    // label and caption caches that upstream's loaders left next to the old files
    for (const fs::path& dir : {root, root / "images", root / "labels", root / "stuff"})
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_regular_file(ec) && it->path().extension() == ".cache") fs::remove(it->path(), ec);
    ec.clear();
  }
  for (const char* top : {"images", "labels", "stuff"})
    for (const char* split : {"train", "val"}) {
      fs::create_directories(root / top / split, ec);
      if (ec) throw error("datagen: cannot create '" + (root / top / split).string() + "': " + ec.message());
    }
  fs::create_directories(root / "annotations", ec);
  if (ec) throw error("datagen: cannot create '" + (root / "annotations").string() + "': " + ec.message());

  // (the PNGs without row filters: smaller and faster for these flat and smooth images)
  for (const bool val : {false, true}) {
    const std::string split = val ? "val" : "train";
    const int n = val ? o.val : o.train;
    std::vector<std::array<int, 2>> sizes(static_cast<std::size_t>(n));
    std::vector<std::vector<std::string>> caps(static_cast<std::size_t>(n));
    std::exception_ptr failure;
    std::mutex mu;
    par::for_dynamic(o.threads, n, [&](int i) {
      try {
        const int id = image_id(val, i);
        const scene sc = make_scene(o.scene, o.seed, id);
        const std::string stem = std::to_string(id);
        post::write_file_atomic(root / "images" / split / (stem + ".png"),
                                post::encode_png(post::bgr_to_rgb(sc.image).data(), sc.image.width, sc.image.height, 3,
                                                 post::png_filter::none));
        post::write_file_atomic(root / "labels" / split / (stem + ".txt"), labels_text(sc));
        if (o.semantic == semantic_format::png) post::write_file_atomic(root / "stuff" / split / (stem + ".png"), semantic_png(sc));
        else post::write_file_atomic(root / "stuff" / split / (stem + ".txt"), stuff_polygons_text(sc));
        sizes[std::size_t(i)] = {sc.image.width, sc.image.height};
        caps[std::size_t(i)] = sc.captions;
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!failure) failure = std::current_exception();
      }
    });
    if (failure) std::rethrow_exception(failure);
    nlohmann::json j;
    j["images"] = nlohmann::json::array();
    j["annotations"] = nlohmann::json::array();
    long long ann = 1;
    for (int i = 0; i < n; ++i) {
      const int id = image_id(val, i);
      j["images"].push_back({{"id", id}, {"file_name", std::to_string(id) + ".png"}, {"width", sizes[std::size_t(i)][0]},
                             {"height", sizes[std::size_t(i)][1]}});
      for (const auto& c : caps[std::size_t(i)]) j["annotations"].push_back({{"id", ann++}, {"image_id", id}, {"caption", c}});
    }
    post::write_file_atomic(root / "annotations" / ("captions_" + split + ".json"), j.dump());
  }
  post::write_file_atomic(root / "data.yaml", data_yaml(o));
}

}  // namespace gyolo::data
