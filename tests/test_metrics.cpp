// Validation metrics (include/gyolo/train/metrics.hpp) against upstream's own metric code: fixtures in
// tests/fixtures/metrics/, made by weights_tools/make_metric_fixtures.py (caption/val.py process_batch +
// utils ap_per_class, the semantic IoUMetric, panopticapi pq_compute, pycocoevalcap BLEU / CIDEr).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gyolo/train/metrics.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_metrics {

namespace {

using nlohmann::json;
namespace gm = gyolo::metrics;

const std::string mdir = std::string(GYOLO_FIXTURES_DIR) + "/metrics/";

json load_json(const std::string& name) {
  std::ifstream f(mdir + name);
  REQUIRE(f.good());
  return json::parse(f);
}

/// |a - b| <= rel * |b| + abs
bool near(double a, double b, double rel = 1e-9, double abs = 1e-12) {
  return std::fabs(a - b) <= rel * std::fabs(b) + abs;
}

std::vector<std::uint8_t> unhex_mask(const std::string& hex, int h, int w) {
  std::vector<std::uint8_t> m(std::size_t(h) * std::size_t(w));
  REQUIRE(hex.size() == (m.size() + 7) / 8 * 2);
  for (std::size_t i = 0; i < m.size(); ++i) {
    const char c = hex[i / 4];
    const int nib = c <= '9' ? c - '0' : c - 'a' + 10;
    m[i] = std::uint8_t((nib >> (3 - int(i % 4))) & 1);
  }
  return m;
}

void check_summary(const gm::det_summary& s, const json& j, const std::string& what) {
  INFO(what);
  CHECK(near(s.mp, j["mp"].get<double>()));
  CHECK(near(s.mr, j["mr"].get<double>()));
  CHECK(near(s.map50, j["map50"].get<double>()));
  CHECK(near(s.map, j["map"].get<double>()));
  REQUIRE(s.classes.size() == j["classes"].size());
  for (std::size_t c = 0; c < s.classes.size(); ++c) {
    INFO("class row " << c);
    CHECK(s.classes[c].cls == j["classes"][c].get<int>());
    CHECK(near(s.classes[c].p, j["p"][c].get<double>()));
    CHECK(near(s.classes[c].r, j["r"][c].get<double>()));
    CHECK(near(s.classes[c].f1, j["f1"][c].get<double>()));
    for (int t = 0; t < gm::num_iou_thresholds; ++t) CHECK(near(s.classes[c].ap[std::size_t(t)], j["ap"][c][t].get<double>()));
  }
}

}  // namespace

