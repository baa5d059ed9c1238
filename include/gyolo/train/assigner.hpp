// Target assignment of the vision loss (Training II): upstream's TaskAlignedAssigner
// (utils/panoptic/tal/assigner.py) with the box helpers it uses (utils/metrics.py bbox_iou with
// CIoU, anchor_generator.py make_anchors / dist2bbox / bbox2dist, ComputeLossLH.preprocess and
// bbox_decode), in float32 with upstream's operation order.
//
// Layouts are upstream's, row-major: scores [B, A, nc], boxes [B, A, 4] xyxy, GT [B, M, ...] padded
// to the most objects of any image (mask_gt marks the real ones). The assigner runs without
// gradients (upstream: @torch.no_grad on detached predictions).
//
// Ties: torch.topk does not define the order of equal metrics. Here equal metrics are taken in
// increasing anchor order. Only anchors with metric exactly 0 can tie in practice (candidates
// outside every box are zeroed, and a CIoU <= 0 clamps to 0), and those are removed again by the
// in-box mask unless an anchor inside a box has a zero metric and fewer than topk candidates of
// that box have a positive one: that case can differ from upstream's (which one of the zero
// anchors torch.topk returns), and tests do not rely on it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "gyolo/core/error.hpp"

namespace gyolo::train {

/// One box, x1 y1 x2 y2.
struct box4 {
  float x1, y1, x2, y2;
};

/// upstream bbox_iou(b1, b2, xywh=False, CIoU=True, eps=1e-7) for one pair (the CIoU value; its
/// alpha term is the no-grad one, a plain number here).
inline float bbox_ciou(const box4& b1, const box4& b2) {
  constexpr float eps = 1e-7f;
  const float w1 = b1.x2 - b1.x1, h1 = b1.y2 - b1.y1 + eps;
  const float w2 = b2.x2 - b2.x1, h2 = b2.y2 - b2.y1 + eps;
  const float iw = std::max(std::min(b1.x2, b2.x2) - std::max(b1.x1, b2.x1), 0.0f);
  const float ih = std::max(std::min(b1.y2, b2.y2) - std::max(b1.y1, b2.y1), 0.0f);
  const float inter = iw * ih;
  const float uni = w1 * h1 + w2 * h2 - inter + eps;
  const float iou = inter / uni;
  const float cw = std::max(b1.x2, b2.x2) - std::min(b1.x1, b2.x1);
  const float ch = std::max(b1.y2, b2.y2) - std::min(b1.y1, b2.y1);
  const float c2 = cw * cw + ch * ch + eps;
  const float dx = b2.x1 + b2.x2 - b1.x1 - b1.x2, dy = b2.y1 + b2.y2 - b1.y1 - b1.y2;
  const float rho2 = (dx * dx + dy * dy) / 4.0f;
  const float da = std::atan(w2 / h2) - std::atan(w1 / h1);
  constexpr double pi = 3.14159265358979323846;
  const float v = float(4.0 / (pi * pi)) * (da * da);
  const float alpha = v / (v - iou + float(1.0 + 1e-7));
  return iou - (rho2 / c2 + v * alpha);
}

/// make_anchors(feats, strides, 0.5): anchor centres in grid units [A, 2] (x, y) and the stride of
/// each anchor [A], levels in order, row-major within a level.
struct anchors {
  std::vector<float> points;   // [A, 2]
  std::vector<float> strides;  // [A]
  int count() const { return int(strides.size()); }
};
inline anchors make_anchors(const std::vector<std::pair<int, int>>& level_hw, const std::vector<float>& strides) {
  GYOLO_CHECK(level_hw.size() == strides.size(), "make_anchors: one stride per level");
  anchors a;
  for (std::size_t l = 0; l < level_hw.size(); ++l) {
    const auto [h, w] = level_hw[l];
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        a.points.push_back(float(x) + 0.5f);
        a.points.push_back(float(y) + 0.5f);
        a.strides.push_back(strides[l]);
      }
  }
  return a;
}

