// Parity with upstream: fixtures made by weights_tools/make_fixtures.py from upstream's PyTorch
// model (tiny variant, randomized weights and BN statistics, fp16 checkpoint converted by
// weights_tools/convert.py). Per block: max|diff| <= 1e-5 * max|ref|; whole graph: <= 1e-3.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "gyolo/gyolo.hpp"
#include "test_util.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_parity {

using namespace gyolo;
using namespace gyolo::test;

namespace {
const std::string dir = std::string(GYOLO_FIXTURES_DIR) + "/tiny/";

template <class B>
const model<B, gyolo_tiny>& tiny_model() {
  static const auto m = model<B, gyolo_tiny>::load(dir + "tiny.gguf");
  return m;
}
}  // namespace

TEMPLATE_TEST_CASE("per-block parity with upstream (tiny variant)", "[parity]", cpu, reference) {
  using B = TestType;
  const auto& v = tiny_model<B>().vision();
  context<B> ctx(2);
  const double tol = 1e-5;
  auto in = [](const char* b, int k = 0) { return load4(dir + std::string(b) + ".in" + std::to_string(k) + ".npy"); };
  auto out = [](const char* b) { return load4(dir + std::string(b) + ".out.npy"); };

  SECTION("Conv 3x3/2 (layer 1)") { require_view_close(v.l1(ctx, in("model_1").cv()).cv(), out("model_1"), tol, "model.1"); }
  SECTION("RepConvN") {
    require_view_close(v.l3.cv2_0.m[0].cv1(ctx, in("model_3_cv2_0_m_0_cv1").cv()).cv(), out("model_3_cv2_0_m_0_cv1"), tol, "RepConvN");
  }
  SECTION("RepNBottleneck") {
    auto x = in("model_3_cv2_0_m_0");
    tensor<float> y(x.shape());
    rep_ncsp<B>::run_bottleneck(ctx, v.l3.cv2_0.m[0], x.cv(), y.v());
    require_view_close(y.cv(), out("model_3_cv2_0_m_0"), tol, "RepNBottleneck");
  }
  SECTION("RepNCSP") { require_view_close(v.l3.cv2_0(ctx, in("model_3_cv2_0").cv()).cv(), out("model_3_cv2_0"), tol, "RepNCSP"); }
  SECTION("RepNCSPELAN4 (layer 3)") { require_view_close(v.l3(ctx, in("model_3").cv()).cv(), out("model_3"), tol, "model.3"); }
  SECTION("ADown (layer 4)") { require_view_close(v.l4(ctx, in("model_4").cv()).cv(), out("model_4"), tol, "model.4"); }
  SECTION("SPPELAN (layer 10)") { require_view_close(v.l10(ctx, in("model_10").cv()).cv(), out("model_10"), tol, "model.10"); }
  SECTION("PSA Attention") {
    require_view_close(v.l11.attention(ctx, in("model_11_attn").cv()).cv(), out("model_11_attn"), tol, "model.11.attn");
  }
  SECTION("PSA (layer 11)") { require_view_close(v.l11(ctx, in("model_11").cv()).cv(), out("model_11"), tol, "model.11"); }
  SECTION("Upsample (layer 12)") { require_view_close(upsample2x(ctx, in("model_12").cv()).cv(), out("model_12"), 0, "model.12"); }
  SECTION("Concat (layer 13)") {
    require_view_close(concat2(ctx, in("model_13", 0).cv(), in("model_13", 1).cv()).cv(), out("model_13"), 0, "model.13");
  }
  SECTION("RepNCSPELAN4B (layer 17)") { require_view_close(v.l17(ctx, in("model_17").cv()).cv(), out("model_17"), tol, "model.17"); }
  SECTION("RepNCSPELAN4 c5=2 (layer 43)") { require_view_close(v.l43(ctx, in("model_43").cv()).cv(), out("model_43"), tol, "model.43"); }
  SECTION("DWConv (layer 45)") { require_view_close(v.l45(ctx, in("model_45").cv()).cv(), out("model_45"), tol, "model.45"); }
  SECTION("Conv 1x1 (layer 46)") { require_view_close(v.l46(ctx, in("model_46").cv()).cv(), out("model_46"), tol, "model.46"); }
  SECTION("DualDPanoptic inference head (layer 55)") {
    auto x17 = in("model_55", 3), x20 = in("model_55", 4), x23 = in("model_55", 5);
    auto x46 = in("model_55", 10), x54 = in("model_55", 12);
    const float H = float(x46.shape().h * 4);
    auto o = v.head(ctx, {x17.cv(), x20.cv(), x23.cv()}, x46.cv(), x54.cv(),
                    {H / x17.shape().h, H / x20.shape().h, H / x23.shape().h}, false);
    for (int l = 0; l < 3; ++l)
      require_view_close(o.d3[l].cv(), load4(dir + "model_55.out.d3_" + std::to_string(l) + ".npy"), tol, "d3");
    require_view_close(o.proto.cv(), load4(dir + "model_55.out.p2.npy"), tol, "p2");
    require_view_close(o.semantic.cv(), load4(dir + "model_55.out.s2.npy"), tol, "s2");
    const int nc = 80;
    require_view_close(o.pred.cv().slice(4 + nc, 32), load4(dir + "model_55.out.mc2.npy"), tol, "mc2");
    require_view_close(o.pred.cv(), load4(dir + "model_55.out.pred.npy"), tol, "pred");
  }
}

