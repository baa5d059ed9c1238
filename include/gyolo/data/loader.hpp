// The training / validation data loader (upstream LoadCaptions + its DataLoader and collate_fn).
//
// Dataset layout (upstream's COCO layout for caption/train.py):
//   <root>/data.yaml                       path, train, val, nc, names, stuff_names (dataset.hpp)
//   <root>/images/<split>/<id>.png|jpg     <id> an integer (a caption's image_id = int(stem))
//   <root>/labels/<split>/<id>.txt         "cls xc yc w h" boxes or "cls x1 y1 x2 y2 ..." polygons
//   <root>/stuff/<split>/<id>.txt | .png   semantic polygons "ch x1 y1 ..." or an 8-bit label map
//   <root>/annotations/captions_<split>.json   COCO captions
//
// Items are captions (one per annotation; the val split: the first caption of each image; no
// captions json: one item per image with an empty caption). An epoch visits the items in a
// permutation seeded by (seed, epoch) (identity when shuffle is off); batch b holds positions
// [b B, (b + 1) B). Every sample draws its random numbers from its own aug_rng seeded by (seed, epoch,
// position), so batches do not depend on the number of worker threads or their scheduling.
//
// Per sample, as upstream __getitem__ (augment = true):
//   mosaic (p): 4 images (the item's and 3 random items') on a 2s x 2s canvas, labels clipped to
//     it, then random_perspective with border -s/2 -> s x s; mixup (p) with a second mosaic.
//   else: load_image (long side to s, INTER_LINEAR), letterbox to s x s (scaleup), random_perspective.
//   then HSV, flip up-down (p), flip left-right (p) (flips applied to the rasterised masks).
// Without augment: load_image (INTER_AREA when shrinking), letterbox to s x s (no scaleup).
// `ori_imgs`: the item's loaded image letterboxed with scaleup = false (LoadCaptions.__getitem__).
// Instance masks (--no-overlap form) and semantic masks are rasterised at s / mask_ratio.
// Instances given as boxes only get their box as polygon (mask = the box). Semantic masks: the
// union per channel of the stuff polygons (or of the label map's pixels == channel, downsampled by
// the same >= 2-of-4 rule); `semantic_labels` = the lowest channel set per cell, 255 where none
// (unlabelled and letterbox padding). Image ids: int(stem), -1 when the stem is not an integer
// (such an image gets no caption when the split has a captions json).
// Not done: copy-paste, albumentations, rectangular batches, duplicate-label removal.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/data/augment.hpp"
#include "gyolo/data/dataset.hpp"
#include "gyolo/io/image.hpp"
#include "gyolo/text/tokenize.hpp"
#include "gyolo/train/trainer.hpp"

