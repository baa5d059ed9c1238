// Training parity with upstream's autograd: fixtures made by weights_tools/make_train_fixtures.py
// from upstream's own modules (tiny variant, fp32 weights and inputs, train mode, objective
// L = sum_k sum(out_k * proj_k)); references computed by upstream's autograd in float64.
// Per tensor: max|ours - ref| <= 1e-3 * max|ref| (+ a tiny absolute floor for gradients that are
// analytically zero: biases in front of a train-mode BN).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <map>
#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <string>

#include "gyolo/gyolo.hpp"
#include "gyolo/nn/module.hpp"
#include "test_util.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_train {

using namespace gyolo;
using namespace gyolo::test;

namespace {
std::string dir = std::string(GYOLO_FIXTURES_DIR) + "/train/";  // the full-size run points it elsewhere

/// Compares an output with the reference and seeds its gradient with the projection.
void check_output_and_seed(tview out, const std::string& ref_file, const std::string& proj_file, double tol = 1e-3) {
  auto ref = load4(dir + ref_file), proj = load4(dir + proj_file);
  REQUIRE(out.numel() == ref.numel());
  const auto ours = flat(out.val());
  check_close(ours.data(), ref.data(), ref.numel(), tol, 1e-6, ref_file);
  REQUIRE(out.has_grad());
  std::int64_t k = 0;
  for (int n = 0; n < out.n; ++n)
    for (int c = 0; c < out.c; ++c)
      for (std::int64_t i = 0; i < out.plane(); ++i) out.grad().channel(n, c)[i] = proj[k++];
}

/// Every parameter gradient and BN running statistic of module m (prefix p) against the fixtures.
template <class M>
void check_params(M& m, const std::string& prefix, const tensor_file& grads, const tensor_file& bn_after, const std::string& key,
                  double floor, double tol = 1e-3) {
  int n = 0;
  nn::for_each_param(m, prefix, [&](const std::string& name, param& p) {
    if (!grads.has(key + name)) return;  // frozen (no gradient upstream)
    auto ref = grads.get(key + name);
    REQUIRE(std::int64_t(ref.size()) == p.numel());
    REQUIRE(p.grad.size() == p.value.size());
    check_close(p.grad.data(), ref.data(), p.numel(), tol, floor, "grad " + name);
    ++n;
  });
  CHECK(n > 0);
  nn::for_each_buffer(m, prefix, [&](const std::string& name, buffer& b) {
    if (name.find("running_") == std::string::npos) return;
    auto ref = bn_after.get(key + name);
    check_close(b.value.data(), ref.data(), b.numel(), tol / 10, 1e-7, name);
  });
}
}  // namespace

TEST_CASE("train: the module description names exactly upstream's tensors", "[train]") {
  vision_graph<reference, train_mode> g;
  g.init(gyolo_tiny::value);
  const auto ex = nn::expected_tensors(g, "model");
  tensor_file w(dir + "weights.gguf");
  std::map<std::string, dims> file;
  for (auto& t : w.f.tensors()) {
    const std::string& n = t.name;
    if (n.rfind("model.56.", 0) == 0) continue;  // caption head: grit_train, checked in test_grit_train.cpp
    file[n] = t.torch_shape();
  }
  std::map<std::string, dims> ours;
  for (auto& [n, s] : ex) ours[n] = s;
  for (auto& [n, s] : file) {
    INFO(n);
    REQUIRE(ours.count(n));
    CHECK(ours[n] == s);
  }
  for (auto& [n, s] : ours) {
    INFO(n);
    CHECK(file.count(n));
  }
  CHECK(ex.size() == file.size());
}

