// The CUDA backend on a GPU: every kernel against kernels<reference>, and the whole vision network
// against the CPU backend (random weights at 640x640, batches 1 and 2; the shipped gyolo-shapes
// model), each tensor within 1e-3 x max|ref| (the bound). Built with GYOLO_ENABLE_CUDA=ON;
// where no GPU or driver is present it prints why and exits 77, which ctest reports as skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gyolo/cuda.hpp"
#include "gyolo/io/image.hpp"
#include "gyolo/kernels/cpu.hpp"
#include "gyolo/kernels/reference.hpp"
#include "../test_util.hpp"

using namespace gyolo;

namespace {
using test::rnd;
using test::rndv;
/// max|a - b| <= tol * max|b|; returns the relative difference.
double require_close(const tensor<float>& a, const tensor<float>& b, double tol, const std::string& what) {
  REQUIRE(a.shape() == b.shape());
  double md = 0, mr = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    md = std::max(md, double(std::abs(a[i] - b[i])));
    mr = std::max(mr, double(std::abs(b[i])));
  }
  INFO(what << ": max|diff| " << md << " max|ref| " << mr);
  REQUIRE(md <= tol * std::max(mr, 1e-30));
  return md / std::max(mr, 1e-30);
}
}  // namespace

TEST_CASE("cuda: convolutions (direct and tiled) equal the reference", "[cuda]") {
  std::mt19937 g(42);
  context<cuda> cc;
  context<reference> rc(1);
  struct cas { int n, cin, cout, h, w, k, s, g; act a; bool res; };
  const cas cases[] = {
      {1, 3, 16, 33, 47, 3, 2, 1, act::silu, false},    {2, 16, 24, 17, 9, 1, 1, 1, act::none, false},
      {1, 32, 32, 13, 11, 3, 1, 1, act::silu, true},    {1, 64, 64, 9, 7, 3, 1, 4, act::silu, false},
      {2, 24, 24, 15, 16, 3, 1, 24, act::silu, false},  {1, 24, 24, 15, 16, 3, 2, 24, act::none, true},
      {1, 36, 12, 14, 9, 3, 2, 12, act::none, true},    {1, 8, 300, 37, 29, 3, 1, 1, act::sigmoid, false},
      {1, 40, 8, 1, 1, 3, 1, 1, act::relu, false},      {2, 256, 130, 20, 20, 1, 1, 1, act::silu, true},
      {1, 128, 128, 40, 40, 3, 1, 1, act::silu, false},
  };
  for (const auto& c : cases) {
    const conv_desc d{c.cin, c.cout, c.k, c.s, c.k / 2, c.g, c.a};
    auto x = rnd({c.n, c.cin, c.h, c.w}, g);
    auto w = rndv(std::size_t(d.weight_numel()), g), b = rndv(std::size_t(c.cout), g);
    const shape4 ys{c.n, c.cout, d.out_h(c.h), d.out_w(c.w)};
    auto r = rnd(ys, g);
    tensor<float> ref(ys);
    kernels<reference>::conv2d(rc, x.cv(), conv_weights<>{w.data(), b.data()}, ref.v(), d, c.res ? r.cv() : cview<float>{});
    auto dx = to_device(cc, x.cv()), dr = to_device(cc, r.cv());
    auto dw = device_param::upload(0, w), db = device_param::upload(0, b);
    auto dy = storage<cuda>::alloc(cc, ys);
    kernels<cuda>::conv2d(cc, dx.cv(), conv_weights<device_space>{dw.data(), db.data()}, dy.v(), d, c.res ? dr.cv() : cdview{});
    require_close(to_host(cc, dy.cv()), ref, 1e-5, "conv cin " + std::to_string(c.cin) + " cout " + std::to_string(c.cout));
    // the tensor-core path: half-precision tiles, fp32 accumulation (a looser bound)
    cc.set_precision(cuda_precision::fp16);
    kernels<cuda>::conv2d(cc, dx.cv(), conv_weights<device_space>{dw.data(), db.data()}, dy.v(), d, c.res ? dr.cv() : cdview{});
    cc.set_precision(cuda_precision::fp32);
    require_close(to_host(cc, dy.cv()), ref, 1e-2, "fp16 conv cin " + std::to_string(c.cin) + " cout " + std::to_string(c.cout));
  }
}