namespace gyolo::data {

struct loader_options {
  int imgsz = 640;           // s: batches are s x s (a multiple of mask_ratio)
  int batch_size = 16;
  int workers = 4;           // threads producing samples (0: produced in next())
  int prefetch_batches = 3;  // how many batches the workers may run ahead
  bool augment = false;      // training augmentations (and INTER_LINEAR in load_image)
  bool shuffle = false;      // epoch order: a permutation seeded by (seed, epoch)
  bool all_captions = true;  // every caption is an item (train); false: the first per image (val)
  aug_hyp hyp;
  std::uint64_t seed = 0;
  int mask_ratio = 4;        // masks at s / mask_ratio (upstream downsample_ratio)
  const caption_tokenizer* tokenizer = nullptr;  // caps: encode(text, caption_max_length); null: no caps
  int caption_max_length = 129;                  // hyp caption_max_len + 1
  bool verify_images = true;  // decode every image at scan time (a corrupt one is dropped then)
  bool strict = false;        // the first corrupt file throws gyolo::error
  std::function<void(const std::string&)> warn;  // corrupt files, by name (may be called from worker threads, serialised)
};

/// A ground-truth box of a validation image: class and xyxy in input pixels.
struct gt_box {
  int cls = 0;
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

/// One batch; it owns its data. H = W = imgsz, h = H / mask_ratio, w = W / mask_ratio.
struct batch {
  int B = 0, H = 0, W = 0, h = 0, w = 0, S = 0, n = 0, L = 0;
  std::vector<float> imgs, ori_imgs;  // [B, 3, H, W] RGB in [0, 1]
  std::vector<float> targets;         // [n, 6]: image index in the batch, class, xc, yc, w, h (normalised)
  std::vector<float> masks;           // [n, h, w] 0/1, one per target row
  std::vector<float> semasks;         // [B, S, h, w] 0/1
  std::vector<std::int64_t> caps;     // [B, L] token ids, trimmed to the longest caption
  // per image, for validation and logging
  std::vector<std::string> paths;
  std::vector<std::int64_t> image_ids;                // int(stem); -1 when the stem is not an integer
  std::vector<std::string> captions;                  // the item's caption
  std::vector<std::vector<std::string>> ref_captions; // every caption of the image
  std::vector<std::vector<gt_box>> gt;                // per image: its targets as class + xyxy in input pixels
  std::vector<int> target_begin;                      // [B + 1]: image i's rows of targets / masks
                                                      // (its instance masks: masks rows at h x w = H/4)
  std::vector<std::uint8_t> semantic_labels;          // [B, h, w]: the lowest semantic channel set, 255 = none
};

/// A view of `b` for the trainer (pointers into b's vectors; b must outlive it).
inline train::train_batch as_train_batch(const batch& b) {
  train::train_batch t;
  t.imgs = cview<float>{b.imgs.data(), b.B, 3, b.H, b.W, std::int64_t(3) * b.H * b.W};
  t.ori_imgs = cview<float>{b.ori_imgs.data(), b.B, 3, b.H, b.W, std::int64_t(3) * b.H * b.W};
  t.targets = b.targets.data();
  t.n = b.n;
  t.masks = b.masks.data();
  t.semasks = b.semasks.data();
  t.caps = b.caps.data();
  t.seq_len = b.L;
  return t;
}

namespace detail::ld {

/// The binary map (m == value) downsampled as rasterize_polygon does (1 iff >= 2 of the 2 x 2
/// block set; ratio 1: itself), OR-ed into out [H/r, W/r].
inline void downsample_equal(const image_u8& m, std::uint8_t value, int ratio, std::uint8_t* out) {
  const int H = m.height, W = m.width;
  if (ratio == 1) {
    for (std::size_t i = 0; i < m.data.size(); ++i)
      if (m.data[i] == value) out[i] = 1;
    return;
  }
  const int h = H / ratio, w = W / ratio, o = ratio / 2 - 1;
  for (int y = 0; y < h; ++y) {
    const std::uint8_t* a = m.row(ratio * y + o);
    const std::uint8_t* b = m.row(ratio * y + o + 1);
    for (int x = 0; x < w; ++x) {
      const int k = ratio * x + o;
      if ((a[k] == value) + (a[k + 1] == value) + (b[k] == value) + (b[k + 1] == value) >= 2)
        out[std::size_t(y) * w + x] = 1;
    }
  }
}

inline void flip_rows(std::uint8_t* p, int rows, int cols) {
  for (int y = 0; y < rows / 2; ++y) std::swap_ranges(p + std::size_t(y) * cols, p + std::size_t(y + 1) * cols, p + std::size_t(rows - 1 - y) * cols);
}
inline void flip_cols(std::uint8_t* p, int rows, int cols, int cn = 1) {
  for (int y = 0; y < rows; ++y) {
    std::uint8_t* r = p + std::size_t(y) * cols * cn;
    for (int x = 0; x < cols / 2; ++x)
      for (int k = 0; k < cn; ++k) std::swap(r[x * cn + k], r[(cols - 1 - x) * cn + k]);
  }
}

}  // namespace detail::ld

class loader {
 public:
  /// Scans the split: reads every label / stuff file (and decodes every image when
  /// verify_images), reads the captions json and builds the items. Corrupt files are reported
  /// through opt.warn and their image dropped (opt.strict: gyolo::error).
  loader(const data_config& cfg, const split_config& split, loader_options opt)
      : cfg_(cfg), opt_(std::move(opt)) {
    GYOLO_CHECK(opt_.imgsz > 0 && opt_.mask_ratio > 0 && opt_.imgsz % opt_.mask_ratio == 0 &&
                    (opt_.mask_ratio == 1 || opt_.mask_ratio % 2 == 0),
                "loader: imgsz must be positive and a multiple of mask_ratio (1 or even)");
    GYOLO_CHECK(opt_.batch_size > 0, "loader: batch_size must be positive");
    S_ = cfg_.semantic_channels();
    scan(split);
    if (opt_.tokenizer) pad_id_ = opt_.tokenizer->encode("", 3).ids[2];
  }
  ~loader() { stop_workers(); }
  loader(const loader&) = delete;
  loader& operator=(const loader&) = delete;

