// Pictures of results (post/render.hpp), compiled once in gyolo's library.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gyolo/post/colormap_data.hpp"
#include "gyolo/post/draw.hpp"
#include "gyolo/post/render.hpp"

namespace gyolo {

image_u8 render(const image_u8& original, const image_result& r, const render_options& o) {
  GYOLO_CHECK(original.width == r.width && original.height == r.height && original.channels == 3,
              "render: the image does not match the result");
  image_u8 im = original;
  const auto sc = post::draw_scale::for_image(im.width, im.height);
  const auto n = r.detections.size();
  if (o.masks)
    for (std::size_t k = n; k-- > 0;) {
      const auto& d = r.detections[k];
      post::draw_mask(im, d.mask, post::palette_color(d.class_id), o.mask_alpha);
    }
  for (std::size_t k = n; k-- > 0;) {
    const auto& d = r.detections[k];
    const auto c = post::palette_color(d.class_id);
    const int x1 = int(std::lround(d.box[0])), y1 = int(std::lround(d.box[1]));
    const int x2 = int(std::lround(d.box[2])), y2 = int(std::lround(d.box[3]));
    if (o.boxes) post::draw_rect(im, x1, y1, std::max(x2, x1 + 1), std::max(y2, y1 + 1), c, sc.line);
    if (o.labels) {
      char buf[32];
      std::snprintf(buf, sizeof buf, " %.2f", double(d.score));
      post::draw_label(im, x1, y1, o.scores ? d.label + buf : d.label, sc.label_px, c);
    }
  }
  if (o.caption && r.caption && !r.caption->text.empty()) post::draw_caption(im, r.caption->text, sc.caption_px);
  return im;
}


image_u8 render_semantic(const image_u8& original, const semantic_result& s, float alpha) {
  GYOLO_CHECK(int(s.channels.shape()[0]) == original.height && int(s.channels.shape()[1]) == original.width && original.channels == 3,
              "render_semantic: the image does not match the semantic map");
  image_u8 pic = original;
  const auto cat = s.category_map();
  for (int y = 0; y < pic.height; ++y)
    for (int x = 0; x < pic.width; ++x) {
      const int c = cat(std::size_t(y), std::size_t(x));
      if (c == 0) continue;
      const auto& col = coco::color_map[std::size_t(c)];
      post::blend_pixel(pic, x, y, {col[0], col[1], col[2]}, alpha);
    }
  return pic;
}

}  // namespace gyolo
