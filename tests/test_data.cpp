// The training data loader (include/gyolo/data): yaml subset, labels, rasterisation, letterbox
// geometry, flips, mosaic / perspective consistency, determinism across worker counts, corrupt
// files. Every dataset is written by the test itself into a temporary folder.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gyolo/data/loader.hpp"
#include "gyolo/post/png.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_data {

namespace {

namespace fs = std::filesystem;
using namespace gyolo;
using namespace gyolo::data;

struct temp_dir {
  fs::path p;
  explicit temp_dir(const std::string& tag) {
    static int counter = 0;
    p = fs::temp_directory_path() / ("gyolo_test_data_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(p);
    fs::create_directories(p);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(p, ec);
  }
};

void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << s;
}

/// A w x h RGB PNG: gray 40 background, then filled axis-aligned rectangles (x0, y0, x1, y1 in
/// pixels, exclusive ends) with the given colour.
struct rect {
  int x0, y0, x1, y1;
  std::uint8_t r, g, b;
};
void write_png(const fs::path& p, int w, int h, const std::vector<rect>& rects) {
  std::vector<std::uint8_t> px(std::size_t(w) * h * 3, 40);
  for (const auto& q : rects)
    for (int y = q.y0; y < q.y1; ++y)
      for (int x = q.x0; x < q.x1; ++x) {
        auto* d = &px[(std::size_t(y) * w + x) * 3];
        d[0] = q.r;
        d[1] = q.g;
        d[2] = q.b;
      }
  fs::create_directories(p.parent_path());
  post::write_file_atomic(p, post::encode_png(px.data(), w, h, 3));
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.6f", v);
  return b;
}

/// A rectangle as a YOLO polygon row (normalised by w, h).
std::string poly_row(int cls, const rect& q, int w, int h) {
  return std::to_string(cls) + " " + num(double(q.x0) / w) + " " + num(double(q.y0) / h) + " " + num(double(q.x1) / w) + " " +
         num(double(q.y0) / h) + " " + num(double(q.x1) / w) + " " + num(double(q.y1) / h) + " " + num(double(q.x0) / w) + " " +
         num(double(q.y1) / h) + "\n";
}

const caption_tokenizer& tok() {
  static const caption_tokenizer t({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "red", "square", "blue", "big", "image", "."});
  return t;
}

/// A small dataset: `n` images 96 x 64 (train) with two rectangles each (class 0 polygon, class
/// 1 box), a stuff polygon file (channel 2 = "sky": the top band), captions (2 per image).
void make_dataset(const fs::path& root, int n, bool captions = true) {
  write_text(root / "data.yaml",
             "# test data\npath: .\ntrain: images/train\nval: images/train\nnc: 2\n"
             "names:\n  0: square\n  1: box\nstuff_names: [sky]\n");
  std::string ann = "{\"images\": [], \"annotations\": [";
  int aid = 0;
  for (int i = 0; i < n; ++i) {
    const int W = 96, H = 64;
    const rect a{8 + 3 * i, 20, 40 + 3 * i, 50, 200, 30, 30}, b{56, 10 + 2 * i, 88, 40 + 2 * i, 30, 30, 200};
    const std::string id = std::to_string(100 + i);
    write_png(root / "images/train" / (id + ".png"), W, H, {a, b});
    const double bxc = (b.x0 + b.x1) / 2.0 / W, byc = (b.y0 + b.y1) / 2.0 / H;
    write_text(root / "labels/train" / (id + ".txt"),
               poly_row(0, a, W, H) + "1 " + num(bxc) + " " + num(byc) + " " + num(double(b.x1 - b.x0) / W) + " " +
                   num(double(b.y1 - b.y0) / H) + "\n");
    write_text(root / "stuff/train" / (id + ".txt"), "2 0 0 1 0 1 0.25 0 0.25\n" + poly_row(0, a, W, H));
    for (int c = 0; c < 2; ++c) {
      if (aid) ann += ", ";
      ann += "{\"id\": " + std::to_string(aid++) + ", \"image_id\": " + id + ", \"caption\": \"" +
             (c ? "a big red square ." : "a blue image") + "\"}";
    }
  }
  ann += "]}";
  if (captions) write_text(root / "annotations/captions_train.json", ann);
}

loader_options base_opts() {
  loader_options o;
  o.imgsz = 64;
  o.batch_size = 3;
  o.workers = 0;
  o.tokenizer = &tok();
  return o;
}

/// The xyxy extent (in mask cells) of the set cells of a h x w mask; false when empty.
bool mask_extent(const float* m, int h, int w, std::array<int, 4>& e) {
  e = {w, h, -1, -1};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (m[y * w + x] > 0.5f) {
        e[0] = std::min(e[0], x);
        e[1] = std::min(e[1], y);
        e[2] = std::max(e[2], x);
        e[3] = std::max(e[3], y);
      }
  return e[2] >= 0;
}

}  // namespace

