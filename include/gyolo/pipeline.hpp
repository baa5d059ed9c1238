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
// The results (gyolo/result.hpp) are written as JSON / COCO files by gyolo/io/result_json.hpp and
// drawn by gyolo/post/render.hpp.
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
#include "gyolo/core/compiled_once.hpp"
#include "gyolo/core/error.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/io/image.hpp"
#include "gyolo/model/model.hpp"
#include "gyolo/post/coco.hpp"
#include "gyolo/post/masks.hpp"
#include "gyolo/post/nms.hpp"
#include "gyolo/post/panoptic.hpp"
#include "gyolo/post/semantic.hpp"
#include "gyolo/result.hpp"

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
    case letterbox_mode::predict: lb = letterbox(img, imgsz, {.square = false, .scaleup = true}, &p.info); break;
    case letterbox_mode::square: lb = letterbox(img, imgsz, {.square = true, .scaleup = true}, &p.info); break;
    case letterbox_mode::hub: lb = letterbox(img, imgsz, {.square = false, .scaleup = false}, &p.info); break;
    case letterbox_mode::val: {
      const image_u8 r = val_load_resize(img, imgsz);
      lb = letterbox(r, imgsz, {.square = true, .scaleup = false}, &p.info);
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

/// Post-processing steps a device backend B runs on the device (specialised with the backend, e.g. in
/// gyolo/cuda.hpp): semantic(ctx, logits, img, geometry, want_input) gives image img's semantic
/// maps (post::semantic_argmax's result), so that only the maps come back to the host.
template <class B> struct device_postprocess;

/// Pre-processing, the model's forward pass and every task's post-processing on images. Read-only
/// after construction: one pipeline may serve many threads, each with its own `context`. It
/// refers to the model (which must outlive it; binding a temporary does not compile).
template <class B, class V>
class pipeline {
 public:
  using model_type = model<B, V>;
  /// Where post-processing runs: the host (a device backend's outputs are copied there once per
  /// forward; the caption head runs on the backend, from the device outputs).
  using host_outputs = vision_outputs<host_backend_t<B>>;

  /// The pipeline refers to the model, which must outlive it (models are large: they are not
  /// copied). A temporary model cannot be bound: pipeline(model::load(path)) does not compile.
  explicit pipeline(const model_type& m, pipeline_options o = {}) : m_(&m), o_(std::move(o)) {
    GYOLO_CHECK(o_.imgsz >= 32 && o_.imgsz % 32 == 0, "pipeline: imgsz must be a positive multiple of 32");
    if (o_.tasks.panoptic) o_.tasks.detect = o_.tasks.masks = o_.tasks.semantic = true;
    if (o_.tasks.masks) o_.tasks.detect = true;
  }

  pipeline(model_type&&, pipeline_options = {}) = delete;
  pipeline(const model_type&&, pipeline_options = {}) = delete;

  const pipeline_options& options() const { return o_; }

  image_result run(context<B>& ctx, const image_u8& img) const {
    std::vector<image_u8> one;
    one.push_back(img);
    return std::move(run(ctx, one).front());
  }

  /// Runs a batch; images of equal network-input size share one forward. Results in input order.
  std::vector<image_result> run(context<B>& ctx, const std::vector<image_u8>& imgs) const {
    std::vector<prepared_input> in;  // (run_prepared holds the context; the letterbox does not use it)
    in.reserve(imgs.size());
    for (const auto& im : imgs) in.push_back(prepare_input(im, o_.imgsz, o_.letterbox));
    return run_prepared(ctx, in);
  }

  /// Runs inputs made by prepare_input (with any letterbox the caller chose).
  GYOLO_COMPILED_ONCE std::vector<image_result> run_prepared(context<B>& ctx, const std::vector<prepared_input>& in) const {
    const auto in_use = ctx.enter("pipeline::run");
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
  GYOLO_COMPILED_ONCE image_result postprocess(const host_outputs& out, int b, const prepared_input& p, int threads = 0) const {
    return postprocess(out, b, p, threads, nullptr, 0);
  }

 private:
  /// The same; `semantic` (may be null): the image's semantic maps, made on the device in
  /// `semantic_ms` (a device backend copies those, not the logits).
  image_result postprocess(const host_outputs& out, int b, const prepared_input& p, int threads, post::semantic_maps* semantic,
                           double semantic_ms) const {
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
      post::semantic_maps maps;
      if (semantic) {
        maps = std::move(*semantic);
      } else {
        const auto ss = out.semantic.shape();
        const post::logits_view lv{out.semantic.data() + std::int64_t(b) * ss.c * ss.h * ss.w, ss.c, ss.h, ss.w, std::int64_t(ss.h) * ss.w};
        maps = post::semantic_argmax(lv, g, o_.keep_semantic_input, true, threads);
      }
      semantic_result s;
      s.channels = std::move(maps.original);
      s.channels_input = std::move(maps.input);
      if (!coco_taxonomy)
        for (int c = 0; c < model_type::config.nc + model_type::config.sem_nc; ++c) s.channel_ids.push_back(c + 1);
      r.semantic = std::move(s);
    }
    auto t3 = clock::now();
    r.timing_ms.semantic = ms(t2, t3) + semantic_ms;
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

  GYOLO_COMPILED_ONCE void run_group(context<B>& ctx, const std::vector<prepared_input>& in, const std::vector<std::size_t>& group,
                 std::vector<image_result>& res) const {
    using clock = std::chrono::steady_clock;
    const auto s = in[group.front()].x.shape();
    const int n = int(group.size());
    tensor<float> x(shape4{n, 3, s.h, s.w});
    const std::int64_t per = std::int64_t(3) * s.h * s.w;
    for (int k = 0; k < n; ++k) std::copy_n(in[group[std::size_t(k)]].x.data(), per, x.data() + k * per);
    std::optional<std::string> caption_skip;  // why the caption cannot run on this input size
    if (o_.tasks.caption && caption_possible()) caption_skip = caption_unavailable(s.h, s.w);
    const bool want_caption = o_.tasks.caption && caption_possible() && !caption_skip;
    const auto t0 = clock::now();
    std::optional<std::vector<caption_result>> caps;
    host_outputs out;
    std::vector<post::semantic_maps> sem;  // a device backend's semantic maps (the logits stay there)
    double sem_ms = 0;
    clock::time_point t1, t2;
    if constexpr (is_host_backend<B>) {
      out = m_->forward(ctx, x.cv(), {.caption_features = want_caption});
      t1 = clock::now();
      if (want_caption) caps = try_caption(*m_, ctx, out);
      t2 = clock::now();
    } else {  // a device backend: the input up, the outputs down (the vision time includes both)
      const auto xd = to_device(ctx, x.cv());
      auto dout = m_->forward(ctx, xd.cv(), {.caption_features = want_caption});
      const auto ts = clock::now();
      if (o_.tasks.semantic)
        for (int k = 0; k < n; ++k)
          sem.push_back(device_postprocess<B>::semantic(ctx, dout.semantic.cv(), k, in[group[std::size_t(k)]].geometry,
                                                        o_.keep_semantic_input));
      sem_ms = std::chrono::duration<double, std::milli>(clock::now() - ts).count() / n;
      out = to_host(ctx, dout, {.semantic = o_.keep_raw || !o_.tasks.semantic});
      t1 = clock::now();
      if (want_caption) caps = try_caption(*m_, ctx, dout);
      t2 = clock::now();
    }
    const double vis = std::chrono::duration<double, std::milli>(t1 - t0).count() / n - sem_ms;  // device maps: semantic time
    const double cap = std::chrono::duration<double, std::milli>(t2 - t1).count() / n;
    const int threads = o_.threads > 0 ? o_.threads : ctx.threads();
    for (int k = 0; k < n; ++k) {
      const auto idx = group[std::size_t(k)];
      auto r = postprocess(out, k, in[idx], threads, sem.empty() ? nullptr : &sem[std::size_t(k)], sem_ms);
      r.timing_ms.vision = vis;
      r.batch = n;
      if (caps && std::size_t(k) < caps->size()) {
        r.caption = (*caps)[std::size_t(k)];
        r.timing_ms.caption = cap;
      }
      if (caption_skip) r.skipped.push_back({"caption", *caption_skip});
      if (o_.keep_raw) r.raw = slice_raw(out, k, in[idx]);
      res[idx] = std::move(r);
    }
  }

  bool caption_possible() const {
    if constexpr (can_caption<model_type, context<B>, vision_outputs<B>>) return m_->has_caption();
    else return false;
  }

  /// Why the caption cannot run on an H x W input, if it cannot: Grit takes the top-k anchors of the
  /// three detection levels (strides 8, 16, 32), so the input must have at least k of them.
  std::optional<std::string> caption_unavailable(int H, int W) const {
    if constexpr (can_caption<model_type, context<B>, vision_outputs<B>>) {
      const std::int64_t anchors = std::int64_t(H / 8) * (W / 8) + std::int64_t(H / 16) * (W / 16) + std::int64_t(H / 32) * (W / 32);
      const int k = m_->grit().cfg.topk;
      if (anchors < k)
        return "the network input " + std::to_string(W) + "x" + std::to_string(H) + " has " + std::to_string(anchors) +
               " anchors and the caption needs at least " + std::to_string(k) + " (a larger image or --imgsz)";
    }
    (void)H, (void)W;
    return std::nullopt;
  }

  static raw_outputs slice_raw(const host_outputs& out, int b, const prepared_input& p) {
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

/// Compiled once in gyolo's library for the variants that ship (src/pipeline_cpu.cpp).
extern template class pipeline<cpu, gyolo_c>;
extern template class pipeline<cpu, gyolo_shapes>;
extern template class pipeline<cpu, gyolo_tiny>;

}  // namespace gyolo