TEST_CASE("train: the whole train model is one module (Grit is child 56): its walk is the file's tensors, in order", "[train]") {
  tensor_file w(dir + "weights.gguf");
  train_model<reference> m;
  m.init(gyolo_tiny::value, grit_config::from_json(nlohmann::json::parse(w.f.get_string("gyolo.grit_config"))));
  const auto ex = nn::expected_tensors(m, "model");
  const auto& ts = w.f.tensors();
  REQUIRE(ex.size() == ts.size());
  for (std::size_t i = 0; i < ex.size(); ++i) {
    INFO(i << ": " << ex[i].first << " vs " << ts[i].name);
    CHECK(ex[i].first == ts[i].name);  // convert.py --training writes upstream's state_dict order
    CHECK(ex[i].second == ts[i].torch_shape());
  }
  CHECK(ex.front().first.rfind("model.1.", 0) == 0);
  CHECK(ex.back().first.rfind("model.56.", 0) == 0);
  std::size_t n56 = 0;
  for (const auto& [n, s] : ex) n56 += n.rfind("model.56.", 0) == 0;
  CHECK(n56 == nn::expected_tensors(m.grit, "model.56").size());
}

TEST_CASE("train: folding a train-mode graph gives the inference graph's outputs", "[train]") {
  // eval-mode train graph (running statistics) == folded inference graph, same weights
  context<cpu> ctx(2);
  vision_graph<cpu, train_mode> g;
  g.init(gyolo_tiny::value);
  random_weights rw(7);
  nn::load_tensors(g, rw, "model");
  vision_graph<cpu> inf;
  inf.load(rw, gyolo_tiny::value, true);
  tensor<float> x({2, 3, 64, 96});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float((i * 7919) % 1000) / 1000.0f;
  tape<cpu> tp(ctx);
  tp.training = false;
  auto in = tp.input(x.cv());
  auto o = g.forward(tp, in.t);
  auto r = inf.forward(ctx, x.cv(), true, true);
  for (int l = 0; l < 3; ++l) {
    const auto a = flat(o.head.d[2][std::size_t(l)].t.val());
    check_close(a.data(), r.d3[std::size_t(l)].data(), r.d3[std::size_t(l)].numel(), 1e-4, 1e-5, "d3 level " + std::to_string(l));
  }
  const auto p = flat(o.head.p[1].t.val()), s = flat(o.head.s[1].t.val());
  check_close(p.data(), r.proto.data(), r.proto.numel(), 1e-4, 1e-5, "proto");
  check_close(s.data(), r.semantic.data(), r.semantic.numel(), 1e-4, 1e-5, "semantic");
}

namespace {
/// Whole network on backend B: outputs within out_tol, gradients within grad_tol (x max|ref|).
template <class B>
void whole_network(double out_tol, double grad_tol, const variant_config& cfg = gyolo_tiny::value) {
  context<B> ctx(2);
  vision_graph<B, train_mode> g;
  g.init(cfg);
  {
    gguf::file wf(dir + "weights.gguf");
    gguf_weights ws(wf);
    nn::load_tensors(g, ws, "model");
  }
  tape<B> tp(ctx);
  auto x = load4(dir + "net.input.npy");
  auto in = tp.input(x.cv(), true);
  nn::zero_grad(g);
  auto o = g.forward(tp, in.t);
  const char* dn[3] = {"d1", "d2", "d3"};
  for (int k = 0; k < 3; ++k)
    for (int l = 0; l < 3; ++l) {
      const std::string n = std::string(dn[k]) + "_" + std::to_string(l);
      check_output_and_seed(o.head.d[std::size_t(k)][std::size_t(l)].t, "net.out." + n + ".npy", "net.proj." + n + ".npy", out_tol);
    }
  for (int k = 0; k < 2; ++k) {
    const std::string s = std::to_string(k + 1);
    check_output_and_seed(o.head.mc[std::size_t(k)].t, "net.out.mc" + s + ".npy", "net.proj.mc" + s + ".npy", out_tol);
    check_output_and_seed(o.head.p[std::size_t(k)].t, "net.out.p" + s + ".npy", "net.proj.p" + s + ".npy", out_tol);
    check_output_and_seed(o.head.s[std::size_t(k)].t, "net.out.s" + s + ".npy", "net.proj.s" + s + ".npy", out_tol);
  }
  tp.backward();
  tensor_file grads(dir + "net.grads.gguf"), bn(dir + "net.bn_after.gguf");
  // floor: 1e-6 of the largest parameter gradient (for gradients that are analytically zero)
  double gmax = 0;
  for (auto& t : grads.f.tensors())
    for (float v : grads.get(t.name)) gmax = std::max(gmax, double(std::abs(v)));
  check_params(g, "model", grads, bn, "", 1e-6 * gmax, grad_tol);
  const auto dx = flat(in.t.grad());
  const auto ref = grads.get("input");
  check_close(dx.data(), ref.data(), std::int64_t(ref.size()), grad_tol, 0.0, "input gradient");
}
}  // namespace

