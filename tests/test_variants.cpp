// Compile-time variants: user-made width / class-count variants are expressible, run, and are
// matched against the yaml a weights file carries with upstream's parse_model rules.
#include <catch2/catch.hpp>
#include <thread>

#include <fstream>
#include <nlohmann/json.hpp>

#include "gyolo/gyolo.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_variants {

using namespace gyolo;

namespace {
nlohmann::json tiny_yaml() {
  std::ifstream f(std::string(GYOLO_FIXTURES_DIR) + "/tiny/model_yaml.json");
  return nlohmann::json::parse(f);
}
nlohmann::json gyolo_yaml_like(double width, int nc) {
  // gyolo.yaml is the tiny yaml with its channel arguments restored (the fixture divided them).
  auto y = tiny_yaml();
  const std::map<int, int> c2{{1, 64}, {2, 128}, {4, 256}, {6, 512}, {8, 512}, {11, 512}, {18, 256}, {21, 512},
                              {45, 256}, {46, 256}, {53, 256}, {54, 256},
                              // auxiliary branch
                              {27, 64}, {28, 128}, {30, 256}, {33, 512}, {36, 512}, {41, 256}, {42, 256}, {49, 256}, {50, 256}};
  std::vector<nlohmann::json*> layers;
  for (auto& l : y["backbone"]) layers.push_back(&l);
  for (auto& l : y["head"]) layers.push_back(&l);
  for (auto [i, c] : c2) (*layers[std::size_t(i)])[3][0] = c;
  const std::map<int, std::array<int, 4>> elan{{3, {256, 128, 64, 1}}, {5, {512, 256, 128, 1}}, {7, {512, 512, 256, 1}},
                                               {9, {512, 512, 256, 1}}, {14, {512, 512, 256, 1}}, {17, {256, 256, 128, 1}},
                                               {20, {512, 512, 256, 1}}, {23, {512, 512, 256, 1}}, {43, {256, 256, 128, 2}},
                                               {51, {256, 256, 128, 2}}, {29, {256, 128, 64, 1}}, {32, {512, 256, 128, 1}},
                                               {35, {512, 512, 256, 1}}, {38, {512, 512, 256, 1}}, {39, {512, 256, 128, 2}},
                                               {47, {512, 256, 128, 2}}};
  for (auto& [i, a] : elan) (*layers[std::size_t(i)])[3] = {a[0], a[1], a[2], a[3]};
  (*layers[10])[3] = {512, 256};
  (*layers[24])[3] = nlohmann::json::parse("[[256]]");
  (*layers[25])[3] = nlohmann::json::parse("[[256, 512]]");
  (*layers[26])[3] = nlohmann::json::parse("[[256, 512, 512]]");
  y["width_multiple"] = width;
  y["nc"] = nc;
  return y;
}
struct my_variant {  // a user-made variant: GYOLO at half width with 20 classes
  static constexpr const char* name = "gyolo-w0.5-nc20";
  static constexpr variant_config value = scaled_gyolo(0.5, 20);
};
struct my_small {
  static constexpr const char* name = "gyolo-w0.25-nc3";
  static constexpr variant_config value = scaled_gyolo(0.25, 3);
};
}  // namespace

TEST_CASE("variant_from_yaml applies parse_model's scaling", "[variants]") {
  CHECK(variant_from_yaml(tiny_yaml(), "tiny") == gyolo_tiny::value);
  CHECK(variant_from_yaml(gyolo_yaml_like(1.0, 80), "full") == gyolo_c::value);
  const auto v = variant_from_yaml(gyolo_yaml_like(0.5, 20), "half");
  CHECK(v == my_variant::value);
  CHECK(v.conv1 == 32);
  CHECK(v.e17.c2 == 128);
  CHECK(v.e17.c3 == 256);  // ELAN inner widths are not scaled by upstream
  CHECK(v.nm == 16);       // DualDPanoptic's mask count is scaled
  CHECK(v.nc == 20);
  CHECK(!describe_mismatch(gyolo_c::value, v).empty());
  CHECK(describe_mismatch(gyolo_c::value, gyolo_c::value).empty());
}

TEST_CASE("a user-made variant builds and runs", "[variants]") {
  random_weights ws(3);
  auto m = model<cpu, my_small>::from_source(ws);
  context<cpu> ctx(2);
  tensor<float> x(shape4{2, 3, 64, 96});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float(i % 97) / 97.0f;
  auto o = m.forward(ctx, x.cv());
  const int nm = my_small::value.nm;
  CHECK(o.pred.shape() == shape4{2, 4 + 3 + nm, 1, 8 * 12 + 4 * 6 + 2 * 3});
  CHECK(o.semantic.shape() == shape4{2, 3 + 93, 16, 24});
  CHECK(o.proto.shape() == shape4{2, nm, 16, 24});
  // the reference backend computes the same graph
  auto mr = model<reference, my_small>::from_source(ws);
  context<reference> rc(1);
  auto r = mr.forward(rc, x.cv());
  double md = 0, mx = 0;
  for (std::int64_t i = 0; i < r.pred.numel(); ++i) {
    md = std::max(md, double(std::abs(r.pred[i] - o.pred[i])));
    mx = std::max(mx, double(std::abs(r.pred[i])));
  }
  CHECK(md <= 1e-4 * mx);
}

