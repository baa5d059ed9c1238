// Validation metrics as upstream Generalist YOLO computes them during training (caption/val.py), each
// checked against the upstream code by tests/test_metrics.cpp (fixtures:
// weights_tools/make_metric_fixtures.py):
//
//   det_stats_accumulator       box / mask P, R, mAP50, mAP50-95: caption/val.py process_batch (matching
//                               at IoU 0.50:0.05:0.95) + utils/metrics.py ap_per_class / compute_ap
//                               (101-point interpolated AP, P and R at the max of the smoothed mean F1)
//   semantic_iou_accumulator    mIoU: utils/semantic_seg/cocosemanticeval.py IoUMetric (histogram totals
//                               over the whole set, ignore labels taken from the ground truth)
//   pq_accumulator              PQ / SQ / RQ: panopticapi evaluation.py pq_compute (IoU > 0.5 matching,
//                               VOID = 0 and crowd handling, averages over all / things / stuff)
//   score_captions              BLEU-1..4 ("closest" reference length, corpus level) and CIDEr-D (sigma 6,
//                               n 4, document frequencies from the evaluated references): pycocoevalcap
//                               bleu_scorer.py / cider_scorer.py
//
// Self-contained (std only). Numeric conventions follow the upstream code: IoUs used for detection
// matching are float32 as torch computes them; everything else is double as numpy computes it.
// Where numpy leaves an order undefined, this file fixes one (documented where it applies).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gyolo/core/error.hpp"

