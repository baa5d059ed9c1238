// The vision graph of Generalist YOLO: layers 0-23, 43-46, 51-54 and the inference part of head 55.
// forward() is ordinary variable flow that mirrors gyolo.yaml's layer indices.
#pragma once
#include <array>
#include <initializer_list>
#include <numeric>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "gyolo/core/compiled_once.hpp"
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

/// What a train-mode forward returns: head 55's training outputs and the caption head's inputs.
template <class B>
struct vision_train_outputs {
  typename panoptic_head<B, train_mode>::train_outputs head;
  tvar x11, x17, x20, x23, x44;
};

template <class B, class M = infer_mode>
class vision_graph {
 public:
  using T = mode_types<B, M>;
  variant_config cfg;

  /// Builds the train-mode graph of variant c (parameters zero, BN identity); without `aux` the
  /// auxiliary branch is left out (loading for inference).
  GYOLO_COMPILED_ONCE void init(const variant_config& c, bool aux = true)
    requires(is_train_mode<M>)
  {
    cfg = c;
    l1.init_bn(3, c.conv1, 3, 2, 1, act::silu);
    l2.init_bn(c.conv1, c.conv2, 3, 2, 1, act::silu);
    l3.init(c.conv2, c.e3, false);
    l4.init(c.e3.c2, c.ad4);
    l5.init(c.ad4, c.e5, false);
    l6.init(c.e5.c2, c.ad6);
    l7.init(c.ad6, c.e7, false);
    l8.init(c.e7.c2, c.ad8);
    l9.init(c.ad8, c.e9, false);
    l10.init(c.e9.c2, c.spp_c2, c.spp_c3);
    l11.init(c.spp_c2, c.psa);
    l14.init(c.psa + c.e7.c2, c.e14, false);
    l17.init(c.e14.c2 + c.e5.c2, c.e17, true);
    l18.init(c.e17.c2, c.ad18);
    l20.init(c.ad18 + c.e14.c2, c.e20, true);
    l21.init(c.e20.c2, c.ad21);
    l23.init(c.ad21 + c.psa, c.e23, true);
    if (aux) {
      l24.init(c.e5.c2, c.cbl24);
      l25.init(c.e7.c2, c.cbl25);
      l26.init(c.e9.c2, c.cbl26);
      l27.init_bn(3, c.conv27, 3, 2, 1, act::silu);
      l28.init_bn(c.conv27, c.conv28, 3, 2, 1, act::silu);
      l29.init(c.conv28, c.e29, false);
      l30.init(c.e29.c2, c.ad30);
      l32.init(c.ad30, c.e32, false);
      l33.init(c.e32.c2, c.ad33);
      l35.init(c.ad33, c.e35, false);
      l36.init(c.e35.c2, c.ad36);
      l38.init(c.ad36, c.e38, false);
      l39.init(c.e32.c2, c.e39, false);
      l41.init_bn(c.e39.c2, c.dw41, 3, 1, std::gcd(c.e39.c2, c.dw41), act::silu);
      l42.init_bn(c.dw41, c.conv42, 1, 1, 1, act::silu);
      l47.init(c.e32.c2, c.e47, false);
      l49.init_bn(c.e47.c2, c.dw49, 3, 1, std::gcd(c.e47.c2, c.dw49), act::silu);
      l50.init_bn(c.dw49, c.conv50, 1, 1, 1, act::silu);
    }
    l43.init(c.e17.c2, c.e43, false);
    l45.init_bn(c.e43.c2, c.dw45, 3, 1, std::gcd(c.e43.c2, c.dw45), act::silu);
    l46.init_bn(c.dw45, c.conv46, 1, 1, 1, act::silu);
    l51.init(c.e17.c2, c.e51, false);
    l53.init_bn(c.e51.c2, c.dw53, 3, 1, std::gcd(c.e51.c2, c.dw53), act::silu);
    l54.init_bn(c.dw53, c.conv54, 1, 1, 1, act::silu);
    head.init(c.nc, c.sem_nc, c.nm, {c.e32.c2, c.e35.c2, c.e38.c2}, {c.e17.c2, c.e20.c2, c.e23.c2}, c.conv42, c.conv46,
              c.conv50, c.conv54);
  }