TEST_CASE("yaml subset: scalars, flow and block lists, block mappings, comments", "[data]") {
  const auto y = parse_yaml(
      "# header\n"
      "path: ../datasets/coco  # root\n"
      "train: 'train 2017.txt'\n"
      "val: \"val#2017\"\n"
      "nc: 3\n"
      "names: [person, 'bi, cycle',\n"
      "        car]  # spans lines\n"
      "map:\n"
      "  0: person\n"
      "  1: 'it''s'\n"
      "lst:\n"
      "  - a\n"
      "  - 'b c'\n"
      "nested:\n"
      "  vision: ['detection', 'semantic']\n"
      "empty:\n"
      "backbone:\n"
      "  [[-1, 1, Conv, [32, 3, 1]],  # 0\n"
      "   [-1, 1, Silence, []]]\n"
      "download: |\n"
      "  import os\n"
      "\n"
      "  # not a comment here\n"
      "last: 1\n",
      "t.yaml");
  REQUIRE(y.is_map());
  CHECK(y.find("path")->text == "../datasets/coco");
  CHECK(y.find("train")->text == "train 2017.txt");
  CHECK(y.find("val")->text == "val#2017");
  CHECK(yaml_to_int(*y.find("nc"), "t.yaml", "nc") == 3);
  const auto* names = y.find("names");
  REQUIRE(names->is_list());
  REQUIRE(names->items.size() == 3);
  CHECK(names->items[1].text == "bi, cycle");
  CHECK(names->items[2].text == "car");
  const auto* m = y.find("map");
  REQUIRE(m->is_map());
  CHECK(m->entries[1].first == "1");
  CHECK(m->entries[1].second.text == "it's");
  const auto* l = y.find("lst");
  REQUIRE(l->is_list());
  CHECK(l->items[1].text == "b c");
  CHECK(y.find("nested")->find("vision")->items[1].text == "semantic");
  CHECK(y.find("empty")->is_null());
  const auto* bb = y.find("backbone");
  REQUIRE(bb->is_list());
  REQUIRE(bb->items.size() == 2);
  CHECK(bb->items[0].items[3].items[0].text == "32");
  CHECK(y.find("download")->text == "import os\n\n# not a comment here\n");
  CHECK(y.find("last")->text == "1");

  auto fails_at = [](const std::string& text, const std::string& line) {
    try {
      parse_yaml(text, "bad.yaml");
    } catch (const gyolo::error& e) {
      const std::string w = e.what();
      INFO(w);
      CHECK(w.find("bad.yaml") != std::string::npos);
      CHECK(w.find("line " + line) != std::string::npos);
      return;
    }
    FAIL("no error for: " << text);
  };
  fails_at("a: 1\nb: {x: 1}\n", "2");
  fails_at("a: 1\n\nnames: [a, b\n", "3");
  fails_at("a: 1\njust text\n", "2");
  fails_at("a:\n  - x\n  y: 2\n", "3");
  fails_at("a: 1\na: 2\n", "2");
  fails_at("a: 'open\n", "1");
  fails_at("a: &anchor 1\n", "1");
  fails_at("a: 1\n   b: 2\n", "2");
}