/// ComputeLossLH.bbox_decode: dist [A, 4 * reg] (the DFL logits of one image, anchor-major as
/// upstream's permuted pred_distri) -> xyxy boxes in grid units [A, 4]: softmax over each side's
/// reg bins, expectation over bin indices, dist2bbox(xywh=False).
inline void bbox_decode(const float* dist, const float* anchor_points, int A, int reg, float* out) {
  std::vector<float> e(std::size_t(reg), 0.0f);
  for (int a = 0; a < A; ++a) {
    float d[4];
    for (int s = 0; s < 4; ++s) {
      const float* l = dist + (std::int64_t(a) * 4 + s) * reg;
      float mx = l[0];
      for (int k = 1; k < reg; ++k) mx = std::max(mx, l[k]);
      float sum = 0;
      for (int k = 0; k < reg; ++k) sum += (e[std::size_t(k)] = std::exp(l[k] - mx));
      float acc = 0;
      for (int k = 0; k < reg; ++k) acc += (e[std::size_t(k)] / sum) * float(k);
      d[s] = acc;
    }
    const float ax = anchor_points[2 * a], ay = anchor_points[2 * a + 1];
    out[4 * a + 0] = ax - d[0];
    out[4 * a + 1] = ay - d[1];
    out[4 * a + 2] = ax + d[2];
    out[4 * a + 3] = ay + d[3];
  }
}

/// bbox2dist(anchor, box, reg_max): (anchor - x1y1, x2y2 - anchor) clamped to [0, reg_max - 0.01].
inline void bbox2dist(float ax, float ay, const box4& b, int reg_max, float out[4]) {
  const float hi = float(reg_max - 0.01);
  out[0] = std::clamp(ax - b.x1, 0.0f, hi);
  out[1] = std::clamp(ay - b.y1, 0.0f, hi);
  out[2] = std::clamp(b.x2 - ax, 0.0f, hi);
  out[3] = std::clamp(b.y2 - ay, 0.0f, hi);
}

/// Ground truth of a batch as the assigner takes it (ComputeLossLH.preprocess): per image the
/// objects in input order, padded to M = the most objects of any image.
struct gt_batch {
  int B = 0, M = 0;
  std::vector<float> labels;  // [B, M] class index (padding 0)
  std::vector<float> boxes;   // [B, M, 4] xyxy pixels (padding 0)
  std::vector<float> mask;    // [B, M] 1 for a real object (a box whose coordinates sum > 0)
};

/// preprocess(targets, B, imgsz): targets [n, 6] rows (image, class, x, y, w, h) with xywh
/// normalised to [0, 1]; scaled by (w, h, w, h) of the input and turned into xyxy. An image index
/// outside [0, B) is an error.
inline gt_batch preprocess_targets(const float* targets, int n, int B, int img_h, int img_w) {
  gt_batch g;
  g.B = B;
  std::vector<int> count(std::size_t(std::max(B, 0)), 0);
  for (int i = 0; i < n; ++i) {
    const float fi = targets[6 * i];
    GYOLO_CHECK(std::isfinite(fi) && fi >= 0 && fi < float(B) && fi == std::floor(fi),
                "targets row " + std::to_string(i) + ": image index " + std::to_string(fi) + " outside [0, " + std::to_string(B) + ")");
    ++count[std::size_t(fi)];
  }
  g.M = n ? *std::max_element(count.begin(), count.end()) : 0;
  g.labels.assign(std::size_t(B) * g.M, 0.0f);
  g.boxes.assign(std::size_t(B) * g.M * 4, 0.0f);
  g.mask.assign(std::size_t(B) * g.M, 0.0f);
  std::fill(count.begin(), count.end(), 0);
  const float sw = float(img_w), sh = float(img_h);
  for (int i = 0; i < n; ++i) {
    const float* r = targets + 6 * i;
    const int b = int(r[0]), j = count[std::size_t(b)]++;
    const std::int64_t k = std::int64_t(b) * g.M + j;
    g.labels[std::size_t(k)] = r[1];
    // xywh2xyxy of the scaled box: x - w / 2, y - h / 2, x + w / 2, y + h / 2
    const float x = r[2] * sw, y = r[3] * sh, w = r[4] * sw, h = r[5] * sh;
    float* o = g.boxes.data() + 4 * k;
    o[0] = x - w / 2;
    o[1] = y - h / 2;
    o[2] = x + w / 2;
    o[3] = y + h / 2;
  }
  for (std::int64_t k = 0; k < std::int64_t(B) * g.M; ++k) {
    const float* o = g.boxes.data() + 4 * k;
    g.mask[std::size_t(k)] = (o[0] + o[1] + o[2] + o[3]) > 0.0f ? 1.0f : 0.0f;
  }
  return g;
}

