// Panoptic fusion (spec §5.2: caption/val.py --save-json and hubconf.py's process), at the
// original image resolution:
//   1. Instances, in NMS order (descending score); stop at the first with score < panoptic_conf
//      (val's pan_conf_thres = 0.25). Each instance keeps only the pixels not yet occupied, then
//      occupies them. Category = COCO id of its class.
//   2. Stuff: the per-pixel semantic arg-max; channels 80..172 map to panoptic stuff categories
//      (merged classes -> 184..200; removed, "other" and "unlabeled" -> dropped); channels sharing
//      a category are OR-ed; each category, in panoptic stuff order, keeps its unoccupied pixels.
//   3. Colours (val.py): a segment's colour is color_map[category id]; the k-th further instance
//      of the same category (k = 1, 2, ...) is shifted: channel p = 0 if k is even and id % 3 != 0,
//      else 2 if k is odd and id % 3 != 2, else 1; that channel += ((k / 2) + 1) * 3, mod 255.
//      Every instance above panoptic_conf counts for the shift, even if it ends up empty.
//   4. COCO panoptic PNG: pixel RGB = segment colour, id = R + 256 G + 256^2 B; unassigned
//      pixels are 0 (black). segments_info lists the non-empty segments (instances first, then
//      stuff), with id, category_id, iscrowd 0, area and bbox [x, y, w, h].
// Two segments can get the same colour (upstream does not prevent it); they then share an id.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "gyolo/core/error.hpp"
#include "gyolo/post/colormap_data.hpp"
#include "gyolo/post/coco.hpp"
#include "gyolo/post/masks.hpp"