// The references are upstream's autograd in float64. This fixture is ill-conditioned for fp32:
// at 64x96 the P5 BatchNorms see 12 values per channel, which amplifies every fp32 rounding into
// the early BatchNorm gradients (upstream's own fp32 autograd deviates from float64 by up to
// 2.7e-3 x max|ref| on model.3's). The reference backend (fp32 storage, double accumulation)
// measures up to 1.3e-3 there and <= 1e-3 everywhere else, and is checked at 2e-3; the fast CPU
// backend (fp32 GEMM forward, every kernel set) measures up to 1.3e-2 (portable kernels) and is
// checked at 2.5e-2. The per-block checks below are well conditioned and use 1e-3.
// Full size (gyolo.yaml), a documented local run: fixtures made by
//   /usr/bin/python3 weights_tools/make_train_fixtures.py --upstream /tmp/upstream --variant full --out /tmp/train_full
// then GYOLO_TRAIN_FULL_DIR=/tmp/train_full gyolo_tests "[.train-full]".
TEST_CASE("train: full-size network equals upstream autograd (local run)", "[.train-full]") {
  const char* d = std::getenv("GYOLO_TRAIN_FULL_DIR");
  if (!d) FAIL("set GYOLO_TRAIN_FULL_DIR to the output folder of make_train_fixtures.py --variant full");
  const std::string saved = dir;
  dir = std::string(d) + "/";
  // measured 2026-12-01 (docs/training.md): reference backend 1.2e-3 worst gradient, 2.7e-4 worst
  // output; cpu backend 6.3e-3 and 2.4e-3 (upstream's own fp32 run: 4.9e-3 and 1.2e-3)
  SECTION("reference backend, 2e-3") { whole_network<reference>(1e-3, 2e-3, gyolo_c::value); }
  SECTION("cpu backend, 1e-2") { whole_network<cpu>(4e-3, 1e-2, gyolo_c::value); }
  dir = saved;
}

TEST_CASE("train: whole network (layers 0-55, auxiliary branch) equals upstream autograd", "[train]") {
  SECTION("reference backend, 2e-3") { whole_network<reference>(1e-3, 2e-3); }
  SECTION("cpu backend, 2.5e-2") { whole_network<cpu>(4e-3, 2.5e-2); }
}