  /// Every layer by its gyolo.yaml index ("model.<i>"); the auxiliary branch marked as such.
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.value("cfg", s.cfg...);
    v.child("1", s.l1...);
    v.child("2", s.l2...);
    v.child("3", s.l3...);
    v.child("4", s.l4...);
    v.child("5", s.l5...);
    v.child("6", s.l6...);
    v.child("7", s.l7...);
    v.child("8", s.l8...);
    v.child("9", s.l9...);
    v.child("10", s.l10...);
    v.child("11", s.l11...);
    v.child("14", s.l14...);
    v.child("17", s.l17...);
    v.child("18", s.l18...);
    v.child("20", s.l20...);
    v.child("21", s.l21...);
    v.child("23", s.l23...);
    v.aux("24", s.l24...);
    v.aux("25", s.l25...);
    v.aux("26", s.l26...);
    v.aux("27", s.l27...);
    v.aux("28", s.l28...);
    v.aux("29", s.l29...);
    v.aux("30", s.l30...);
    v.aux("32", s.l32...);
    v.aux("33", s.l33...);
    v.aux("35", s.l35...);
    v.aux("36", s.l36...);
    v.aux("38", s.l38...);
    v.aux("39", s.l39...);
    v.aux("41", s.l41...);
    v.aux("42", s.l42...);
    v.child("43", s.l43...);
    v.child("45", s.l45...);
    v.child("46", s.l46...);
    v.aux("47", s.l47...);
    v.aux("49", s.l49...);
    v.aux("50", s.l50...);
    v.child("51", s.l51...);
    v.child("53", s.l53...);
    v.child("54", s.l54...);
    v.child("55", s.head...);
  }

  /// Inference form from a weight source: the train-mode graph (without the auxiliary branch)
  /// reads upstream's unfolded tensors and is folded (Conv+BN, RepConvN, cv4+cvcap).
  GYOLO_COMPILED_ONCE void load(weight_source& ws, const variant_config& c, bool with_o2m)
    requires(!is_train_mode<M>)
  {
    // Device backends fold on the host: the reference backend's train-mode graph reads the
    // tensors, and fold_leaf uploads each folded layer (storage<B>::upload).
    using host_b = std::conditional_t<is_host_backend<B>, B, reference>;
    vision_graph<host_b, train_mode> t;
    t.init(c, false);
    nn::load_tensors(t, ws, "model", nn::parts{false, with_o2m});
    nn::fold_walker w;
    w.p.o2m = with_o2m;
    w.fold_into(t, *this);
  }

  /// x: [B, 3, H, W] RGB in [0, 1]; H and W multiples of 32.
  GYOLO_COMPILED_ONCE vision_outputs<B> forward(context<B>& ctx, cbview<B> x, bool run_o2m = false, bool keep_features = false) const
    requires(!is_train_mode<M>)
  {
    return run(ctx, x, run_o2m, keep_features);
  }

  /// Train-mode forward of layers 0-55 (auxiliary branch included): head 55's training outputs.
  GYOLO_COMPILED_ONCE vision_train_outputs<B> forward(tape<B>& t, tview x) const
    requires(is_train_mode<M>)
  {
    return run(t, x, false, true);
  }

 private:
  /// The graph, written once for both modes: gyolo.yaml's layers in order. Ctx is a context<B>
  /// (inference: intermediates are freed as soon as they are used) or a tape<B> (train mode: the
  /// tape keeps every activation for backward; the auxiliary branch 24-42, 47-50 runs and head 55
  /// returns its training outputs). L() marks the end of a layer for the per-layer profiles.
  template <class Ctx, class X>
  auto run(Ctx& c, X x, [[maybe_unused]] bool run_o2m, [[maybe_unused]] bool keep_features) const {
    constexpr bool train = is_train_mode<M>;
    GYOLO_CHECK(x.c == 3, "input must have 3 channels, got " + std::to_string(x.c));
    GYOLO_CHECK(x.h >= 32 && x.w >= 32 && x.h % 32 == 0 && x.w % 32 == 0,
                "input height and width must be positive multiples of 32, got " + std::to_string(x.h) + "x" + std::to_string(x.w));
    if (auto* p = c.profiler()) p->start();
    auto L = [&](const char* layer, auto&& v) { return c.layer(layer, std::move(v)); };
    auto x1 = L("1", l1(c, x));                                     // 1  Conv 3/2
    auto x2 = L("2", l2(c, x1.cv()));                               // 2  Conv 3/2
    x1 = {};
    auto x3 = L("3", l3(c, x2.cv()));                               // 3  RepNCSPELAN4
    auto x4 = L("4", l4(c, x3.cv()));                               // 4  ADown
    auto x5 = L("5", l5(c, x4.cv()));                               // 5  RepNCSPELAN4      (P3)
    auto x6 = L("6", l6(c, x5.cv()));                               // 6  ADown
    auto x7 = L("7", l7(c, x6.cv()));                               // 7  RepNCSPELAN4      (P4)
    auto x8 = L("8", l8(c, x7.cv()));                               // 8  ADown
    auto x9 = L("9", l9(c, x8.cv()));                               // 9  RepNCSPELAN4
    auto x10 = L("10", l10(c, x9.cv()));                            // 10 SPPELAN
    auto x11 = L("11", l11(c, x10.cv()));                           // 11 PSA
    auto x13 = L("12-13", concat2(c, upsample2x(c, x11.cv()).cv(), x7.cv()));  // 12 Upsample, 13 Concat[12, 7]
    auto x14 = L("14", l14(c, x13.cv()));                           // 14 RepNCSPELAN4
    auto x16 = L("15-16", concat2(c, upsample2x(c, x14.cv()).cv(), x5.cv()));  // 15 Upsample, 16 Concat[15, 5]
    auto x17 = L("17", l17(c, x16.cv()));                           // 17 RepNCSPELAN4B     (P3 out)
    auto x19 = L("18-19", concat2(c, l18(c, x17.cv()).cv(), x14.cv()));        // 18 ADown, 19 Concat[18, 14]
    auto x20 = L("20", l20(c, x19.cv()));                           // 20 RepNCSPELAN4B     (P4 out)
    auto x22 = L("21-22", concat2(c, l21(c, x20.cv()).cv(), x11.cv()));        // 21 ADown, 22 Concat[21, 11]
    auto x23 = L("23", l23(c, x22.cv()));                           // 23 RepNCSPELAN4B     (P5 out)
    // The auxiliary reversible branch's outputs (train mode only; an empty struct otherwise).
    struct aux_features {
      tvar x32, x35, x38, x42, x50;
    };
    [[maybe_unused]] std::conditional_t<train, aux_features, std::monostate> aux{};
    if constexpr (train) {
      auto c24 = L("24", l24(c, x5.cv()));                          // 24 CBLinear(5)
      auto c25 = L("25", l25(c, x7.cv()));                          // 25 CBLinear(7)
      auto c26 = L("26", l26(c, x9.cv()));                          // 26 CBLinear(9)
      auto chunk = [](const cb_linear<B, M>& l, const tvar& v, int i) { return v.cv().slice(l.offset(i), l.c2s.c[std::size_t(i)]); };
      // cb_fuse takes a std::vector: reuse one (no allocation per step)
      auto cb_fuse = [this](tape<B>& tp, std::initializer_list<tview> chunks, tview xin) {
        fuse_in_.assign(chunks);
        return gyolo::cb_fuse(tp, fuse_in_, xin);
      };
      auto x27 = L("27", l27(c, x));                                // 27 Conv 3/2 (from 0)
      auto x28 = L("28", l28(c, x27.cv()));                         // 28 Conv 3/2
      auto x29 = L("29", l29(c, x28.cv()));                         // 29 RepNCSPELAN4
      auto x30 = L("30", l30(c, x29.cv()));                         // 30 ADown
      auto x31 = L("31", cb_fuse(c, {chunk(l24, c24, 0), chunk(l25, c25, 0), chunk(l26, c26, 0)}, x30.cv()));  // 31 CBFuse
      aux.x32 = L("32", l32(c, x31.cv()));                          // 32 RepNCSPELAN4
      auto x33 = L("33", l33(c, aux.x32.cv()));                     // 33 ADown
      auto x34 = L("34", cb_fuse(c, {chunk(l25, c25, 1), chunk(l26, c26, 1)}, x33.cv()));  // 34 CBFuse
      aux.x35 = L("35", l35(c, x34.cv()));                          // 35 RepNCSPELAN4
      auto x36 = L("36", l36(c, aux.x35.cv()));                     // 36 ADown
      auto x37 = L("37", cb_fuse(c, {chunk(l26, c26, 2)}, x36.cv()));  // 37 CBFuse
      aux.x38 = L("38", l38(c, x37.cv()));                          // 38 RepNCSPELAN4
      aux.x42 = L("39-42", l42(c, l41(c, upsample2x(c, l39(c, aux.x32.cv()).cv()).cv()).cv()));  // 39-42 (aux semantic input)
    }
    auto x44 = L("43-44", upsample2x(c, l43(c, x17.cv()).cv()));     // 43 RepNCSPELAN4, 44 Upsample
    auto x46 = L("45-46", l46(c, l45(c, x44.cv()).cv()));            // 45 DWConv, 46 Conv   (semantic input)
    if constexpr (train)
      aux.x50 = L("47-50", l50(c, l49(c, upsample2x(c, l47(c, aux.x32.cv()).cv()).cv()).cv()));  // 47-50 (aux prototype input)
    auto x54 = L("51-54", l54(c, l53(c, upsample2x(c, l51(c, x17.cv()).cv()).cv()).cv()));  // 51-54 (prototype input)
    if constexpr (train) {
      vision_train_outputs<B> o;
      o.head = L("55", head(c, {aux.x32.cv(), aux.x35.cv(), aux.x38.cv()}, {x17.cv(), x20.cv(), x23.cv()}, aux.x42.cv(), x46.cv(),
                            aux.x50.cv(), x54.cv()));  // 55
      o.x11 = x11;
      o.x17 = x17;
      o.x20 = x20;
      o.x23 = x23;
      o.x44 = x44;
      return o;
    } else {
      const std::array<float, 3> strides{float(x.h / x17.shape().h), float(x.h / x20.shape().h), float(x.h / x23.shape().h)};
      auto h = L("55", head(c, {x17.cv(), x20.cv(), x23.cv()}, x46.cv(), x54.cv(), strides, run_o2m));  // 55
      vision_outputs<B> o;
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
  }

 public:
  // Layers, named by their gyolo.yaml index.
  typename T::conv l1, l2, l45, l46, l53, l54;
  rep_ncsp_elan4<B, M> l3, l5, l7, l9, l14, l17, l20, l23, l43, l51;
  adown<B, M> l4, l6, l8, l18, l21;
  sppelan<B, M> l10;
  psa<B, M> l11;
  panoptic_head<B, M> head;
  // Auxiliary reversible branch (training only; empty in the inference form).
  cb_linear<B, M> l24, l25, l26;
  typename T::conv l27, l28, l41, l42, l49, l50;
  rep_ncsp_elan4<B, M> l29, l32, l35, l38, l39, l47;
  adown<B, M> l30, l33, l36;

 private:
  mutable std::vector<tview> fuse_in_;  // CBFuse inputs of the train-mode forward, reused across steps
};

/// Compiled once in gyolo's library (src/graph_cpu.cpp).
extern template class vision_graph<cpu, infer_mode>;
extern template class vision_graph<cpu, train_mode>;

}  // namespace gyolo
