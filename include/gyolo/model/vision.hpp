// The vision graph of Generalist YOLO: layers 0-23, 43-46, 51-54 and the inference part of head 55.
// forward() is ordinary variable flow that mirrors gyolo.yaml's layer indices.
#pragma once
#include <array>
#include <numeric>
#include <string>

#include "gyolo/layers/head.hpp"
#include "gyolo/model/config.hpp"

namespace gyolo {

template <class B>
struct vision_outputs {
  dtensor<B> pred;                 // [B, 4+nc+nm, 1, A]: xywh (input pixels), class sigmoids, mask coefficients
  dtensor<B> proto;                // [B, nm, H/4, W/4]
  dtensor<B> semantic;             // [B, nc+sem_nc, H/4, W/4] raw logits
  std::array<dtensor<B>, 3> d3;    // raw one-to-one head maps per level
  dtensor<B> pred_o2m;             // one-to-many head output, when requested
  // Features the caption head (layer 56) reads.
  dtensor<B> x11, x17, x20, x23, x44;
};

template <class B>
class vision_graph {
 public:
  variant_config cfg;

  void load(weight_source& ws, const variant_config& c, bool with_o2m) {
    cfg = c;
    auto m = [](int i) { return "model." + std::to_string(i); };
    l1.load_conv_bn(ws, m(1), 3, c.conv1, 3, 2, 1, act::silu);
    l2.load_conv_bn(ws, m(2), c.conv1, c.conv2, 3, 2, 1, act::silu);
    l3.load(ws, m(3), c.conv2, c.e3.c2, c.e3.c3, c.e3.c4, c.e3.c5, false);
    l4.load(ws, m(4), c.e3.c2, c.ad4);
    l5.load(ws, m(5), c.ad4, c.e5.c2, c.e5.c3, c.e5.c4, c.e5.c5, false);
    l6.load(ws, m(6), c.e5.c2, c.ad6);
    l7.load(ws, m(7), c.ad6, c.e7.c2, c.e7.c3, c.e7.c4, c.e7.c5, false);
    l8.load(ws, m(8), c.e7.c2, c.ad8);
    l9.load(ws, m(9), c.ad8, c.e9.c2, c.e9.c3, c.e9.c4, c.e9.c5, false);
    l10.load(ws, m(10), c.e9.c2, c.spp_c2, c.spp_c3);
    l11.load(ws, m(11), c.spp_c2, c.psa);
    l14.load(ws, m(14), c.psa + c.e7.c2, c.e14.c2, c.e14.c3, c.e14.c4, c.e14.c5, false);
    l17.load(ws, m(17), c.e14.c2 + c.e5.c2, c.e17.c2, c.e17.c3, c.e17.c4, c.e17.c5, true);
    l18.load(ws, m(18), c.e17.c2, c.ad18);
    l20.load(ws, m(20), c.ad18 + c.e14.c2, c.e20.c2, c.e20.c3, c.e20.c4, c.e20.c5, true);
    l21.load(ws, m(21), c.e20.c2, c.ad21);
    l23.load(ws, m(23), c.ad21 + c.psa, c.e23.c2, c.e23.c3, c.e23.c4, c.e23.c5, true);
    l43.load(ws, m(43), c.e17.c2, c.e43.c2, c.e43.c3, c.e43.c4, c.e43.c5, false);
    l45.load_conv_bn(ws, m(45), c.e43.c2, c.dw45, 3, 1, std::gcd(c.e43.c2, c.dw45), act::silu);
    l46.load_conv_bn(ws, m(46), c.dw45, c.conv46, 1, 1, 1, act::silu);
    l51.load(ws, m(51), c.e17.c2, c.e51.c2, c.e51.c3, c.e51.c4, c.e51.c5, false);
    l53.load_conv_bn(ws, m(53), c.e51.c2, c.dw53, 3, 1, std::gcd(c.e51.c2, c.dw53), act::silu);
    l54.load_conv_bn(ws, m(54), c.dw53, c.conv54, 1, 1, 1, act::silu);
    head.load(ws, m(55), c.nc, c.sem_nc, c.nm, {c.e17.c2, c.e20.c2, c.e23.c2}, c.conv46, c.conv54, with_o2m);
  }