namespace {
struct no_params {  // CBFuse has no parameters
  template <class V, class... S> static void fields(V&, S&...) {}
};
/// One block of the tiny variant run alone on the input it saw in the whole network.
template <class Blk, class Fwd>
void check_block(const std::string& name, Blk& blk, int n_in, const std::vector<std::pair<int, int>>& outs, Fwd&& fwd) {
  context<cpu> ctx(2);
  {
    gguf::file wf(dir + "weights.gguf");
    gguf_weights ws(wf);
    nn::load_tensors(blk, ws, name);
  }
  nn::zero_grad(blk);
  std::string base = "blk." + name;
  for (auto& ch : base) if (ch == '.') ch = '_';
  base[3] = '.';
  tape<cpu> tp(ctx);
  std::vector<tvar> in;
  std::vector<tensor<float>> keep;
  for (int i = 0; i < n_in; ++i) {
    keep.push_back(load4(dir + base + ".in" + std::to_string(i) + ".npy"));
    in.push_back(tp.input(keep.back().cv(), true));
  }
  tvar out = fwd(tp, in);
  // outs: (channel offset, channels) of each upstream output inside ours
  for (std::size_t j = 0; j < outs.size(); ++j)
    check_output_and_seed(out.t.slice(outs[j].first, outs[j].second), base + ".out" + std::to_string(j) + ".npy",
                          base + ".proj" + std::to_string(j) + ".npy");
  tp.backward();
  tensor_file grads(dir + "blocks.grads.gguf"), bn(dir + "blocks.bn_after.gguf");
  double gmax = 0;
  nn::for_each_param(blk, name, [&](const std::string& n, param&) {
    if (grads.has(name + "|" + n))
      for (float v : grads.get(name + "|" + n)) gmax = std::max(gmax, double(std::abs(v)));
  });
  bool any = false;
  nn::for_each_param(blk, name, [&](const std::string&, param&) { any = true; });
  if (any) check_params(blk, name, grads, bn, name + "|", 1e-6 * gmax);
  for (int i = 0; i < n_in; ++i) {
    const std::string f = base + ".dx" + std::to_string(i) + ".npy";
    if (!std::ifstream(dir + f)) continue;
    auto ref = load4(dir + f);
    const auto dx = flat(in[std::size_t(i)].t.grad());
    check_close(dx.data(), ref.data(), ref.numel(), 1e-3, 0.0, f);
  }
}
}  // namespace

TEST_CASE("train: blocks equal upstream autograd", "[train]") {
  const auto& c = gyolo_tiny::value;
  SECTION("Conv (layer 1)") {
    train_conv<cpu> b;
    b.init_bn(3, c.conv1, 3, 2, 1, act::silu);
    check_block("model.1", b, 1, {{0, c.conv1}}, [&](tape<cpu>& t, std::vector<tvar>& in) { return b(t, in[0].t); });
  }
  SECTION("RepNBottleneck (layer 3.cv2.0.m.0)") {
    rep_ncsp<cpu, train_mode> r;
    r.init(c.e3.c3 / 2, c.e3.c4, 1);
    auto& b = r.m[0];
    const int ch = r.c_;
    check_block("model.3.cv2.0.m.0", b, 1, {{0, ch}}, [&](tape<cpu>& t, std::vector<tvar>& in) {
      auto y = t.alloc(in[0].shape());
      rep_ncsp<cpu, train_mode>::run_bottleneck(t, b, in[0].t, y.t);
      return y;
    });
  }
  SECTION("RepNCSPELAN4 (layer 3)") {
    rep_ncsp_elan4<cpu, train_mode> b;
    b.init(c.conv2, c.e3, false);
    check_block("model.3", b, 1, {{0, c.e3.c2}}, [&](tape<cpu>& t, std::vector<tvar>& in) { return b(t, in[0].t); });
  }
  SECTION("ADown (layer 4)") {
    adown<cpu, train_mode> b;
    b.init(c.e3.c2, c.ad4);
    check_block("model.4", b, 1, {{0, c.ad4}}, [&](tape<cpu>& t, std::vector<tvar>& in) { return b(t, in[0].t); });
  }
  SECTION("SPPELAN (layer 10)") {
    sppelan<cpu, train_mode> b;
    b.init(c.e9.c2, c.spp_c2, c.spp_c3);
    check_block("model.10", b, 1, {{0, c.spp_c2}}, [&](tape<cpu>& t, std::vector<tvar>& in) { return b(t, in[0].t); });
  }
  SECTION("PSA (layer 11)") {
    psa<cpu, train_mode> b;
    b.init(c.spp_c2, c.psa);
    check_block("model.11", b, 1, {{0, c.psa}}, [&](tape<cpu>& t, std::vector<tvar>& in) { return b(t, in[0].t); });
  }
  SECTION("RepNCSPELAN4B (layer 17)") {
    rep_ncsp_elan4<cpu, train_mode> b;
    b.init(c.e14.c2 + c.e5.c2, c.e17, true);
    check_block("model.17", b, 1, {{0, c.e17.c2}}, [&](tape<cpu>& t, std::vector<tvar>& in) { return b(t, in[0].t); });
  }
  SECTION("DWConv (layer 45)") {
    train_conv<cpu> b;
    b.init_bn(c.e43.c2, c.dw45, 3, 1, std::gcd(c.e43.c2, c.dw45), act::silu);
    check_block("model.45", b, 1, {{0, c.dw45}}, [&](tape<cpu>& t, std::vector<tvar>& in) { return b(t, in[0].t); });
  }
  SECTION("CBLinear (layers 24, 25)") {
    cb_linear<cpu, train_mode> b24, b25;
    b24.init(c.e5.c2, c.cbl24);
    check_block("model.24", b24, 1, {{0, c.cbl24.c[0]}}, [&](tape<cpu>& t, std::vector<tvar>& in) { return b24(t, in[0].t); });
    b25.init(c.e7.c2, c.cbl25);
    check_block("model.25", b25, 1, {{0, c.cbl25.c[0]}, {c.cbl25.c[0], c.cbl25.c[1]}},
                [&](tape<cpu>& t, std::vector<tvar>& in) { return b25(t, in[0].t); });
  }
  SECTION("CBFuse (layer 31)") {
    no_params b;
    // inputs: 24[0], 25[0], 25[1], 26[0], 26[1], 26[2], x30; CBFuse idx [0, 0, 0] reads 24[0], 25[0], 26[0]
    context<cpu> ctx(1);
    (void)ctx;
    check_block("model.31", b, 7, {{0, 32}}, [&](tape<cpu>& t, std::vector<tvar>& in) {
      return cb_fuse(t, {in[0].t, in[1].t, in[3].t}, in[6].t);
    });
  }
}

