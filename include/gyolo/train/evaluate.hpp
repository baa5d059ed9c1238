// Validation of a model being trained (the EMA, folded into the inference form) on batches of a
// val split (gyolo/data/loader.hpp), with the metric code of train/metrics.hpp:
//   - boxes: caption/val.py's matching and ap_per_class on NMS outputs with val.py's settings
//     (conf 0.001, IoU 0.7, max_det 300, multi-label), in input pixels;
//   - masks: the same on instance masks, compared at the prototypes' resolution (1/4 of the input,
//     where the ground-truth masks are made), not upsampled to the input as val.py does;
//   - semantic: mIoU of the per-pixel arg-max at 1/4 resolution against the exclusive label map
//     (255 ignored), IoUMetric's arithmetic;
//   - panoptic: PQ / SQ / RQ (panopticapi's pq_compute arithmetic) of a fusion made as predict
//     does it (instances above conf 0.25 by score, then the stuff arg-max on free pixels) against
//     the ground truth's instances and stuff, at 1/4 resolution;
//   - captions: BLEU-1..4 and CIDEr-D (pycocoevalcap's arithmetic) of the 5-beam caption against
//     every reference caption of the image.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gyolo/core/compiled_once.hpp"
#include "gyolo/data/loader.hpp"
#include "gyolo/layers/grit.hpp"
#include "gyolo/model/train_model.hpp"
#include "gyolo/model/vision.hpp"
#include "gyolo/post/nms.hpp"
#include "gyolo/text/detokenize.hpp"
#include "gyolo/train/checkpoint.hpp"
#include "gyolo/train/metrics.hpp"

namespace gyolo::train {

struct eval_metrics {
  metrics::det_results det;
  metrics::semantic_iou_result semantic;
  metrics::pq_results panoptic;
  metrics::caption_scores caption;
  bool has_caption = false;
  std::int64_t images = 0;

  double box_map50() const { return det.computed ? det.box.map50 : 0.0; }
  double box_map() const { return det.computed ? det.box.map : 0.0; }
  double mask_map50() const { return det.computed ? det.mask.map50 : 0.0; }
  double mask_map() const { return det.computed ? det.mask.map : 0.0; }
  double miou() const { return std::isnan(semantic.miou) ? 0.0 : semantic.miou; }

  nlohmann::json to_json() const {
    nlohmann::json j;
    j["images"] = images;
    j["box_map50"] = box_map50();
    j["box_map50_95"] = box_map();
    j["box_p"] = det.computed ? det.box.mp : 0.0;
    j["box_r"] = det.computed ? det.box.mr : 0.0;
    j["mask_map50"] = mask_map50();
    j["mask_map50_95"] = mask_map();
    j["semantic_miou"] = miou();
    j["semantic_acc"] = semantic.aacc;
    nlohmann::json per = nlohmann::json::array();  // per semantic channel, null where undefined
    for (double v : semantic.iou) per.push_back(std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v));
    j["semantic_iou"] = per;
    j["pq"] = panoptic.all.pq;
    j["sq"] = panoptic.all.sq;
    j["rq"] = panoptic.all.rq;
    j["pq_things"] = panoptic.things.pq;
    j["pq_stuff"] = panoptic.stuff.pq;
    if (has_caption) {
      j["bleu4"] = caption.bleu[3];
      j["bleu1"] = caption.bleu[0];
      j["cider"] = caption.cider;
    }
    return j;
  }
  std::string summary() const {
    char b[256];
    std::snprintf(b, sizeof b, "box mAP50 %.3f mAP50-95 %.3f | mask mAP50 %.3f mAP50-95 %.3f | mIoU %.3f | PQ %.3f | BLEU-4 %.3f CIDEr %.3f",
                  box_map50(), box_map(), mask_map50(), mask_map(), miou(), panoptic.all.pq, has_caption ? caption.bleu[3] : 0.0,
                  has_caption ? caption.cider : 0.0);
    return b;
  }
};

/// One instance mask at the prototypes' resolution: sigmoid(coef . proto) > 0.5 inside the box
/// (upstream's crop_mask on the box scaled to that resolution).
inline std::vector<std::uint8_t> low_res_mask(const float* proto, int nm, int mh, int mw, const float* coef, const float box[4], float scale) {
  std::vector<std::uint8_t> m(std::size_t(mh) * std::size_t(mw), 0);
  const float x1 = box[0] * scale, y1 = box[1] * scale, x2 = box[2] * scale, y2 = box[3] * scale;
  const std::size_t plane = std::size_t(mh) * std::size_t(mw);
  for (int y = 0; y < mh; ++y) {
    if (!(float(y) >= y1 && float(y) < y2)) continue;
    for (int x = 0; x < mw; ++x) {
      if (!(float(x) >= x1 && float(x) < x2)) continue;
      float s = 0;
      const std::size_t o = std::size_t(y) * std::size_t(mw) + std::size_t(x);
      for (int k = 0; k < nm; ++k) s += coef[k] * proto[std::size_t(k) * plane + o];
      m[o] = s > 0.0f ? 1 : 0;
    }
  }
  return m;
}