namespace gyolo::metrics {

// ================================================================================== numpy helpers
namespace detail {

/// numpy's pairwise summation (add.reduce over a float64 array): blocks of 8 partial sums up to
/// 128 elements, halves above.
inline double np_sum(const double* a, std::size_t n) {
  if (n < 8) {
    double r = 0.0;
    for (std::size_t i = 0; i < n; ++i) r += a[i];
    return r;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    std::size_t i = 8;
    for (; i < n - n % 8; i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return np_sum(a, n2) + np_sum(a + n2, n - n2);
}

inline double np_mean(const std::vector<double>& v) {
  return v.empty() ? 0.0 : np_sum(v.data(), v.size()) / double(v.size());
}

/// np.interp(x, xp, fp, left, right) for one x; xp non-decreasing (repeats allowed: the last xp[j] <= x
/// is used, as numpy's binary search does).
inline double np_interp(double x, const std::vector<double>& xp, const std::vector<double>& fp, double left,
                        double right) {
  const std::size_t n = xp.size();
  if (x > xp[n - 1]) return right;
  if (x < xp[0]) return left;
  const std::size_t j = std::size_t(std::upper_bound(xp.begin(), xp.end(), x) - xp.begin()) - 1;
  if (j == n - 1 || xp[j] == x) return fp[j];
  const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
  double r = slope * (x - xp[j]) + fp[j];
  if (std::isnan(r)) {
    r = slope * (x - xp[j + 1]) + fp[j + 1];
    if (std::isnan(r) && fp[j] == fp[j + 1]) r = fp[j];
  }
  return r;
}

/// np.linspace(0, 1, n) (n >= 2): k * (1 / (n - 1)), the last one exactly 1.
inline std::vector<double> np_linspace01(int n) {
  std::vector<double> v(static_cast<std::size_t>(n));
  const double step = 1.0 / double(n - 1);
  for (int k = 0; k < n; ++k) v[std::size_t(k)] = double(k) * step;
  v.back() = 1.0;
  return v;
}

}  // namespace detail

// ======================================================================================= detection

/// A box in pixels, corners (x1, y1, x2, y2).
struct det_box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

/// One prediction after NMS (val.py's `predn` row): box, confidence, class index.
struct det_prediction {
  det_box box;
  float conf = 0;
  int cls = 0;
};

/// One ground-truth object (val.py's `labelsn` row): class index, box.
struct det_label {
  int cls = 0;
  det_box box;
};

/// A binary mask, row-major h x w bytes; nonzero is inside. Not owned.
struct mask_view {
  int h = 0;
  int w = 0;
  const std::uint8_t* data = nullptr;
};

inline constexpr int num_iou_thresholds = 10;
/// Per prediction: matched at each IoU threshold.
using match_row = std::array<bool, num_iou_thresholds>;

/// torch.linspace(0.5, 0.95, 10) in float32 (val.py's iouv).
inline const std::array<float, num_iou_thresholds>& iou_thresholds() {
  static const std::array<float, num_iou_thresholds> t{0.5f,  0.55f, 0.6f,  0.65f, 0.7f,
                                                       0.75f, 0.8f,  0.85f, 0.9f,  0.95f};
  return t;
}

namespace detail {
/// a * b rounded to float before any further use: torch runs each operation as its own kernel, and the
/// volatile keeps a compiler that contracts a * b + c into an fma (GNU mode with FMA targets) from fusing.
inline float product_f32(float a, float b) {
  volatile float p = a * b;
  return p;
}
}  // namespace detail

/// IoU of two boxes, float32 in utils/metrics.py box_iou's operation order (eps 1e-7): the same bits
/// as torch, so that the comparisons with the thresholds agree.
inline float box_iou(const det_box& a, const det_box& b) {
  float iw = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  float ih = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  iw = iw < 0.0f ? 0.0f : iw;
  ih = ih < 0.0f ? 0.0f : ih;
  const float inter = detail::product_f32(iw, ih);
  const float area_a = detail::product_f32(a.x2 - a.x1, a.y2 - a.y1);
  const float area_b = detail::product_f32(b.x2 - b.x1, b.y2 - b.y1);
  return inter / (((area_a + area_b) - inter) + 1e-7f);
}

/// IoU matrix [label][prediction] of boxes.
inline std::vector<std::vector<float>> box_iou_matrix(std::span<const det_label> labels,
                                                      std::span<const det_prediction> preds) {
  std::vector<std::vector<float>> iou(labels.size(), std::vector<float>(preds.size()));
  for (std::size_t l = 0; l < labels.size(); ++l)
    for (std::size_t d = 0; d < preds.size(); ++d) iou[l][d] = box_iou(labels[l].box, preds[d].box);
  return iou;
}

/// caption/val.py process_batch with overlap=True (training's default): the loader's single index map of
/// an image (pixel = label index + 1) as one binary mask per label.
inline std::vector<std::vector<std::uint8_t>> overlap_to_binary_masks(const mask_view& index_map, int num_labels) {
  std::vector<std::vector<std::uint8_t>> out(std::size_t(std::max(0, num_labels)));
  const std::size_t n = std::size_t(index_map.h) * std::size_t(index_map.w);
  for (int l = 0; l < num_labels; ++l) {
    auto& m = out[std::size_t(l)];
    m.resize(n);
    for (std::size_t i = 0; i < n; ++i) m[i] = index_map.data[i] == l + 1 ? 1 : 0;
  }
  return out;
}

/// process_batch's resize of a ground-truth mask to the predicted masks' size when they differ (the loader
/// gives masks at input / mask_ratio, the predictions come at the input size from process_mask_upsample):
/// F.interpolate bilinear, align_corners=False, in float32, then > 0.5.
inline std::vector<std::uint8_t> resize_gt_mask(const mask_view& m, int out_h, int out_w) {
  struct tap {
    int i0, i1;
    float l0, l1;
  };
  auto taps = [](int in, int out) {
    std::vector<tap> t(std::size_t(std::max(0, out)));
    const float scale = float(in) / float(out);
    for (int d = 0; d < out; ++d) {
      float src = scale * (float(d) + 0.5f) - 0.5f;
      if (src < 0) src = 0;
      const int i0 = int(src);
      const float l1 = src - float(i0);
      t[std::size_t(d)] = {i0, i0 + (i0 < in - 1 ? 1 : 0), 1.0f - l1, l1};
    }
    return t;
  };
  GYOLO_CHECK(m.h > 0 && m.w > 0 && out_h > 0 && out_w > 0, "metrics: resize_gt_mask needs non-empty sizes");
  const auto ty = taps(m.h, out_h), tx = taps(m.w, out_w);
  auto at = [&](int y, int x) { return m.data[std::size_t(y) * std::size_t(m.w) + std::size_t(x)] ? 1.0f : 0.0f; };
  std::vector<std::uint8_t> out(std::size_t(out_h) * std::size_t(out_w));
  for (int y = 0; y < out_h; ++y) {
    const tap& a = ty[std::size_t(y)];
    for (int x = 0; x < out_w; ++x) {
      const tap& b = tx[std::size_t(x)];
      const float t0 = detail::product_f32(at(a.i0, b.i0), b.l0) + detail::product_f32(at(a.i0, b.i1), b.l1);
      const float t1 = detail::product_f32(at(a.i1, b.i0), b.l0) + detail::product_f32(at(a.i1, b.i1), b.l1);
      const float v = detail::product_f32(t0, a.l0) + detail::product_f32(t1, a.l1);
      out[std::size_t(y) * std::size_t(out_w) + std::size_t(x)] = v > 0.5f ? 1 : 0;
    }
  }
  return out;
}

/// IoU matrix [gt][prediction] of binary masks of one size, as utils/caption/general.py mask_iou
/// (float32 intersection / (union + 1e-7)). Upstream compares at the network input size: predictions
/// from process_mask_upsample, ground truth through overlap_to_binary_masks / resize_gt_mask.
inline std::vector<std::vector<float>> mask_iou_matrix(std::span<const mask_view> gt, std::span<const mask_view> pred) {
  auto area = [](const mask_view& m) {
    std::int64_t a = 0;
    for (std::int64_t i = 0, n = std::int64_t(m.h) * m.w; i < n; ++i) a += m.data[i] != 0;
    return a;
  };
  std::vector<std::int64_t> ag(gt.size()), ap(pred.size());
  for (std::size_t i = 0; i < gt.size(); ++i) ag[i] = area(gt[i]);
  for (std::size_t i = 0; i < pred.size(); ++i) ap[i] = area(pred[i]);
  std::vector<std::vector<float>> iou(gt.size(), std::vector<float>(pred.size()));
  for (std::size_t g = 0; g < gt.size(); ++g) {
    for (std::size_t d = 0; d < pred.size(); ++d) {
      const mask_view& a = gt[g];
      const mask_view& b = pred[d];
      GYOLO_CHECK(a.h == b.h && a.w == b.w,
                  "metrics: mask sizes differ (ground truth " + std::to_string(a.h) + "x" + std::to_string(a.w) +
                      ", prediction " + std::to_string(b.h) + "x" + std::to_string(b.w) + ")");
      std::int64_t inter = 0;
      for (std::int64_t i = 0, n = std::int64_t(a.h) * a.w; i < n; ++i) inter += (a.data[i] != 0) & (b.data[i] != 0);
      const float fi = float(inter);
      const float un = (float(ag[g]) + float(ap[d])) - fi;
      iou[g][d] = fi / (un + 1e-7f);
    }
  }
  return iou;
}

/// caption/val.py process_batch: which predictions are true positives at each IoU threshold, from an
/// IoU matrix iou[label][prediction]. Per threshold, pairs with iou >= t and equal class are
/// candidates; each prediction keeps its highest-IoU label, then each label keeps the FIRST (lowest
/// index) prediction that kept it (upstream does not re-sort by IoU there; predictions come sorted by
/// confidence from NMS). Equal IoUs of one prediction with two labels: the later label wins (what
/// numpy's argsort does for up to 16 candidates; beyond, numpy leaves it undefined).
inline std::vector<match_row> match_predictions(std::span<const det_prediction> preds,
                                                std::span<const det_label> labels,
                                                const std::vector<std::vector<float>>& iou) {
  std::vector<match_row> correct(preds.size(), match_row{});
  GYOLO_CHECK(iou.size() == labels.size(), "metrics: IoU matrix has " + std::to_string(iou.size()) +
                                               " rows for " + std::to_string(labels.size()) + " labels");
  for (const auto& row : iou)
    GYOLO_CHECK(row.size() == preds.size(), "metrics: IoU matrix row has " + std::to_string(row.size()) +
                                                " columns for " + std::to_string(preds.size()) + " predictions");
  const auto& thr = iou_thresholds();
  std::vector<int> best(preds.size());
  std::vector<int> taken(labels.size());
  for (int t = 0; t < num_iou_thresholds; ++t) {
    for (std::size_t d = 0; d < preds.size(); ++d) {
      best[d] = -1;
      float bi = 0;
      for (std::size_t l = 0; l < labels.size(); ++l) {
        const float v = iou[l][d];
        if (!(v >= thr[std::size_t(t)]) || labels[l].cls != preds[d].cls) continue;
        if (best[d] < 0 || v >= bi) best[d] = int(l), bi = v;
      }
    }
    std::fill(taken.begin(), taken.end(), 0);
    for (std::size_t d = 0; d < preds.size(); ++d) {
      if (best[d] < 0 || taken[std::size_t(best[d])]) continue;
      taken[std::size_t(best[d])] = 1;
      correct[d][std::size_t(t)] = true;
    }
  }
  return correct;
}

/// Per-class result of ap_per_class (classes that have labels).
struct ap_class_result {
  int cls = 0;
  std::int64_t labels = 0;       // ground-truth objects of the class
  std::int64_t predictions = 0;  // predictions of the class
  double p = 0, r = 0, f1 = 0;   // at the max-F1 confidence
  std::array<double, num_iou_thresholds> ap{};  // AP at IoU 0.50, 0.55, ..., 0.95
  double ap50() const { return ap[0]; }
  double ap50_95() const { return detail::np_mean(std::vector<double>(ap.begin(), ap.end())); }
};

/// What val.py prints for boxes or masks: mean P, R, mAP50, mAP50-95 over the classes with labels.
struct det_summary {
  double mp = 0, mr = 0, map50 = 0, map = 0;
  std::vector<ap_class_result> classes;  // ascending class index
};

/// utils/compute_ap: precision envelope, 101-point interpolation, trapezoidal integration.
inline double compute_ap(const std::vector<double>& recall, const std::vector<double>& precision) {
  std::vector<double> mrec, mpre;
  mrec.reserve(recall.size() + 2);
  mpre.reserve(recall.size() + 2);
  mrec.push_back(0.0);
  mrec.insert(mrec.end(), recall.begin(), recall.end());
  mrec.push_back(1.0);
  mpre.push_back(1.0);
  mpre.insert(mpre.end(), precision.begin(), precision.end());
  mpre.push_back(0.0);
  for (std::size_t i = mpre.size() - 1; i-- > 0;) mpre[i] = std::max(mpre[i], mpre[i + 1]);
  static const std::vector<double> x = detail::np_linspace01(101);
  std::vector<double> y(x.size()), terms(x.size() - 1);
  for (std::size_t k = 0; k < x.size(); ++k) y[k] = detail::np_interp(x[k], mrec, mpre, mpre.front(), mpre.back());
  for (std::size_t k = 0; k + 1 < x.size(); ++k) terms[k] = (x[k + 1] - x[k]) * (y[k + 1] + y[k]) / 2.0;
  return detail::np_sum(terms.data(), terms.size());
}

/// utils/metrics.py ap_per_class on the gathered statistics: `tp[i]`, `conf[i]`, `pred_cls[i]` per
/// prediction, `target_cls` per label. Predictions are ordered by confidence with a STABLE sort (numpy's
/// argsort is stable for up to 16 predictions; for more, the order of equal confidences is undefined
/// upstream). Classes without labels are left out; classes with labels but no predictions count as 0.
inline det_summary ap_per_class(std::span<const match_row> tp, std::span<const float> conf,
                                std::span<const int> pred_cls, std::span<const int> target_cls) {
  GYOLO_CHECK(tp.size() == conf.size() && conf.size() == pred_cls.size(),
              "metrics: ap_per_class needs one tp row, confidence and class per prediction");
  constexpr double eps = 1e-16;
  std::vector<std::size_t> order(conf.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return -conf[a] < -conf[b]; });
  std::map<int, std::int64_t> nt_map;
  for (int c : target_cls) ++nt_map[c];
  const std::size_t nc = nt_map.size();
  static const std::vector<double> px = detail::np_linspace01(1000);
  const std::size_t npx = px.size();
  std::vector<std::vector<double>> pc(nc, std::vector<double>(npx, 0.0)), rc(nc, std::vector<double>(npx, 0.0));
  det_summary s;
  std::size_t ci = 0;
  for (const auto& [c, n_l] : nt_map) {
    ap_class_result res;
    res.cls = c;
    res.labels = n_l;
    std::vector<std::size_t> idx;
    for (std::size_t i : order)
      if (pred_cls[i] == c) idx.push_back(i);
    res.predictions = std::int64_t(idx.size());
    if (!idx.empty() && n_l > 0) {
      const std::size_t n = idx.size();
      std::vector<double> xp(n);
      for (std::size_t k = 0; k < n; ++k) xp[k] = double(-conf[idx[k]]);
      std::array<std::vector<double>, num_iou_thresholds> recall, precision;
      for (int j = 0; j < num_iou_thresholds; ++j) {
        auto& rj = recall[std::size_t(j)];
        auto& pj = precision[std::size_t(j)];
        rj.resize(n);
        pj.resize(n);
        std::int64_t tpc = 0;
        for (std::size_t k = 0; k < n; ++k) {
          tpc += tp[idx[k]][std::size_t(j)] ? 1 : 0;
          const std::int64_t fpc = std::int64_t(k + 1) - tpc;
          rj[k] = double(tpc) / (double(n_l) + eps);
          pj[k] = double(tpc) / double(tpc + fpc);
        }
      }
      for (std::size_t k = 0; k < npx; ++k) {
        rc[ci][k] = detail::np_interp(-px[k], xp, recall[0], 0.0, recall[0].back());
        pc[ci][k] = detail::np_interp(-px[k], xp, precision[0], 1.0, precision[0].back());
      }
      for (int j = 0; j < num_iou_thresholds; ++j)
        res.ap[std::size_t(j)] = compute_ap(recall[std::size_t(j)], precision[std::size_t(j)]);
    }
    s.classes.push_back(res);
    ++ci;
  }
  if (nc == 0) return s;
  // F1 curves, their mean over classes, box-smoothed (utils/metrics.py smooth, f = 0.1), arg-max
  std::vector<std::vector<double>> f1(nc, std::vector<double>(npx));
  std::vector<double> f1m(npx, 0.0);
  for (std::size_t c = 0; c < nc; ++c)
    for (std::size_t k = 0; k < npx; ++k) {
      f1[c][k] = 2 * pc[c][k] * rc[c][k] / (pc[c][k] + rc[c][k] + eps);
      f1m[k] = c == 0 ? f1[c][k] : f1m[k] + f1[c][k];
    }
  for (auto& v : f1m) v /= double(nc);
  const std::size_t nf = std::size_t(std::nearbyint(double(npx) * 0.1 * 2)) / 2 + 1;
  std::vector<double> yp;
  yp.reserve(npx + nf - 1);
  yp.insert(yp.end(), nf / 2, f1m.front());
  yp.insert(yp.end(), f1m.begin(), f1m.end());
  yp.insert(yp.end(), nf / 2, f1m.back());
  const double w = 1.0 / double(nf);
  std::size_t best = 0;
  double best_v = -std::numeric_limits<double>::infinity();
  for (std::size_t k = 0; k + nf <= yp.size(); ++k) {
    double v = 0;
    for (std::size_t j = 0; j < nf; ++j) v += yp[k + j] * w;
    if (v > best_v) best_v = v, best = k;
  }
  std::vector<double> ps, rs, ap50, ap_all;
  for (std::size_t c = 0; c < nc; ++c) {
    auto& res = s.classes[c];
    res.p = pc[c][best];
    res.r = rc[c][best];
    res.f1 = f1[c][best];
    ps.push_back(res.p);
    rs.push_back(res.r);
    ap50.push_back(res.ap[0]);
    ap_all.insert(ap_all.end(), res.ap.begin(), res.ap.end());
  }
  s.mp = detail::np_mean(ps);
  s.mr = detail::np_mean(rs);
  s.map50 = detail::np_mean(ap50);
  s.map = detail::np_mean(ap_all);
  return s;
}

/// The detection line of val.py for a whole validation set.
struct det_results {
  /// False when val.py skips ap_per_class: no prediction is a mask true positive at any threshold
  /// (`stats[0].any()`; box true positives when no masks were given). Then box and mask are zeros.
  bool computed = false;
  det_summary box;
  det_summary mask;                       // empty when no masks were given
  std::vector<std::int64_t> instances;    // labels per class (num_classes entries)
  std::int64_t total_instances = 0;
  std::int64_t images = 0;
};

/// Gathers per-image statistics as caption/val.py's loop does, then finish() runs ap_per_class.
/// Either every image comes with masks (add_image_masks) or none does (add_image).
class det_stats_accumulator {
 public:
  explicit det_stats_accumulator(int num_classes) : nc_(num_classes), nt_(std::size_t(std::max(0, num_classes)), 0) {
    GYOLO_CHECK(num_classes > 0, "metrics: det_stats_accumulator needs at least one class");
  }