TEST_CASE("train: fast CPU conv and BatchNorm backward equal the reference loops", "[train]") {
  struct cfg {
    int n, cin, h, w, cout, k, s, g;
  };
  const cfg cases[] = {{2, 6, 9, 7, 12, 3, 1, 1},  {2, 6, 9, 7, 12, 3, 2, 1},  {1, 8, 10, 10, 8, 3, 1, 8},
                       {2, 8, 11, 6, 8, 3, 2, 8},   {2, 16, 5, 7, 10, 1, 1, 1}, {1, 16, 8, 8, 16, 3, 1, 4},
                       {2, 3, 33, 17, 13, 3, 2, 1}, {1, 64, 13, 9, 70, 1, 1, 1},
                       {1, 64, 40, 40, 32, 3, 1, 1}, {2, 32, 48, 48, 16, 1, 1, 1},
                       // one-column / one-row inputs (every tap of a row outside), several im2col chunks and row blocks
                       {1, 4, 5, 1, 6, 3, 1, 1}, {2, 4, 1, 5, 6, 3, 2, 1}, {1, 16, 40, 40, 8, 3, 1, 1}, {1, 12, 37, 41, 9, 3, 2, 1},
                       // one output per group (DWConv(2c, c): layers 41 and 49), stride 1 and 2
                       {2, 12, 9, 11, 6, 3, 1, 6}, {1, 12, 10, 9, 4, 3, 2, 4}};
  context<cpu> ctx(2);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (const auto& c : cases)
    for (auto isa : available_cpu_isas()) {
      scoped_cpu_isa use(isa);
      const conv_desc d{c.cin, c.cout, c.k, c.s, c.k / 2, c.g, act::none};
      // x and dy are channel slices of larger tensors; dx accumulates into a prefilled slice
      tensor<float> X({c.n, c.cin + 3, c.h, c.w}), DY({c.n, c.cout + 2, d.out_h(c.h), d.out_w(c.w)});
      tensor<float> DX1({c.n, c.cin + 1, c.h, c.w}), DX2({c.n, c.cin + 1, c.h, c.w});
      for (std::int64_t i = 0; i < X.numel(); ++i) X[i] = nd(rng);
      for (std::int64_t i = 0; i < DY.numel(); ++i) DY[i] = nd(rng);
      for (std::int64_t i = 0; i < DX1.numel(); ++i) DX1[i] = DX2[i] = nd(rng);
      std::vector<float> w(std::size_t(d.weight_numel())), dw1(w.size()), dw2(w.size()), db1(std::size_t(c.cout)), db2(db1.size());
      for (auto& v : w) v = nd(rng);
      for (std::size_t i = 0; i < dw1.size(); ++i) dw1[i] = dw2[i] = nd(rng);
      const auto x = X.cv().slice(2, c.cin), dy = DY.cv().slice(1, c.cout);
      train::ref::conv2d_backward<float>(x, w.data(), dy, d, DX1.v().slice(1, c.cin), dw1.data(), db1.data());
      train_kernels<cpu>::conv2d_backward(ctx, x, w.data(), dy, d, DX2.v().slice(1, c.cin), dw2.data(), db2.data());
      const std::string what = "conv n" + std::to_string(c.n) + " cin" + std::to_string(c.cin) + " k" + std::to_string(c.k) + " s" +
                               std::to_string(c.s) + " g" + std::to_string(c.g) + " " + to_string(isa);
      check_close(DX2.data(), DX1.data(), DX1.numel(), 1e-5, 1e-6, what + " dx");
      check_close(dw2.data(), dw1.data(), std::int64_t(dw1.size()), 1e-5, 1e-6, what + " dw");
      check_close(db2.data(), db1.data(), std::int64_t(db1.size()), 1e-5, 1e-6, what + " db");
    }
  // BatchNorm (+ activation) train forward/backward on slices, planes long enough for the kernels'
  // blocked sums and their tails, against the reference loops (BatchNorm, then SiLU)
  context<reference> rctx(1);
  for (const act a : {act::none, act::silu})
    for (auto isa : available_cpu_isas()) {
      scoped_cpu_isa use(isa);
      const std::string what = std::string("bn ") + (a == act::silu ? "silu " : "") + to_string(isa);
      tensor<float> X({2, 7, 13, 17}), DY({2, 7, 13, 17}), Y1({2, 5, 13, 17}), Y2({2, 5, 13, 17}), DZ1({2, 5, 13, 17}),
          DZ2({2, 5, 13, 17}), W({2, 5, 13, 17});
      for (std::int64_t i = 0; i < X.numel(); ++i) X[i] = 3.0f + 2.0f * nd(rng);
      for (std::int64_t i = 0; i < DY.numel(); ++i) DY[i] = nd(rng);
      for (std::int64_t i = 0; i < DZ1.numel(); ++i) DZ1[i] = DZ2[i] = nd(rng);  // overwritten, not accumulated
      std::vector<float> g(5), b(5), m1(5), i1(5), m2(5), i2(5), rm1(5, 0.1f), rv1(5, 1.5f), rm2(rm1), rv2(rv1), dg1(5, 0.5f), dg2(dg1),
          db1(5, -0.5f), db2(db1);
      for (int i = 0; i < 5; ++i) g[std::size_t(i)] = 1.0f + 0.1f * float(i), b[std::size_t(i)] = 0.2f * float(i);
      const auto x = X.cv().slice(1, 5), dy = DY.cv().slice(2, 5);
      train_kernels<reference>::batchnorm_act_train(rctx, x, g.data(), b.data(), Y1.v(), m1.data(), i1.data(), rm1.data(), rv1.data(),
                                                    0.03, 1e-3, a);
      train_kernels<cpu>::batchnorm_act_train(ctx, x, g.data(), b.data(), Y2.v(), m2.data(), i2.data(), rm2.data(), rv2.data(), 0.03,
                                              1e-3, a);
      check_close(Y2.data(), Y1.data(), Y1.numel(), 1e-6, 1e-6, what + " y");
      check_close(m2.data(), m1.data(), 5, 1e-6, 0, what + " mean");
      check_close(i2.data(), i1.data(), 5, 1e-6, 0, what + " invstd");
      check_close(rv2.data(), rv1.data(), 5, 1e-6, 0, what + " running_var");
      check_close(rm2.data(), rm1.data(), 5, 1e-6, 1e-7, what + " running_mean");
      train_kernels<reference>::batchnorm_act_backward(rctx, x, g.data(), b.data(), m1.data(), i1.data(), dy, a, DZ1.v(), dg1.data(),
                                                       db1.data(), W.data());
      train_kernels<cpu>::batchnorm_act_backward(ctx, x, g.data(), b.data(), m2.data(), i2.data(), dy, a, DZ2.v(), dg2.data(), db2.data(),
                                                 W.data());
      check_close(DZ2.data(), DZ1.data(), DZ1.numel(), 1e-5, 1e-6, what + " dz");
      check_close(dg2.data(), dg1.data(), 5, 1e-5, 1e-6, what + " dgamma");
      check_close(db2.data(), db1.data(), 5, 1e-5, 1e-6, what + " dbeta");
    }
}