  int size() const { return int(items_.size()); }   // items per epoch
  int images() const { return int(images_.size()); }
  int batches_per_epoch() const { return (size() + opt_.batch_size - 1) / opt_.batch_size; }
  const loader_options& options() const { return opt_; }

  /// Starts epoch `epoch` (mosaic: whether mosaic may be used; close-mosaic turns it off), from
  /// batch `first_batch` (resume mid-epoch).
  void start_epoch(int epoch, bool mosaic, int first_batch = 0) {
    stop_workers();
    GYOLO_CHECK(first_batch >= 0, "loader: first_batch must not be negative");
    epoch_ = epoch;
    mosaic_ = mosaic;
    const int N = size();
    perm_.resize(std::size_t(N));
    for (int i = 0; i < N; ++i) perm_[std::size_t(i)] = i;
    if (opt_.shuffle) {  // Fisher-Yates
      aug_rng r = aug_rng::for_sample(opt_.seed, std::uint64_t(epoch), 0xFFFFFFFFFFFFull, 0);
      for (int i = N - 1; i > 0; --i) std::swap(perm_[std::size_t(i)], perm_[std::size_t(r.randint(0, i))]);
    }
    cur_batch_ = std::min(first_batch, batches_per_epoch());
    next_pos_ = std::min(N, cur_batch_ * opt_.batch_size);
    const int P = std::max(1, opt_.prefetch_batches);
    slots_.assign(std::size_t(P), slot{});
    for (int k = 0; k < P; ++k) reset_slot(cur_batch_ + k);
    stop_ = false;
    started_ = true;
    for (int t = 0; t < opt_.workers; ++t) threads_.emplace_back([this] { work(); });
  }

  /// The next batch of the epoch, or nullopt at its end. Throws (strict mode, or when no
  /// replacement image loads) what a worker threw.
  std::optional<batch> next() {
    GYOLO_CHECK(started_, "loader: call start_epoch first");
    if (cur_batch_ >= batches_per_epoch()) return std::nullopt;
    const int P = int(slots_.size());
    std::vector<std::optional<sample>> got;
    std::exception_ptr err;
    if (opt_.workers <= 0) {
      const int b0 = cur_batch_ * opt_.batch_size, b1 = std::min(size(), b0 + opt_.batch_size);
      for (int p = b0; p < b1; ++p) {
        try {
          got.emplace_back(produce(p));
        } catch (...) {
          if (!err) err = std::current_exception();
          got.emplace_back();
        }
      }
      ++cur_batch_;
    } else {
      std::unique_lock<std::mutex> lk(mu_);
      slot& s = slots_[std::size_t(cur_batch_ % P)];
      cv_done_.wait(lk, [&] { return s.done == s.expected; });
      got = std::move(s.samples);
      err = s.err;
      ++cur_batch_;
      reset_slot(cur_batch_ - 1 + P);  // workers may now claim batch cur_batch_ - 1 + P, in this slot
      lk.unlock();
      cv_work_.notify_all();
    }
    if (err) std::rethrow_exception(err);
    return collate(got);
  }

 private:
  struct image_record {
    fs::path path;
    std::int64_t id = -1;
    std::vector<instance_label> labels;
    std::vector<semantic_polygon> stuff;
    fs::path stuff_png;
    std::vector<std::string> captions;
  };
  struct item {
    int image = 0;
    std::string caption;
    std::vector<std::int64_t> tokens;  // [CLS] ... [SEP] (no padding)
  };
  struct sample {
    int item = 0;
    image_u8 img, ori;
    std::vector<float> labels;  // [n, 5] cls xc yc w h
    std::vector<std::array<float, 4>> boxes;  // xyxy input pixels (clipped)
    std::vector<std::uint8_t> masks, semasks;
  };
  struct slot {
    int batch = -1, expected = 0, done = 0;
    std::vector<std::optional<sample>> samples;
    std::exception_ptr err;
  };