TEST_CASE("detection matching and mAP equal upstream val.py / ap_per_class", "[metrics]") {
  const json fx = load_json("det.json");
  for (int t = 0; t < gm::num_iou_thresholds; ++t)
    CHECK(gm::iou_thresholds()[std::size_t(t)] == float(fx["iouv"][t].get<double>()));
  for (const auto& c : fx["cases"]) {
    const std::string name = c["name"];
    INFO("case " << name);
    const int nc = c["nc"];
    gm::det_stats_accumulator acc(nc), acc_box(nc);
    for (std::size_t im = 0; im < c["images"].size(); ++im) {
      INFO("image " << im);
      const auto& ji = c["images"][im];
      std::vector<gm::det_prediction> preds;
      std::vector<gm::det_label> labels;
      for (const auto& p : ji["preds"])
        preds.push_back({{float(p[0].get<double>()), float(p[1].get<double>()), float(p[2].get<double>()),
                          float(p[3].get<double>())},
                         float(p[4].get<double>()), p[5].get<int>()});
      for (const auto& l : ji["labels"])
        labels.push_back({l[0].get<int>(), {float(l[1].get<double>()), float(l[2].get<double>()),
                                            float(l[3].get<double>()), float(l[4].get<double>())}});
      const int mh = ji["mask_hw"][0], mw = ji["mask_hw"][1];
      const int gh = ji["gt_mask_hw"][0], gw = ji["gt_mask_hw"][1];
      std::vector<std::vector<std::uint8_t>> pm, gmk;
      for (const auto& s : ji["pred_masks"]) pm.push_back(unhex_mask(s, mh, mw));
      if (c["overlap"].get<bool>()) {  // one index map per image, label i = value i + 1
        const auto idx = ji["gt_masks"][0].get<std::vector<std::uint8_t>>();
        REQUIRE(idx.size() == std::size_t(gh) * std::size_t(gw));
        gmk = gm::overlap_to_binary_masks({gh, gw, idx.data()}, int(labels.size()));
      } else {
        for (const auto& s : ji["gt_masks"]) gmk.push_back(unhex_mask(s, gh, gw));
      }
      if (gh != mh || gw != mw)
        for (auto& m : gmk) m = gm::resize_gt_mask({gh, gw, m.data()}, mh, mw);
      std::vector<gm::mask_view> pv, gv;
      for (const auto& m : pm) pv.push_back({mh, mw, m.data()});
      for (const auto& m : gmk) gv.push_back({mh, mw, m.data()});
      // the per-image true-positive matrices of process_batch
      if (!preds.empty() && !labels.empty()) {
        const auto cb = gm::match_predictions(preds, labels, gm::box_iou_matrix(labels, preds));
        const auto cm = gm::match_predictions(preds, labels, gm::mask_iou_matrix(gv, pv));
        for (std::size_t d = 0; d < preds.size(); ++d)
          for (int t = 0; t < gm::num_iou_thresholds; ++t) {
            INFO("prediction " << d << " threshold " << t);
            CHECK(int(cb[d][std::size_t(t)]) == ji["correct_box"][d][t].get<int>());
            CHECK(int(cm[d][std::size_t(t)]) == ji["correct_mask"][d][t].get<int>());
          }
      }
      acc.add_image_masks(preds, labels, pv, gv);
      acc_box.add_image(preds, labels);
    }
    const auto r = acc.finish();
    CHECK(r.computed == c["computed"].get<bool>());
    REQUIRE(r.instances.size() == c["nt"].size());
    for (std::size_t k = 0; k < r.instances.size(); ++k) CHECK(r.instances[k] == c["nt"][k].get<std::int64_t>());
    CHECK(r.images == std::int64_t(c["images"].size()));
    check_summary(r.box, c["box"], "box");
    check_summary(r.mask, c["mask"], "mask");
    if (r.computed) {  // without masks the gate is on box true positives; the box results are the same
      const auto rb = acc_box.finish();
      CHECK(rb.computed);
      check_summary(rb.box, c["box"], "box only");
      CHECK(rb.mask.classes.empty());
    }
  }
}

TEST_CASE("detection metrics: edge cases", "[metrics]") {
  gm::det_stats_accumulator acc(3);
  CHECK_FALSE(acc.finish().computed);
  acc.add_image({}, {});
  const auto r = acc.finish();
  CHECK_FALSE(r.computed);
  CHECK(r.images == 1);
  CHECK(r.total_instances == 0);
  // no masks after masks, and bad classes, are errors
  std::vector<gm::det_label> bad{{5, {0, 0, 1, 1}}};
  CHECK_THROWS_AS(acc.add_image({}, bad), gyolo::error);
  std::vector<gm::det_prediction> p{{{0, 0, 10, 10}, 0.9f, 0}};
  std::vector<gm::det_label> l{{0, {0, 0, 10, 10}}};
  std::vector<std::uint8_t> m(16, 1);
  std::vector<gm::mask_view> mv{{4, 4, m.data()}};
  CHECK_THROWS_AS(acc.add_image_masks(p, l, mv, mv), gyolo::error);  // mixes with the box-only image above
  std::vector<std::uint8_t> m5(25, 1);
  std::vector<gm::mask_view> mv5{{5, 5, m5.data()}};
  gm::det_stats_accumulator am(1);
  CHECK_THROWS_AS(am.add_image_masks(p, l, mv, mv5), gyolo::error);  // sizes differ
  // a perfect single detection: P = R = 1, and AP 0.995 at every threshold, as upstream's 101-point
  // interpolation gives (the recall sentinel 1.0 repeats the last recall, so precision drops to 0 at x = 1)
  gm::det_stats_accumulator one(1);
  one.add_image(p, l);
  const auto ro = one.finish();
  REQUIRE(ro.computed);
  CHECK(ro.box.map == Approx(0.995).epsilon(1e-12));
  CHECK(ro.box.mp == Approx(1.0));
  CHECK(ro.box.mr == Approx(1.0));
  // the order of equal confidences does not change the result when the tied predictions are alike
  gm::det_stats_accumulator a1(1), a2(1);
  std::vector<gm::det_prediction> two{{{0, 0, 10, 10}, 0.5f, 0}, {{50, 50, 60, 60}, 0.5f, 0}};
  std::vector<gm::det_prediction> owt{two[1], two[0]};
  std::vector<gm::det_label> l2{{0, {0, 0, 10, 10}}, {0, {50, 50, 60, 60}}};
  a1.add_image(two, l2);
  a2.add_image(owt, l2);
  CHECK(a1.finish().box.map == a2.finish().box.map);
}