  /// One image: predictions and labels in the same pixel space (boxes only).
  void add_image(std::span<const det_prediction> preds, std::span<const det_label> labels) {
    set_mode(false);
    add(preds, labels, nullptr, nullptr);
  }

  /// One image with instance masks: one binary mask per prediction and per label, all of one size.
  void add_image_masks(std::span<const det_prediction> preds, std::span<const det_label> labels,
                       std::span<const mask_view> pred_masks, std::span<const mask_view> gt_masks) {
    set_mode(true);
    GYOLO_CHECK(pred_masks.size() == preds.size(), "metrics: " + std::to_string(pred_masks.size()) +
                                                       " prediction masks for " + std::to_string(preds.size()) +
                                                       " predictions");
    GYOLO_CHECK(gt_masks.size() == labels.size(), "metrics: " + std::to_string(gt_masks.size()) +
                                                      " ground-truth masks for " + std::to_string(labels.size()) +
                                                      " labels");
    add(preds, labels, &pred_masks, &gt_masks);
  }

  det_results finish() const {
    det_results r;
    r.instances = nt_;
    for (auto v : nt_) r.total_instances += v;
    r.images = images_;
    const auto& gate = masks_ == 1 ? tp_mask_ : tp_box_;
    bool any = false;
    for (const auto& row : gate)
      for (bool b : row) any = any || b;
    if (!any) return r;
    r.computed = true;
    r.box = ap_per_class(tp_box_, conf_, cls_, target_);
    if (masks_ == 1) r.mask = ap_per_class(tp_mask_, conf_, cls_, target_);
    return r;
  }