TEST_CASE("train: the converter's default key list is the description's inference subset", "[train]") {
  // convert.py's default conversion (tests/fixtures/tiny/tiny.gguf) keeps exactly what the
  // inference form reads: every tensor of fields() outside the auxiliary branch (the main
  // one-to-many head included), so the converter's key rule and the modules agree.
  vision_graph<reference, train_mode> g;
  g.init(gyolo_tiny::value, false);
  std::set<std::string> ours;
  struct {
    std::set<std::string>& s;
    void param(const std::string& n, gyolo::param&) { s.insert(n); }
    void buffer(const std::string& n, gyolo::buffer&) { s.insert(n); }
  } f{ours};
  nn::walk(g, "model", f, nn::parts{false, true});
  gguf::file tiny(std::string(GYOLO_FIXTURES_DIR) + "/tiny/tiny.gguf");
  std::set<std::string> file;
  for (auto& t : tiny.tensors())
    if (t.name.rfind("model.56.", 0) != 0) file.insert(t.name);
  for (auto& n : file) {
    INFO(n);
    CHECK(ours.count(n));
  }
  for (auto& n : ours) {
    INFO(n);
    CHECK(file.count(n));
  }
}

TEST_CASE("train: a second step on the same tape reuses its memory and gives the same gradients", "[train]") {
  context<cpu> ctx(2);
  vision_graph<cpu, train_mode> g;
  g.init(gyolo_tiny::value);
  random_weights rw(11);
  nn::load_tensors(g, rw, "model");
  tensor<float> x({2, 3, 64, 96});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float((i * 7919) % 1000) / 1000.0f;
  tape<cpu> tp(ctx);
  tp.training = false;  // running statistics stay fixed, so both steps compute the same function
  std::vector<std::vector<float>> first;
  std::size_t bytes = 0, steps = 0;
  for (int step = 0; step < 2; ++step) {
    tp.reset();
    nn::zero_grad(g);
    auto in = tp.input(x.cv(), true);
    auto o = g.forward(tp, in.t);
    for (auto& d : o.head.d)
      for (auto& l : d) std::fill(l.t.gdata, l.t.gdata + l.numel(), 1.0f);
    tp.backward();
    std::vector<std::vector<float>> grads;
    nn::for_each_param(g, "model", [&](const std::string&, param& p) { grads.push_back(p.grad); });
    grads.push_back(flat(in.t.grad()));
    if (step == 0) {
      first = std::move(grads);
      bytes = tp.bytes();
      steps = tp.steps();
    } else {
      CHECK(tp.bytes() == bytes);  // no new activation memory
      CHECK(tp.steps() == steps);
      REQUIRE(grads.size() == first.size());
      bool same = true;
      for (std::size_t i = 0; i < grads.size(); ++i) same = same && grads[i] == first[i];
      CHECK(same);  // bit-identical run to run
    }
  }
  double gmax = 0;
  for (auto& v : first)
    for (float f : v) gmax = std::max(gmax, double(std::abs(f)));
  CHECK(gmax > 0);
}

}  // namespace test_train