TEST_CASE("cuda: pooling, upsampling, copy, add, PSA attention and DFL decoding equal the reference", "[cuda]") {
  std::mt19937 g(3);
  context<cuda> cc;
  context<reference> rc(1);
  auto x = rnd({2, 6, 13, 10}, g);
  auto dx = to_device(cc, x.cv());
  {
    tensor<float> r({2, 6, 7, 5});
    kernels<reference>::maxpool2d(rc, x.cv(), r.v(), 3, 2, 1);
    auto dy = storage<cuda>::alloc(cc, r.shape());
    kernels<cuda>::maxpool2d(cc, dx.cv(), dy.v(), 3, 2, 1);
    require_close(to_host(cc, dy.cv()), r, 0, "maxpool");
  }
  {
    tensor<float> r({2, 6, 12, 9});
    kernels<reference>::avgpool2x2s1(rc, x.cv(), r.v());
    auto dy = storage<cuda>::alloc(cc, r.shape());
    kernels<cuda>::avgpool2x2s1(cc, dx.cv(), dy.v());
    require_close(to_host(cc, dy.cv()), r, 1e-6, "avgpool");
  }
  {
    tensor<float> r({2, 6, 26, 20});
    kernels<reference>::upsample2x(rc, x.cv(), r.v());
    auto dy = storage<cuda>::alloc(cc, r.shape());
    kernels<cuda>::upsample2x(cc, dx.cv(), dy.v());
    require_close(to_host(cc, dy.cv()), r, 0, "upsample");
  }
  {
    tensor<float> r({2, 6, 13, 10});
    kernels<reference>::add(rc, x.cv(), x.cv(), r.v());
    auto dy = storage<cuda>::alloc(cc, r.shape());
    kernels<cuda>::add(cc, dx.cv(), dx.cv(), dy.v());
    require_close(to_host(cc, dy.cv()), r, 0, "add");
  }
  {
    const int heads = 2, kd = 32, hd = 64;
    auto q = rnd({1, heads * (2 * kd + hd), 20, 20}, g);
    tensor<float> r({1, heads * hd, 20, 20});
    kernels<reference>::psa_attention(rc, q.cv(), r.v(), heads, kd, hd, 0.17f);
    auto dq = to_device(cc, q.cv());
    auto dy = storage<cuda>::alloc(cc, r.shape());
    kernels<cuda>::psa_attention(cc, dq.cv(), dy.v(), heads, kd, hd, 0.17f);
    require_close(to_host(cc, dy.cv()), r, 1e-5, "psa_attention");
  }
}

namespace {
template <class V>
void compare_networks(const char* what, weight_source& ws_cpu, weight_source& ws_cuda, int n, int h, int w,
                      cuda_precision precision = cuda_precision::fp32, double tol = 1e-3) {
  vision_graph<cpu> vc;
  vc.load(ws_cpu, V::value, false);
  vision_graph<cuda> vg;
  vg.load(ws_cuda, V::value, false);
  std::mt19937 g(1);
  auto x = rnd({n, 3, h, w}, g, 0.f, 1.f);
  context<cpu> cc(0);
  context<cuda> gc;
  gc.set_precision(precision);
  auto rc = vc.forward(cc, x.cv(), false, true);
  auto dx = to_device(gc, x.cv());
  auto rg = vg.forward(gc, dx.cv(), false, true);
  const std::string tag = std::string(what) + (precision == cuda_precision::fp16 ? " fp16 " : " fp32 ") + std::to_string(n) + "x" + std::to_string(h) + "x" + std::to_string(w) + " ";
  std::printf("%s: max|diff| / max|ref|", tag.c_str());
  auto cmp = [&](const char* name, const dtensor<cpu>& a, const device_tensor& b) {
    const double r = require_close(to_host(gc, b.cv()), a, tol, tag + name);
    std::printf(" %s %.2e", name, r);
  };
  cmp("pred", rc.pred, rg.pred);
  cmp("proto", rc.proto, rg.proto);
  cmp("semantic", rc.semantic, rg.semantic);
  for (int l = 0; l < 3; ++l) cmp(("d3." + std::to_string(l)).c_str(), rc.d3[std::size_t(l)], rg.d3[std::size_t(l)]);
  cmp("x11", rc.x11, rg.x11);
  cmp("x44", rc.x44, rg.x44);
  std::printf("\n");
}
}  // namespace

