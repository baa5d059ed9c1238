// The synthetic scene generator (gyolo/data/scenes.hpp, `gyolo datagen`): determinism, labels that
// match the pixels exactly, captions within upstream's vocabulary, and the files write_dataset lays
// out (read back with gyolo's own decoders and nlohmann::json).
#include <catch2/catch.hpp>

#include "gyolo/io/image_decode.hpp"  // before any other stb include

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gyolo/data/scenes.hpp"
#include "gyolo/text/tokenize.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_scenes {

using namespace gyolo;
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// A labels / stuff polygon line "cls x1 y1 ..." back to a class and pixel polygon.
std::pair<int, std::vector<data::point>> parse_polygon_line(const std::string& line, int width, int height) {
  std::istringstream is(line);
  int cls = -1;
  is >> cls;
  std::vector<data::point> poly;
  double x = 0, y = 0;
  while (is >> x >> y) {
    CHECK(x >= 0.0);
    CHECK(x <= 1.0);
    CHECK(y >= 0.0);
    CHECK(y <= 1.0);
    poly.push_back({x * width, y * height});
  }
  return {cls, poly};
}

/// Point in polygon by the crossing number at pixel centres, independent of the span rasteriser.
bool inside(const std::vector<data::point>& p, double x, double y) {
  bool in = false;
  for (std::size_t i = 0, j = p.size() - 1; i < p.size(); j = i++)
    if ((p[i].y <= y) != (p[j].y <= y) && x < p[i].x + (y - p[i].y) * (p[j].x - p[i].x) / (p[j].y - p[i].y)) in = !in;
  return in;
}

double shoelace(const std::vector<data::point>& p) {
  double a = 0;
  for (std::size_t i = 0, j = p.size() - 1; i < p.size(); j = i++) a += p[j].x * p[i].y - p[i].x * p[j].y;
  return std::fabs(a) / 2;
}

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream is(s);
  std::vector<std::string> w;
  std::string t;
  while (is >> t) w.push_back(t);
  return w;
}

}  // namespace

TEST_CASE("scenes are a pure function of (options, seed, index)", "[datagen]") {
  data::scene_options o;
  o.captions = 3;
  const auto a = data::make_scene(o, 7, 3), b = data::make_scene(o, 7, 3);
  CHECK(a.image.data == b.image.data);
  CHECK(a.semantic == b.semantic);
  CHECK(data::labels_text(a) == data::labels_text(b));
  CHECK(data::stuff_polygons_text(a) == data::stuff_polygons_text(b));
  CHECK(a.captions == b.captions);
  CHECK(data::semantic_png(a) == data::semantic_png(b));
  const auto c = data::make_scene(o, 8, 3), d = data::make_scene(o, 7, 4);
  CHECK(a.image.data != c.image.data);
  CHECK(data::labels_text(a) != data::labels_text(c));
  CHECK(a.image.data != d.image.data);
  // the random stream itself: fixed values (splitmix64 of seed 0) and explicit mappings
  data::rng r(0);
  CHECK(r.next() == 0xE220A8397B1DCDAFull);
  for (int i = 0; i < 1000; ++i) {
    const int k = r.range(-3, 5);
    CHECK((k >= -3 && k <= 5));
    const double u = r.uniform();
    CHECK((u >= 0.0 && u < 1.0));
  }
}