  data_config cfg_;
  loader_options opt_;
  int S_ = 0;
  std::int64_t pad_id_ = 0;
  std::vector<image_record> images_;
  std::vector<item> items_;
  // epoch state
  int epoch_ = 0, cur_batch_ = 0, next_pos_ = 0;
  bool mosaic_ = false, started_ = false, stop_ = false;
  std::vector<int> perm_;
  std::vector<slot> slots_;
  std::vector<std::thread> threads_;
  std::mutex mu_, warn_mu_;
  std::condition_variable cv_work_, cv_done_;

  void warn(const std::string& m) {
    if (!opt_.warn) return;
    std::lock_guard<std::mutex> lk(warn_mu_);
    opt_.warn(m);
  }

  /// A corrupt file: strict -> throw, else warn.
  void corrupt(const std::string& m) {
    if (opt_.strict) throw error(m);
    warn(m);
  }

  static std::int64_t stem_id(const fs::path& p) {
    const std::string s = p.stem().string();
    if (s.empty() || s.size() > 18) return -1;
    for (char c : s)
      if (c < '0' || c > '9') return -1;
    return std::stoll(s);
  }

  void check_label_map(const image_u8& m, int w, int h, const std::string& name) const {
    if (m.width != w || m.height != h)
      throw error("stuff map '" + name + "': size " + std::to_string(m.width) + "x" + std::to_string(m.height) +
                  " differs from its image's " + std::to_string(w) + "x" + std::to_string(h));
    for (std::size_t i = 0; i < m.data.size(); i += std::size_t(m.channels))
      if (m.data[i] != 255 && m.data[i] >= S_)
        throw error("stuff map '" + name + "': value " + std::to_string(m.data[i]) + " is not a semantic channel (< " +
                    std::to_string(S_) + ") or 255");
  }

  void scan(const split_config& split) {
    const std::size_t n = split.images.size();
    std::vector<image_record> recs(n);
    std::vector<std::string> errs(n);
    std::atomic<std::size_t> next{0};
    auto job = [&] {
      for (std::size_t i = next++; i < n; i = next++) {
        image_record& r = recs[i];
        r.path = split.images[i];
        r.id = stem_id(r.path);
        try {
          int w = 0, h = 0;
          if (opt_.verify_images) {
            const image_u8 im = decode_image(r.path.string());
            w = im.width;
            h = im.height;
          }
          const fs::path lp = label_path_for(r.path);
          std::error_code ec;
          if (fs::is_regular_file(lp, ec)) r.labels = parse_labels(detail::ds::read_text(lp, "label"), lp.string(), cfg_.nc);
          const auto sp = stuff_paths_for(r.path);
          if (fs::is_regular_file(sp[0], ec)) {
            r.stuff = parse_stuff(detail::ds::read_text(sp[0], "label"), sp[0].string(), S_);
          } else if (fs::is_regular_file(sp[1], ec)) {
            r.stuff_png = sp[1];
            if (opt_.verify_images) check_label_map(decode_image(sp[1].string()), w, h, sp[1].string());
          }
        } catch (const std::exception& e) {
          errs[i] = e.what();
        }
      }
    };
    const int nt = std::max(1, std::min<int>(opt_.workers, int(n)));
    std::vector<std::thread> ts;
    for (int t = 1; t < nt; ++t) ts.emplace_back(job);
    job();
    for (auto& t : ts) t.join();
    std::map<std::int64_t, int> by_id;
    for (std::size_t i = 0; i < n; ++i) {
      if (!errs[i].empty()) {
        corrupt("skipping image '" + recs[i].path.string() + "': " + errs[i]);
        continue;
      }
      if (recs[i].id >= 0) by_id[recs[i].id] = int(images_.size());
      images_.push_back(std::move(recs[i]));
    }
    // captions
    bool have_json = false;
    std::vector<caption_annotation> anns;
    std::error_code ec;
    if (!split.captions_json.empty() && fs::exists(split.captions_json, ec)) {
      try {
        anns = read_captions(split.captions_json);
        have_json = true;
      } catch (const std::exception& e) {
        corrupt(std::string("ignoring captions: ") + e.what());
      }
    }
    if (!have_json) {
      for (int i = 0; i < int(images_.size()); ++i) items_.push_back(make_item(i, ""));
      return;
    }
    std::vector<char> has_item(images_.size(), 0);
    for (const auto& a : anns) {
      const auto it = by_id.find(a.image_id);
      if (it == by_id.end()) continue;  // not in this split (or dropped as corrupt)
      images_[std::size_t(it->second)].captions.push_back(a.caption);
      if (!opt_.all_captions && has_item[std::size_t(it->second)]) continue;
      has_item[std::size_t(it->second)] = 1;
      items_.push_back(make_item(it->second, a.caption));
    }
  }