TEST_CASE("cuda: the whole vision network equals the CPU backend's (random weights, gyolo-c at 640)", "[cuda][model]") {
  random_weights a(0), b(0);
  compare_networks<gyolo_c>("gyolo-c random", a, b, 1, 640, 640);
  compare_networks<gyolo_c>("gyolo-c random", a, b, 2, 320, 480);
}

TEST_CASE("cuda: the shipped gyolo-shapes model equals the CPU backend's", "[cuda][model]") {
  const gguf::file f(std::string(GYOLO_MODELS_DIR) + "/gyolo-shapes.gguf");
  gguf_weights a(f), b(f);
  compare_networks<gyolo_shapes>("gyolo-shapes", a, b, 1, 256, 256);
}

TEST_CASE("cuda: fp16 tensor-core convolutions, the network's error reported", "[cuda][model][fp16]") {
  // reported per tensor (the printed line), bounded loosely: half-precision tiles over ~60 layers
  random_weights a(0), b(0);
  compare_networks<gyolo_c>("gyolo-c random", a, b, 1, 640, 640, cuda_precision::fp16, 0.1);
  const gguf::file f(std::string(GYOLO_MODELS_DIR) + "/gyolo-shapes.gguf");
  gguf_weights c(f), d(f);
  compare_networks<gyolo_shapes>("gyolo-shapes", c, d, 1, 256, 256, cuda_precision::fp16, 0.1);
}

TEST_CASE("cuda: the pipeline on the shipped model gives the CPU's detections, masks, semantic map and caption", "[cuda][pipeline]") {
  const std::string path = std::string(GYOLO_MODELS_DIR) + "/gyolo-shapes.gguf";
  const auto mc = model<cpu, gyolo_shapes>::load(path);
  const auto mg = model<cuda, gyolo_shapes>::load(path);
  pipeline_options po;
  po.imgsz = 256;
  const pipeline<cpu, gyolo_shapes> pc(mc, po);
  const pipeline<cuda, gyolo_shapes> pg(mg, po);
  context<cpu> cc(0);
  context<cuda> gc;
  const auto img = decode_image(std::string(GYOLO_MODELS_DIR) + "/../examples/data/shapes.png");
  const auto a = pc.run(cc, img), b = pg.run(gc, img);
  REQUIRE(a.detections.size() == b.detections.size());
  for (std::size_t i = 0; i < a.detections.size(); ++i) {
    CHECK(a.detections[i].class_id == b.detections[i].class_id);
    for (int k = 0; k < 4; ++k) CHECK(std::abs(a.detections[i].box[std::size_t(k)] - b.detections[i].box[std::size_t(k)]) < 0.5);
    CHECK(std::abs(a.detections[i].score - b.detections[i].score) < 1e-3);
  }
  REQUIRE(a.semantic);
  REQUIRE(b.semantic);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < a.semantic->channels.size(); ++i) differ += a.semantic->channels.data()[i] != b.semantic->channels.data()[i];
  std::printf("pipeline on gyolo-shapes: %zu detections, semantic pixels differing %zu of %zu, caption cpu '%s' cuda '%s'\n",
              a.detections.size(), differ, a.semantic->channels.size(), a.caption ? a.caption->text.c_str() : "",
              b.caption ? b.caption->text.c_str() : "");
  CHECK(differ * 1000 <= a.semantic->channels.size());  // near-ties of the arg-max only
  REQUIRE(a.caption);
  REQUIRE(b.caption);
  CHECK(a.caption->text == b.caption->text);
}