TEST_CASE("read_data_yaml: both names forms, splits, captions path", "[data]") {
  temp_dir t("yaml");
  make_dataset(t.p, 3);
  const auto c = read_data_yaml(t.p / "data.yaml");
  CHECK(c.nc == 2);
  CHECK(c.names == std::vector<std::string>{"square", "box"});
  CHECK(c.stuff_names == std::vector<std::string>{"sky"});
  CHECK(c.semantic_channels() == 3);
  REQUIRE(c.train.images.size() == 3);
  CHECK(c.train.images[0].filename() == "100.png");
  CHECK(c.train.images[2].filename() == "102.png");
  CHECK(c.train.captions_json == (t.p / "annotations" / "captions_train.json").lexically_normal());
  // flow-list names and a .txt list relative to path
  write_text(t.p / "list.txt", "images/train/101.png\n./images/train/100.png\n");
  write_text(t.p / "d2.yaml", "path: .\ntrain: list.txt\nnames: [a, b]\n");
  const auto c2 = read_data_yaml(t.p / "d2.yaml");
  CHECK(c2.nc == 2);
  REQUIRE(c2.train.images.size() == 2);
  CHECK(c2.train.images[0].filename() == "101.png");
  CHECK(c2.train.captions_json.filename() == "captions_list.json");
  write_text(t.p / "d3.yaml", "nc: 3\nnames: [a, b]\n");
  CHECK_THROWS_WITH(read_data_yaml(t.p / "d3.yaml"), Catch::Contains("nc is 3"));
  CHECK(label_path_for("/r/images/train/5.jpg") == fs::path("/r/labels/train/5.txt"));
  CHECK(stuff_paths_for("/r/images/x/images/train/5.jpg")[1] == fs::path("/r/images/x/stuff/train/5.png"));
}

TEST_CASE("label parsing: boxes, polygons, errors", "[data]") {
  const auto L = parse_labels("0 0.5 0.5 0.2 0.4\n\n1 0.1 0.2 0.3 0.2 0.3 0.6\n", "l.txt", 2);
  REQUIRE(L.size() == 2);
  CHECK(L[0].polygon.empty());
  CHECK(L[0].xywh[3] == Approx(0.4f));
  REQUIRE(L[1].polygon.size() == 6);
  CHECK(L[1].xywh[0] == Approx(0.2f));
  CHECK(L[1].xywh[1] == Approx(0.4f));
  CHECK(L[1].xywh[2] == Approx(0.2f));
  CHECK(L[1].xywh[3] == Approx(0.4f));
  CHECK_THROWS_WITH(parse_labels("0 0.5 0.5 0.2 0.4\n0 0.5 x 0.2 0.4\n", "l.txt", 2), Catch::Contains("l.txt' line 2"));
  CHECK_THROWS_WITH(parse_labels("2 0.5 0.5 0.2 0.4\n", "l.txt", 2), Catch::Contains("out of range"));
  CHECK_THROWS_WITH(parse_labels("0 0.5 0.5 0.2 nan\n", "l.txt", 2), Catch::Contains("not finite"));
  CHECK_THROWS_WITH(parse_labels("0 0.1 0.1 0.2 0.2 0.3\n", "l.txt", 2), Catch::Contains("columns"));
  CHECK_THROWS_WITH(parse_labels("0 0.1 0.1\n", "l.txt", 2), Catch::Contains("3 points"));
  CHECK_THROWS_WITH(parse_labels("0 0.5 0.5 1.2 0.4\n", "l.txt", 2), Catch::Contains("outside"));
  CHECK_THROWS_WITH(parse_labels("0 0.5 0.5 0.2 0.4 \x01\n", "l.txt", 2), Catch::Contains("\\x01"));
  const auto S = parse_stuff("4 0 0 1 0 1 1\n", "s.txt", 5);
  REQUIRE(S.size() == 1);
  CHECK(S[0].channel == 4);
  CHECK_THROWS_WITH(parse_stuff("5 0 0 1 0 1 1\n", "s.txt", 5), Catch::Contains("out of range"));
}