  item make_item(int image, const std::string& caption) const {
    item it;
    it.image = image;
    it.caption = caption;
    if (opt_.tokenizer) {
      auto e = opt_.tokenizer->encode(caption, opt_.caption_max_length);
      std::size_t len = 0;
      while (len < e.ids.size() && !e.pad_mask[len]) ++len;
      e.ids.resize(len);
      it.tokens = std::move(e.ids);
    }
    return it;
  }

  // ---- threads ----

  void reset_slot(int b) {
    slot& s = slots_[std::size_t(b % int(slots_.size()))];
    s.batch = b;
    const int b0 = b * opt_.batch_size;
    s.expected = std::max(0, std::min(opt_.batch_size, size() - b0));
    s.done = 0;
    s.samples.assign(std::size_t(s.expected), std::nullopt);
    s.err = nullptr;
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_work_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  void work() {
    const int P = int(slots_.size()), B = opt_.batch_size;
    std::unique_lock<std::mutex> lk(mu_);
    while (true) {
      cv_work_.wait(lk, [&] { return stop_ || next_pos_ >= size() || next_pos_ / B < cur_batch_ + P; });
      if (stop_ || next_pos_ >= size()) return;
      const int p = next_pos_++;
      lk.unlock();
      std::optional<sample> s;
      std::exception_ptr err;
      try {
        s = produce(p);
      } catch (...) {
        err = std::current_exception();
      }
      lk.lock();
      slot& sl = slots_[std::size_t((p / B) % P)];
      sl.samples[std::size_t(p % B)] = std::move(s);
      if (err && !sl.err) sl.err = err;
      if (++sl.done == sl.expected) cv_done_.notify_all();
    }
  }

  // ---- samples ----

  /// upstream load_image: long side to imgsz (INTER_LINEAR when augmenting or enlarging, else
  /// INTER_AREA), with normalised labels and the (nearest-resized) label map.
  labeled_image load(int image_index, bool with_labels) const {
    const image_record& r = images_[std::size_t(image_index)];
    labeled_image li;
    const image_u8 im0 = decode_image(r.path.string());
    const int h0 = im0.height, w0 = im0.width;
    GYOLO_CHECK(im0.channels == 3, "image '" + r.path.string() + "': expected 3 channels");
    const double ratio = double(opt_.imgsz) / std::max(h0, w0);
    if (ratio != 1) {
      const int nw = std::max(1, int(w0 * ratio)), nh = std::max(1, int(h0 * ratio));
      li.img = (opt_.augment || ratio > 1) ? resize_linear(im0, nw, nh) : resize_area(im0, nw, nh);
    } else {
      li.img = im0;
    }
    if (!with_labels) return li;
    for (const auto& L : r.labels) {
      li.cls.push_back(L.cls);
      const double xc = L.xywh[0], yc = L.xywh[1], w = L.xywh[2], h = L.xywh[3];
      li.boxes.push_back({xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2});
      if (L.polygon.empty()) {
        const auto& b = li.boxes.back();
        li.segs.push_back({b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]});
      } else {
        li.segs.emplace_back(L.polygon.begin(), L.polygon.end());
      }
    }
    for (const auto& s : r.stuff) {
      li.sem_ch.push_back(s.channel);
      li.sem_polys.emplace_back(s.polygon.begin(), s.polygon.end());
    }
    if (!r.stuff_png.empty()) {
      const image_u8 m3 = decode_image(r.stuff_png.string());
      check_label_map(m3, w0, h0, r.stuff_png.string());
      image_u8 m(h0, w0, 1);
      for (std::size_t i = 0; i < m.data.size(); ++i) m.data[i] = m3.data[3 * i];
      li.label_map = (m.width != li.img.width || m.height != li.img.height) ? resize_nearest(m, li.img.width, li.img.height) : m;
    }
    return li;
  }