namespace {
/// A device copy of host floats (waits: the test reads it back at once).
device_tensor dev(context<cuda>& ctx, const std::vector<float>& v) {
  auto d = token_store<cuda>::make(ctx, v.size());
  if (!v.empty()) cudart::copy_h2d(d.data(), v.data(), v.size() * sizeof(float), ctx.stream());
  ctx.synchronize();
  return d;
}
std::vector<float> host(context<cuda>& ctx, const device_tensor& d) {
  const auto t = to_host(ctx, d.cv());
  return std::vector<float>(t.data(), t.data() + t.numel());
}
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double md = 0, mr = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    md = std::max(md, double(std::abs(a[i] - b[i])));
    mr = std::max(mr, double(std::abs(b[i])));
  }
  return md / std::max(mr, 1e-30);
}
/// Records every step's log-probs of the rows the search ran.
template <class D>
struct step_log {
  D& d;
  int V;
  std::vector<std::vector<float>> lp;
  std::vector<std::vector<unsigned char>> active;
  void step(int t, int rows, std::span<const std::int64_t> in, std::span<const unsigned char> act, float* p) {
    d.step(t, rows, in, act, p);
    lp.emplace_back(p, p + in.size() * std::size_t(V));
    active.emplace_back(act.begin(), act.end());
  }
  void reorder(std::span<const int> src) { d.reorder(src); }
};
}  // namespace

TEST_CASE("cuda: the caption head's kernels equal tkernels<reference>", "[cuda][caption]") {
  std::mt19937 g(21);
  context<cuda> gc;
  context<reference> rc(1);
  using tg = tkernels<cuda>;
  using tr = tkernels<reference>;
  const int n = 37, d = 64, out = 101;
  const auto x = rndv(std::size_t(n) * d, g), w = rndv(std::size_t(out) * d, g), b = rndv(out, g);
  auto X = dev(gc, x), W = dev(gc, w), Bb = dev(gc, b), Y = token_store<cuda>::make(gc, std::size_t(n) * out);
  std::vector<float> r(std::size_t(n) * out);
  tg::linear(gc, as_cmat(X.data(), n, d), {W.data(), Bb.data(), out, d, nullptr}, as_mat(Y.data(), n, out), act::sigmoid);
  tr::linear(rc, as_cmat(x.data(), n, d), {w.data(), b.data(), out, d, nullptr}, as_mat(r.data(), n, out), act::sigmoid);
  CHECK(rel_diff(host(gc, Y), r) < 1e-5);
  const auto q = rndv(std::size_t(n) * d, g), k = rndv(std::size_t(90) * d, g), v = rndv(std::size_t(90) * d, g);
  auto Q = dev(gc, q), K = dev(gc, k), Vv = dev(gc, v), A = token_store<cuda>::make(gc, std::size_t(n) * d);
  std::vector<float> ra(std::size_t(n) * d);
  std::vector<unsigned char> mask(90, 0);
  for (int j = 0; j < 90; j += 4) mask[std::size_t(j)] = 1;
  for (const unsigned char* m : {static_cast<const unsigned char*>(nullptr), static_cast<const unsigned char*>(mask.data())}) {
    tg::attention(gc, as_cmat(Q.data(), n, d), as_cmat(K.data(), 90, d), as_cmat(Vv.data(), 90, d), 4, as_mat(A.data(), n, d), m);
    tr::attention(rc, as_cmat(q.data(), n, d), as_cmat(k.data(), 90, d), as_cmat(v.data(), 90, d), 4, as_mat(ra.data(), n, d), m);
    CHECK(rel_diff(host(gc, A), ra) < 1e-5);
  }
  const auto gm = rndv(d, g), bt = rndv(d, g);
  auto G = dev(gc, gm), Bt = dev(gc, bt);
  tg::add_layernorm(gc, as_cmat(X.data(), n, d), as_cmat(Q.data(), n, d), G.data(), Bt.data(), 1e-5f, as_mat(A.data(), n, d));
  tr::add_layernorm(rc, as_cmat(x.data(), n, d), as_cmat(q.data(), n, d), gm.data(), bt.data(), 1e-5f, as_mat(ra.data(), n, d));
  CHECK(rel_diff(host(gc, A), ra) < 1e-5);
  tg::log_softmax(gc, as_cmat(Y.data(), n, out), as_mat(Y.data(), n, out));
  tr::log_softmax(rc, as_cmat(r.data(), n, out), as_mat(r.data(), n, out));
  CHECK(rel_diff(host(gc, Y), r) < 1e-5);
  std::vector<float> rows_back(std::size_t(n + 2) * out, 0.f), rows_ref = rows_back;
  std::vector<int> rows(static_cast<std::size_t>(n));
  for (int j = 0; j < n; ++j) rows[std::size_t(j)] = (j * 7) % (n + 2);
  tg::download_rows(gc, as_cmat(Y.data(), n, out), rows, rows_back.data(), out);
  tr::download_rows(rc, as_cmat(r.data(), n, out), rows, rows_ref.data(), out);
  CHECK(rel_diff(rows_back, rows_ref) < 1e-5);
}