TEST_CASE("polygon rasterisation: area and the 1/4 downsample", "[data]") {
  const int H = 64, W = 80;
  // a triangle and a rotated quadrilateral (pixel coordinates)
  const std::vector<std::vector<double>> polys = {{10, 5, 70, 20, 30, 60}, {40, 2, 78, 30, 42, 62, 3, 33}};
  for (const auto& p : polys) {
    std::vector<std::uint8_t> full(std::size_t(H) * W, 0);
    rasterize_polygon(p, H, W, 1, full.data());
    double area = 0, perim = 0;
    const std::size_t n = p.size() / 2;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t j = (i + 1) % n;
      area += p[2 * i] * p[2 * j + 1] - p[2 * j] * p[2 * i + 1];
      perim += std::hypot(p[2 * j] - p[2 * i], p[2 * j + 1] - p[2 * i + 1]);
    }
    area = std::abs(area) / 2;
    double count = 0;
    for (auto v : full) count += v;
    INFO("area " << area << " count " << count << " perimeter " << perim);
    // cv2's fillPoly covers the outline too: about half the perimeter more than the exact area
    CHECK(count >= area);
    CHECK(count <= area + perim);  // the outline adds at most about one pixel all round
    // the 1/4 rule equals cv2.resize INTER_LINEAR (our exact port) of the full mask
    std::vector<std::uint8_t> q(std::size_t(H / 4) * (W / 4), 0);
    rasterize_polygon(p, H, W, 4, q.data());
    image_u8 fm(H, W, 1);
    fm.data = full;
    const image_u8 ref = resize_linear(fm, W / 4, H / 4);
    CHECK(ref.data == q);
  }
  // an axis-aligned 10 x 10 square from (2, 3): cv2 fills 11 x 11 pixels
  std::vector<std::uint8_t> sq(std::size_t(H) * W, 0);
  fill_polygon(sq.data(), W, H, {2, 3, 12, 3, 12, 13, 2, 13}, 1);
  int c = 0;
  for (auto v : sq) c += v;
  CHECK(c == 121);
  CHECK(sq[3 * W + 2] == 1);
  CHECK(sq[13 * W + 12] == 1);
  CHECK(sq[14 * W + 12] == 0);
}

TEST_CASE("loader: letterbox geometry of targets, items, captions", "[data]") {
  temp_dir t("letterbox");
  make_dataset(t.p, 2);
  const auto c = read_data_yaml(t.p / "data.yaml");
  auto o = base_opts();
  o.batch_size = 4;
  loader ld(c, c.train, o);
  CHECK(ld.size() == 4);  // 2 images x 2 captions
  CHECK(ld.batches_per_epoch() == 1);
  ld.start_epoch(0, false);
  auto b = ld.next();
  REQUIRE(b);
  CHECK(!ld.next());
  CHECK(b->B == 4);
  CHECK(b->h == 16);
  CHECK(b->S == 3);
  CHECK(b->image_ids == std::vector<std::int64_t>{100, 100, 101, 101});
  CHECK(b->captions[1] == "a big red square .");
  CHECK(b->ref_captions[0].size() == 2);
  // caps: [CLS] a big red square . [SEP] -> 7 tokens, the longest in the batch
  CHECK(b->L == 7);
  CHECK(b->caps[0] == 2);
  CHECK(b->caps[4] == 3);  // [CLS] a blue image [SEP]
  CHECK(b->caps[5] == 0);
  CHECK(b->caps[7 + 6] == 3);
  // 96 x 64 -> resized to 64 x 43 (load_image: int(64 * 64/96) = 42.67 -> 42 ... letterboxed)
  // image 0: rectangle a = (8, 20)-(40, 50) in 96 x 64 px; r = 64/96
  REQUIRE(b->n == 8);
  REQUIRE(b->target_begin[1] == 2);
  const double r = 64.0 / 96.0, hh = int(64 * r);  // loaded height 42
  const double padh = (64 - hh) / 2.0;
  const float* tg = b->targets.data();
  CHECK(tg[0] == 0);
  CHECK(tg[1] == 0);
  CHECK(tg[2] == Approx((8 + 40) / 2.0 * r / 64).margin(1e-4));
  CHECK(tg[3] == Approx(((20 + 50) / 2.0 / 64 * hh + padh) / 64).margin(1e-4));
  CHECK(tg[4] == Approx(32 * r / 64).margin(1e-4));
  CHECK(tg[5] == Approx(30.0 / 64 * hh / 64).margin(1e-4));
  // gt boxes in input pixels match the targets
  CHECK(b->gt[0][0].x0 == Approx(8 * r).margin(1e-3));
  CHECK(b->gt[0][0].y1 == Approx(50.0 / 64 * hh + padh).margin(1e-3));
  // padding rows are 114 / 255 in imgs and ori_imgs, and the val view = the plain view here
  CHECK(b->imgs[0] == Approx(114.0f / 255));
  CHECK(b->ori_imgs == b->imgs);
  // masks: each mask's extent ~ its target box (in 1/4 cells)
  for (int k = 0; k < b->n; ++k) {
    std::array<int, 4> e{};
    REQUIRE(mask_extent(b->masks.data() + std::size_t(k) * 256, 16, 16, e));
    const float* q = tg + 6 * k;
    CHECK(std::abs(e[0] - (q[2] - q[4] / 2) * 16) <= 1.0);
    CHECK(std::abs(e[2] + 1 - (q[2] + q[4] / 2) * 16) <= 1.0);
    CHECK(std::abs(e[1] - (q[3] - q[5] / 2) * 16) <= 1.0);
    CHECK(std::abs(e[3] + 1 - (q[3] + q[5] / 2) * 16) <= 1.0);
  }
  // semantic: channel 2 (sky) covers the top band of the image (inside the letterbox), channel 0 the square
  const float* sem = b->semasks.data();
  CHECK(sem[2 * 256 + 4 * 16 + 8] == 1.0f);   // row 4 (y 16..19 px: image top band starts at 11)
  CHECK(sem[2 * 256 + 12 * 16 + 8] == 0.0f);
  CHECK(b->semantic_labels[4 * 16 + 8] == 2);
  CHECK(b->semantic_labels[0] == 255);  // padding
  const auto tb = as_train_batch(*b);
  CHECK(tb.imgs.n == 4);
  CHECK(tb.seq_len == 7);
  CHECK(tb.n == 8);
}