  /// Normalised labels -> pixels: x * w + padw, y * h + padh (upstream xywhn2xyxy / xyn2xy).
  static void to_pixels(labeled_image& li, double w, double h, double padw, double padh) {
    for (auto& b : li.boxes) b = {b[0] * w + padw, b[1] * h + padh, b[2] * w + padw, b[3] * h + padh};
    auto pts = [&](std::vector<double>& p) {
      for (std::size_t i = 0; i + 1 < p.size(); i += 2) {
        p[i] = p[i] * w + padw;
        p[i + 1] = p[i + 1] * h + padh;
      }
    };
    for (auto& s : li.segs) pts(s);
    for (auto& s : li.sem_polys) pts(s);
  }

  /// upstream load_mosaic (without copy-paste).
  labeled_image load_mosaic(int item_index, const labeled_image* first, aug_rng& r) const {
    const int s = opt_.imgsz;
    const int yc = int(r.uniform(s / 2.0, 2 * s - s / 2.0)), xc = int(r.uniform(s / 2.0, 2 * s - s / 2.0));
    int idx[4] = {item_index, 0, 0, 0};
    for (int k = 1; k < 4; ++k) idx[k] = r.randint(0, size() - 1);
    labeled_image out;
    out.img = image_u8(2 * s, 2 * s, 3);
    std::fill(out.img.data.begin(), out.img.data.end(), 114);
    bool any_map = false;
    for (int i = 0; i < 4; ++i) {
      labeled_image t = (i == 0 && first) ? *first : load(items_[std::size_t(idx[i])].image, true);
      const int w = t.img.width, h = t.img.height;
      int x1a, y1a, x2a, y2a, x1b, y1b, x2b, y2b;
      if (i == 0) {
        x1a = std::max(xc - w, 0), y1a = std::max(yc - h, 0), x2a = xc, y2a = yc;
        x1b = w - (x2a - x1a), y1b = h - (y2a - y1a), x2b = w, y2b = h;
      } else if (i == 1) {
        x1a = xc, y1a = std::max(yc - h, 0), x2a = std::min(xc + w, s * 2), y2a = yc;
        x1b = 0, y1b = h - (y2a - y1a), x2b = std::min(w, x2a - x1a), y2b = h;
      } else if (i == 2) {
        x1a = std::max(xc - w, 0), y1a = yc, x2a = xc, y2a = std::min(s * 2, yc + h);
        x1b = w - (x2a - x1a), y1b = 0, x2b = w, y2b = std::min(y2a - y1a, h);
      } else {
        x1a = xc, y1a = yc, x2a = std::min(xc + w, s * 2), y2a = std::min(s * 2, yc + h);
        x1b = 0, y1b = 0, x2b = std::min(w, x2a - x1a), y2b = std::min(y2a - y1a, h);
      }
      const int cw = std::min(x2a - x1a, x2b - x1b), ch = std::min(y2a - y1a, y2b - y1b);
      if (!t.label_map.empty() && !any_map) {
        out.label_map = image_u8(2 * s, 2 * s, 1);
        std::fill(out.label_map.data.begin(), out.label_map.data.end(), 255);
        any_map = true;
      }
      for (int y = 0; y < ch; ++y) {
        std::copy_n(t.img.row(y1b + y) + std::size_t(x1b) * 3, std::size_t(cw) * 3, out.img.row(y1a + y) + std::size_t(x1a) * 3);
        if (!t.label_map.empty())
          std::copy_n(t.label_map.row(y1b + y) + x1b, cw, out.label_map.row(y1a + y) + x1a);
      }
      to_pixels(t, w, h, x1a - x1b, y1a - y1b);
      out.cls.insert(out.cls.end(), t.cls.begin(), t.cls.end());
      out.boxes.insert(out.boxes.end(), t.boxes.begin(), t.boxes.end());
      for (auto& g : t.segs) out.segs.push_back(std::move(g));
      out.sem_ch.insert(out.sem_ch.end(), t.sem_ch.begin(), t.sem_ch.end());
      for (auto& g : t.sem_polys) out.sem_polys.push_back(std::move(g));
    }
    const double lim = 2.0 * s;
    for (auto& b : out.boxes)
      for (auto& v : b) v = std::clamp(v, 0.0, lim);
    for (auto* polys : {&out.segs, &out.sem_polys})
      for (auto& p : *polys)
        for (auto& v : p) v = std::clamp(v, 0.0, lim);
    random_perspective(out, opt_.hyp, -s / 2, r);
    return out;
  }

