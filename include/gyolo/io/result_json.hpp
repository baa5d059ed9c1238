// Results as files: COCO RLE masks, COCO detection results, COCO panoptic segments_info and the
// panoptic PNG's RGB bytes (docs/outputs.md).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "gyolo/post/panoptic.hpp"
#include "gyolo/post/rle.hpp"
#include "gyolo/result.hpp"

namespace gyolo {

/// v rounded to 1/scale (round half to even, as Python's round): 3 decimals for boxes, 6 for scores.
inline double round_to(double v, double scale) { return std::nearbyint(v * scale) / scale; }

/// COCO RLE {"size": [h, w], "counts": "..."} of a mask (pycocotools' compressed format).
inline nlohmann::json rle_json(const post::binary_mask& m) {
  return {{"size", {m.height, m.width}}, {"counts", post::rle_string(post::rle_encode(m))}};
}

/// One detection as gyolo predict writes it (docs/outputs.md): box (original pixels, 3 decimals),
/// score (6 decimals), class_id, category_id, label, and with_mask: the mask as COCO RLE.
inline nlohmann::json detection_json(const detection& d, bool with_mask) {
  nlohmann::json b{{"box", {round_to(d.box[0], 1e3), round_to(d.box[1], 1e3), round_to(d.box[2], 1e3), round_to(d.box[3], 1e3)}},
                   {"score", round_to(d.score, 1e6)},
                   {"class_id", d.class_id},
                   {"category_id", d.category_id},
                   {"label", d.label}};
  if (with_mask) b["mask"] = rle_json(d.mask);
  return b;
}

/// COCO detection results of one image (caption/val.py save_one_json): bbox [x, y, w, h] in
/// original pixels (3 decimals), COCO category ids, score (5 decimals), RLE segmentation.
inline nlohmann::json coco_results(const image_result& r, const nlohmann::json& image_id) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& d : r.detections) {
    nlohmann::json e{{"image_id", image_id},
                     {"category_id", d.category_id},
                     {"bbox",
                      {round_to(d.box[0], 1e3), round_to(d.box[1], 1e3), round_to(double(d.box[2]) - d.box[0], 1e3),
                       round_to(double(d.box[3]) - d.box[1], 1e3)}},
                     {"score", round_to(d.score, 1e5)}};
    if (d.mask.height > 0) e["segmentation"] = rle_json(d.mask);
    a.push_back(std::move(e));
  }
  return a;
}

/// COCO panoptic segments_info of one image.
inline nlohmann::json segments_info_json(const post::panoptic_map& p) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& s : p.segments)
    a.push_back({{"id", s.id},
                 {"category_id", s.category_id},
                 {"iscrowd", 0},
                 {"isthing", s.is_thing},
                 {"area", s.area},
                 {"bbox", {s.bbox[0], s.bbox[1], s.bbox[2], s.bbox[3]}}});
  return a;
}

/// The panoptic map as a COCO panoptic RGB image (id = R + 256 G + 256^2 B), row-major RGB bytes.
inline std::vector<std::uint8_t> panoptic_rgb(const post::panoptic_map& p) {
  std::vector<std::uint8_t> v(p.ids.size() * 3);
  std::size_t i = 0;
  for (auto id : p.ids) {
    v[i++] = std::uint8_t(id & 255u);
    v[i++] = std::uint8_t((id >> 8) & 255u);
    v[i++] = std::uint8_t((id >> 16) & 255u);
  }
  return v;
}

}  // namespace gyolo