TEST_CASE("loader: flips move targets and masks consistently", "[data]") {
  temp_dir t("flip");
  make_dataset(t.p, 2);
  const auto c = read_data_yaml(t.p / "data.yaml");
  auto o = base_opts();
  o.augment = true;
  o.hyp = aug_hyp{};
  o.hyp.mosaic = 0;
  o.hyp.hsv_h = o.hyp.hsv_s = o.hyp.hsv_v = 0;
  o.hyp.translate = o.hyp.scale = 0;
  o.hyp.fliplr = 0;
  loader plain(c, c.train, o);
  o.hyp.fliplr = 1;
  o.hyp.flipud = 1;
  loader flipped(c, c.train, o);
  plain.start_epoch(0, true);
  flipped.start_epoch(0, true);
  auto a = plain.next();
  auto b = flipped.next();
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(a->n == b->n);
  for (int k = 0; k < a->n; ++k) {
    CHECK(b->targets[6 * k + 2] == Approx(1 - a->targets[6 * k + 2]).margin(1e-5));
    CHECK(b->targets[6 * k + 3] == Approx(1 - a->targets[6 * k + 3]).margin(1e-5));
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x)
        REQUIRE(b->masks[std::size_t(k) * 256 + y * 16 + x] == a->masks[std::size_t(k) * 256 + (15 - y) * 16 + (15 - x)]);
  }
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      REQUIRE(b->imgs[std::size_t(y) * 64 + x] == a->imgs[std::size_t(63 - y) * 64 + (63 - x)]);
  for (int ch = 0; ch < 3; ++ch)
    for (int p = 0; p < 256; ++p) REQUIRE(b->semasks[std::size_t(ch) * 256 + p] == a->semasks[std::size_t(ch) * 256 + 255 - p]);
  CHECK(b->ori_imgs == a->ori_imgs);  // the caption view is never augmented
}