  sample produce(int pos) {
    const int N = size();
    std::string last;
    for (int attempt = 0; attempt < std::max(1, N); ++attempt) {
      const int it = (perm_[std::size_t(pos)] + attempt) % N;
      aug_rng r = aug_rng::for_sample(opt_.seed, std::uint64_t(epoch_), std::uint64_t(pos), std::uint64_t(attempt));
      try {
        return make_sample(it, r);
      } catch (const std::exception& e) {
        last = e.what();
        corrupt("replacing item " + std::to_string(it) + " ('" + images_[std::size_t(items_[std::size_t(it)].image)].path.string() +
                "'): " + last);
      }
    }
    throw error("loader: no item of the split loads (last error: " + last + ")");
  }

  sample make_sample(int item_index, aug_rng& r) const {
    const int s = opt_.imgsz, ratio = opt_.mask_ratio, h4 = s / ratio, w4 = s / ratio;
    const auto& hy = opt_.hyp;
    const int image_index = items_[std::size_t(item_index)].image;
    sample out;
    out.item = item_index;
    const labeled_image base = load(image_index, true);
    out.ori = letterbox(base.img, s, {.square = true, .scaleup = false});
    labeled_image li;
    if (opt_.augment && mosaic_ && r.uniform() < hy.mosaic) {
      li = load_mosaic(item_index, &base, r);
      if (r.uniform() < hy.mixup) {
        labeled_image b2 = load_mosaic(r.randint(0, size() - 1), nullptr, r);
        mixup(li, std::move(b2), r.beta(32.0, 32.0));
      }
    } else {
      li = base;
      letterbox_info info;
      li.img = letterbox(base.img, s, {.square = true, .scaleup = opt_.augment}, &info);
      to_pixels(li, info.ratio * base.img.width, info.ratio * base.img.height, info.dw, info.dh);
      if (!li.label_map.empty()) {
        image_u8 m = (info.new_w != base.img.width || info.new_h != base.img.height)
                         ? resize_nearest(li.label_map, info.new_w, info.new_h)
                         : li.label_map;
        li.label_map = pad_constant(m, info.top, info.bottom, info.left, info.right, 255);
      }
      if (opt_.augment) random_perspective(li, hy, 0, r);
    }
    GYOLO_CHECK(li.img.width == s && li.img.height == s, "loader: internal error: sample size");
    // targets: xyxy -> xywhn, clipped to [0, s - 1e-3] (upstream xyxy2xywhn(clip=True, eps=1e-3))
    const std::size_t n = li.cls.size(), plane = std::size_t(h4) * w4;
    out.masks.assign(n * plane, 0);
    for (std::size_t i = 0; i < n; ++i) {
      auto b = li.boxes[i];
      for (int k = 0; k < 4; ++k) b[std::size_t(k)] = std::clamp(b[std::size_t(k)], 0.0, s - 1e-3);
      out.boxes.push_back({float(b[0]), float(b[1]), float(b[2]), float(b[3])});
      out.labels.insert(out.labels.end(), {float(li.cls[i]), float((b[0] + b[2]) / 2 / s), float((b[1] + b[3]) / 2 / s),
                                           float((b[2] - b[0]) / s), float((b[3] - b[1]) / s)});
      rasterize_polygon(li.segs[i], s, s, ratio, out.masks.data() + i * plane);
    }
    out.semasks.assign(std::size_t(S_) * plane, 0);
    for (std::size_t k = 0; k < li.sem_polys.size(); ++k)
      rasterize_polygon(li.sem_polys[k], s, s, ratio, out.semasks.data() + std::size_t(li.sem_ch[k]) * plane);
    if (!li.label_map.empty()) {
      bool present[256] = {};
      for (auto v : li.label_map.data) present[v] = true;
      for (int c = 0; c < S_; ++c)
        if (present[c]) detail::ld::downsample_equal(li.label_map, std::uint8_t(c), ratio, out.semasks.data() + std::size_t(c) * plane);
    }
    if (opt_.augment) {
      augment_hsv(li.img, hy.hsv_h, hy.hsv_s, hy.hsv_v, r);
      if (r.uniform() < hy.flipud) {
        detail::ld::flip_rows(li.img.data.data(), s, s * 3);
        for (std::size_t i = 0; i < n; ++i) {
          out.labels[i * 5 + 2] = 1 - out.labels[i * 5 + 2];
          auto& b = out.boxes[i];
          b = {b[0], float(s) - b[3], b[2], float(s) - b[1]};
        }
        for (std::size_t i = 0; i < n; ++i) detail::ld::flip_rows(out.masks.data() + i * plane, h4, w4);
        for (int c = 0; c < S_; ++c) detail::ld::flip_rows(out.semasks.data() + std::size_t(c) * plane, h4, w4);
      }
      if (r.uniform() < hy.fliplr) {
        detail::ld::flip_cols(li.img.data.data(), s, s, 3);
        for (std::size_t i = 0; i < n; ++i) {
          out.labels[i * 5 + 1] = 1 - out.labels[i * 5 + 1];
          auto& b = out.boxes[i];
          b = {float(s) - b[2], b[1], float(s) - b[0], b[3]};
        }
        for (std::size_t i = 0; i < n; ++i) detail::ld::flip_cols(out.masks.data() + i * plane, h4, w4);
        for (int c = 0; c < S_; ++c) detail::ld::flip_cols(out.semasks.data() + std::size_t(c) * plane, h4, w4);
      }
    }
    out.img = std::move(li.img);
    return out;
  }