 private:
  void set_mode(bool masks) {
    const int m = masks ? 1 : 0;
    GYOLO_CHECK(masks_ < 0 || masks_ == m, "metrics: det_stats_accumulator got images with and without masks");
    masks_ = m;
  }

  void add(std::span<const det_prediction> preds, std::span<const det_label> labels,
           const std::span<const mask_view>* pred_masks, const std::span<const mask_view>* gt_masks) {
    for (const auto& l : labels)
      GYOLO_CHECK(l.cls >= 0 && l.cls < nc_, "metrics: label class " + std::to_string(l.cls) + " outside 0.." +
                                                 std::to_string(nc_ - 1));
    ++images_;
    if (preds.empty() && labels.empty()) return;
    for (const auto& l : labels) {
      target_.push_back(l.cls);
      ++nt_[std::size_t(l.cls)];
    }
    if (preds.empty()) return;
    std::vector<match_row> cb(preds.size(), match_row{}), cm(preds.size(), match_row{});
    if (!labels.empty()) {
      cb = match_predictions(preds, labels, box_iou_matrix(labels, preds));
      if (pred_masks) cm = match_predictions(preds, labels, mask_iou_matrix(*gt_masks, *pred_masks));
    }
    for (std::size_t d = 0; d < preds.size(); ++d) {
      conf_.push_back(preds[d].conf);
      cls_.push_back(preds[d].cls);
      tp_box_.push_back(cb[d]);
      if (pred_masks) tp_mask_.push_back(cm[d]);
    }
  }