struct tal_config {
  int topk = 10;
  int num_classes = 80;
  float alpha = 0.5f, beta = 6.0f, eps = 1e-9f;
};

/// What TaskAlignedAssigner.forward returns, per image b and anchor a.
struct tal_result {
  int B = 0, A = 0, nc = 0;
  std::vector<int> labels;            // [B, A] class of the assigned object (see upstream: 0-based, meaningful where fg)
  std::vector<float> boxes;           // [B, A, 4] xyxy pixels of the assigned object
  std::vector<float> scores;          // [B, A, nc] one-hot x normalised alignment metric (0 where not fg)
  std::vector<unsigned char> fg;      // [B, A] anchor is a positive
  std::vector<int> gt_idx;            // [B, A] index of the assigned object in its image
  float score_sum() const {           // target_scores.sum() (float32 sum of every element)
    double s = 0;
    for (float v : scores) s += v;
    return float(s);
  }
};

/// TaskAlignedAssigner(topk, nc, alpha, beta).forward: pd_scores [B, A, nc] (sigmoids), pd_boxes
/// [B, A, 4] xyxy pixels, anc [A, 2] anchor centres in pixels, gt from preprocess_targets.
inline tal_result task_aligned_assign(const tal_config& cfg, const float* pd_scores, const float* pd_boxes, const float* anc, int B,
                                      int A, const gt_batch& gt) {
  const int nc = cfg.num_classes, M = gt.M, K = cfg.topk;
  GYOLO_CHECK(gt.B == B, "task_aligned_assign: ground truth for " + std::to_string(gt.B) + " images, predictions for " + std::to_string(B));
  tal_result r;
  r.B = B;
  r.A = A;
  r.nc = nc;
  const std::size_t BA = std::size_t(B) * A;
  if (M == 0) {  // upstream: background labels, zero boxes and scores, nothing positive
    r.labels.assign(BA, nc);
    r.boxes.assign(BA * 4, 0.0f);
    r.scores.assign(BA * std::size_t(nc), 0.0f);
    r.fg.assign(BA, 0);
    r.gt_idx.assign(BA, 0);
    return r;
  }
  GYOLO_CHECK(A >= K, "task_aligned_assign: " + std::to_string(A) + " anchors, fewer than topk = " + std::to_string(K));
  for (std::size_t k = 0; k < std::size_t(B) * M; ++k) {
    const float l = gt.labels[k];
    GYOLO_CHECK(std::isfinite(l) && l >= 0 && l < float(nc) && l == std::floor(l),
                "task_aligned_assign: object " + std::to_string(k % std::size_t(M)) + " of image " + std::to_string(k / std::size_t(M)) +
                    " has class " + std::to_string(l) + ", expected an integer in [0, " + std::to_string(nc) + ")");
  }
  const std::size_t BMA = std::size_t(B) * M * A;
  std::vector<float> overlaps(BMA), metric(BMA), mask_pos(BMA, 0.0f);
  std::vector<unsigned char> in_gts(BMA);
  std::vector<int> order(static_cast<std::size_t>(A));
  std::vector<float> cand(static_cast<std::size_t>(A));
  for (int b = 0; b < B; ++b)
    for (int m = 0; m < M; ++m) {
      const std::size_t bm = std::size_t(b) * M + m;
      const float* g = gt.boxes.data() + 4 * bm;
      const box4 gb{g[0], g[1], g[2], g[3]};
      const int cls = int(gt.labels[bm]);
      float* ov = overlaps.data() + bm * A;
      float* am = metric.data() + bm * A;
      unsigned char* ig = in_gts.data() + bm * A;
      for (int a = 0; a < A; ++a) {
        const float* p = pd_boxes + (std::size_t(b) * A + a) * 4;
        const float o = std::max(bbox_ciou(gb, box4{p[0], p[1], p[2], p[3]}), 0.0f);
        ov[a] = o;
        const float s = pd_scores[(std::size_t(b) * A + a) * nc + cls];
        const float sa = cfg.alpha == 0.5f ? std::sqrt(s) : std::pow(s, cfg.alpha);  // torch: pow(x, 0.5) is sqrt
        am[a] = sa * std::pow(o, cfg.beta);
        // select_candidates_in_gts: min(ax - x1, ay - y1, x2 - ax, y2 - ay) > eps
        const float ax = anc[2 * a], ay = anc[2 * a + 1];
        const float dmin = std::min(std::min(ax - gb.x1, ay - gb.y1), std::min(gb.x2 - ax, gb.y2 - ay));
        ig[a] = dmin > cfg.eps ? 1 : 0;
      }
      if (gt.mask[bm] == 0.0f) continue;  // padding: selects nothing (upstream's duplicate-index rule)
      // select_topk_candidates on metric * in_gts: the K largest, ties in anchor order
      for (int a = 0; a < A; ++a) cand[std::size_t(a)] = am[a] * float(ig[a]);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int i, int j) {
        return cand[std::size_t(i)] > cand[std::size_t(j)] || (cand[std::size_t(i)] == cand[std::size_t(j)] && i < j);
      });
      float* mp = mask_pos.data() + bm * A;
      for (int k = 0; k < K; ++k) {
        const int a = order[std::size_t(k)];
        mp[a] = float(ig[a]);  // mask_topk * mask_in_gts * mask_gt
      }
    }
  // select_highest_overlaps: an anchor claimed by several objects goes to the object of largest
  // CIoU with it (over every object row, as upstream's argmax over overlaps), when any anchor of
  // the batch is claimed twice
  std::vector<float> fgsum(BA, 0.0f);
  bool multi = false;
  for (int b = 0; b < B; ++b)
    for (int a = 0; a < A; ++a) {
      float s = 0;
      for (int m = 0; m < M; ++m) s += mask_pos[(std::size_t(b) * M + m) * A + a];
      fgsum[std::size_t(b) * A + a] = s;
      multi = multi || s > 1.0f;
    }
  if (multi)
    for (int b = 0; b < B; ++b)
      for (int a = 0; a < A; ++a) {
        if (fgsum[std::size_t(b) * A + a] <= 1.0f) continue;
        int best = 0;
        for (int m = 1; m < M; ++m)
          if (overlaps[(std::size_t(b) * M + m) * A + a] > overlaps[(std::size_t(b) * M + best) * A + a]) best = m;
        for (int m = 0; m < M; ++m) mask_pos[(std::size_t(b) * M + m) * A + a] = m == best ? 1.0f : 0.0f;
        fgsum[std::size_t(b) * A + a] = 1.0f;
      }
  r.labels.assign(BA, 0);
  r.boxes.assign(BA * 4, 0.0f);
  r.scores.assign(BA * std::size_t(nc), 0.0f);
  r.fg.assign(BA, 0);
  r.gt_idx.assign(BA, 0);
  // normalisation: per object the largest metric and CIoU over its positives
  std::vector<float> pos_metric(std::size_t(B) * M, 0.0f), pos_overlap(std::size_t(B) * M, 0.0f);
  for (std::size_t bm = 0; bm < std::size_t(B) * M; ++bm)
    for (int a = 0; a < A; ++a) {
      const std::size_t i = bm * A + a;
      pos_metric[bm] = std::max(pos_metric[bm], metric[i] * mask_pos[i]);
      pos_overlap[bm] = std::max(pos_overlap[bm], overlaps[i] * mask_pos[i]);
    }
  for (int b = 0; b < B; ++b)
    for (int a = 0; a < A; ++a) {
      const std::size_t ba = std::size_t(b) * A + a;
      int idx = 0;  // argmax over objects of mask_pos (first maximum)
      for (int m = 1; m < M; ++m)
        if (mask_pos[(std::size_t(b) * M + m) * A + a] > mask_pos[(std::size_t(b) * M + idx) * A + a]) idx = m;
      const std::size_t bm = std::size_t(b) * M + idx;
      r.gt_idx[ba] = idx;
      r.labels[ba] = int(gt.labels[bm]);
      std::copy_n(gt.boxes.data() + 4 * bm, 4, r.boxes.data() + 4 * ba);
      r.fg[ba] = fgsum[ba] > 0.0f ? 1 : 0;
      if (!r.fg[ba]) continue;
      float norm = 0;  // amax over objects of metric * pos_overlap / (pos_metric + eps)
      for (int m = 0; m < M; ++m) {
        const std::size_t bmm = std::size_t(b) * M + m, i = bmm * A + a;
        norm = std::max(norm, (metric[i] * mask_pos[i]) * pos_overlap[bmm] / (pos_metric[bmm] + cfg.eps));
      }
      r.scores[ba * std::size_t(nc) + std::size_t(r.labels[ba])] = norm;
    }
  return r;
}

}  // namespace gyolo::train