TEST_CASE("loader: mosaic and perspective keep boxes consistent with masks", "[data]") {
  temp_dir t("mosaic");
  make_dataset(t.p, 4);
  const auto c = read_data_yaml(t.p / "data.yaml");
  auto o = base_opts();
  o.imgsz = 128;
  o.augment = true;
  o.shuffle = true;
  o.seed = 7;
  o.hyp.degrees = 15;
  o.hyp.shear = 5;
  o.hyp.perspective = 0.0005;
  o.hyp.mixup = 0.5;
  loader ld(c, c.train, o);
  int checked = 0;
  for (int ep = 0; ep < 3; ++ep) {
    ld.start_epoch(ep, true);
    while (auto b = ld.next()) {
      CHECK(b->H == 128);
      for (int k = 0; k < b->n; ++k) {
        const float* q = b->targets.data() + 6 * k;
        CHECK(q[0] >= 0);
        CHECK(q[0] < b->B);
        if (std::min(q[4], q[5]) * 32 < 1.5) continue;  // a sliver (cut by the border): too thin for 1/4 masks
        std::array<int, 4> e{};
        REQUIRE(mask_extent(b->masks.data() + std::size_t(k) * 32 * 32, 32, 32, e));
        ++checked;
        const double tol = 2.0;
        INFO("epoch " << ep << " target " << k << " cls " << q[1] << " box " << q[2] * 32 << "," << q[3] * 32 << " " << q[4] * 32 << "x" << q[5] * 32
                      << " mask extent " << e[0] << "," << e[1] << "-" << e[2] << "," << e[3]);
        CHECK(std::abs(e[0] - (q[2] - q[4] / 2) * 32) <= tol);
        CHECK(std::abs(e[2] + 1 - (q[2] + q[4] / 2) * 32) <= tol);
        CHECK(std::abs(e[1] - (q[3] - q[5] / 2) * 32) <= tol);
        CHECK(std::abs(e[3] + 1 - (q[3] + q[5] / 2) * 32) <= tol);
      }
    }
  }
  CHECK(checked > 20);
}

TEST_CASE("loader: batches do not depend on the worker count", "[data]") {
  temp_dir t("determinism");
  make_dataset(t.p, 5);
  const auto c = read_data_yaml(t.p / "data.yaml");
  auto o = base_opts();
  o.augment = true;
  o.shuffle = true;
  o.seed = 3;
  o.hyp.degrees = 10;
  std::vector<std::vector<batch>> runs;
  for (int workers : {1, 3, 0}) {
    o.workers = workers;
    o.prefetch_batches = 2;
    loader ld(c, c.train, o);
    std::vector<batch> got;
    for (int ep = 0; ep < 2; ++ep) {
      ld.start_epoch(ep, ep == 0);
      while (auto b = ld.next()) got.push_back(std::move(*b));
    }
    // resume mid-epoch: the same batches from batch 2 on
    ld.start_epoch(1, false, 2);
    auto r = ld.next();
    REQUIRE(r);
    CHECK(r->imgs == got[std::size_t(ld.batches_per_epoch() + 2)].imgs);
    runs.push_back(std::move(got));
  }
  REQUIRE(runs[0].size() == 8);  // 10 items, batches of 3, 2 epochs
  for (std::size_t r = 1; r < runs.size(); ++r) {
    REQUIRE(runs[r].size() == runs[0].size());
    for (std::size_t i = 0; i < runs[0].size(); ++i) {
      const batch &x = runs[0][i], &y = runs[r][i];
      CHECK(x.imgs == y.imgs);
      CHECK(x.ori_imgs == y.ori_imgs);
      CHECK(x.targets == y.targets);
      CHECK(x.masks == y.masks);
      CHECK(x.semasks == y.semasks);
      CHECK(x.caps == y.caps);
      CHECK(x.paths == y.paths);
    }
  }
  // epochs differ in order
  CHECK(runs[0][0].paths != runs[0][4].paths);
}