  /// x: [B, 3, H, W] RGB in [0, 1]; H and W multiples of 32.
  vision_outputs<B> forward(context<B>& ctx, cview<float> x, bool run_o2m = false, bool keep_features = false) const {
    GYOLO_CHECK(x.c == 3, "input must have 3 channels, got " + std::to_string(x.c));
    GYOLO_CHECK(x.h >= 32 && x.w >= 32 && x.h % 32 == 0 && x.w % 32 == 0,
                "input height and width must be positive multiples of 32, got " + std::to_string(x.h) + "x" + std::to_string(x.w));
    vision_outputs<B> o;
    if (auto* p = ctx.profiler()) p->start();
    auto L = [&](const char* layer, auto&& v) { return ctx.layer(layer, std::move(v)); };  // per-layer profile marks
    auto x1 = L("1", l1(ctx, x));                                   // 1  Conv 3/2
    auto x2 = L("2", l2(ctx, x1.cv()));                             // 2  Conv 3/2
    x1 = {};
    auto x3 = L("3", l3(ctx, x2.cv()));                             // 3  RepNCSPELAN4
    auto x4 = L("4", l4(ctx, x3.cv()));                             // 4  ADown
    auto x5 = L("5", l5(ctx, x4.cv()));                             // 5  RepNCSPELAN4      (P3)
    auto x6 = L("6", l6(ctx, x5.cv()));                             // 6  ADown
    auto x7 = L("7", l7(ctx, x6.cv()));                             // 7  RepNCSPELAN4      (P4)
    auto x8 = L("8", l8(ctx, x7.cv()));                             // 8  ADown
    auto x9 = L("9", l9(ctx, x8.cv()));                             // 9  RepNCSPELAN4
    auto x10 = L("10", l10(ctx, x9.cv()));                          // 10 SPPELAN
    auto x11 = L("11", l11(ctx, x10.cv()));                         // 11 PSA
    auto x13 = L("12-13", concat2(ctx, upsample2x(ctx, x11.cv()).cv(), x7.cv()));  // 12 Upsample, 13 Concat[12, 7]
    auto x14 = L("14", l14(ctx, x13.cv()));                         // 14 RepNCSPELAN4
    auto x16 = L("15-16", concat2(ctx, upsample2x(ctx, x14.cv()).cv(), x5.cv()));  // 15 Upsample, 16 Concat[15, 5]
    auto x17 = L("17", l17(ctx, x16.cv()));                         // 17 RepNCSPELAN4B     (P3 out)
    auto x19 = L("18-19", concat2(ctx, l18(ctx, x17.cv()).cv(), x14.cv()));        // 18 ADown, 19 Concat[18, 14]
    auto x20 = L("20", l20(ctx, x19.cv()));                         // 20 RepNCSPELAN4B     (P4 out)
    auto x22 = L("21-22", concat2(ctx, l21(ctx, x20.cv()).cv(), x11.cv()));        // 21 ADown, 22 Concat[21, 11]
    auto x23 = L("23", l23(ctx, x22.cv()));                         // 23 RepNCSPELAN4B     (P5 out)
    auto x44 = L("43-44", upsample2x(ctx, l43(ctx, x17.cv()).cv()));    // 43 RepNCSPELAN4, 44 Upsample
    auto x46 = L("45-46", l46(ctx, l45(ctx, x44.cv()).cv()));           // 45 DWConv, 46 Conv   (semantic input)
    auto x54 = L("51-54", l54(ctx, l53(ctx, upsample2x(ctx, l51(ctx, x17.cv()).cv()).cv()).cv()));  // 51-54 (prototype input)
    const std::array<float, 3> strides{float(x.h / x17.shape().h), float(x.h / x20.shape().h), float(x.h / x23.shape().h)};
    auto h = L("55", head(ctx, {x17.cv(), x20.cv(), x23.cv()}, x46.cv(), x54.cv(), strides, run_o2m));  // 55
    o.pred = std::move(h.pred);
    o.proto = std::move(h.proto);
    o.semantic = std::move(h.semantic);
    o.d3 = std::move(h.d3);
    o.pred_o2m = std::move(h.pred_o2m);
    if (keep_features) {
      o.x11 = std::move(x11);
      o.x17 = std::move(x17);
      o.x20 = std::move(x20);
      o.x23 = std::move(x23);
      o.x44 = std::move(x44);
    }
    return o;
  }

  // Layers, named by their gyolo.yaml index.
  conv_layer<B> l1, l2, l45, l46, l53, l54;
  rep_ncsp_elan4<B> l3, l5, l7, l9, l14, l17, l20, l23, l43, l51;
  adown<B> l4, l6, l8, l18, l21;
  sppelan<B> l10;
  psa<B> l11;
  panoptic_head<B> head;
};

}  // namespace gyolo