TEMPLATE_TEST_CASE("whole vision graph parity with upstream (tiny variant)", "[parity]", cpu, reference) {
  using B = TestType;
  const auto& m = tiny_model<B>();
  context<B> ctx(2);
  const double tol = 1e-3;
  SECTION("batch of 2 at 64x96") {
    auto x = load4(dir + "graph_b2.input.npy");
    auto o = m.forward(ctx, x.cv());
    require_view_close(o.pred.cv(), load4(dir + "graph_b2.pred.npy"), tol, "pred");
    require_view_close(o.proto.cv(), load4(dir + "graph_b2.proto.npy"), tol, "proto");
    require_view_close(o.semantic.cv(), load4(dir + "graph_b2.semantic.npy"), tol, "semantic");
    for (int l = 0; l < 3; ++l) require_view_close(o.d3[l].cv(), load4(dir + "graph_b2.d3_" + std::to_string(l) + ".npy"), tol, "d3");
    // Batching changes nothing: image 1 alone gives the same as in the batch.
    auto o1 = m.forward(ctx, x.cv().batch(1));
    const auto& p = o.pred;
    double md = 0;
    for (std::int64_t i = 0; i < o1.pred.numel(); ++i) md = std::max(md, double(std::abs(o1.pred[i] - p[o1.pred.numel() + i])));
    REQUIRE(md <= 1e-4 * max_abs(o1.pred.cv()));
  }
  SECTION("single image at 64x64") {
    auto x = load4(dir + "graph_64.input.npy");
    auto o = m.forward(ctx, x.cv());
    require_view_close(o.pred.cv(), load4(dir + "graph_64.pred.npy"), tol, "pred");
  }
}

TEST_CASE("cpu and reference backends agree on the whole graph", "[parity]") {
  auto x = load4(dir + "graph_b2.input.npy");
  context<cpu> cc(2);
  context<reference> rc(1);
  auto a = tiny_model<cpu>().forward(cc, x.cv());
  auto b = tiny_model<reference>().forward(rc, x.cv());
  require_view_close(a.pred.cv(), b.pred, 1e-4, "pred");
  require_view_close(a.semantic.cv(), b.semantic, 1e-4, "semantic");
}

TEST_CASE("one-to-many main head (option) matches upstream's discarded y2", "[parity]") {
  const auto m = model<cpu, gyolo_tiny>::load(dir + "tiny.gguf", load_options{true});
  context<cpu> ctx(2);
  auto x = load4(dir + "graph_b2.input.npy");
  auto o = m.forward(ctx, x.cv(), {.one_to_many = true});
  require_view_close(o.pred_o2m.cv(), load4(dir + "graph_b2.pred_o2m.npy"), 1e-3, "pred_o2m");
  require_view_close(o.pred.cv(), load4(dir + "graph_b2.pred.npy"), 1e-3, "pred");  // the e2e output is unchanged
}

}  // namespace test_parity