TEST_CASE("scene labels match the pixels exactly", "[datagen]") {
  data::scene_options o;
  int scenes_with_two_regions = 0, objects_seen = 0;
  std::set<int> classes, stuffs;
  for (int index = 1; index <= 40; ++index) {
    const auto sc = data::make_scene(o, 11, index);
    const int W = sc.image.width, H = sc.image.height;
    INFO("scene " << index << " (" << W << "x" << H << ")");
    REQUIRE(W >= o.min_size);
    REQUIRE(W <= o.max_size);
    REQUIRE(H >= o.min_size);
    REQUIRE(H <= o.max_size);
    REQUIRE(sc.semantic.size() == std::size_t(W) * std::size_t(H));
    REQUIRE(!sc.objects.empty());
    REQUIRE(int(sc.objects.size()) <= o.max_objects);
    REQUIRE((sc.regions.size() == 1 || sc.regions.size() == 2));
    scenes_with_two_regions += sc.regions.size() == 2;
    for (const auto& g : sc.regions) stuffs.insert(g.stuff);

    // the labels file's polygons (as a loader reads them) cover exactly the object pixels
    std::istringstream lines(data::labels_text(sc));
    std::string line;
    std::vector<int> covered(sc.semantic.size(), -1);
    std::size_t k = 0;
    while (std::getline(lines, line)) {
      REQUIRE(k < sc.objects.size());
      const auto& obj = sc.objects[k];
      const auto [cls, poly] = parse_polygon_line(line, W, H);
      CHECK(cls == obj.cls);
      REQUIRE(poly.size() >= 3);
      classes.insert(cls);
      ++objects_seen;
      CHECK(!(data::stuff_forbidden_colours[std::size_t(sc.regions.front().stuff)] & (1u << obj.colour)));
      CHECK(!(data::stuff_forbidden_colours[std::size_t(sc.regions.back().stuff)] & (1u << obj.colour)));
      // fully inside, and boxes grown by the margin do not meet
      CHECK(obj.x0 >= 0.0);
      CHECK(obj.y0 >= 0.0);
      CHECK(obj.x1 <= W);
      CHECK(obj.y1 <= H);
      const double m = o.box_margin;
      for (std::size_t j = 0; j < k; ++j) {
        const auto& p = sc.objects[j];
        CHECK(!(obj.x0 - m < p.x1 + m && p.x0 - m < obj.x1 + m && obj.y0 - m < p.y1 + m && p.y0 - m < obj.y1 + m));
      }
      const auto mask = data::polygon_mask(poly, W, H);
      long area = 0;
      bool colour_ok = true, semantic_ok = true, raster_ok = true;
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
          const std::size_t i = std::size_t(y) * std::size_t(W) + std::size_t(x);
          if (x >= int(obj.x0) - 1 && x <= int(obj.x1) + 1 && y >= int(obj.y0) - 1 && y <= int(obj.y1) + 1)
            raster_ok &= bool(mask[i]) == inside(poly, x + 0.5, y + 0.5);
          if (!mask[i]) continue;
          ++area;
          covered[i] = obj.cls;
          semantic_ok &= sc.semantic[i] == obj.cls;
          for (int ch = 0; ch < 3; ++ch)
            colour_ok &= std::abs(int(sc.image.row(y)[3 * x + ch]) - int(obj.fill[std::size_t(ch)])) <= 3;
        }
      CHECK(raster_ok);
      CHECK(semantic_ok);
      CHECK(colour_ok);
      // pixel count agrees with the polygon's area up to its outline
      double perimeter = 0;
      for (std::size_t i = 0, j = poly.size() - 1; i < poly.size(); j = i++) perimeter += std::hypot(poly[i].x - poly[j].x, poly[i].y - poly[j].y);
      CHECK(std::fabs(double(area) - shoelace(poly)) <= perimeter);
      CHECK(double(area) >= 0.2 * std::min(W, H) * 0.12 * std::min(W, H) * 0.12);
      ++k;
    }
    CHECK(k == sc.objects.size());
    // every other pixel carries a stuff channel of one of the scene's regions
    std::set<int> region_channels;
    for (const auto& g : sc.regions) region_channels.insert(data::num_things + g.stuff);
    bool exclusive = true;
    for (std::size_t i = 0; i < sc.semantic.size(); ++i) {
      if (covered[i] >= 0) exclusive &= sc.semantic[i] == covered[i];
      else exclusive &= region_channels.count(sc.semantic[i]) == 1;
    }
    CHECK(exclusive);
    // two regions: the lower region's polygon is exactly its semantic pixels (objects aside)
    if (sc.regions.size() == 2) {
      const auto lower = data::polygon_mask(sc.regions[1].polygon, W, H);
      bool match = true;
      for (std::size_t i = 0; i < sc.semantic.size(); ++i)
        if (covered[i] < 0) match &= (sc.semantic[i] == data::num_things + sc.regions[1].stuff) == bool(lower[i]);
      CHECK(match);
    }
  }
  CHECK(scenes_with_two_regions > 5);
  CHECK(scenes_with_two_regions < 40);
  CHECK(classes.size() == std::size_t(data::num_things));
  CHECK(stuffs.size() >= 6);
  CHECK(objects_seen >= 60);
}

