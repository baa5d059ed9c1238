// What the pipeline returns for one image (gyolo/pipeline.hpp): detections with their masks, the
// semantic and panoptic maps, the caption, timings, and optionally the raw tensors. Written to
// files by gyolo/io/result_json.hpp, drawn by gyolo/post/render.hpp.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "gyolo/core/tensor.hpp"
#include "gyolo/io/image.hpp"
#include "gyolo/model/caption_result.hpp"
#include "gyolo/post/coco.hpp"
#include "gyolo/post/masks.hpp"
#include "gyolo/post/panoptic.hpp"

namespace gyolo {

/// One detected instance.
struct detection {
  std::array<float, 4> box{};        // x1, y1, x2, y2 in original image pixels (scale_boxes, clipped)
  std::array<float, 4> box_input{};  // the same in network-input pixels (NMS output)
  float score = 0;
  int class_id = 0;                  // 0..nc-1
  int category_id = 0;               // COCO category id (1..90) for the 80-class model; class_id + 1 for a model of its own taxonomy
  std::string label;
  int anchor = 0;                    // index on the prediction's anchor axis
  std::vector<float> coef;           // mask coefficients (nm)
  post::binary_mask mask;            // at the original resolution (tasks.masks)
  post::binary_mask mask_input;      // at the input resolution (keep_input_masks)
};

struct semantic_result {
  xt::xtensor<std::int16_t, 2> channels;        // [h0, w0] semantic channel index (0..172 for COCO)
  xt::xtensor<std::int16_t, 2> channels_input;  // [H, W] (keep_semantic_input), else empty
  /// Category id of each channel for a model of another taxonomy (gyolo-trained: channel + 1);
  /// empty: COCO's (Appendix B).
  std::vector<int> channel_ids;

  int category_of(int c) const {
    if (channel_ids.empty()) return (c >= 0 && c < coco::num_semantic) ? coco::semantic_ids[std::size_t(c)] : 0;
    return (c >= 0 && c < int(channel_ids.size())) ? channel_ids[std::size_t(c)] : 0;
  }
  /// Category id of each pixel (COCO, Appendix B: things 1..90, stuff 92..182, other 183, 0 = unlabeled).
  xt::xtensor<std::uint8_t, 2> category_map() const {
    xt::xtensor<std::uint8_t, 2> m = xt::xtensor<std::uint8_t, 2>::from_shape(channels.shape());
    auto s = channels.begin();
    for (auto d = m.begin(); d != m.end(); ++d, ++s) *d = std::uint8_t(category_of(*s));
    return m;
  }
  /// The category ids present, ascending.
  std::vector<int> category_ids() const {
    const int n = channel_ids.empty() ? coco::num_semantic : int(channel_ids.size());
    std::vector<char> seen(std::size_t(n), 0);
    for (auto v : channels)
      if (v >= 0 && v < n) seen[std::size_t(v)] = 1;
    std::vector<int> ids;
    for (int c = 0; c < n; ++c)
      if (seen[std::size_t(c)]) ids.push_back(category_of(c));
    std::sort(ids.begin(), ids.end());
    return ids;
  }
};

/// Wall time of each stage, milliseconds. vision and caption are this image's share of its batch.
struct stage_times {
  double preprocess = 0, vision = 0, detect = 0, masks = 0, semantic = 0, panoptic = 0, caption = 0;
  double total() const { return preprocess + vision + detect + masks + semantic + panoptic + caption; }
};

/// Raw tensors of one image (keep_raw).
struct raw_outputs {
  tensor<float> input;     // [1, 3, H, W]
  tensor<float> pred;      // [1, 4 + nc + nm, 1, A]
  tensor<float> proto;     // [1, nm, H/4, W/4]
  tensor<float> semantic;  // [1, 173, H/4, W/4]
};

/// A task that was asked for but could not run on this image, and why (the others still ran).
struct skipped_task {
  std::string task;    // "caption"
  std::string reason;
};

struct image_result {
  int width = 0, height = 0;               // original image
  letterbox_info letterbox;                // how the network input was made
  post::letterbox_geometry geometry;
  std::vector<detection> detections;       // NMS order (descending score)
  std::optional<semantic_result> semantic;
  std::optional<post::panoptic_map> panoptic;
  std::optional<caption_result> caption;
  stage_times timing_ms;
  int batch = 1;                           // images in the forward batch this one ran in
  std::optional<raw_outputs> raw;
  std::vector<skipped_task> skipped;       // asked-for tasks that could not run here, with the reason

  /// All instance masks as one [N, h0, w0] array.
  xt::xtensor<std::uint8_t, 3> masks_dense() const {
    xt::xtensor<std::uint8_t, 3> m =
        xt::zeros<std::uint8_t>({detections.size(), std::size_t(height), std::size_t(width)});
    for (std::size_t i = 0; i < detections.size(); ++i) {
      const auto& b = detections[i].mask;
      for (int r = 0; r < b.rows(); ++r)
        for (int c = 0; c < b.cols(); ++c) m(i, std::size_t(b.y0 + r), std::size_t(b.x0 + c)) = b.data(std::size_t(r), std::size_t(c));
    }
    return m;
  }
};

}  // namespace gyolo