  batch collate(std::vector<std::optional<sample>>& got) const {
    batch b;
    const int s = opt_.imgsz;
    b.B = int(got.size());
    b.H = b.W = s;
    b.h = b.w = s / opt_.mask_ratio;
    b.S = S_;
    const std::size_t img = std::size_t(3) * s * s, plane = std::size_t(b.h) * b.w;
    b.imgs.resize(b.B * img);
    b.ori_imgs.resize(b.B * img);
    b.semasks.resize(std::size_t(b.B) * S_ * plane);
    b.semantic_labels.assign(std::size_t(b.B) * plane, 255);
    b.target_begin.push_back(0);
    std::size_t L = 0;
    for (const auto& g : got) L = std::max(L, items_[std::size_t(g->item)].tokens.size());
    b.L = opt_.tokenizer ? int(L) : 0;
    b.caps.assign(std::size_t(b.B) * L, pad_id_);
    for (int i = 0; i < b.B; ++i) {
      const sample& sm = *got[std::size_t(i)];
      const item& it = items_[std::size_t(sm.item)];
      const image_record& rec = images_[std::size_t(it.image)];
      to_input_chw_rgb(sm.img, b.imgs.data() + i * img);
      to_input_chw_rgb(sm.ori, b.ori_imgs.data() + i * img);
      const std::size_t n = sm.boxes.size();
      std::vector<gt_box> gts;
      for (std::size_t k = 0; k < n; ++k) {
        b.targets.push_back(float(i));
        b.targets.insert(b.targets.end(), sm.labels.begin() + std::ptrdiff_t(5 * k), sm.labels.begin() + std::ptrdiff_t(5 * k + 5));
        gts.push_back({int(sm.labels[5 * k]), sm.boxes[k][0], sm.boxes[k][1], sm.boxes[k][2], sm.boxes[k][3]});
      }
      for (auto v : sm.masks) b.masks.push_back(float(v));
      b.n += int(n);
      b.target_begin.push_back(b.n);
      float* sem = b.semasks.data() + std::size_t(i) * S_ * plane;
      std::uint8_t* lab = b.semantic_labels.data() + std::size_t(i) * plane;
      for (int c = S_ - 1; c >= 0; --c)
        for (std::size_t p = 0; p < plane; ++p) {
          const std::uint8_t v = sm.semasks[std::size_t(c) * plane + p];
          sem[std::size_t(c) * plane + p] = float(v);
          if (v) lab[p] = std::uint8_t(std::min(c, 254));
        }
      std::copy(it.tokens.begin(), it.tokens.end(), b.caps.begin() + std::ptrdiff_t(std::size_t(i) * L));
      b.paths.push_back(rec.path.string());
      b.image_ids.push_back(rec.id);
      b.captions.push_back(it.caption);
      b.ref_captions.push_back(rec.captions);
      b.gt.push_back(std::move(gts));
    }
    return b;
  }
};

}  // namespace gyolo::data