TEST_CASE("loader: corrupt files are skipped with a warning, strict mode throws", "[data]") {
  temp_dir t("corrupt");
  make_dataset(t.p, 6);
  const fs::path img = t.p / "images/train";
  // 101: truncated PNG
  {
    std::ifstream f(img / "101.png", std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(f)), {});
    f.close();
    write_text(img / "101.png", s.substr(0, s.size() / 2));
  }
  write_text(t.p / "labels/train/102.txt", "0 0.5 x 0.2 0.2\n");
  write_text(t.p / "labels/train/103.txt", "7 0.5 0.5 0.2 0.2\n");
  write_text(t.p / "stuff/train/104.txt", "1 0.1 0.1\n");
  const auto c = read_data_yaml(t.p / "data.yaml");
  std::vector<std::string> warnings;
  auto o = base_opts();
  o.warn = [&](const std::string& m) { warnings.push_back(m); };
  {
    loader ld(c, c.train, o);
    CHECK(ld.images() == 2);
    CHECK(ld.size() == 4);
    REQUIRE(warnings.size() == 4);
    CHECK(warnings[0].find("101.png") != std::string::npos);
    CHECK(warnings[1].find("102.txt") != std::string::npos);
    CHECK(warnings[2].find("103.txt") != std::string::npos);
    CHECK(warnings[2].find("out of range") != std::string::npos);
    CHECK(warnings[3].find("104.txt") != std::string::npos);
    ld.start_epoch(0, false);
    int items = 0;
    while (auto b = ld.next()) items += b->B;
    CHECK(items == 4);
  }
  // a malformed captions json: warned, then one item per image with an empty caption
  write_text(t.p / "annotations/captions_train.json", "{\"annotations\": [ {\"image_id\": 100, ");
  warnings.clear();
  {
    loader ld(c, c.train, o);
    REQUIRE(warnings.size() == 5);
    CHECK(warnings[4].find("captions_train.json") != std::string::npos);
    CHECK(ld.size() == 2);
    ld.start_epoch(0, false);
    auto b = ld.next();
    REQUIRE(b);
    CHECK(b->captions[0].empty());
    CHECK(b->L == 2);  // [CLS] [SEP]
  }
  // an image that breaks during the epoch is replaced deterministically
  warnings.clear();
  fs::remove(t.p / "annotations/captions_train.json");
  {
    auto o2 = o;
    o2.workers = 2;
    loader ld(c, c.train, o2);
    warnings.clear();
    write_text(img / "105.png", "not a png");
    ld.start_epoch(0, false);
    auto b = ld.next();
    REQUIRE(b);
    CHECK(b->B == 2);
    CHECK(b->paths[0] == b->paths[1]);  // 105 replaced by the next item (100)
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find("105.png") != std::string::npos);
  }
  // strict: the first corrupt file throws, naming it
  o.strict = true;
  CHECK_THROWS_WITH(loader(c, c.train, o), Catch::Contains("101.png"));
}

TEST_CASE("loader: stuff label maps (png), val items, strict mode during the epoch", "[data]") {
  temp_dir t("stuffpng");
  make_dataset(t.p, 3);
  // replace the stuff polygons by label maps: channel 2 on the left half, 255 elsewhere
  for (int i = 0; i < 3; ++i) {
    const std::string id = std::to_string(100 + i);
    fs::remove(t.p / "stuff/train" / (id + ".txt"));
    std::vector<std::uint8_t> m(96 * 64, 255);
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 48; ++x) m[std::size_t(y) * 96 + x] = 2;
    post::write_file_atomic(t.p / "stuff/train" / (id + ".png"), post::encode_png(m.data(), i == 2 ? 48 : 96, i == 2 ? 128 : 64, 1));
  }
  const auto c = read_data_yaml(t.p / "data.yaml");
  std::vector<std::string> warnings;
  auto o = base_opts();
  o.all_captions = false;  // val: the first caption of each image
  o.warn = [&](const std::string& m) { warnings.push_back(m); };
  loader ld(c, c.train, o);
  REQUIRE(warnings.size() == 1);  // 102.png: size mismatch
  CHECK(warnings[0].find("stuff/train/102.png") != std::string::npos);
  CHECK(warnings[0].find("differs") != std::string::npos);
  CHECK(ld.size() == 2);
  ld.start_epoch(0, false);
  auto b = ld.next();
  REQUIRE(b);
  CHECK(b->captions == std::vector<std::string>{"a blue image", "a blue image"});
  CHECK(b->ref_captions[1].size() == 2);
  // left half (x < 32 px of 64) is channel 2 inside the letterbox band (rows 11..52)
  for (int y = 4; y < 12; ++y)
    for (int x = 0; x < 16; ++x) {
      INFO(y << " " << x);
      CHECK(b->semasks[std::size_t(2) * 256 + y * 16 + x] == (x < 8 ? 1.0f : 0.0f));
      CHECK(b->semantic_labels[std::size_t(y) * 16 + x] == (x < 8 ? 2 : 255));
    }
  // mosaic with label maps: semantic cells only where the maps are labelled (the left halves)
  auto o2 = base_opts();
  o2.augment = true;
  o2.hyp.fliplr = 0;
  o2.hyp.degrees = 5;
  loader la(c, c.train, o2);
  la.start_epoch(0, true);
  int cells = 0;
  while (auto bb = la.next())
    for (float v : bb->semasks) cells += v > 0;
  CHECK(cells > 0);
  // strict: an image that breaks during the epoch throws from next()
  auto o3 = base_opts();
  o3.strict = true;
  o3.workers = 2;
  o3.warn = [](const std::string&) {};
  fs::remove(t.p / "stuff/train/102.png");
  loader ls(c, c.train, o3);
  write_text(t.p / "images/train/101.png", "garbage");
  ls.start_epoch(0, false);
  CHECK_THROWS_WITH(ls.next(), Catch::Contains("101.png"));
}

