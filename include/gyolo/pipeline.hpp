// One call from images to every GYOLO task's output, in original image coordinates.
//
//   gyolo::pipeline p(model);                       // options: gyolo::pipeline_options
//   gyolo::context<gyolo::cpu> ctx;
//   gyolo::image_result r = p.run(ctx, gyolo::decode_image("a.jpg"));
//   std::vector<gyolo::image_result> rs = p.run(ctx, images);   // a batch; sizes may differ
//
// Per image: letterbox (predict / square / hub / val variants, bit-exact with OpenCV) -> vision
// forward -> detections (upstream's NMS, or the NMS-free top-k) -> instance masks
// (process_mask(upsample=True), unletterboxed) -> semantic arg-max -> panoptic fusion -> caption
// (when the model has a caption head). Images of equal input size run as one batch. Each task can
// be switched off (pipeline_options::tasks) to save time; panoptic needs detections, masks and
// semantics and computes them when it is on.
//
// Arrays are xtensor containers: masks are post::binary_mask (a tight region of the image),
// semantic maps [h0, w0] int16 channel indices, the panoptic map [h0, w0] uint32 COCO panoptic ids.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <xtensor/xtensor.hpp>

#include "gyolo/core/context.hpp"
#include "gyolo/core/error.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/io/image.hpp"
#include "gyolo/model/caption_result.hpp"
#include "gyolo/model/model.hpp"
#include "gyolo/post/coco.hpp"
#include "gyolo/post/draw.hpp"
#include "gyolo/post/masks.hpp"
#include "gyolo/post/nms.hpp"
#include "gyolo/post/panoptic.hpp"
#include "gyolo/post/rle.hpp"
#include "gyolo/post/semantic.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace gyolo {

/// Which letterbox makes the network input (spec §5.1, §10 item 11).
enum class letterbox_mode {
  predict,  // caption/predict.py: r = min(imgsz/h, imgsz/w) (may enlarge), INTER_LINEAR, pad to the next multiple of 32
  square,   // predict.py's letterbox with auto=False: the same resize, padded to imgsz x imgsz
  hub,      // hubconf.py process(): like predict, but never enlarges (scaleup=False)
  val,      // caption/val.py: long side to imgsz (INTER_AREA when shrinking), padded to imgsz x imgsz
};

/// Tasks to compute. Off tasks cost nothing (panoptic turns on what it needs).
struct task_set {
  bool detect = true;
  bool masks = true;
  bool semantic = true;
  bool panoptic = true;
  bool caption = true;
};

struct pipeline_options {
  int imgsz = 640;                                    // multiple of 32
  letterbox_mode letterbox = letterbox_mode::predict;
  post::nms_options nms = post::nms_options::predict();
  bool e2e_topk = false;           // NMS-free decoding (uses nms.conf, nms.max_det, nms.classes)
  double panoptic_conf = 0.25;     // instances below this score are left out of the panoptic map
  bool keep_input_masks = false;   // also return each mask at the network-input resolution
  bool keep_semantic_input = false;  // also return the semantic map at the network-input resolution
  bool keep_raw = false;           // keep the input tensor and the raw head outputs (debugging)
  task_set tasks;
  std::vector<std::string> class_names;  // label names (default: the model's)
  int threads = 0;                 // post-processing threads (0: the context's)
  int max_batch = 8;               // images of equal input size per forward, at most
};

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

/// The caption of each image of a forward, when the model has a caption head.
template <class M, class C, class O>
std::optional<std::vector<caption_result>> try_caption(const M& m, C& ctx, const O& out) {
  if (!m.has_caption()) return std::nullopt;
  return m.caption(ctx, out);
}

/// Whether the model type can caption at all.
template <class M, class C, class O>
constexpr bool can_caption = requires(const M& m, C& ctx, const O& out) {
  { m.has_caption() } -> std::convertible_to<bool>;
  m.caption(ctx, out);
};

/// The network input of one image.
struct prepared_input {
  tensor<float> x;  // [1, 3, H, W]
  letterbox_info info;
  post::letterbox_geometry geometry;
  int orig_w = 0, orig_h = 0;
  double ms = 0;
};