TEST_CASE("captions are deterministic and use only vocabulary words", "[datagen]") {
  // canonical form on a hand-made scene
  auto obj = [](data::thing t, data::colour c, double x0) {
    data::scene_object o;
    o.cls = int(t);
    o.colour = int(c);
    o.x0 = x0;
    return o;
  };
  const std::vector<data::scene_object> objs = {obj(data::thing::square, data::colour::blue, 50), obj(data::thing::star, data::colour::yellow, 200),
                                                obj(data::thing::circle, data::colour::red, 10), obj(data::thing::square, data::colour::blue, 120),
                                                obj(data::thing::heart, data::colour::orange, 250)};
  const std::vector<data::stuff_region> two = {{int(data::stuff::sky), {}}, {int(data::stuff::grass), {}}};
  const std::vector<data::stuff_region> one = {{int(data::stuff::sky), {}}};
  const auto caps = data::scene_captions(objs, two, 5);
  REQUIRE(caps.size() == 5);
  CHECK(caps[0] == "a red circle and two blue squares and a yellow star and an orange heart on the grass below the sky");
  CHECK(caps[2] == "an orange heart and a yellow star and two blue squares and a red circle on the grass below the sky");
  CHECK(data::scene_captions({objs[1]}, one, 1) == std::vector<std::string>{"a yellow star in the sky"});
  CHECK(std::set<std::string>(caps.begin(), caps.end()).size() == caps.size());

  const std::string path = std::string(GYOLO_FIXTURES_DIR) + "/../../weights_tools/data/vocab.txt";
  std::ifstream f(path);
  REQUIRE(f.good());
  std::vector<std::string> vocab;
  for (std::string w; std::getline(f, w);) vocab.push_back(w);
  const std::set<std::string> words(vocab.begin(), vocab.end());
  const caption_tokenizer tok(vocab);
  const std::int64_t unk = 1;
  REQUIRE(vocab[std::size_t(unk)] == "[UNK]");
  data::scene_options o;
  o.captions = 5;
  std::set<std::string> canonical;
  for (int index = 1; index <= 150; ++index) {
    const auto sc = data::make_scene(o, 3, index);
    REQUIRE(sc.captions.size() == 5);
    canonical.insert(sc.captions[0]);
    CHECK(sc.captions[0] == data::scene_captions(sc.objects, sc.regions, 1)[0]);
    for (const auto& c : sc.captions) {
      INFO(c);
      for (const auto& w : split_words(c)) CHECK(words.count(w) == 1);
      const auto ids = tok.tokens(c);
      CHECK(std::find(ids.begin(), ids.end(), unk) == ids.end());
      CHECK(ids.size() == split_words(c).size());  // every word is one token
    }
  }
  CHECK(canonical.size() > 100);
}