TEST_CASE("augment: HSV round trip, identity warp, rng mappings", "[data]") {
  aug_rng r(5);
  image_u8 im(16, 16, 3);
  for (auto& v : im.data) v = std::uint8_t(r.next());
  // gains of 1: the cv2 8-bit HSV round trip (hue in 2-degree steps) stays within a few levels
  std::vector<std::uint8_t> hsv(im.data.size()), back(im.data.size());
  bgr_to_hsv(im.data.data(), hsv.data(), 256);
  hsv_to_bgr(hsv.data(), back.data(), 256);
  int worst = 0;
  for (std::size_t i = 0; i < back.size(); ++i) worst = std::max(worst, std::abs(int(back[i]) - int(im.data[i])));
  CHECK(worst <= 5);
  // pure colours map exactly (cv2: red = (0, 255, 255), green = (60, 255, 255), blue = (120, 255, 255))
  const std::uint8_t px[9] = {0, 0, 255, 0, 255, 0, 255, 0, 0};
  std::uint8_t h3[9];
  bgr_to_hsv(px, h3, 3);
  CHECK(int(h3[0]) == 0);
  CHECK(int(h3[3]) == 60);
  CHECK(int(h3[6]) == 120);
  CHECK(int(h3[1]) == 255);
  auto copy = im;
  augment_hsv(copy, 0, 0, 0, r);  // no gains: untouched
  CHECK(copy.data == im.data);
  // identity and integer-translation warps copy pixels
  const auto same = warp_image(im, {1, 0, 0, 0, 1, 0, 0, 0, 1}, 16, 16, false, 114);
  CHECK(same.data == im.data);
  const auto shifted = warp_image(im, {1, 0, 3, 0, 1, 2, 0, 0, 1}, 16, 16, false, 114);
  CHECK(shifted.row(5)[3 * 7 + 1] == im.row(3)[3 * 4 + 1]);
  CHECK(shifted.row(0)[0] == 114);
  // rng: uniform in [0, 1), randint inclusive, beta(32, 32) around 0.5
  double lo = 1, hi = 0, sum = 0;
  int seen[4] = {};
  for (int i = 0; i < 4000; ++i) {
    const double u = r.uniform();
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    ++seen[r.randint(0, 3)];
    sum += r.beta(32, 32);
  }
  CHECK(lo >= 0);
  CHECK(hi < 1);
  for (int k : seen) CHECK(k > 800);
  CHECK(sum / 4000 == Approx(0.5).margin(0.01));
  CHECK(aug_rng::for_sample(1, 2, 3).next() == aug_rng::for_sample(1, 2, 3).next());
  CHECK(aug_rng::for_sample(1, 2, 3).next() != aug_rng::for_sample(1, 2, 4).next());
}

}  // namespace test_data