TEST_CASE("semantic mIoU equals upstream IoUMetric", "[metrics]") {
  const json fx = load_json("semantic.json");
  gm::semantic_iou_accumulator acc(fx["num_classes"].get<int>(), fx["ignore"].get<std::vector<int>>());
  for (const auto& im : fx["images"]) {
    const auto pred = im["pred"].get<std::vector<std::int32_t>>();
    const auto gt = im["gt"].get<std::vector<std::int32_t>>();
    acc.add_image(std::span<const std::int32_t>(pred), std::span<const std::int32_t>(gt));
  }
  const auto r = acc.finish();
  REQUIRE(r.iou.size() == fx["iou"].size());
  for (std::size_t c = 0; c < r.iou.size(); ++c) {
    INFO("class " << c);
    if (fx["iou"][c].is_null()) {
      CHECK(std::isnan(r.iou[c]));
    } else {
      CHECK(near(r.iou[c], fx["iou"][c].get<double>(), 1e-6, 1e-7));  // upstream is float32
    }
    if (fx["acc"][c].is_null()) {
      CHECK(std::isnan(r.acc[c]));
    } else {
      CHECK(near(r.acc[c], fx["acc"][c].get<double>(), 1e-6, 1e-7));
    }
  }
  CHECK(near(r.aacc, fx["aacc"].get<double>(), 1e-6, 1e-7));
  CHECK(near(r.miou_percent, fx["miou_percent"].get<double>(), 1e-6, 1e-5));
}