TEST_CASE("input shape errors are clear", "[variants]") {
  random_weights ws(3);
  auto m = model<cpu, my_small>::from_source(ws);
  context<cpu> ctx(1);
  tensor<float> x(shape4{1, 3, 50, 64});
  REQUIRE_THROWS_WITH(m.forward(ctx, x.cv()), Catch::Contains("multiples of 32"));
  tensor<float> g(shape4{1, 1, 64, 64});
  REQUIRE_THROWS_WITH(m.forward(ctx, g.cv()), Catch::Contains("3 channels"));
}

TEST_CASE("a context used by two threads at once is refused", "[variants][threads]") {
  random_weights ws(3);
  const auto m = model<cpu, my_small>::from_source(ws);
  context<cpu> ctx(1);
  tensor<float> x(shape4{1, 3, 64, 64});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float(i % 89) / 89.0f;
  auto forward_on_other_thread = [&](context<cpu>& c) {
    std::string msg = "no error";
    std::thread t([&] {
      try {
        const auto o = m.forward(c, x.cv());
        msg = o.pred.numel() > 0 ? "ran" : "empty";
      } catch (const gyolo::error& e) {
        msg = e.what();
      }
    });
    t.join();
    return msg;
  };
  {
    const auto held = ctx.enter("test");  // this thread is inside a call with ctx
    const auto nested = ctx.enter("test (nested)");
    CHECK(m.forward(ctx, x.cv()).pred.numel() > 0);  // the same thread again: fine
    const std::string msg = forward_on_other_thread(ctx);
    CHECK(msg.find("model::forward: this gyolo::context is in use by another thread") != std::string::npos);
    context<cpu> own(1);  // the other thread's own context: fine while ctx is held
    CHECK(forward_on_other_thread(own) == "ran");
  }
  CHECK(forward_on_other_thread(ctx) == "ran");  // released when the guards ended
}

TEST_CASE("the memory limit refuses an allocation before it is made; the cache is capped and trimmed", "[variants][memory]") {
  random_weights ws(3);
  const auto m = model<cpu, my_small>::from_source(ws);
  context<cpu> ctx(1);
  tensor<float> x(shape4{1, 3, 256, 256});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float(i % 89) / 89.0f;
  const auto before = memory_usage();
  CHECK(before.limit_bytes > 0);  // the default: 3/4 of the physical memory
  struct restore {
    memory_stats s;
    ~restore() {
      set_memory_limit(s.limit_bytes);
      set_memory_cache_cap(s.cache_cap_bytes);
    }
  } r{before};
  const auto want = m.forward(ctx, x.cv()).pred;  // the pass's blocks are cached now
  std::vector<float> ref(want.data(), want.data() + want.numel());
  // a limit just above what is live now: the pass's first large activation does not fit
  set_memory_limit(memory_usage().live_bytes + (std::size_t(1) << 20));
  const auto live = memory_usage().live_bytes;
  bool typed = false;
  std::string msg;
  try {
    (void)m.forward(ctx, x.cv());
  } catch (const resource_error& e) {
    typed = true;
    msg = e.what();
  }
  CHECK(typed);
  CHECK(msg.find("above the memory limit of") != std::string::npos);
  CHECK(memory_usage().live_bytes == live);  // what the failed pass held is released
  set_memory_limit(0);                        // no limit: the same pass runs, same result
  const auto again = m.forward(ctx, x.cv()).pred;
  CHECK(std::equal(ref.begin(), ref.end(), again.data()));
  // the cache: capped at what it holds now minus a little, then trimmed to nothing
  CHECK(memory_usage().cached_bytes > 0);
  set_memory_cache_cap(0);
  CHECK(memory_usage().cached_bytes == 0);
  CHECK(memory_usage().cache_cap_bytes == 0);
  (void)m.forward(ctx, x.cv());
  CHECK(memory_usage().cached_bytes == 0);  // nothing kept with cap 0
  set_memory_cache_cap(std::size_t(1) << 30);
  (void)m.forward(ctx, x.cv());
  CHECK(memory_usage().cached_bytes > 0);
  trim_memory_cache();
  CHECK(memory_usage().cached_bytes == 0);
}

}  // namespace test_variants