TEST_CASE("cuda: the caption head on the device equals the CPU's (selection, tokens, every step's log-probs, captions)", "[cuda][caption]") {
  const std::string path = std::string(GYOLO_MODELS_DIR) + "/gyolo-shapes.gguf";
  const auto mc = model<cpu, gyolo_shapes>::load(path);
  const auto mg = model<cuda, gyolo_shapes>::load(path);
  context<cpu> cc(0);
  context<cuda> gc;
  std::mt19937 g(5);
  auto x = rnd({2, 3, 256, 256}, g, 0.f, 1.f);
  const auto oc = mc.forward(cc, x.cv(), {.caption_features = true});
  auto xd = to_device(gc, x.cv());
  const auto og = mg.forward(gc, xd.cv(), {.caption_features = true});
  const auto oh = to_host(gc, og, {.caption_features = true});  // the device's own maps, on the host
  const typename grit_head<cuda>::inputs ig{og.x17.cv(), og.x20.cv(), og.x23.cv(), og.x11.cv(), og.x44.cv(),
                                            {og.d3[0].cv(), og.d3[1].cv(), og.d3[2].cv()}, og.semantic.cv()};
  const grit_inputs ih{oh.x17.cv(), oh.x20.cv(), oh.x23.cv(), oh.x11.cv(), oh.x44.cv(), {oh.d3[0].cv(), oh.d3[1].cv(), oh.d3[2].cv()},
                       oh.semantic.cv()};
  std::vector<grit_tokens> tc;
  std::vector<grit_head<cuda>::tokens> tg;
  for (int i = 0; i < 2; ++i) {
    // the selection: the device's scores ranked on the host equal the host's ranking of the same maps
    const auto sel = mg.grit().select_regions(gc, ig.d3, i);
    REQUIRE(sel == mc.grit().select_regions(ih.d3, i));
    const auto sem = tkernels<cuda>::semantic_argmax(gc, ig.semantic, i);
    REQUIRE(sem == mc.grit().semantic_argmax(ih.semantic, i));
    // tokens from the same selection and features: device vs host
    context<cpu> c1(0);
    const auto rt = host(gc, mg.grit().region_tokens(gc, ig, i, sel, sem));
    const auto rr = mc.grit().region_tokens(c1, ih, i, sel, sem);
    const double dr = rel_diff(rt, rr);
    const auto gt = host(gc, mg.grit().grid_net(gc, mg.grit().grid_features(gc, ig.x11, i)));
    const auto gr = mc.grit().grid_net(c1, mc.grit().grid_features(c1, ih.x11, i));
    const double dg = rel_diff(gt, gr);
    std::printf("caption tokens, image %d: region %.2e grid %.2e\n", i, dr, dg);
    CHECK(dr < 1e-3);
    CHECK(dg < 1e-3);
    grit_tokens t;
    t.region = rr, t.grid = gr, t.n_region = int(rr.size() / 128), t.n_grid = int(gr.size() / 128);
    grit_head<cuda>::tokens u;
    u.region = dev(gc, rr), u.grid = dev(gc, gr), u.n_region = t.n_region, u.n_grid = t.n_grid;
    tc.push_back(std::move(t));
    tg.push_back(std::move(u));
  }
  // the decoder on the same tokens: every step's log-probs of the rows the search ran, and the result
  typename grit_head<cpu>::decoder dc(mc.grit(), cc, tc);
  typename grit_head<cuda>::decoder dg(mg.grit(), gc, tg);
  const int V = mc.grit().cfg.vocab_size;
  step_log<typename grit_head<cpu>::decoder> lc{dc, V, {}, {}};
  step_log<typename grit_head<cuda>::decoder> lg{dg, V, {}, {}};
  const auto hc = beam_search(lc, 2, V, mc.grit().search_params());
  const auto hg = beam_search(lg, 2, V, mg.grit().search_params());
  // (the steps are compared while both searches ran the same rows: a near-tie between beams may
  // make them part, which the last checks would show)
  double worst = 0;
  std::size_t same_steps = 0;
  for (std::size_t s = 0; s < std::min(lc.lp.size(), lg.lp.size()) && lc.active[s] == lg.active[s]; ++s, ++same_steps) {
    for (std::size_t r = 0; r < lc.active[s].size(); ++r)
      if (lc.active[s][r]) {
        const std::vector<float> a(lg.lp[s].begin() + r * V, lg.lp[s].begin() + (r + 1) * V),
            b(lc.lp[s].begin() + r * V, lc.lp[s].begin() + (r + 1) * V);
        worst = std::max(worst, rel_diff(a, b));
      }
  }
  std::printf("caption decoder: %zu and %zu steps, %zu compared, worst step log-prob difference %.2e (relative to max|ref|)\n",
              lc.lp.size(), lg.lp.size(), same_steps, worst);
  CHECK(same_steps == lc.lp.size());
  CHECK(worst < 1e-3);
  for (int i = 0; i < 2; ++i) CHECK(hc[std::size_t(i)].tokens == hg[std::size_t(i)].tokens);
  // and the model's own path, features to text
  const auto cc_ = mc.caption(cc, oc), cg = mg.caption(gc, og);
  for (int i = 0; i < 2; ++i) {
    std::printf("caption image %d: cpu '%s' cuda '%s'\n", i, cc_[std::size_t(i)].text.c_str(), cg[std::size_t(i)].text.c_str());
    CHECK(cc_[std::size_t(i)].text == cg[std::size_t(i)].text);
  }
}

