// Post-processing against upstream: fixtures made by weights_tools/make_post_fixtures.py, which
// runs upstream's non_max_suppression / scale_boxes / process_mask / hubconf _unletterbox and
// _stuff_to_panoptic (with torchvision.ops.nms and pycocotools stand-ins) on seeded synthetic raw
// outputs, and the whole pipeline on the tiny fixture model.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "gyolo/gyolo.hpp"
#include "gyolo/io/image.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_post {

using namespace gyolo;

namespace {

const std::string pdir = std::string(GYOLO_FIXTURES_DIR) + "/post/";

nlohmann::json load_json(const std::string& name) {
  std::ifstream f(pdir + name);
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

template <class T>
std::vector<T> load_as(const std::string& name, std::vector<std::int64_t>* shape = nullptr) {
  auto a = npy::load(pdir + name);
  if (shape) *shape = a.shape;
  return a.as<T>();
}

std::vector<std::uint32_t> load_u32(const std::string& name) {
  auto a = npy::load(pdir + name);
  REQUIRE(a.dtype == "<u4");
  std::vector<std::uint32_t> v(std::size_t(a.numel()));
  std::memcpy(v.data(), a.bytes.data(), v.size() * sizeof(std::uint32_t));
  return v;
}

/// Quantized fixture planes: value = q / 256 (exact).
std::vector<float> load_q(const std::string& name, std::vector<std::int64_t>* shape) {
  auto q = load_as<std::int16_t>(name, shape);
  std::vector<float> v(q.size());
  for (std::size_t i = 0; i < q.size(); ++i) v[i] = float(q[i]) / 256.0f;
  return v;
}

post::nms_options nms_from(const nlohmann::json& j) {
  post::nms_options o;
  o.conf = j.at("conf").get<double>();
  o.iou = j.at("iou").get<double>();
  o.max_det = j.at("max_det").get<int>();
  o.agnostic = j.at("agnostic").get<bool>();
  o.multi_label = j.at("multi_label").get<bool>();
  o.classes = j.at("classes").get<std::vector<int>>();
  return o;
}

/// Our letterbox geometry for an image of the fixture's original size (also checks that it
/// matches upstream's input size and padding).
post::letterbox_geometry geometry_from(const nlohmann::json& g) {
  const int h0 = g.at("orig_hw")[0], w0 = g.at("orig_hw")[1], imgsz = g.at("imgsz");
  const std::string mode = g.at("mode");
  const letterbox_mode m = mode == "val" ? letterbox_mode::val
                           : mode == "square" ? letterbox_mode::square
                           : mode == "hub" ? letterbox_mode::hub
                                           : letterbox_mode::predict;
  image_u8 img(h0, w0, 3);
  const auto p = prepare_input(img, imgsz, m);
  REQUIRE(p.geometry.input_h == g.at("input_hw")[0].get<int>());
  REQUIRE(p.geometry.input_w == g.at("input_hw")[1].get<int>());
  REQUIRE(p.geometry.dw == g.at("pad")[0].get<double>());
  REQUIRE(p.geometry.dh == g.at("pad")[1].get<double>());
  return p.geometry;
}

/// Upstream's NMS rows [N, 6 + nm] vs ours, exactly.
void require_same_dets(const std::vector<post::raw_detection>& ours, const post::pred_view& pv, int nm,
                       const std::vector<float>& ref, const std::vector<std::int64_t>& shape, const std::string& what) {
  INFO(what);
  REQUIRE(shape.size() == 2);
  const std::size_t n = std::size_t(shape[0]), cols = std::size_t(shape[1]);
  REQUIRE(cols == std::size_t(6 + nm));
  REQUIRE(ours.size() == n);
  for (std::size_t i = 0; i < n; ++i) {
    INFO("row " << i);
    const float* r = ref.data() + i * cols;
    const auto& d = ours[i];
    REQUIRE(d.x1 == r[0]);
    REQUIRE(d.y1 == r[1]);
    REQUIRE(d.x2 == r[2]);
    REQUIRE(d.y2 == r[3]);
    REQUIRE(d.score == r[4]);
    REQUIRE(float(d.cls) == r[5]);
    for (int k = 0; k < nm; ++k) REQUIRE(pv.at(4 + 80 + k, d.anchor) == r[6 + k]);
  }
}

/// Pixels that differ between two masks given as COCO RLE strings of the same size.
std::int64_t rle_diff(const std::string& a, const std::string& b, int h, int w, std::int64_t* area = nullptr) {
  const auto ma = post::rle_decode(post::rle_decode_string(a, h, w));
  const auto mb = post::rle_decode(post::rle_decode_string(b, h, w));
  std::int64_t d = 0, s = 0;
  for (std::size_t i = 0; i < ma.size(); ++i) d += ma[i] != mb[i], s += mb[i];
  if (area) *area = s;
  return d;
}

template <class A, class B>
double agreement(const A& ours, const std::vector<B>& ref) {
  REQUIRE(std::size_t(ours.size()) == ref.size());
  std::size_t same = 0, i = 0;
  for (auto v : ours) same += (std::int64_t(v) == std::int64_t(ref[i++]));
  return ref.empty() ? 1.0 : double(same) / double(ref.size());
}

struct synthetic_case {
  nlohmann::json meta;
  std::vector<std::int64_t> pshape, prshape, sshape;
  std::vector<float> pred, proto, sem;
  post::letterbox_geometry g;
  explicit synthetic_case(const std::string& name) {
    meta = load_json(name + ".json");
    pred = load_as<float>(name + ".pred.npy", &pshape);
    proto = load_q(name + ".proto_q.npy", &prshape);
    sem = load_q(name + ".semantic_q.npy", &sshape);
    g = geometry_from(meta.at("geometry"));
  }
  post::pred_view pv() const { return {pred.data(), int(pshape[1]), int(pshape[2]), pshape[2]}; }
};

}  // namespace

// A pipeline refers to its model: binding a temporary (pipeline(model::load(path))) must not compile.
static_assert(std::is_constructible_v<gyolo::pipeline<gyolo::cpu, gyolo::gyolo_c>, const gyolo::model<gyolo::cpu, gyolo::gyolo_c>&>);
static_assert(!std::is_constructible_v<gyolo::pipeline<gyolo::cpu, gyolo::gyolo_c>, gyolo::model<gyolo::cpu, gyolo::gyolo_c>&&>);
static_assert(!std::is_constructible_v<gyolo::pipeline<gyolo::cpu, gyolo::gyolo_c>, gyolo::model<gyolo::cpu, gyolo::gyolo_c>>);

TEST_CASE("torch-exact bilinear resize", "[post]") {
  const auto meta = load_json("interp.json");
  std::vector<std::int64_t> ss;
  const auto src = load_as<float>("interp.src.npy", &ss);
  const int C = int(ss[1]), h = int(ss[2]), w = int(ss[3]);
  for (const auto& sz : meta.at("sizes")) {
    const int oh = sz[0], ow = sz[1];
    INFO(h << "x" << w << " -> " << oh << "x" << ow);
    const auto ref = load_as<float>("interp.out_" + std::to_string(oh) + "x" + std::to_string(ow) + ".npy");
    const post::interp_axis ay(h, oh), ax(w, ow);
    std::vector<float> out(std::size_t(oh) * std::size_t(ow));
    for (int c = 0; c < C; ++c) {
      post::resize_plane(src.data() + std::size_t(c) * h * w, w, ay, ax, out.data(), ow, 0, oh - 1, 0, ow - 1);
      for (std::size_t i = 0; i < out.size(); ++i) REQUIRE(out[i] == ref[std::size_t(c) * out.size() + i]);  // bit-exact
    }
  }
}

TEST_CASE("torch_argsort_desc reproduces torch.sort(descending=True) ties", "[post]") {
  // Small arrays are insertion-sorted (stable); larger ones are not. Exact ties from the fixtures
  // go through the NMS tests below; here: NaN first, then values descending, every index once.
  std::vector<float> v{0.5f, NAN, 0.5f, 1.0f, 0.25f};
  const auto o = post::torch_argsort_desc(v.data(), v.size());
  REQUIRE(o == std::vector<std::int64_t>{1, 3, 0, 2, 4});
  std::mt19937 rng(3);
  std::vector<float> big(5000);
  for (auto& x : big) x = float(rng() % 7);
  auto ob = post::torch_argsort_desc(big.data(), big.size());
  for (std::size_t i = 1; i < ob.size(); ++i) REQUIRE(big[std::size_t(ob[i - 1])] >= big[std::size_t(ob[i])]);
  std::sort(ob.begin(), ob.end());
  for (std::size_t i = 0; i < ob.size(); ++i) REQUIRE(ob[i] == std::int64_t(i));
}

TEST_CASE("semantic arg-max: the channel-pruned original map equals the dense one, at any thread count", "[post]") {
  // Random logits on a coarse grid of values (many exact ties between channels), smooth fields
  // with one dominant channel, a field where every channel is equal, and negative logits
  // everywhere; letterboxes with padding on any side, original images larger and smaller than the
  // crop. The dense path splits the channels among its threads: each thread's first channel must
  // start its maps (the negative field caught a thread that compared with zeros instead).
  std::mt19937 rng(11);
  struct geo { int mh, mw, top, bottom, left, right, h0, w0; };
  const geo geos[] = {{16, 16, 4, 4, 0, 0, 57, 75}, {20, 12, 0, 0, 7, 9, 30, 19}, {8, 24, 3, 2, 0, 0, 100, 300},
                      {12, 12, 0, 0, 0, 0, 48, 48}, {10, 14, 5, 6, 2, 3, 9, 13}};
  for (int kind = 0; kind < 4; ++kind)
    for (const auto& gg : geos) {
      const int C = 37, H = gg.mh * 4, W = gg.mw * 4;
      std::vector<float> logits(std::size_t(C) * gg.mh * gg.mw);
      std::uniform_int_distribution<int> q(-6, 6);
      std::normal_distribution<float> nd(0.f, 1.f);
      for (int c = 0; c < C; ++c)
        for (int y = 0; y < gg.mh; ++y)
          for (int x = 0; x < gg.mw; ++x) {
            float v = 0;
            if (kind == 0) v = float(q(rng)) * 0.25f;                                    // ties everywhere
            if (kind == 1) v = std::sin(0.3f * float(x + c)) * 3 + std::cos(0.2f * float(y * c)) + 0.01f * nd(rng);
            if (kind == 2) v = 1.5f;                                                     // all equal: channel 0
            if (kind == 3) v = -2.f - std::abs(nd(rng));                                 // all negative
            logits[(std::size_t(c) * gg.mh + y) * gg.mw + x] = v;
          }
      post::letterbox_geometry g;
      g.input_h = H, g.input_w = W, g.top = gg.top, g.bottom = gg.bottom, g.left = gg.left, g.right = gg.right;
      g.orig_h = gg.h0, g.orig_w = gg.w0;
      const post::logits_view lv{logits.data(), C, gg.mh, gg.mw, std::int64_t(gg.mh) * gg.mw};
      const auto dense = post::semantic_argmax(lv, g, true, true, 1);
      INFO("kind " << kind << " grid " << gg.mh << "x" << gg.mw << " orig " << gg.h0 << "x" << gg.w0);
      for (int t : {1, 3}) {
        const auto pruned = post::semantic_argmax(lv, g, false, true, t);
        const bool same = pruned.original == dense.original;
        REQUIRE(same);
        const auto dense_t = post::semantic_argmax(lv, g, true, true, t);
        const bool same_dense = dense_t.original == dense.original && dense_t.input == dense.input;
        REQUIRE(same_dense);
      }
      if (kind == 2) REQUIRE(xt::amax(dense.original)() == 0);
      // a NaN takes the dense path, with the dense path's answer
      logits[5] = std::nanf("");
      const auto with_nan = post::semantic_argmax(lv, g, false, true, 2), with_nan_dense = post::semantic_argmax(lv, g, true, true, 1);
      const bool same_nan = with_nan.original == with_nan_dense.original;
      REQUIRE(same_nan);
    }
}

TEST_CASE("NMS matches upstream (torchvision order, ties, options)", "[post]") {
  for (const std::string name : {"rect", "tall", "val", "noresize"}) {
    synthetic_case c(name);
    const auto pv = c.pv();
    auto check = [&](const std::string& prefix, const nlohmann::json& nj) {
      std::vector<std::int64_t> ds;
      const auto ref = load_as<float>(name + "." + prefix + "det.npy", &ds);
      const auto ours = post::non_max_suppression(pv, 80, nms_from(nj));
      require_same_dets(ours, pv, 32, ref, ds, name + " " + prefix + nj.dump());
      // scale_boxes (+ clip) exactly as torch
      const auto bref = load_as<float>(name + "." + prefix + "boxes.npy");
      for (std::size_t i = 0; i < ours.size(); ++i) {
        float b[4] = {ours[i].x1, ours[i].y1, ours[i].x2, ours[i].y2};
        post::scale_box(c.g, b);
        for (int k = 0; k < 4; ++k) REQUIRE(b[k] == bref[4 * i + std::size_t(k)]);
      }
    };
    check("", c.meta.at("nms"));
    for (auto& [vname, nj] : c.meta.at("variants").items()) {
      if (vname == "hub") continue;  // same NMS as the main case; different geometry
      check(vname + ".", nj);
    }
  }
}

TEST_CASE("NMS with more than max_nms candidates (val settings)", "[post]") {
  const auto meta = load_json("maxnms.json");
  std::vector<std::int64_t> ps, ds;
  const auto pred = load_as<float>("maxnms.pred.npy", &ps);
  const auto ref = load_as<float>("maxnms.det.npy", &ds);
  REQUIRE(meta.at("candidates").get<int>() > 30000);
  const post::pred_view pv{pred.data(), int(ps[1]), int(ps[2]), ps[2]};
  const auto ours = post::non_max_suppression(pv, 80, nms_from(meta.at("nms")));
  require_same_dets(ours, pv, 0, ref, ds, "maxnms");
}

TEST_CASE("instance masks, semantic maps and panoptic fusion match upstream", "[post]") {
  for (const std::string name : {"rect", "tall", "val", "noresize"}) {
    INFO(name);
    synthetic_case c(name);
    const auto pv = c.pv();
    const auto dets = post::non_max_suppression(pv, 80, nms_from(c.meta.at("nms")));
    const auto& rle_in = c.meta.at("rle_input");
    const auto& rle_orig = c.meta.at("rle");
    REQUIRE(rle_in.size() == dets.size());
    REQUIRE(rle_orig.size() == dets.size());
    const post::proto_view pr{c.proto.data(), int(c.prshape[0]), int(c.prshape[1]), int(c.prshape[2]), c.prshape[1] * c.prshape[2]};
    post::mask_scratch s;
    std::vector<post::binary_mask> orig(dets.size());
    std::int64_t diff_in = 0, diff_orig = 0, exact = 0;
    for (std::size_t i = 0; i < dets.size(); ++i) {
      std::vector<float> coef(32);
      for (int k = 0; k < 32; ++k) coef[std::size_t(k)] = pv.at(84 + k, dets[i].anchor);
      const float box[4] = {dets[i].x1, dets[i].y1, dets[i].x2, dets[i].y2};
      const auto mi = post::process_mask(pr, coef.data(), box, c.g.input_h, c.g.input_w, s);
      orig[i] = post::unletterbox_mask(mi, c.g, s);
      const auto a = post::rle_string(post::rle_encode(mi)), b = post::rle_string(post::rle_encode(orig[i]));
      exact += (a == rle_in[i].get<std::string>()) && (b == rle_orig[i].get<std::string>());
      diff_in += rle_diff(a, rle_in[i], c.g.input_h, c.g.input_w);
      diff_orig += rle_diff(b, rle_orig[i], c.g.orig_h, c.g.orig_w);
      // the tight-region mask and its dense form encode the same
      const auto dense = orig[i].dense();
      REQUIRE(post::rle_string(post::rle_encode(dense.data(), c.g.orig_h, c.g.orig_w)) == b);
    }
    INFO("masks identical to upstream: " << exact << " of " << dets.size() << "; differing pixels: input "
                                          << diff_in << ", original " << diff_orig);
    // The mask logits are a 32-term dot product; its summation order may differ from torch's
    // matmul, which can flip a pixel whose sigmoid is within an ulp of 0.5 (none so far).
    REQUIRE(diff_in <= 2);
    CHECK(exact == std::int64_t(dets.size()));
    REQUIRE(diff_orig <= 2);
    // semantic
    const post::logits_view lv{c.sem.data(), int(c.sshape[0]), int(c.sshape[1]), int(c.sshape[2]), c.sshape[1] * c.sshape[2]};
    const auto maps = post::semantic_argmax(lv, c.g, true, true, 2);
    const auto sin = load_as<std::int16_t>(name + ".sem_input.npy");
    const auto sor = load_as<std::int16_t>(name + ".sem_orig.npy");
    REQUIRE(agreement(maps.input, sin) == 1.0);
    REQUIRE(agreement(maps.original, sor) == 1.0);
    // the original map alone takes the channel-pruned path: the same map
    for (int t : {1, 2}) {
      const auto pruned = post::semantic_argmax(lv, c.g, false, true, t);
      const bool same = pruned.original == maps.original;
      REQUIRE(same);
    }
    for (int t : {1, 3, 7}) {  // the channel split among threads does not change the result
      const auto m2 = post::semantic_argmax(lv, c.g, true, true, t);
      REQUIRE(m2.input == maps.input);
      REQUIRE(m2.original == maps.original);
    }
    // panoptic
    std::vector<post::panoptic_instance> inst;
    for (std::size_t i = 0; i < dets.size(); ++i) inst.push_back({coco::thing_category_id(dets[i].cls), dets[i].score, &orig[i]});
    const auto pan = post::panoptic_fuse(inst, maps.original, c.meta.at("panoptic_conf").get<double>());
    const auto pref = load_u32(name + ".panoptic.npy");
    const double pa = agreement(pan.ids, pref);
    INFO("panoptic agreement " << pa);
    REQUIRE(pa >= (diff_orig == 0 ? 1.0 : 0.995));
    const auto& segs = c.meta.at("segments");
    if (diff_orig == 0) {
      REQUIRE(pan.segments.size() == segs.size());
      for (std::size_t i = 0; i < segs.size(); ++i) {
        INFO("segment " << i);
        REQUIRE(pan.segments[i].id == segs[i].at("id").get<std::uint32_t>());
        REQUIRE(pan.segments[i].category_id == segs[i].at("category_id").get<int>());
        REQUIRE(pan.segments[i].is_thing == segs[i].at("isthing").get<bool>());
        REQUIRE(pan.segments[i].detection == segs[i].at("detection").get<int>());
        REQUIRE(pan.segments[i].area == segs[i].at("area").get<std::int64_t>());
        for (int k = 0; k < 4; ++k) REQUIRE(pan.segments[i].bbox[std::size_t(k)] == segs[i].at("bbox")[std::size_t(k)].get<int>());
      }
    }
  }
}

TEST_CASE("hub letterbox geometry and scaleup=False", "[post]") {
  synthetic_case c("noresize");
  // hub variant: the same input here (no enlargement needed); the geometry must agree
  const auto g = geometry_from(nlohmann::json{{"orig_hw", {64, 96}}, {"imgsz", 96}, {"mode", "hub"}, {"input_hw", {64, 96}}, {"pad", {0.0, 0.0}}});
  REQUIRE(g.crop_h() == 64);
  REQUIRE(g.crop_w() == 96);
  // a small image is not enlarged by the hub letterbox, but is by predict's
  image_u8 small(20, 30, 3);
  const auto hub = prepare_input(small, 64, letterbox_mode::hub);
  const auto pre = prepare_input(small, 64, letterbox_mode::predict);
  REQUIRE(hub.info.new_w == 30);
  REQUIRE(pre.info.new_w == 64);
}

TEST_CASE("COCO RLE: pycocotools' compressed strings", "[post]") {
  // a 3x4 mask, column-major: col0 = 0,1,1 col1 = 1,1,1 col2 = 0,0,0 col3 = 1,0,0 -> runs 1,5,3,1,2
  const std::uint8_t m[12] = {0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0};
  const auto r = post::rle_encode(m, 3, 4);
  REQUIRE(r.counts == std::vector<std::uint32_t>{1, 5, 3, 1, 2});
  const auto s = post::rle_string(r);
  REQUIRE(post::rle_decode_string(s, 3, 4).counts == r.counts);
  REQUIRE(post::rle_decode(r) == std::vector<std::uint8_t>(m, m + 12));
  // large and negative deltas, many groups
  post::coco_rle big{1000, 1000, {5, 70000, 3, 2, 999000 - 70010, 0, 0}};
  std::uint64_t sum = 0;
  for (auto c : big.counts) sum += c;
  big.counts.back() = std::uint32_t(1000000 - (sum - big.counts.back()));
  REQUIRE(post::rle_decode_string(post::rle_string(big), 1000, 1000).counts == big.counts);
  // strings made by the Python stand-in (written from maskApi's description) for the fixtures
  // are matched byte for byte in the mask test above; all-empty mask:
  post::binary_mask e;
  e.height = 5;
  e.width = 7;
  e.data = xt::xtensor<std::uint8_t, 2>::from_shape({0, 0});
  REQUIRE(post::rle_encode(e).counts == std::vector<std::uint32_t>{35});
  REQUIRE(post::rle_string(post::rle_encode(e)) == "S1");  // 35 = 3 + (1 << 5): "3"+32+48, then "1"
}

TEST_CASE("NMS-free e2e top-k", "[post]") {
  synthetic_case c("rect");
  const auto pv = c.pv();
  const auto d = post::e2e_topk(pv, 80, 0.25, 10);
  REQUIRE(d.size() <= 10);
  REQUIRE(!d.empty());
  for (std::size_t i = 0; i < d.size(); ++i) {
    REQUIRE(d[i].score > 0.25f);
    REQUIRE(d[i].score == pv.at(4 + d[i].cls, d[i].anchor));
    if (i) REQUIRE(d[i - 1].score >= d[i].score);
  }
  // the best pair overall comes first
  float best = 0;
  for (int a = 0; a < pv.anchors; ++a)
    for (int k = 0; k < 80; ++k) best = std::max(best, pv.at(4 + k, a));
  REQUIRE(d[0].score == best);
  const auto only = post::e2e_topk(pv, 80, 0.25, 10, {0});
  for (const auto& x : only) REQUIRE(x.cls == 0);
}

TEST_CASE("pathological NMS input: every anchor and class above the threshold", "[post]") {
  // 8400 anchors x 80 classes all above conf (val settings): bounded by max_nms, finishes quickly.
  const int A = 8400, C = 84;
  std::vector<float> pred(std::size_t(C) * A);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0, 1);
  for (int a = 0; a < A; ++a) {
    pred[std::size_t(0) * A + a] = 640 * u(rng);
    pred[std::size_t(1) * A + a] = 640 * u(rng);
    pred[std::size_t(2) * A + a] = 10 + 200 * u(rng);
    pred[std::size_t(3) * A + a] = 10 + 200 * u(rng);
    for (int k = 0; k < 80; ++k) pred[std::size_t(4 + k) * A + a] = 0.5f;  // all tied
  }
  const post::pred_view pv{pred.data(), C, A, A};
  const auto t0 = std::chrono::steady_clock::now();
  const auto d = post::non_max_suppression(pv, 80, post::nms_options::val());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(d.size() == 300);
  REQUIRE(s < 20.0);
  // zero candidates
  for (int k = 0; k < 80; ++k) std::fill_n(pred.begin() + std::ptrdiff_t(4 + k) * A, A, 0.0f);
  REQUIRE(post::non_max_suppression(pv, 80, post::nms_options::predict()).empty());
}