  int nc_;
  int masks_ = -1;  // unknown / 0 boxes only / 1 with masks
  std::int64_t images_ = 0;
  std::vector<std::int64_t> nt_;
  std::vector<float> conf_;
  std::vector<int> cls_;
  std::vector<int> target_;
  std::vector<match_row> tp_box_, tp_mask_;
};

// ======================================================================================== semantic

/// Semantic segmentation totals and scores (IoUMetric.compute_metrics). Per class, NaN where
/// undefined (0 / 0), as numpy gives.
struct semantic_iou_result {
  std::vector<std::int64_t> intersect, union_area, pred_area, label_area;
  std::vector<double> iou, acc;
  double miou = 0;          // mean of the defined IoUs (np.nanmean), a fraction; NaN if none
  double miou_percent = 0;  // what upstream returns and prints: round(100 * miou, 2)
  double aacc = 0;          // all-pixel accuracy
};

/// Accumulates per-image label maps as utils/semantic_seg/cocosemanticeval.py IoUMetric does: pixels
/// whose GROUND TRUTH is one of the ignore labels are dropped; labels outside 0..num_classes-1 fall out of
/// the histograms. Upstream (caption/val.py) feeds the arg-max over channels of the predicted and the
/// one-hot ground-truth semantic maps (80 things + stuff classes) and ignores {0, 172}. Counts are int64
/// (upstream sums float32 histograms: exact while a class has fewer than 2^24 pixels in total).
class semantic_iou_accumulator {
 public:
  semantic_iou_accumulator(int num_classes, std::vector<int> ignore)
      : nc_(num_classes), ignore_(std::move(ignore)), inter_(std::size_t(std::max(0, num_classes)), 0),
        pred_(inter_), label_(inter_) {
    GYOLO_CHECK(num_classes > 0, "metrics: semantic_iou_accumulator needs at least one class");
  }

  /// One image: predicted and ground-truth label maps of the same size (any integer type).
  template <class T>
  void add_image(std::span<const T> pred, std::span<const T> gt) {
    GYOLO_CHECK(pred.size() == gt.size(), "metrics: semantic label maps differ in size (" +
                                              std::to_string(pred.size()) + " and " + std::to_string(gt.size()) +
                                              " pixels)");
    for (std::size_t i = 0; i < gt.size(); ++i) {
      const std::int64_t g = std::int64_t(gt[i]);
      if (std::find(ignore_.begin(), ignore_.end(), g) != ignore_.end()) continue;
      const std::int64_t p = std::int64_t(pred[i]);
      const bool pin = p >= 0 && p < nc_, gin = g >= 0 && g < nc_;
      if (pin) ++pred_[std::size_t(p)];
      if (gin) ++label_[std::size_t(g)];
      if (pin && p == g) ++inter_[std::size_t(p)];
    }
  }

