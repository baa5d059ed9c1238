// Decoding the one-to-one head's prediction [4 + nc + nm, A] into detections.
//
//   non_max_suppression   upstream utils/general.py::non_max_suppression (spec §5.1 "NMS"), with
//                         torchvision.ops.nms as its CPU kernel does it. Bit-for-bit decisions:
//                           * candidates: best class score > conf (float compare, strict);
//                             multi_label: every (anchor, class) pair with score > conf, in
//                             row-major (anchor, class) order like torch.nonzero;
//                           * optional class filter; boxes xywh -> xyxy in float;
//                           * sort by score descending with torch 1.13's CPU sort: std::sort
//                             (introsort, NOT stable) on (score, index) pairs, so ties come out in
//                             the same order as in PyTorch; keep the first max_nms;
//                           * class-aware: boxes offset by class * 7680 in float (rounding included);
//                           * torchvision nms: sorts the scores again (same unstable sort), greedy,
//                             suppress when IoU (float) > iou (compared in double), areas
//                             (x2 - x1)(y2 - y1) in float; keep the first max_det.
//                         upstream's wall-clock limit (2.5 s + 0.05 s per image) is not reproduced:
//                         gyolo always finishes the NMS.
//   e2e_topk              the NMS-free path of the one-to-one head (YOLOv10's post-processing, not
//                         an upstream GYOLO code path): top max_det anchors by best class score, then
//                         the top max_det (anchor, class) pairs among them, then score > conf.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "gyolo/core/error.hpp"

namespace gyolo::post {

/// Options of non_max_suppression. Defaults are caption/predict.py's.
struct nms_options {
  double conf = 0.25;         // score threshold (strict); compared in float like torch
  double iou = 0.45;          // suppress IoU > iou
  int max_det = 1000;         // keep at most this many per image
  int max_nms = 30000;        // boxes entering the NMS (the highest scores)
  bool multi_label = false;   // every (anchor, class) pair above conf is a candidate
  bool agnostic = false;      // class-agnostic NMS
  std::vector<int> classes;   // keep only these classes (empty: all)