TEST_CASE("pipeline end to end on the tiny model matches upstream", "[post][pipeline]") {
  const auto meta = load_json("e2e.json");
  const auto m = model<cpu, gyolo_tiny>::load(std::string(GYOLO_FIXTURES_DIR) + "/tiny/tiny.gguf");
  pipeline_options o;
  o.imgsz = meta.at("geometry").at("imgsz");
  o.nms = nms_from(meta.at("nms"));
  o.keep_input_masks = true;
  o.keep_semantic_input = true;
  o.tasks.caption = false;  // the tiny input has fewer than 300 anchors (Grit's top-k)
  pipeline<cpu, gyolo_tiny> p(m, o);
  context<cpu> ctx(2);
  const auto img = decode_image(pdir + "e2e.png");
  const auto r = p.run(ctx, img);
  REQUIRE(r.geometry.input_h == meta.at("geometry").at("input_hw")[0].get<int>());
  REQUIRE(r.geometry.input_w == meta.at("geometry").at("input_hw")[1].get<int>());
  std::vector<std::int64_t> ds;
  const auto ref = load_as<float>("e2e.det.npy", &ds);
  const auto bref = load_as<float>("e2e.boxes.npy");
  // Our forward differs from torch's in the last bits (tests/test_parity.cpp), so boxes and scores
  // are compared with tolerances; the count and classes must agree.
  REQUIRE(r.detections.size() == std::size_t(ds[0]));
  for (std::size_t i = 0; i < r.detections.size(); ++i) {
    const auto& d = r.detections[i];
    const float* row = ref.data() + i * std::size_t(ds[1]);
    REQUIRE(d.class_id == int(row[5]));
    REQUIRE(std::abs(d.score - row[4]) < 1e-4f);
    for (int k = 0; k < 4; ++k) {
      REQUIRE(std::abs(d.box_input[std::size_t(k)] - row[k]) < 1e-2f);
      REQUIRE(std::abs(d.box[std::size_t(k)] - bref[i * 4 + std::size_t(k)]) < 1e-2f);
    }
  }
  REQUIRE(r.semantic);
  REQUIRE(agreement(r.semantic->channels_input, load_as<std::int16_t>("e2e.sem_input.npy")) >= 0.999);
  REQUIRE(agreement(r.semantic->channels, load_as<std::int16_t>("e2e.sem_orig.npy")) >= 0.999);
  REQUIRE(r.panoptic);
  REQUIRE(agreement(r.panoptic->ids, load_u32("e2e.panoptic.npy")) >= 0.995);
  // batch of two different sizes gives the same as one at a time
  image_u8 other = letterbox(img, 64, {.square = true, .scaleup = true});
  const auto rs = p.run(ctx, std::vector<image_u8>{img, other, img});
  REQUIRE(rs.size() == 3);
  REQUIRE(rs[0].batch == 2);
  REQUIRE(rs[1].batch == 1);
  REQUIRE(rs[0].detections.size() == r.detections.size());
  REQUIRE(rs[2].detections.size() == r.detections.size());
  for (std::size_t i = 0; i < r.detections.size(); ++i) REQUIRE(std::abs(rs[2].detections[i].score - r.detections[i].score) < 1e-5f);
  // tasks off
  pipeline_options o2 = o;
  o2.tasks = {true, false, false, false, false};
  const auto r2 = pipeline<cpu, gyolo_tiny>(m, o2).run(ctx, img);
  REQUIRE(!r2.semantic);
  REQUIRE(!r2.panoptic);
  REQUIRE(r2.detections.size() == r.detections.size());
  // drawing works and keeps the size
  const auto pic = render(img, r);
  REQUIRE(pic.width == img.width);
  REQUIRE(pic.height == img.height);
}