  semantic_iou_result finish() const {
    semantic_iou_result r;
    r.intersect = inter_;
    r.pred_area = pred_;
    r.label_area = label_;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::int64_t si = 0, sl = 0, n = 0;
    double sum = 0;
    for (std::size_t c = 0; c < inter_.size(); ++c) {
      const std::int64_t u = pred_[c] + label_[c] - inter_[c];
      r.union_area.push_back(u);
      r.iou.push_back(u ? double(inter_[c]) / double(u) : nan);
      r.acc.push_back(label_[c] ? double(inter_[c]) / double(label_[c]) : nan);
      if (u) sum += r.iou.back(), ++n;
      si += inter_[c];
      sl += label_[c];
    }
    r.miou = n ? sum / double(n) : nan;
    r.miou_percent = n ? std::nearbyint(r.miou * 100.0 * 100.0) / 100.0 : nan;
    r.aacc = sl ? double(si) / double(sl) : nan;
    return r;
  }

 private:
  int nc_;
  std::vector<int> ignore_;
  std::vector<std::int64_t> inter_, pred_, label_;
};

// ======================================================================================== panoptic

struct panoptic_category {
  int id = 0;
  bool isthing = false;
};

/// One segment of a panoptic id map (segments_info entry). `iscrowd` matters for the ground truth only.
struct panoptic_segment {
  std::uint32_t id = 0;
  int category_id = 0;
  bool iscrowd = false;
};

struct pq_class_stat {
  double iou = 0;  // summed IoU of the matches
  std::int64_t tp = 0, fp = 0, fn = 0;
};

struct pq_value {
  double pq = 0, sq = 0, rq = 0;
  int n = 0;  // categories with any tp / fp / fn
};

struct pq_results {
  pq_value all, things, stuff;                // n == 0: zeros (upstream divides by zero)
  std::map<int, pq_value> per_class;          // every category; zeros when it has no tp / fp / fn
  std::map<int, pq_class_stat> stats;         // every category
};

/// panopticapi evaluation.py (pq_compute_single_core + PQStat.pq_average). Id maps hold segment ids
/// (rgb2id of the PNGs), 0 = VOID; ids must be below 2^24. The ground-truth segment areas are counted
/// from the map (upstream reads them from the JSON, which holds the same counts).
class pq_accumulator {
 public:
  explicit pq_accumulator(std::vector<panoptic_category> categories) : cats_(std::move(categories)) {
    for (const auto& c : cats_) {
      GYOLO_CHECK(!stats_.count(c.id), "metrics: panoptic category " + std::to_string(c.id) + " listed twice");
      stats_[c.id];
    }
  }

  void add_image(std::span<const std::uint32_t> gt_ids, std::span<const panoptic_segment> gt_segments,
                 std::span<const std::uint32_t> pred_ids, std::span<const panoptic_segment> pred_segments) {
    const std::string where = "metrics: panoptic image " + std::to_string(images_);
    GYOLO_CHECK(gt_ids.size() == pred_ids.size(), where + ": id maps differ in size");
    ++images_;
    constexpr std::uint32_t VOID = 0;
    std::map<std::uint32_t, std::size_t> gsi, psi;
    for (std::size_t i = 0; i < gt_segments.size(); ++i)
      GYOLO_CHECK(gsi.emplace(gt_segments[i].id, i).second,
                  where + ": ground-truth segment id " + std::to_string(gt_segments[i].id) + " listed twice");
    for (std::size_t i = 0; i < pred_segments.size(); ++i)
      GYOLO_CHECK(psi.emplace(pred_segments[i].id, i).second,
                  where + ": predicted segment id " + std::to_string(pred_segments[i].id) + " listed twice");
    std::map<std::uint32_t, std::int64_t> garea, parea;
    std::map<std::pair<std::uint32_t, std::uint32_t>, std::int64_t> pairs;
    for (std::size_t i = 0; i < gt_ids.size(); ++i) {
      GYOLO_CHECK(gt_ids[i] < (1u << 24) && pred_ids[i] < (1u << 24), where + ": segment id above 2^24");
      ++garea[gt_ids[i]];
      ++parea[pred_ids[i]];
      ++pairs[{gt_ids[i], pred_ids[i]}];
    }
    std::set<std::uint32_t> pred_left;
    for (const auto& s : pred_segments) pred_left.insert(s.id);
    for (const auto& [id, cnt] : parea) {
      (void)cnt;
      if (!psi.count(id)) {
        if (id == VOID) continue;
        throw error(where + ": segment id " + std::to_string(id) + " is in the predicted map but not a segment");
      }
      pred_left.erase(id);
      GYOLO_CHECK(stats_.count(pred_segments[psi[id]].category_id),
                  where + ": predicted segment " + std::to_string(id) + " has unknown category " +
                      std::to_string(pred_segments[psi[id]].category_id));
    }
    GYOLO_CHECK(pred_left.empty(), where + ": predicted segment " + std::to_string(pred_left.empty() ? 0 : *pred_left.begin()) +
                                       " does not occur in the predicted map");
    auto get = [&](std::uint32_t g, std::uint32_t p) {
      auto it = pairs.find({g, p});
      return it == pairs.end() ? std::int64_t(0) : it->second;
    };
    std::set<std::uint32_t> gt_matched, pred_matched;
    for (const auto& [key, inter] : pairs) {
      const auto [g, p] = key;
      auto gi = gsi.find(g);
      auto pi = psi.find(p);
      if (gi == gsi.end() || pi == psi.end()) continue;
      const auto& gs = gt_segments[gi->second];
      const auto& ps = pred_segments[pi->second];
      if (gs.iscrowd || gs.category_id != ps.category_id) continue;
      const std::int64_t un = parea[p] + (garea.count(g) ? garea[g] : 0) - inter - get(VOID, p);
      const double iou = double(inter) / double(un);
      if (iou > 0.5) {
        auto& st = stats_[gs.category_id];
        st.tp += 1;
        st.iou += iou;
        gt_matched.insert(g);
        pred_matched.insert(p);
      }
    }
    std::map<int, std::uint32_t> crowd;
    for (const auto& gs : gt_segments) {
      if (gt_matched.count(gs.id)) continue;
      if (gs.iscrowd) {
        crowd[gs.category_id] = gs.id;
        continue;
      }
      stats_[gs.category_id].fn += 1;
    }
    for (const auto& ps : pred_segments) {
      if (pred_matched.count(ps.id)) continue;
      std::int64_t inter = get(VOID, ps.id);
      auto c = crowd.find(ps.category_id);
      if (c != crowd.end()) inter += get(c->second, ps.id);
      if (double(inter) / double(parea[ps.id]) > 0.5) continue;
      stats_[ps.category_id].fp += 1;
    }
  }