namespace gyolo::post {

struct panoptic_segment {
  std::uint32_t id = 0;                 // R + 256 G + 256^2 B
  int category_id = 0;                  // COCO panoptic category
  bool is_thing = false;
  int detection = -1;                   // index into the detections (things), -1 for stuff
  std::int64_t area = 0;
  std::array<int, 4> bbox{0, 0, 0, 0};  // x, y, w, h (pixel extents)
  std::array<std::uint8_t, 3> rgb{0, 0, 0};
};

struct panoptic_map {
  xt::xtensor<std::uint32_t, 2> ids;    // [h0, w0] segment id per pixel, 0 = void
  std::vector<panoptic_segment> segments;
};

/// One instance for the fusion: its COCO category id (coco::thing_category_id(class) for the
/// 80-class model), score, and mask at the output resolution.
struct panoptic_instance {
  int category_id = 0;
  float score = 0;
  const binary_mask* mask = nullptr;
};

inline std::uint32_t rgb_to_id(const std::array<std::uint8_t, 3>& c) {
  return std::uint32_t(c[0]) + 256u * c[1] + 65536u * c[2];
}

/// val.py's colour for the k-th instance (k = 0 for the first) of COCO category `id`.
inline std::array<std::uint8_t, 3> instance_color(int id, int k) {
  auto col = coco::color_map[std::size_t(id) & 255u];
  if (k == 0) return col;
  const int pos_num = k % 2;
  const int pos = (pos_num == 0 && id % 3 != 0) ? 0 : ((pos_num == 1 && id % 3 != 2) ? 2 : 1);
  const int inc = ((k / 2) + 1) * 3;
  col[std::size_t(pos)] = std::uint8_t((int(col[std::size_t(pos)]) + inc) % 255);
  return col;
}

/// Fuses instances (NMS order) and a semantic channel map (post/semantic.hpp) of the same size.
/// stuff_category: for a model of another taxonomy than COCO's (a model trained by gyolo on its own
/// classes), the panoptic stuff category of each semantic channel (0: not stuff, e.g. the things'
/// channels); empty: COCO's 173 channels and panoptic stuff categories (Appendix C).
inline panoptic_map panoptic_fuse(const std::vector<panoptic_instance>& inst, const xt::xtensor<std::int16_t, 2>& sem,
                                  double panoptic_conf = 0.25, const std::vector<int>& stuff_category = {}) {
  const int h = int(sem.shape()[0]), w = int(sem.shape()[1]);
  panoptic_map out;
  out.ids = xt::zeros<std::uint32_t>({std::size_t(h), std::size_t(w)});
  std::vector<std::uint8_t> occupied(std::size_t(h) * std::size_t(w), 0);
  std::map<int, int> seen;  // category id -> instances so far
  auto finish = [&](panoptic_segment& s, int x0, int y0, int x1, int y1) {
    if (s.area > 0) {
      s.bbox = {x0, y0, x1 - x0 + 1, y1 - y0 + 1};
      out.segments.push_back(s);
    }
  };
  for (std::size_t i = 0; i < inst.size(); ++i) {
    const auto& in = inst[i];
    if (in.score < float(panoptic_conf)) break;  // val.py: pan_conf_thres > conf (float32 compare)
    GYOLO_CHECK(in.mask != nullptr && in.mask->height == h && in.mask->width == w,
                "panoptic_fuse: instance mask size differs from the semantic map");
    const int cat = in.category_id;
    panoptic_segment s;
    s.category_id = cat;
    s.is_thing = true;
    s.detection = int(i);
    s.rgb = instance_color(cat, seen[cat]++);
    s.id = rgb_to_id(s.rgb);
    const auto& m = *in.mask;
    int x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (int r = 0; r < m.rows(); ++r)
      for (int c = 0; c < m.cols(); ++c) {
        if (!m.data(std::size_t(r), std::size_t(c))) continue;
        const int y = m.y0 + r, x = m.x0 + c;
        auto& o = occupied[std::size_t(y) * std::size_t(w) + std::size_t(x)];
        if (o) continue;
        o = 1;
        out.ids(std::size_t(y), std::size_t(x)) = s.id;
        ++s.area;
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
    finish(s, x0, y0, x1, y1);
  }
  // Stuff: each pixel's arg-max channel names at most one panoptic stuff category.
  const bool coco_taxonomy = stuff_category.empty();
  std::vector<int> stuff_ids;  // the stuff categories, in order
  if (coco_taxonomy) stuff_ids.assign(coco::panoptic_stuff_ids.begin(), coco::panoptic_stuff_ids.end());
  const int nch = coco_taxonomy ? coco::num_semantic : int(stuff_category.size());
  std::vector<int> group(static_cast<std::size_t>(nch), -1);
  for (int c = 0; c < nch; ++c) {
    if (coco_taxonomy) {
      group[std::size_t(c)] = c < coco::num_things ? -1 : coco::panoptic_stuff_index(coco::stuff_to_panoptic[std::size_t(c - coco::num_things)]);
    } else if (stuff_category[std::size_t(c)] > 0) {
      const auto it = std::find(stuff_ids.begin(), stuff_ids.end(), stuff_category[std::size_t(c)]);
      group[std::size_t(c)] = int(it - stuff_ids.begin());
      if (it == stuff_ids.end()) stuff_ids.push_back(stuff_category[std::size_t(c)]);
    }
  }
  const int ns = int(stuff_ids.size());
  std::vector<panoptic_segment> st(static_cast<std::size_t>(ns));
  std::vector<std::array<int, 4>> ext(static_cast<std::size_t>(ns));
  for (int g = 0; g < ns; ++g) {
    const int cat = stuff_ids[std::size_t(g)];
    st[std::size_t(g)].category_id = cat;
    st[std::size_t(g)].rgb = coco::color_map[std::size_t(cat) & 255u];
    st[std::size_t(g)].id = rgb_to_id(st[std::size_t(g)].rgb);
    ext[std::size_t(g)] = {w, h, -1, -1};
  }
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const int c = sem(std::size_t(y), std::size_t(x));
      if (c < 0 || c >= nch) continue;
      const int g = group[std::size_t(c)];
      if (g < 0 || occupied[std::size_t(y) * std::size_t(w) + std::size_t(x)]) continue;
      auto& s = st[std::size_t(g)];
      out.ids(std::size_t(y), std::size_t(x)) = s.id;
      ++s.area;
      auto& e = ext[std::size_t(g)];
      e = {std::min(e[0], x), std::min(e[1], y), std::max(e[2], x), std::max(e[3], y)};
    }
  for (int g = 0; g < ns; ++g) {
    const auto& e = ext[std::size_t(g)];
    finish(st[std::size_t(g)], e[0], e[1], e[2], e[3]);
  }
  return out;
}

}  // namespace gyolo::post