/// Letterboxes one image (BGR, as decoded) for the given mode and size.
inline prepared_input prepare_input(const image_u8& img, int imgsz, letterbox_mode mode) {
  const auto t0 = std::chrono::steady_clock::now();
  GYOLO_CHECK(img.channels == 3 && img.width > 0 && img.height > 0, "pipeline: expected a non-empty 3-channel image");
  GYOLO_CHECK(imgsz >= 32 && imgsz % 32 == 0, "pipeline: imgsz must be a positive multiple of 32, got " + std::to_string(imgsz));
  prepared_input p;
  p.orig_w = img.width;
  p.orig_h = img.height;
  image_u8 lb;
  switch (mode) {
    case letterbox_mode::predict: lb = letterbox(img, imgsz, false, true, 32, &p.info); break;
    case letterbox_mode::square: lb = letterbox(img, imgsz, true, true, 32, &p.info); break;
    case letterbox_mode::hub: lb = letterbox(img, imgsz, false, false, 32, &p.info); break;
    case letterbox_mode::val: {
      const image_u8 r = val_load_resize(img, imgsz);
      lb = letterbox(r, imgsz, true, false, 32, &p.info);
      break;
    }
  }
  p.geometry = mode == letterbox_mode::val ? post::letterbox_geometry::from_val(img.height, img.width, p.info)
                                           : post::letterbox_geometry::from_letterbox(p.info);
  p.x.resize(shape4{1, 3, lb.height, lb.width});
  to_input_chw_rgb(lb, p.x.data());
  p.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return p;
}

template <class B, class V>
class pipeline {
  static_assert(is_host_backend<B>, "gyolo::pipeline post-processes on the host; device backends need a copy step");

 public:
  using model_type = model<B, V>;

  explicit pipeline(const model_type& m, pipeline_options o = {}) : m_(&m), o_(std::move(o)) {
    GYOLO_CHECK(o_.imgsz >= 32 && o_.imgsz % 32 == 0, "pipeline: imgsz must be a positive multiple of 32");
    if (o_.tasks.panoptic) o_.tasks.detect = o_.tasks.masks = o_.tasks.semantic = true;
    if (o_.tasks.masks) o_.tasks.detect = true;
  }

  const pipeline_options& options() const { return o_; }

  image_result run(context<B>& ctx, const image_u8& img) const {
    std::vector<image_u8> one;
    one.push_back(img);
    return std::move(run(ctx, one).front());
  }

  /// Runs a batch; images of equal network-input size share one forward. Results in input order.
  std::vector<image_result> run(context<B>& ctx, const std::vector<image_u8>& imgs) const {
    std::vector<prepared_input> in;
    in.reserve(imgs.size());
    for (const auto& im : imgs) in.push_back(prepare_input(im, o_.imgsz, o_.letterbox));
    return run_prepared(ctx, in);
  }