  pq_results finish() const {
    pq_results r;
    for (const auto& c : cats_) r.stats[c.id] = stats_.at(c.id);
    auto average = [&](int isthing, bool fill) {  // -1 all, 1 things, 0 stuff
      double pq = 0, sq = 0, rq = 0;
      int n = 0;
      for (const auto& c : cats_) {
        if (isthing >= 0 && int(c.isthing) != isthing) continue;
        const auto& s = stats_.at(c.id);
        if (s.tp + s.fp + s.fn == 0) {
          if (fill) r.per_class[c.id] = pq_value{};
          continue;
        }
        ++n;
        const double den = (double(s.tp) + 0.5 * double(s.fp)) + 0.5 * double(s.fn);
        pq_value v;
        v.pq = s.iou / den;
        v.sq = s.tp ? s.iou / double(s.tp) : 0.0;
        v.rq = double(s.tp) / den;
        v.n = 1;
        if (fill) r.per_class[c.id] = v;
        pq += v.pq;
        sq += v.sq;
        rq += v.rq;
      }
      pq_value out;
      out.n = n;
      if (n) out.pq = pq / n, out.sq = sq / n, out.rq = rq / n;
      return out;
    };
    r.all = average(-1, true);
    r.things = average(1, false);
    r.stuff = average(0, false);
    return r;
  }