TEST_CASE("write_dataset writes files that parse back to the scenes", "[datagen]") {
  const fs::path root = fs::temp_directory_path() / ("gyolo_test_datagen_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  fs::remove_all(root);
  data::dataset_gen_options o;
  o.out = root.string();
  o.train = 3;
  o.val = 2;
  o.seed = 5;
  o.scene.captions = 2;
  o.threads = 2;
  data::write_dataset(o);

  const std::string yaml = read_text(root / "data.yaml");
  CHECK(yaml.find("\npath: .\n") != std::string::npos);
  CHECK(yaml.find("\ntrain: images/train\n") != std::string::npos);
  CHECK(yaml.find("\nval: images/val\n") != std::string::npos);
  CHECK(yaml.find("\nnc: 5\n") != std::string::npos);
  CHECK(yaml.find("\nnames: [circle, square, triangle, star, heart]\n") != std::string::npos);
  CHECK(yaml.find("\nstuff_names: [sky, grass, water, sand, snow, road, wall]\n") != std::string::npos);

  for (const bool val : {false, true}) {
    const std::string split = val ? "val" : "train";
    const int n = val ? o.val : o.train;
    const auto j = nlohmann::json::parse(read_text(root / "annotations" / ("captions_" + split + ".json")));
    REQUIRE(j.at("images").size() == std::size_t(n));
    REQUIRE(j.at("annotations").size() == std::size_t(2 * n));
    std::set<long long> ann_ids;
    for (int i = 0; i < n; ++i) {
      const int id = data::image_id(val, i);
      CHECK(id == (val ? 1000001 : 1) + i);
      const auto sc = data::make_scene(o.scene, o.seed, id);
      const auto& im = j["images"][std::size_t(i)];
      CHECK(im.at("id").get<int>() == id);
      CHECK(im.at("file_name").get<std::string>() == std::to_string(id) + ".png");
      CHECK(im.at("width").get<int>() == sc.image.width);
      CHECK(im.at("height").get<int>() == sc.image.height);
      for (int c = 0; c < 2; ++c) {
        const auto& a = j["annotations"][std::size_t(2 * i + c)];
        CHECK(a.at("image_id").get<int>() == id);
        CHECK(a.at("caption").get<std::string>() == sc.captions[std::size_t(c)]);
        ann_ids.insert(a.at("id").get<long long>());
      }
      const std::string stem = std::to_string(id);
      const auto img = decode_image((root / "images" / split / (stem + ".png")).string());
      CHECK(img.width == sc.image.width);
      CHECK(img.height == sc.image.height);
      CHECK(img.data == sc.image.data);
      const auto sem = decode_image((root / "stuff" / split / (stem + ".png")).string());
      REQUIRE(sem.data.size() == 3 * sc.semantic.size());
      bool same = true;
      for (std::size_t p = 0; p < sc.semantic.size(); ++p) same &= sem.data[3 * p] == sc.semantic[p];
      CHECK(same);
      CHECK(read_text(root / "labels" / split / (stem + ".txt")) == data::labels_text(sc));
    }
    CHECK(ann_ids.size() == std::size_t(2 * n));
  }
  // val ids never collide with train ids, and val scenes differ from train scenes
  CHECK(data::make_scene(o.scene, o.seed, data::image_id(true, 0)).image.data != data::make_scene(o.scene, o.seed, 1).image.data);

  // rewriting with fewer images and polygon semantics replaces the old splits
  o.train = 2;
  o.semantic = data::semantic_format::polygons;
  data::write_dataset(o);
  CHECK(!fs::exists(root / "images" / "train" / "3.png"));
  CHECK(fs::exists(root / "images" / "train" / "2.png"));
  CHECK(!fs::exists(root / "stuff" / "train" / "1.png"));
  {
    const auto sc = data::make_scene(o.scene, o.seed, 1);
    const std::string txt = read_text(root / "stuff" / "train" / "1.txt");
    CHECK(txt == data::stuff_polygons_text(sc));
    std::istringstream lines(txt);
    std::string line;
    std::size_t count = 0;
    while (std::getline(lines, line)) {
      const auto [ch, poly] = parse_polygon_line(line, sc.image.width, sc.image.height);
      CHECK(ch >= 0);
      CHECK(ch < data::num_things + data::num_stuff);
      CHECK(poly.size() >= 3);
      ++count;
    }
    CHECK(count == sc.regions.size() + sc.objects.size());
  }

  // a folder that is not a datagen dataset is left alone
  const fs::path other = root / "other";
  fs::create_directories(other);
  std::ofstream(other / "keep.txt") << "x";
  data::dataset_gen_options p = o;
  p.out = other.string();
  CHECK_THROWS_AS(data::write_dataset(p), gyolo::error);
  CHECK(fs::exists(other / "keep.txt"));
  fs::remove_all(root);
}

}  // namespace test_scenes