  /// Runs inputs made by prepare_input (with any letterbox the caller chose).
  std::vector<image_result> run_prepared(context<B>& ctx, const std::vector<prepared_input>& in) const {
    std::vector<image_result> res(in.size());
    std::vector<bool> done(in.size(), false);
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (done[i]) continue;
      const auto s = in[i].x.shape();
      std::vector<std::size_t> group;
      for (std::size_t j = i; j < in.size() && int(group.size()) < std::max(1, o_.max_batch); ++j)
        if (!done[j] && in[j].x.shape() == s) group.push_back(j), done[j] = true;
      run_group(ctx, in, group, res);
    }
    return res;
  }

  /// Post-processes image b of a forward's outputs (made from `p`); threads <= 0: options' or
  /// OpenMP's default.
  image_result postprocess(const vision_outputs<B>& out, int b, const prepared_input& p, int threads = 0) const {
    threads = resolve_threads(threads > 0 ? threads : o_.threads);
    image_result r;
    r.width = p.orig_w;
    r.height = p.orig_h;
    r.letterbox = p.info;
    r.geometry = p.geometry;
    r.timing_ms.preprocess = p.ms;
    const auto& g = p.geometry;
    const int H = g.input_h, W = g.input_w;
    using clock = std::chrono::steady_clock;
    auto ms = [](clock::time_point a, clock::time_point z) { return std::chrono::duration<double, std::milli>(z - a).count(); };
    const int nc = model_type::config.nc, nm = model_type::config.nm;
    // COCO's taxonomy (the released models), or a model's own: category id = semantic channel + 1
    constexpr bool coco_taxonomy = model_type::config.nc == coco::num_things && model_type::config.nc + model_type::config.sem_nc == coco::num_semantic;
    // Detections.
    auto t0 = clock::now();
    const auto ps = out.pred.shape();  // [B, C, 1, A]
    const post::pred_view pv{out.pred.data() + std::int64_t(b) * ps.c * ps.h * ps.w, ps.c, ps.w, std::int64_t(ps.h) * ps.w};
    if (o_.tasks.detect) {
      auto raw = o_.e2e_topk ? post::e2e_topk(pv, nc, o_.nms.conf, o_.nms.max_det, o_.nms.classes)
                             : post::non_max_suppression(pv, nc, o_.nms);
      const auto& names = o_.class_names.empty() ? m_->names() : o_.class_names;
      r.detections.resize(raw.size());
      for (std::size_t i = 0; i < raw.size(); ++i) {
        auto& d = r.detections[i];
        const auto& q = raw[i];
        d.box_input = {q.x1, q.y1, q.x2, q.y2};
        d.box = d.box_input;
        post::scale_box(g, d.box.data());
        d.score = q.score;
        d.class_id = q.cls;
        d.category_id = coco_taxonomy ? coco::thing_category_id(q.cls) : q.cls + 1;
        d.label = std::size_t(q.cls) < names.size() ? names[std::size_t(q.cls)] : "class" + std::to_string(q.cls);
        d.anchor = q.anchor;
        d.coef.resize(std::size_t(nm));
        for (int k = 0; k < nm; ++k) d.coef[std::size_t(k)] = pv.at(4 + nc + k, q.anchor);
      }
    }
    auto t1 = clock::now();
    r.timing_ms.detect = ms(t0, t1);
    // Instance masks.
    if (o_.tasks.masks && !r.detections.empty()) {
      const auto pr = out.proto.shape();
      const post::proto_view pview{out.proto.data() + std::int64_t(b) * pr.c * pr.h * pr.w, pr.c, pr.h, pr.w, std::int64_t(pr.h) * pr.w};
      const int n = int(r.detections.size());
      std::vector<post::mask_scratch> scratch(static_cast<std::size_t>(threads));
      (void)cpu_detail::active_kernels();  // resolved outside the parallel region
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4)
      for (int i = 0; i < n; ++i) {
#ifdef _OPENMP
        auto& s = scratch[std::size_t(omp_get_thread_num())];
#else
        auto& s = scratch[0];
#endif
        auto& d = r.detections[std::size_t(i)];
        auto mi = post::process_mask(pview, d.coef.data(), d.box_input.data(), H, W, s);
        d.mask = post::unletterbox_mask(mi, g, s);
        if (o_.keep_input_masks) d.mask_input = std::move(mi);
      }
    }
    auto t2 = clock::now();
    r.timing_ms.masks = ms(t1, t2);
    // Semantic map.
    if (o_.tasks.semantic) {
      const auto ss = out.semantic.shape();
      const post::logits_view lv{out.semantic.data() + std::int64_t(b) * ss.c * ss.h * ss.w, ss.c, ss.h, ss.w, std::int64_t(ss.h) * ss.w};
      auto maps = post::semantic_argmax(lv, g, o_.keep_semantic_input, true, threads);
      semantic_result s;
      s.channels = std::move(maps.original);
      s.channels_input = std::move(maps.input);
      if (!coco_taxonomy)
        for (int c = 0; c < ss.c; ++c) s.channel_ids.push_back(c + 1);
      r.semantic = std::move(s);
    }
    auto t3 = clock::now();
    r.timing_ms.semantic = ms(t2, t3);
    // Panoptic fusion.
    if (o_.tasks.panoptic && r.semantic) {
      std::vector<post::panoptic_instance> inst;
      inst.reserve(r.detections.size());
      for (const auto& d : r.detections) inst.push_back({d.category_id, d.score, &d.mask});
      std::vector<int> stuff;  // a model's own taxonomy: the channels after the things are stuff
      if (!coco_taxonomy)
        for (int c = 0; c < nc + model_type::config.sem_nc; ++c) stuff.push_back(c < nc ? 0 : c + 1);
      r.panoptic = post::panoptic_fuse(inst, r.semantic->channels, o_.panoptic_conf, stuff);
    }
    r.timing_ms.panoptic = ms(t3, clock::now());
    return r;
  }

 private:
  void run_group(context<B>& ctx, const std::vector<prepared_input>& in, const std::vector<std::size_t>& group,
                 std::vector<image_result>& res) const {
    using clock = std::chrono::steady_clock;
    const auto s = in[group.front()].x.shape();
    const int n = int(group.size());
    tensor<float> x(shape4{n, 3, s.h, s.w});
    const std::int64_t per = std::int64_t(3) * s.h * s.w;
    for (int k = 0; k < n; ++k) std::copy_n(in[group[std::size_t(k)]].x.data(), per, x.data() + k * per);
    const bool want_caption = o_.tasks.caption && caption_possible();
    const auto t0 = clock::now();
    auto out = m_->forward(ctx, x.cv(), false, want_caption);
    const auto t1 = clock::now();
    std::optional<std::vector<caption_result>> caps;
    if (want_caption) caps = try_caption(*m_, ctx, out);
    const auto t2 = clock::now();
    const double vis = std::chrono::duration<double, std::milli>(t1 - t0).count() / n;
    const double cap = std::chrono::duration<double, std::milli>(t2 - t1).count() / n;
    const int threads = o_.threads > 0 ? o_.threads : ctx.threads();
    for (int k = 0; k < n; ++k) {
      const auto idx = group[std::size_t(k)];
      auto r = postprocess(out, k, in[idx], threads);
      r.timing_ms.vision = vis;
      r.batch = n;
      if (caps && std::size_t(k) < caps->size()) {
        r.caption = (*caps)[std::size_t(k)];
        r.timing_ms.caption = cap;
      }
      if (o_.keep_raw) r.raw = slice_raw(out, k, in[idx]);
      res[idx] = std::move(r);
    }
  }

  bool caption_possible() const {
    if constexpr (can_caption<model_type, context<B>, vision_outputs<B>>) return m_->has_caption();
    else return false;
  }

  static raw_outputs slice_raw(const vision_outputs<B>& out, int b, const prepared_input& p) {
    auto one = [b](const tensor<float>& t) {
      const auto s = t.shape();
      tensor<float> r(shape4{1, s.c, s.h, s.w});
      const std::int64_t per = std::int64_t(s.c) * s.h * s.w;
      std::copy_n(t.data() + b * per, per, r.data());
      return r;
    };
    raw_outputs r;
    r.input = to_tensor(p.x.cv());
    r.pred = one(out.pred);
    r.proto = one(out.proto);
    r.semantic = one(out.semantic);
    return r;
  }

  const model_type* m_;
  pipeline_options o_;
};

// ---- serialization ---------------------------------------------------------------------------

/// COCO RLE {"size": [h, w], "counts": "..."} of a mask (pycocotools' compressed format).
inline nlohmann::json rle_json(const post::binary_mask& m) {
  return {{"size", {m.height, m.width}}, {"counts", post::rle_string(post::rle_encode(m))}};
}

/// COCO detection results of one image (caption/val.py save_one_json): bbox [x, y, w, h] in
/// original pixels (3 decimals), COCO category ids, score (5 decimals), RLE segmentation.
inline nlohmann::json coco_results(const image_result& r, const nlohmann::json& image_id) {
  auto round_to = [](double v, double s) { return std::nearbyint(v * s) / s; };
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

// ---- drawing ---------------------------------------------------------------------------------

struct render_options {
  bool masks = true, boxes = true, labels = true, scores = true, caption = true;
  float mask_alpha = 0.4f;
};

/// The original image with translucent instance masks, boxes, "label score" tags and the caption;
/// sizes scale with the image. Detections are drawn lowest score first, so the best is on top.
inline image_u8 render(const image_u8& original, const image_result& r, const render_options& o = {}) {
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

}  // namespace gyolo