 private:
  std::vector<panoptic_category> cats_;
  std::map<int, pq_class_stat> stats_;
  std::int64_t images_ = 0;
};

// ========================================================================================= caption

namespace detail {
inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

inline std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    std::size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}
}  // namespace detail

/// The caption tokenization used for BLEU / CIDEr (standing in for pycocoevalcap's Java PTBTokenizer
/// followed by its punctuation removal), ASCII only: lowercase; the characters , ; : ? ! " ( ) { }
/// become spaces; split on whitespace; strip . ' ` - from both ends of every word; drop empty words.
inline std::vector<std::string> caption_tokens(std::string_view s) {
  std::string t(s);
  for (char& c : t) {
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    if (std::string_view(",;:?!\"(){}").find(c) != std::string_view::npos) c = ' ';
  }
  std::vector<std::string> out;
  for (auto& w : detail::split_ws(t)) {
    const std::string_view strip = ".'`-";
    const std::size_t b = w.find_first_not_of(strip);
    if (b == std::string::npos) continue;
    const std::size_t e = w.find_last_not_of(strip);
    out.push_back(w.substr(b, e - b + 1));
  }
  return out;
}

struct caption_score_options {
  /// true: caption_tokens on every string (pycocoevalcap's evaluation after PTB tokenization);
  /// false: the raw strings split on whitespace, what upstream's Cap_Metrics scores during training.
  bool tokenize = true;
};

struct caption_scores {
  std::array<double, 4> bleu{};        // BLEU-1..4, corpus level
  double cider = 0;                    // CIDEr-D, mean over images
  std::vector<double> cider_per_image;  // in id order
};

namespace detail {
/// n-grams (n = 1..4) of a word list with counts, per n in first-occurrence order (as pycocoevalcap's
/// precook fills its dict).
struct ngram_counts {
  std::array<std::vector<std::pair<std::string, std::int64_t>>, 4> items;
  std::array<std::unordered_map<std::string, std::size_t>, 4> index;
  std::int64_t len = 0;
  std::int64_t get(int k, const std::string& g) const {
    auto it = index[std::size_t(k)].find(g);
    return it == index[std::size_t(k)].end() ? 0 : items[std::size_t(k)][it->second].second;
  }
};

inline ngram_counts precook(const std::vector<std::string>& words) {
  ngram_counts c;
  c.len = std::int64_t(words.size());
  for (std::size_t k = 0; k < 4; ++k) {
    for (std::size_t i = 0; i + k < words.size(); ++i) {
      std::string g = words[i];
      for (std::size_t m = 1; m <= k; ++m) g += ' ', g += words[i + m];
      auto [it, fresh] = c.index[k].emplace(g, c.items[k].size());
      if (fresh) c.items[k].emplace_back(std::move(g), 1);
      else ++c.items[k][it->second].second;
    }
  }
  return c;
}
}  // namespace detail

/// BLEU-1..4 (pycocoevalcap Bleu(4), option "closest") and CIDEr-D (Cider(): n 4, sigma 6, idf from the
/// references of these images, length penalty on the bigram count, clipping, x10). `refs` and `hyps`
/// must have the same ids; every image needs at least one reference.
inline caption_scores score_captions(const std::map<std::int64_t, std::vector<std::string>>& refs,
                                     const std::map<std::int64_t, std::string>& hyps,
                                     const caption_score_options& opt = {}) {
  GYOLO_CHECK(refs.size() == hyps.size(), "metrics: captions: " + std::to_string(hyps.size()) +
                                              " hypotheses for " + std::to_string(refs.size()) + " images");
  auto words = [&](const std::string& s) { return opt.tokenize ? caption_tokens(s) : detail::split_ws(s); };
  std::vector<detail::ngram_counts> tests;
  std::vector<std::vector<detail::ngram_counts>> crefs;
  for (const auto& [id, rs] : refs) {
    auto h = hyps.find(id);
    GYOLO_CHECK(h != hyps.end(), "metrics: captions: no hypothesis for image " + std::to_string(id));
    GYOLO_CHECK(!rs.empty(), "metrics: captions: no reference for image " + std::to_string(id));
    tests.push_back(detail::precook(words(h->second)));
    crefs.emplace_back();
    for (const auto& r : rs) crefs.back().push_back(detail::precook(words(r)));
  }
  caption_scores out;
  const std::size_t n_img = tests.size();
  if (n_img == 0) return out;
  // ---- BLEU (bleu_scorer.py)
  {
    std::int64_t testlen = 0, reflen = 0;
    std::array<std::int64_t, 4> guess{}, correct{};
    for (std::size_t i = 0; i < n_img; ++i) {
      const auto& t = tests[i];
      std::int64_t best_d = -1, best_l = 0;
      for (const auto& r : crefs[i]) {
        const std::int64_t d = std::abs(r.len - t.len);
        if (best_d < 0 || d < best_d || (d == best_d && r.len < best_l)) best_d = d, best_l = r.len;
      }
      testlen += t.len;
      reflen += best_l;
      for (std::size_t k = 0; k < 4; ++k) {
        guess[k] += std::max<std::int64_t>(0, t.len - std::int64_t(k));
        for (const auto& [g, cnt] : t.items[k]) {
          std::int64_t mx = 0;
          for (const auto& r : crefs[i]) mx = std::max(mx, r.get(int(k), g));
          correct[k] += std::min(mx, cnt);
        }
      }
    }
    constexpr double small = 1e-9, tiny = 1e-15;
    double bleu = 1.0;
    for (std::size_t k = 0; k < 4; ++k) {
      bleu *= (double(correct[k]) + tiny) / (double(guess[k]) + small);
      out.bleu[k] = std::pow(bleu, 1.0 / double(k + 1));
    }
    const double ratio = (double(testlen) + tiny) / (double(reflen) + small);
    if (ratio < 1)
      for (auto& b : out.bleu) b *= std::exp(1 - 1 / ratio);
  }
  // ---- CIDEr-D (cider_scorer.py)
  {
    std::unordered_map<std::string, double> df;
    for (const auto& rs : crefs) {
      std::set<std::pair<int, std::string>> seen;
      for (const auto& r : rs)
        for (int k = 0; k < 4; ++k)
          for (const auto& [g, cnt] : r.items[std::size_t(k)]) seen.emplace(k, g);
      for (const auto& kg : seen) df[kg.second] += 1.0;  // n-grams of different n never collide (spaces)
    }
    const double ref_len = std::log(double(n_img));
    struct vec_t {
      std::array<std::vector<std::pair<std::string, double>>, 4> v;
      std::array<std::unordered_map<std::string, double>, 4> map;
      std::array<double, 4> norm{};
      std::int64_t length = 0;
    };
    auto counts2vec = [&](const detail::ngram_counts& c) {
      vec_t r;
      for (std::size_t k = 0; k < 4; ++k) {
        for (const auto& [g, tf] : c.items[k]) {
          auto it = df.find(g);
          const double d = std::log(std::max(1.0, it == df.end() ? 0.0 : it->second));
          const double val = double(tf) * (ref_len - d);
          r.v[k].emplace_back(g, val);
          r.map[k][g] = val;
          r.norm[k] += val * val;
          if (k == 1) r.length += tf;
        }
        r.norm[k] = std::sqrt(r.norm[k]);
      }
      return r;
    };
    constexpr double sigma = 6.0;
    std::vector<double> scores;
    for (std::size_t i = 0; i < n_img; ++i) {
      const vec_t hv = counts2vec(tests[i]);
      std::array<double, 4> score{};
      for (const auto& r : crefs[i]) {
        const vec_t rv = counts2vec(r);
        const double delta = double(hv.length - rv.length);
        for (std::size_t k = 0; k < 4; ++k) {
          double val = 0;
          for (const auto& [g, vh] : hv.v[k]) {
            auto it = rv.map[k].find(g);
            const double vr = it == rv.map[k].end() ? 0.0 : it->second;
            val += std::min(vh, vr) * vr;
          }
          if (hv.norm[k] != 0 && rv.norm[k] != 0) val /= (hv.norm[k] * rv.norm[k]);
          val *= std::pow(2.718281828459045, -(delta * delta) / (2 * sigma * sigma));
          score[k] += val;
        }
      }
      double avg = (((score[0] + score[1]) + score[2]) + score[3]) / 4.0;
      avg /= double(crefs[i].size());
      avg *= 10.0;
      scores.push_back(avg);
    }
    out.cider = detail::np_mean(scores);
    out.cider_per_image = scores;
  }
  return out;
}

}  // namespace gyolo::metrics