  /// caption/predict.py: conf 0.25, IoU 0.45, max_det 1000.
  static nms_options predict() { return {}; }
  /// caption/val.py: conf 0.001, IoU 0.7, max_det 300, multi_label.
  static nms_options val() {
    nms_options o;
    o.conf = 0.001;
    o.iou = 0.7;
    o.max_det = 300;
    o.multi_label = true;
    return o;
  }
};

/// One row of upstream's NMS output [x1, y1, x2, y2, conf, cls, 32 coefficients]; the
/// coefficients are those of `anchor`.
struct raw_detection {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;  // letterboxed network-input pixels
  float score = 0;
  int cls = 0;
  int anchor = 0;                        // index on pred's A axis
};

/// A [4 + nc + nm, A] prediction of one image: element (c, a) at data[c * cstride + a].
struct pred_view {
  const float* data = nullptr;
  int channels = 0;
  int anchors = 0;
  std::int64_t cstride = 0;
  float at(int c, int a) const { return data[c * cstride + a]; }
};

namespace detail {

/// Materializes a float product so that the compiler cannot fuse it into a later add (FMA
/// contraction would change the last bit compared with PyTorch / torchvision's CPU code).
inline float opaque(float x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+x"(x));
  return x;
#else
  volatile float v = x;
  return v;
#endif
}

}  // namespace detail

/// Indices that sort v[0..n) by value descending, exactly as torch.sort(descending=True) /
/// torch.argsort(descending=True) on a CPU float tensor in PyTorch 1.13 (std::sort of (value,
/// index) pairs with NaN first; ties come out in introsort's order, not by index).
inline std::vector<std::int64_t> torch_argsort_desc(const float* v, std::size_t n) {
  std::vector<std::pair<float, std::int64_t>> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = {v[i], std::int64_t(i)};
  std::sort(p.begin(), p.end(), [](const std::pair<float, std::int64_t>& a, const std::pair<float, std::int64_t>& b) {
    return (std::isnan(a.first) && !std::isnan(b.first)) || (a.first > b.first);
  });
  std::vector<std::int64_t> idx(n);
  for (std::size_t i = 0; i < n; ++i) idx[i] = p[i].second;
  return idx;
}

/// torchvision.ops.nms(boxes [n, 4] xyxy, scores [n], iou_threshold) on CPU: the kept indices in
/// descending score order. `group` (optional, n entries) lets the greedy loop skip pairs that can
/// never overlap (boxes of different class-offset groups, see non_max_suppression); it changes
/// nothing in the result.
inline std::vector<std::int64_t> nms(const float* boxes, const float* scores, std::size_t n, double iou_threshold,
                                     const int* group = nullptr) {
  using detail::opaque;
  std::vector<std::int64_t> keep;
  if (n == 0) return keep;
  std::vector<float> area(n);
  for (std::size_t i = 0; i < n; ++i)
    area[i] = (boxes[4 * i + 2] - boxes[4 * i + 0]) * (boxes[4 * i + 3] - boxes[4 * i + 1]);
  const auto order = torch_argsort_desc(scores, n);
  std::vector<std::uint8_t> suppressed(n, 0);
  // Per group, the positions (in `order`) of its members, so the inner loop visits only them.
  std::vector<std::vector<std::int64_t>> members;
  std::vector<std::int64_t> slot(n, 0);  // position of order[k] inside its group's list
  if (group != nullptr) {
    int gmax = 0;
    for (std::size_t i = 0; i < n; ++i) gmax = std::max(gmax, group[i]);
    members.resize(std::size_t(gmax) + 1);
    for (std::size_t k = 0; k < n; ++k) {
      auto& m = members[std::size_t(group[order[k]])];
      slot[k] = std::int64_t(m.size());
      m.push_back(order[k]);
    }
  }
  auto visit = [&](std::int64_t i, std::int64_t j) {
    const float xx1 = std::max(boxes[4 * i + 0], boxes[4 * j + 0]);
    const float yy1 = std::max(boxes[4 * i + 1], boxes[4 * j + 1]);
    const float xx2 = std::min(boxes[4 * i + 2], boxes[4 * j + 2]);
    const float yy2 = std::min(boxes[4 * i + 3], boxes[4 * j + 3]);
    const float w = std::max(0.0f, xx2 - xx1);
    const float h = std::max(0.0f, yy2 - yy1);
    const float inter = opaque(w * h);
    const float ovr = inter / (area[std::size_t(i)] + area[std::size_t(j)] - inter);
    if (double(ovr) > iou_threshold) suppressed[std::size_t(j)] = 1;
  };
  for (std::size_t k = 0; k < n; ++k) {
    const auto i = order[k];
    if (suppressed[std::size_t(i)]) continue;
    keep.push_back(i);
    if (group == nullptr) {
      for (std::size_t k2 = k + 1; k2 < n; ++k2)
        if (!suppressed[std::size_t(order[k2])]) visit(i, order[k2]);
    } else {
      const auto& m = members[std::size_t(group[i])];
      for (std::size_t s = std::size_t(slot[k]) + 1; s < m.size(); ++s)
        if (!suppressed[std::size_t(m[s])]) visit(i, m[s]);
    }
  }
  return keep;
}

/// upstream's non_max_suppression for one image (see the header comment). nc = number of
/// classes; channels after 4 + nc are mask coefficients (not read here).
inline std::vector<raw_detection> non_max_suppression(const pred_view& p, int nc, const nms_options& o) {
  GYOLO_CHECK(nc > 0 && p.channels >= 4 + nc, "non_max_suppression: prediction has " + std::to_string(p.channels) +
                                                  " channels, fewer than 4 + nc = " + std::to_string(4 + nc));
  GYOLO_CHECK(o.conf >= 0 && o.conf <= 1, "non_max_suppression: conf must be in [0, 1]");
  GYOLO_CHECK(o.iou >= 0 && o.iou <= 1, "non_max_suppression: iou must be in [0, 1]");
  GYOLO_CHECK(o.max_det >= 0 && o.max_nms >= 0, "non_max_suppression: max_det and max_nms must be >= 0");
  const float conf = float(o.conf);  // torch compares a float tensor with the scalar cast to float
  const bool multi = o.multi_label && nc > 1;
  auto class_ok = [&](int c) {
    return o.classes.empty() || std::find(o.classes.begin(), o.classes.end(), c) != o.classes.end();
  };
  // Candidate rows in torch's order.
  std::vector<raw_detection> x;
  for (int a = 0; a < p.anchors; ++a) {
    float best = p.at(4, a);
    int bc = 0;
    for (int c = 1; c < nc; ++c) {
      const float s = p.at(4 + c, a);
      if (s > best || (std::isnan(s) && !std::isnan(best))) {
        best = s;
        bc = c;
      }
    }
    if (!(best > conf)) continue;  // xc: amax over classes > conf
    const float cx = p.at(0, a), cy = p.at(1, a), w = p.at(2, a), h = p.at(3, a);
    raw_detection d;
    d.x1 = cx - w / 2;
    d.y1 = cy - h / 2;
    d.x2 = cx + w / 2;
    d.y2 = cy + h / 2;
    d.anchor = a;
    if (multi) {
      for (int c = 0; c < nc; ++c) {
        const float s = p.at(4 + c, a);
        if (s > conf && class_ok(c)) {
          d.score = s;
          d.cls = c;
          x.push_back(d);
        }
      }
    } else {
      if (!class_ok(bc)) continue;
      d.score = best;
      d.cls = bc;
      x.push_back(d);
    }
  }
  if (x.empty()) return {};
  // Sort by confidence; keep the best max_nms.
  std::vector<float> sc(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) sc[i] = x[i].score;
  auto order = torch_argsort_desc(sc.data(), sc.size());
  if (order.size() > std::size_t(o.max_nms)) order.resize(std::size_t(o.max_nms));
  std::vector<raw_detection> xs(order.size());
  for (std::size_t i = 0; i < order.size(); ++i) xs[i] = x[std::size_t(order[i])];
  const std::size_t n = xs.size();
  // Class offset (torch: x[:, 5:6] * 7680 then boxes + c, float32).
  constexpr float max_wh = 7680.0f;
  std::vector<float> boxes(4 * n), scores(n);
  float lo = INFINITY, hi = -INFINITY;
  for (std::size_t i = 0; i < n; ++i) {
    const float off = o.agnostic ? 0.0f : float(xs[i].cls) * max_wh;
    boxes[4 * i + 0] = xs[i].x1 + off;
    boxes[4 * i + 1] = xs[i].y1 + off;
    boxes[4 * i + 2] = xs[i].x2 + off;
    boxes[4 * i + 3] = xs[i].y2 + off;
    scores[i] = xs[i].score;
    lo = std::min({lo, xs[i].x1, xs[i].y1});
    hi = std::max({hi, xs[i].x2, xs[i].y2});
  }
  // Boxes of different classes cannot overlap when all coordinates span less than the offset
  // (with a margin for the float rounding of the offset boxes): then the greedy loop may skip
  // cross-class pairs without changing the result.
  std::vector<int> group;
  if (!o.agnostic && std::isfinite(lo) && std::isfinite(hi) && hi - lo < max_wh - 64.0f) {
    group.resize(n);
    for (std::size_t i = 0; i < n; ++i) group[i] = xs[i].cls;
  }
  auto keep = nms(boxes.data(), scores.data(), n, o.iou, group.empty() ? nullptr : group.data());
  if (keep.size() > std::size_t(o.max_det)) keep.resize(std::size_t(o.max_det));
  std::vector<raw_detection> out(keep.size());
  for (std::size_t i = 0; i < keep.size(); ++i) out[i] = xs[std::size_t(keep[i])];
  return out;
}

/// NMS-free decoding of the one-to-one head (YOLOv10 style; an option, not upstream's path):
/// the max_det anchors with the highest best-class score, then the max_det highest (anchor,
/// class) scores among them, kept if score > conf and the class passes the filter. Sorted by
/// score descending (ties: lower anchor, then lower class first).
inline std::vector<raw_detection> e2e_topk(const pred_view& p, int nc, double conf, int max_det,
                                           const std::vector<int>& classes = {}) {
  GYOLO_CHECK(nc > 0 && p.channels >= 4 + nc, "e2e_topk: prediction has too few channels");
  GYOLO_CHECK(max_det >= 0, "e2e_topk: max_det must be >= 0");
  const int A = p.anchors;
  std::vector<float> best(std::size_t(A), -INFINITY);
  for (int a = 0; a < A; ++a)
    for (int c = 0; c < nc; ++c) best[std::size_t(a)] = std::max(best[std::size_t(a)], p.at(4 + c, a));
  std::vector<int> anchors(static_cast<std::size_t>(A));
  std::iota(anchors.begin(), anchors.end(), 0);
  const std::size_t k = std::min<std::size_t>(std::size_t(max_det), std::size_t(A));
  std::partial_sort(anchors.begin(), anchors.begin() + std::ptrdiff_t(k), anchors.end(), [&](int a, int b) {
    return best[std::size_t(a)] > best[std::size_t(b)] || (best[std::size_t(a)] == best[std::size_t(b)] && a < b);
  });
  anchors.resize(k);
  struct cand {
    float s;
    int a, c;
  };
  std::vector<cand> pairs;
  pairs.reserve(k * std::size_t(nc));
  for (int a : anchors)
    for (int c = 0; c < nc; ++c) pairs.push_back({p.at(4 + c, a), a, c});
  const std::size_t k2 = std::min(k, pairs.size());
  std::partial_sort(pairs.begin(), pairs.begin() + std::ptrdiff_t(k2), pairs.end(), [](const cand& x, const cand& y) {
    return x.s > y.s || (x.s == y.s && (x.a < y.a || (x.a == y.a && x.c < y.c)));
  });
  std::vector<raw_detection> out;
  const float cf = float(conf);
  for (std::size_t i = 0; i < k2; ++i) {
    const auto& q = pairs[i];
    if (!(q.s > cf)) break;
    if (!classes.empty() && std::find(classes.begin(), classes.end(), q.c) == classes.end()) continue;
    const float cx = p.at(0, q.a), cy = p.at(1, q.a), w = p.at(2, q.a), h = p.at(3, q.a);
    out.push_back({cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, q.s, q.c, q.a});
  }
  return out;
}

}  // namespace gyolo::post