TEST_CASE("cuda: the semantic maps made on the device equal post::semantic_argmax on the same logits, bit for bit", "[cuda][semantic]") {
  std::mt19937 g(9);
  context<cuda> gc;
  auto L = rnd({2, 37, 40, 56}, g, -3.f, 3.f);
  for (int i = 0; i < 40 * 56; i += 7) L.v().channel(1, 5)[i] = L.v().channel(1, 2)[i];  // exact ties
  const auto Ld = to_device(gc, L.cv());
  letterbox_geometry geo;
  geo.input_h = 160, geo.input_w = 224, geo.top = 12, geo.bottom = 13, geo.left = 0, geo.right = 0, geo.orig_h = 301, geo.orig_w = 499;
  for (bool want_input : {false, true}) {
    const auto got = semantic_maps(gc, Ld.cv(), 1, geo, want_input);
    const post::logits_view lv{L.data() + L.cv().batch_stride, 37, 40, 56, 40 * 56};
    const auto want = post::semantic_argmax(lv, geo, want_input, true, 0);
    CHECK(got.original == want.original);
    CHECK(got.input == want.input);
  }
}

int main(int argc, char** argv) {
  if (cudart::device_count() == 0) {
    std::printf("gyolo CUDA tests skipped: %s\n", cudart::describe().c_str());
    return 77;  // ctest: SKIP_RETURN_CODE
  }
  std::printf("%s", cudart::describe().c_str());
  return Catch::Session().run(argc, argv);
}