template <class B>
class evaluator {
 public:
  /// model: the train form (e.g. the EMA), folded here; info: its classes, stuff and vocabulary.
  GYOLO_COMPILED_ONCE evaluator(train_model<B>& model, const model_info& info, context<B>& ctx)
      : ctx_(ctx), nc_(info.variant.nc), S_(info.variant.nc + info.variant.sem_nc), nm_(info.variant.nm),
        vision_(nn::fold<vision_graph<B>>(model.vision, false)), det_(nc_), sem_(S_, {255}), pq_(categories()) {
    if (!info.vocab.empty()) {
      grit_ = nn::fold<grit_head<B>>(model.grit);
      detok_ = vocabulary(info.vocab);
      has_caption_ = true;
    }
  }

  GYOLO_COMPILED_ONCE void add(const data::batch& b) {
    GYOLO_CHECK(b.S == S_, "evaluate: the batch has " + std::to_string(b.S) + " semantic channels, the model " + std::to_string(S_));
    auto out = vision_.forward(ctx_, cview<float>{b.imgs.data(), b.B, 3, b.H, b.W, std::int64_t(3) * b.H * b.W}, false, has_caption_);
    const auto ps = out.pred.shape();
    const auto pr = out.proto.shape();
    const auto ss = out.semantic.shape();
    GYOLO_CHECK(pr.h == b.h && pr.w == b.w && ss.h == b.h && ss.w == b.w, "evaluate: prototype / semantic size differs from the masks'");
    const float scale = float(b.h) / float(b.H);
    const std::size_t hw = std::size_t(b.h) * std::size_t(b.w);
    for (int i = 0; i < b.B; ++i) {
      // detections
      const post::pred_view pv{out.pred.data() + std::int64_t(i) * ps.c * ps.h * ps.w, ps.c, ps.w, std::int64_t(ps.h) * ps.w};
      const auto raw = post::non_max_suppression(pv, nc_, post::nms_options::val());
      std::vector<metrics::det_prediction> preds;
      std::vector<std::vector<std::uint8_t>> pm;
      const float* proto = out.proto.data() + std::int64_t(i) * pr.c * pr.h * pr.w;
      std::vector<float> coef(static_cast<std::size_t>(nm_));
      for (const auto& q : raw) {
        preds.push_back({{q.x1, q.y1, q.x2, q.y2}, q.score, q.cls});
        for (int k = 0; k < nm_; ++k) coef[std::size_t(k)] = pv.at(4 + nc_ + k, q.anchor);
        const float box[4] = {q.x1, q.y1, q.x2, q.y2};
        pm.push_back(low_res_mask(proto, nm_, pr.h, pr.w, coef.data(), box, scale));
      }
      std::vector<metrics::det_label> labels;
      for (const auto& g : b.gt[std::size_t(i)]) labels.push_back({g.cls, {g.x0, g.y0, g.x1, g.y1}});
      const int t0 = b.target_begin[std::size_t(i)], t1 = b.target_begin[std::size_t(i) + 1];
      std::vector<std::vector<std::uint8_t>> gm;
      for (int t = t0; t < t1; ++t) {
        std::vector<std::uint8_t> m(hw);
        const float* src = b.masks.data() + std::size_t(t) * hw;
        for (std::size_t k = 0; k < hw; ++k) m[k] = src[k] > 0.5f ? 1 : 0;
        gm.push_back(std::move(m));
      }
      GYOLO_CHECK(int(gm.size()) == int(labels.size()), "evaluate: the batch's masks and ground-truth boxes differ in number");
      std::vector<metrics::mask_view> pv_m, gv_m;
      for (auto& m : pm) pv_m.push_back({b.h, b.w, m.data()});
      for (auto& m : gm) gv_m.push_back({b.h, b.w, m.data()});
      det_.add_image_masks(preds, labels, pv_m, gv_m);
      // semantic
      const float* sl = out.semantic.data() + std::int64_t(i) * ss.c * ss.h * ss.w;
      std::vector<std::uint8_t> arg(hw);
      for (std::size_t k = 0; k < hw; ++k) {
        int best = 0;
        float bv = sl[k];
        for (int c = 1; c < ss.c; ++c)
          if (sl[std::size_t(c) * hw + k] > bv) bv = sl[std::size_t(c) * hw + k], best = c;
        arg[k] = std::uint8_t(best);
      }
      const std::uint8_t* gl = b.semantic_labels.data() + std::size_t(i) * hw;
      sem_.add_image<std::uint8_t>(std::span<const std::uint8_t>(arg), std::span<const std::uint8_t>(gl, hw));
      // panoptic
      panoptic_image(preds, pm, arg, gm, labels, gl, hw);
      // captions
      if (has_caption_) refs_[next_id_] = b.ref_captions[std::size_t(i)];
      ++next_id_;
      ++images_;
    }
    if (has_caption_) {
      grit_inputs in{out.x17.cv(), out.x20.cv(), out.x23.cv(), out.x11.cv(), out.x44.cv(), {out.d3[0].cv(), out.d3[1].cv(), out.d3[2].cv()},
                     out.semantic.cv()};
      auto hyps = grit_(ctx_, in);
      for (int i = 0; i < b.B; ++i) hyps_[next_id_ - b.B + i] = detok_.decode(hyps[std::size_t(i)].tokens);
    }
  }