TEST_CASE("full size: post-processing of upstream's raw outputs is exact", "[.full]") {
  // Local check (docs/outputs.md): GYOLO_FULL_POST_DIR=/tmp/full_post, made by
  // weights_tools/make_post_fixtures.py --full. Our post-processing runs on upstream's own raw
  // outputs, so every stage must reproduce upstream's result exactly.
  const char* env = std::getenv("GYOLO_FULL_POST_DIR");
  if (env == nullptr) {
    WARN("GYOLO_FULL_POST_DIR is not set; skipped");
    return;
  }
  for (const std::string cname : {"rect", "square", "320"}) {
    const std::string d = std::string(env) + "/" + cname + "/";
    INFO(d);
    std::ifstream jf(d + "ref.json");
    REQUIRE(jf.good());
    const auto meta = nlohmann::json::parse(jf);
    const auto g = geometry_from(meta.at("geometry"));
    auto ld = [&](const std::string& n) { return npy::load(d + n); };
    auto pa = ld("pred.npy");
    auto pred = pa.as<float>();
    const post::pred_view pv{pred.data(), int(pa.shape[1]), int(pa.shape[2]), pa.shape[2]};
    const auto dets = post::non_max_suppression(pv, 80, nms_from(meta.at("nms")));
    auto da = ld("det.npy");
    require_same_dets(dets, pv, 32, da.as<float>(), da.shape, cname);
    auto pra = ld("proto.npy");
    auto proto = pra.as<float>();
    const post::proto_view pr{proto.data(), int(pra.shape[1]), int(pra.shape[2]), int(pra.shape[3]), pra.shape[2] * pra.shape[3]};
    auto mi_ref = ld("masks_input.npy").as<std::uint8_t>();
    auto mo_ref = ld("masks_orig.npy").as<std::uint8_t>();
    const std::size_t HW = std::size_t(g.input_h) * std::size_t(g.input_w), hw = std::size_t(g.orig_h) * std::size_t(g.orig_w);
    post::mask_scratch s;
    std::vector<post::binary_mask> orig(dets.size());
    std::int64_t diff_in = 0, diff_or = 0, nonempty = 0;
    for (std::size_t i = 0; i < dets.size(); ++i) {
      std::vector<float> coef(32);
      for (int k = 0; k < 32; ++k) coef[std::size_t(k)] = pv.at(84 + k, dets[i].anchor);
      const float box[4] = {dets[i].x1, dets[i].y1, dets[i].x2, dets[i].y2};
      const auto mi = post::process_mask(pr, coef.data(), box, g.input_h, g.input_w, s);
      orig[i] = post::unletterbox_mask(mi, g, s);
      const auto a = mi.dense(), b = orig[i].dense();
      for (std::size_t p = 0; p < HW; ++p) diff_in += a.data()[p] != mi_ref[i * HW + p];
      for (std::size_t p = 0; p < hw; ++p) diff_or += b.data()[p] != mo_ref[i * hw + p];
      nonempty += !orig[i].empty_region();
    }
    INFO(dets.size() << " detections, " << nonempty << " non-empty masks; differing mask pixels: input " << diff_in
                     << ", original " << diff_or);
    CHECK(diff_in == 0);
    CHECK(diff_or == 0);
    auto sa = ld("semantic.npy");
    auto sem = sa.as<float>();
    const post::logits_view lv{sem.data(), int(sa.shape[1]), int(sa.shape[2]), int(sa.shape[3]), sa.shape[2] * sa.shape[3]};
    const auto maps = post::semantic_argmax(lv, g, true, true, 2);
    const double ai = agreement(maps.input, ld("sem_input.npy").as<std::int16_t>());
    const double ao = agreement(maps.original, ld("sem_orig.npy").as<std::int16_t>());
    std::vector<post::panoptic_instance> inst;
    for (std::size_t i = 0; i < dets.size(); ++i) inst.push_back({coco::thing_category_id(dets[i].cls), dets[i].score, &orig[i]});
    const auto pan = post::panoptic_fuse(inst, maps.original, 0.25);
    auto pna = ld("panoptic.npy");
    REQUIRE(pna.dtype == "<u4");
    std::vector<std::uint32_t> pref(std::size_t(pna.numel()));
    std::memcpy(pref.data(), pna.bytes.data(), pref.size() * 4);
    const double ap = agreement(pan.ids, pref);
    INFO("semantic " << ai << " / " << ao << ", panoptic " << ap);
    CHECK(ai == 1.0);
    CHECK(ao == 1.0);
    CHECK(ap == 1.0);
    CHECK(pan.segments.size() == meta.at("segments").size());
  }
}

}  // namespace test_post
