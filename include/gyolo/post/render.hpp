// Pictures of results: the image with instance masks, boxes, labels and the caption (render), and
// the semantic map's category colours over the image (render_semantic); compiled once in gyolo's
// library (src/render.cpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gyolo/core/error.hpp"
#include "gyolo/io/image.hpp"
#include "gyolo/result.hpp"

namespace gyolo {

struct render_options {
  bool masks = true, boxes = true, labels = true, scores = true, caption = true;
  float mask_alpha = 0.4f;
};

/// The original image with translucent instance masks, boxes, "label score" tags and the caption;
/// sizes scale with the image. Detections are drawn lowest score first, so the best is on top.
image_u8 render(const image_u8& original, const image_result& r, const render_options& o = {});

/// The semantic map as a picture: each pixel's category colour (COCO's panoptic colour table)
/// blended over the image with weight `alpha`; unlabeled pixels (category 0) are left as they are.
image_u8 render_semantic(const image_u8& original, const semantic_result& s, float alpha = 0.6f);

}  // namespace gyolo