  GYOLO_COMPILED_ONCE eval_metrics finish() const {
    eval_metrics m;
    m.det = det_.finish();
    m.semantic = sem_.finish();
    m.panoptic = pq_.finish();
    m.images = images_;
    if (has_caption_ && !refs_.empty()) {
      m.caption = metrics::score_captions(refs_, hyps_, metrics::caption_score_options{});
      m.has_caption = true;
    }
    return m;
  }

  /// The captions made so far (image number -> text), for logs.
  const std::map<std::int64_t, std::string>& captions() const { return hyps_; }

 private:
  std::vector<metrics::panoptic_category> categories() const {
    std::vector<metrics::panoptic_category> c;
    for (int k = 0; k < S_; ++k) c.push_back({k + 1, k < nc_});  // category id = channel + 1 (0 is void)
    return c;
  }
  /// Panoptic maps of one image at 1/4 resolution: ids are 1 + instance number for things, 1000 +
  /// channel for stuff.
  void panoptic_image(const std::vector<metrics::det_prediction>& preds, const std::vector<std::vector<std::uint8_t>>& pm,
                      const std::vector<std::uint8_t>& arg, const std::vector<std::vector<std::uint8_t>>& gm,
                      const std::vector<metrics::det_label>& labels, const std::uint8_t* gl, std::size_t hw) {
    std::vector<std::uint32_t> pid(hw, 0), gid(hw, 0);
    std::vector<metrics::panoptic_segment> ps, gs;
    // prediction: instances by score (NMS output is sorted by score), conf >= 0.25
    int n = 0;
    for (std::size_t d = 0; d < preds.size(); ++d) {
      if (preds[d].conf < 0.25f) continue;
      const std::uint32_t id = std::uint32_t(++n);
      std::int64_t area = 0, free = 0;
      for (std::size_t k = 0; k < hw; ++k)
        if (pm[d][k]) ++area, free += pid[k] == 0;
      if (area == 0 || free * 2 < area) continue;  // mostly covered by better instances
      for (std::size_t k = 0; k < hw; ++k)
        if (pm[d][k] && pid[k] == 0) pid[k] = id;
      ps.push_back({id, preds[d].cls + 1, false});
    }
    std::vector<char> seen(std::size_t(S_), 0);
    for (std::size_t k = 0; k < hw; ++k)
      if (pid[k] == 0 && arg[k] >= nc_) {
        pid[k] = 1000u + arg[k];
        if (!seen[arg[k]]) seen[arg[k]] = 1, ps.push_back({1000u + arg[k], int(arg[k]) + 1, false});
      }
    // ground truth
    for (std::size_t t = 0; t < gm.size(); ++t) {
      const std::uint32_t id = std::uint32_t(t + 1);
      bool any = false;
      for (std::size_t k = 0; k < hw; ++k)
        if (gm[t][k] && gid[k] == 0) gid[k] = id, any = true;
      if (any) gs.push_back({id, labels[t].cls + 1, false});
    }
    std::fill(seen.begin(), seen.end(), 0);
    for (std::size_t k = 0; k < hw; ++k)
      if (gid[k] == 0 && gl[k] != 255 && gl[k] >= nc_ && gl[k] < S_) {
        gid[k] = 1000u + gl[k];
        if (!seen[gl[k]]) seen[gl[k]] = 1, gs.push_back({1000u + gl[k], int(gl[k]) + 1, false});
      }
    // pixels the panoptic pass drops (ids whose segment was skipped) are void
    pq_.add_image(gid, gs, pid, ps);
  }

  context<B>& ctx_;
  int nc_, S_, nm_;
  vision_graph<B> vision_;
  grit_head<B> grit_;
  vocabulary detok_;
  bool has_caption_ = false;
  metrics::det_stats_accumulator det_;
  metrics::semantic_iou_accumulator sem_;
  metrics::pq_accumulator pq_;
  std::map<std::int64_t, std::vector<std::string>> refs_;
  std::map<std::int64_t, std::string> hyps_;
  std::int64_t next_id_ = 0, images_ = 0;
};

/// Compiled once in gyolo's library (src/train_cpu.cpp).
extern template class evaluator<cpu>;

}  // namespace gyolo::train