TEST_CASE("panoptic PQ equals panopticapi pq_compute", "[metrics]") {
  const json fx = load_json("panoptic.json");
  std::vector<gm::panoptic_category> cats;
  for (const auto& c : fx["categories"]) cats.push_back({c["id"].get<int>(), c["isthing"].get<int>() == 1});
  gm::pq_accumulator acc(cats);
  for (const auto& im : fx["images"]) {
    const auto gt = im["gt"].get<std::vector<std::uint32_t>>();
    const auto pr = im["pred"].get<std::vector<std::uint32_t>>();
    std::vector<gm::panoptic_segment> gs, ps;
    for (const auto& s : im["gt_segments"])
      gs.push_back({s["id"].get<std::uint32_t>(), s["category_id"].get<int>(), s["iscrowd"].get<int>() == 1});
    for (const auto& s : im["pred_segments"]) ps.push_back({s["id"].get<std::uint32_t>(), s["category_id"].get<int>(), false});
    acc.add_image(gt, gs, pr, ps);
  }
  const auto r = acc.finish();
  for (const auto& [key, st] : fx["stats"].items()) {
    INFO("category " << key);
    const auto& mine = r.stats.at(std::stoi(key));
    CHECK(mine.tp == st["tp"].get<std::int64_t>());
    CHECK(mine.fp == st["fp"].get<std::int64_t>());
    CHECK(mine.fn == st["fn"].get<std::int64_t>());
    CHECK(near(mine.iou, st["iou"].get<double>()));
  }
  const std::pair<const char*, const gm::pq_value*> groups[] = {{"all", &r.all}, {"things", &r.things}, {"stuff", &r.stuff}};
  for (const auto& [name, v] : groups) {
    INFO(name);
    const auto& j = fx["results"][name];
    CHECK(v->n == j["n"].get<int>());
    CHECK(near(v->pq, j["pq"].get<double>()));
    CHECK(near(v->sq, j["sq"].get<double>()));
    CHECK(near(v->rq, j["rq"].get<double>()));
  }
  for (const auto& [key, pc] : fx["results"]["per_class"].items()) {
    INFO("per class " << key);
    const auto& mine = r.per_class.at(std::stoi(key));
    CHECK(near(mine.pq, pc["pq"].get<double>()));
    CHECK(near(mine.sq, pc["sq"].get<double>()));
    CHECK(near(mine.rq, pc["rq"].get<double>()));
  }
  // a predicted segment id missing from the map is an error, as in pq_compute
  gm::pq_accumulator bad(cats);
  std::vector<std::uint32_t> z(4, 0);
  std::vector<gm::panoptic_segment> none, ghost{{7, 1, false}};
  CHECK_THROWS_AS(bad.add_image(z, none, z, ghost), gyolo::error);
  std::vector<std::uint32_t> stray{0, 9, 9, 0};
  CHECK_THROWS_AS(bad.add_image(z, none, stray, none), gyolo::error);
}

TEST_CASE("caption BLEU and CIDEr-D equal pycocoevalcap", "[metrics]") {
  const json fx = load_json("caption.json");
  std::map<std::int64_t, std::vector<std::string>> refs;
  std::map<std::int64_t, std::string> hyps;
  for (const auto& id : fx["ids"]) {
    const std::int64_t i = id.get<std::int64_t>();
    refs[i] = fx["refs"][std::to_string(i)].get<std::vector<std::string>>();
    hyps[i] = fx["hyps"][std::to_string(i)].get<std::string>();
  }
  for (const auto& [in, out] : fx["tokenize_examples"].items()) {
    std::string joined;
    for (const auto& w : gm::caption_tokens(in)) joined += (joined.empty() ? "" : " ") + w;
    CHECK(joined == out.get<std::string>());
  }
  const auto t = gm::score_captions(refs, hyps);
  const auto& jt = fx["results"]["tokenized"];
  for (int k = 0; k < 4; ++k) {
    INFO("BLEU-" << k + 1);
    CHECK(near(t.bleu[std::size_t(k)], jt["bleu"][k].get<double>()));
  }
  CHECK(near(t.cider, jt["cider"].get<double>()));
  REQUIRE(t.cider_per_image.size() == jt["cider_per_image"].size());
  for (std::size_t i = 0; i < t.cider_per_image.size(); ++i) {
    INFO("image " << i);
    CHECK(near(t.cider_per_image[i], jt["cider_per_image"][i].get<double>(), 1e-9, 1e-12));
  }
  gm::caption_score_options raw;
  raw.tokenize = false;
  const auto rr = gm::score_captions(refs, hyps, raw);
  CHECK(near(rr.bleu[3], fx["results"]["raw"]["bleu4"].get<double>()));
  CHECK(near(rr.cider, fx["results"]["raw"]["cider"].get<double>()));
  // ids must agree; every image needs a reference
  auto h2 = hyps;
  h2.erase(h2.begin());
  CHECK_THROWS_AS(gm::score_captions(refs, h2), gyolo::error);
  auto r2 = refs;
  r2.begin()->second.clear();
  CHECK_THROWS_AS(gm::score_captions(r2, hyps), gyolo::error);
}

}  // namespace test_metrics
