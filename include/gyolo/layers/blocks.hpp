// GELAN blocks of Generalist YOLO (upstream models/common.py): RepNBottleneck, RepNCSP,
// RepNCSPELAN4(B), ADown, SPPELAN, PSA, CBLinear/CBFuse, Upsample, Concat.
//
// Each block is one template over the backend B and the mode M (infer_mode: folded convs;
// train_mode: upstream's unfolded parameters on a tape). Its structure is written once:
//   init(...)   the constructor arguments and channel arithmetic (train mode builds from it;
//               the inference form is fold()ed from a train-mode block),
//   fields(...) the names of its members (loading, saving, gradients, fold derive from it),
//   operator()  the forward pass, for both modes (op:: dispatches on the context type).
// Concats are realised by writing the producers straight into channel slices of one buffer.
#pragma once
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "gyolo/layers/conv_train.hpp"
#include "gyolo/model/config.hpp"
#include "gyolo/nn/ops.hpp"

namespace gyolo {

inline std::string cat(const std::string& p, const std::string& s) { return p + "." + s; }

template <class... S> constexpr auto& first_of(auto& a, S&...) { return a; }

/// RepNCSP(c1, c2, n): cv3(concat[m(cv1(x)), cv2(x)]), m = n x RepNBottleneck(c_, c_).
template <class B, class M = infer_mode>
struct rep_ncsp {
  using T = mode_types<B, M>;
  typename T::conv cv1, cv2, cv3;
  struct bottleneck {  // RepNBottleneck: x + cv2(cv1(x)), cv1 = RepConvN, cv2 = Conv 3x3
    typename T::repconv cv1;
    typename T::conv cv2;
    template <class V, class... S> static void fields(V& v, S&... s) {
      v.child("cv1", s.cv1...);
      v.child("cv2", s.cv2...);
    }
  };
  std::vector<bottleneck> m;
  int c_ = 0;

  void init(int c1, int c2, int n) {
    c_ = int(0.5 * c2);
    cv1.init_bn(c1, c_, 1, 1, 1, act::silu);
    cv2.init_bn(c1, c_, 1, 1, 1, act::silu);
    cv3.init_bn(2 * c_, c2, 1, 1, 1, act::silu);
    m.resize(std::size_t(n));
    for (auto& b : m) {
      b.cv1.init(c_, c_);
      b.cv2.init_bn(c_, c_, 3, 1, 1, act::silu);
    }
  }
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.value("c_", s.c_...);
    v.child("cv1", s.cv1...);
    v.child("cv2", s.cv2...);
    v.child("cv3", s.cv3...);
    v.child("m", s.m...);
  }

  static void run_bottleneck(typename T::ctx& ctx, const bottleneck& b, typename T::in x, typename T::out y) {
    auto t = b.cv1(ctx, x);
    b.cv2.forward(ctx, t.cv(), y, x);
  }
  auto operator()(typename T::ctx& ctx, typename T::in x) const {
    auto z = op::alloc(ctx, {x.n, 2 * c_, x.h, x.w});
    cv2.forward(ctx, x, z.v().slice(c_, c_));
    auto a = cv1(ctx, x);
    for (std::size_t j = 0; j < m.size(); ++j) {
      if (j + 1 == m.size()) {
        run_bottleneck(ctx, m[j], a.cv(), z.v().slice(0, c_));
      } else {
        auto nx = op::alloc(ctx, a.shape());
        run_bottleneck(ctx, m[j], a.cv(), nx.v());
        a = std::move(nx);
      }
    }
    return cv3(ctx, z.cv());
  }
};

/// RepNCSPELAN4(c1, c2, c3, c4, c5) and, with `split`, RepNCSPELAN4B: its cv4 and cvcap read the
/// same concat (cvcap through a stop-gradient) and their outputs are concatenated; the inference
/// form merges them into one conv.
template <class B, class M = infer_mode>
struct rep_ncsp_elan4 {
  using T = mode_types<B, M>;
  typename T::conv cv1, cv2_1, cv3_1, cv4, cvcap;
  rep_ncsp<B, M> cv2_0, cv3_0;
  int c3 = 0, c4 = 0, split = 0;

  void init(int c1, int c2, int c3_, int c4_, int c5, bool split_head) {
    c3 = c3_;
    c4 = c4_;
    split = split_head;
    cv1.init_bn(c1, c3, 1, 1, 1, act::silu);
    cv2_0.init(c3 / 2, c4, c5);
    cv2_1.init_bn(c4, c4, 3, 1, 1, act::silu);
    cv3_0.init(c4, c4, c5);
    cv3_1.init_bn(c4, c4, 3, 1, 1, act::silu);
    cv4.init_bn(c3 + 2 * c4, split ? c2 / 2 : c2, 1, 1, 1, act::silu);
    if (split) cvcap.init_bn(c3 + 2 * c4, c2 / 2, 1, 1, 1, act::silu);
  }
  void init(int c1, const elan_args& e, bool split_head) { init(c1, e.c2, e.c3, e.c4, e.c5, split_head); }
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.value("c3", s.c3...);
    v.value("c4", s.c4...);
    v.value("split", s.split...);
    v.child("cv1", s.cv1...);
    v.child("cv2.0", s.cv2_0...);
    v.child("cv2.1", s.cv2_1...);
    v.child("cv3.0", s.cv3_0...);
    v.child("cv3.1", s.cv3_1...);
    v.child("cv4", s.cv4...);
    if (first_of(s...).split) v.child("cvcap", s.cvcap...);
  }
  /// Inference form: cvcap's outputs appended to cv4's.
  void after_fold() {
    if constexpr (!is_train_mode<M>) {
      if (split) {
        cv4.append_outputs(cvcap);
        cvcap = {};
      }
    }
  }
  int out_channels() const {
    if constexpr (is_train_mode<M>) return cv4.d.cout + (split ? cvcap.d.cout : 0);
    return cv4.d.cout;
  }
  auto operator()(typename T::ctx& ctx, typename T::in x) const {
    auto y = op::alloc(ctx, {x.n, c3 + 2 * c4, x.h, x.w});
    auto Y = y.v();
    cv1.forward(ctx, x, Y.slice(0, c3));
    auto t2 = cv2_0(ctx, Y.slice(c3 / 2, c3 / 2));
    cv2_1.forward(ctx, t2.cv(), Y.slice(c3, c4));
    auto t3 = cv3_0(ctx, Y.slice(c3, c4));
    cv3_1.forward(ctx, t3.cv(), Y.slice(c3 + c4, c4));
    if constexpr (is_train_mode<M>) {
      if (split) {
        const int h = cv4.d.cout;
        auto o = op::alloc(ctx, {x.n, out_channels(), x.h, x.w});
        cv4.forward(ctx, y.cv(), o.v().slice(0, h));
        cvcap.forward(ctx, y.cv().detach(), o.v().slice(h, cvcap.d.cout));
        return o;
      }
    }
    return cv4(ctx, y.cv());
  }
};

/// ADown(c1, c2): avgpool 2x2/s1, then [cv1 3x3/s2 on first half, cv2 1x1 on maxpool 3/2/1 of second half].
template <class B, class M = infer_mode>
struct adown {
  using T = mode_types<B, M>;
  typename T::conv cv1, cv2;
  int c1 = 0, c2 = 0;
  void init(int c1_, int c2_) {
    c1 = c1_;
    c2 = c2_;
    cv1.init_bn(c1 / 2, c2 / 2, 3, 2, 1, act::silu);
    cv2.init_bn(c1 / 2, c2 / 2, 1, 1, 1, act::silu);
  }
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.value("c1", s.c1...);
    v.value("c2", s.c2...);
    v.child("cv1", s.cv1...);
    v.child("cv2", s.cv2...);
  }
  auto operator()(typename T::ctx& ctx, typename T::in x) const {
    GYOLO_CHECK(x.h >= 2 && x.w >= 2, "ADown: input too small " + x.shape().str());
    auto a = op::alloc(ctx, {x.n, x.c, x.h - 1, x.w - 1});
    op::avgpool2x2s1(ctx, x, a.v());
    const auto av = a.cv();
    const int oh = (a.shape().h + 2 - 3) / 2 + 1, ow = (a.shape().w + 2 - 3) / 2 + 1;
    auto mp = op::alloc(ctx, {x.n, c1 / 2, oh, ow});
    op::maxpool2d(ctx, av.slice(c1 / 2, c1 / 2), mp.v(), 3, 2, 1);
    auto y = op::alloc(ctx, {x.n, c2, oh, ow});
    cv1.forward(ctx, av.slice(0, c1 / 2), y.v().slice(0, c2 / 2));
    cv2.forward(ctx, mp.cv(), y.v().slice(c2 / 2, c2 / 2));
    return y;
  }
};

/// SPPELAN(c1, c2, c3): cv5(concat[y0, p(y0), p(p(y0)), p(p(p(y0)))]), p = maxpool 5/1/2.
template <class B, class M = infer_mode>
struct sppelan {
  using T = mode_types<B, M>;
  typename T::conv cv1, cv5;
  int c3 = 0;
  void init(int c1, int c2, int c3_) {
    c3 = c3_;
    cv1.init_bn(c1, c3, 1, 1, 1, act::silu);
    cv5.init_bn(4 * c3, c2, 1, 1, 1, act::silu);
  }
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.value("c3", s.c3...);
    v.child("cv1", s.cv1...);
    v.child("cv5", s.cv5...);
  }
  auto operator()(typename T::ctx& ctx, typename T::in x) const {
    auto y = op::alloc(ctx, {x.n, 4 * c3, x.h, x.w});
    auto Y = y.v();
    cv1.forward(ctx, x, Y.slice(0, c3));
    for (int i = 1; i < 4; ++i) op::maxpool2d(ctx, Y.slice((i - 1) * c3, c3), Y.slice(i * c3, c3), 5, 1, 2);
    return cv5(ctx, y.cv());
  }
};

/// YOLOv10 PSA(c1, c1): a, b = split(cv1(x)); b += Attention(b); b += FFN(b); cv2(concat[a, b]).
template <class B, class M = infer_mode>
struct psa {
  using T = mode_types<B, M>;
  typename T::conv cv1, cv2, qkv, proj, pe, ffn0, ffn1;
  int c = 0, heads = 0, key_dim = 0, head_dim = 0;
  void init(int c1, int c2) {
    GYOLO_CHECK(c1 == c2, "PSA requires c1 == c2");
    c = c1 / 2;
    heads = c / 64;
    GYOLO_CHECK(heads > 0, "PSA: " + std::to_string(c) + " channels give zero attention heads");
    head_dim = c / heads;
    key_dim = int(head_dim * 0.5);
    const int h = c + key_dim * heads * 2;
    cv1.init_bn(c1, 2 * c, 1, 1, 1, act::silu);
    cv2.init_bn(2 * c, c1, 1, 1, 1, act::silu);
    qkv.init_bn(c, h, 1, 1, 1, act::none);
    proj.init_bn(c, c, 1, 1, 1, act::none);
    pe.init_bn(c, c, 3, 1, c, act::none);
    ffn0.init_bn(c, 2 * c, 1, 1, 1, act::silu);
    ffn1.init_bn(2 * c, c, 1, 1, 1, act::none);
  }
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.value("c", s.c...);
    v.value("heads", s.heads...);
    v.value("key_dim", s.key_dim...);
    v.value("head_dim", s.head_dim...);
    v.child("cv1", s.cv1...);
    v.child("cv2", s.cv2...);
    v.child("attn.qkv", s.qkv...);
    v.child("attn.proj", s.proj...);
    v.child("attn.pe", s.pe...);
    v.child("ffn.0", s.ffn0...);
    v.child("ffn.1", s.ffn1...);
  }
  float scale() const { return float(std::pow(double(key_dim), -0.5)); }
  /// Attention(b) (+ residual when given): proj(attn(q, k, v) + pe(v)).
  auto attention(typename T::ctx& ctx, typename T::in b, typename T::in residual = {}) const {
    auto q = qkv(ctx, b);
    auto att = op::alloc(ctx, {b.n, c, b.h, b.w});
    op::psa_attention(ctx, q.cv(), att.v(), heads, key_dim, head_dim, scale());
    // v of head h sits at channel h*(2kd+hd) + 2kd of qkv; pe is depthwise over v's channels.
    auto vv = op::alloc(ctx, {b.n, c, b.h, b.w});
    const int blk = 2 * key_dim + head_dim;
    for (int h = 0; h < heads; ++h) op::copy(ctx, q.cv().slice(h * blk + 2 * key_dim, head_dim), vv.v().slice(h * head_dim, head_dim));
    auto z = pe(ctx, vv.cv(), att.cv());
    return proj(ctx, z.cv(), residual);
  }
  auto operator()(typename T::ctx& ctx, typename T::in x) const {
    auto t = cv1(ctx, x);
    auto b2 = attention(ctx, t.cv().slice(c, c), t.cv().slice(c, c));
    auto f = ffn0(ctx, b2.cv());
    auto u = op::alloc(ctx, {x.n, 2 * c, x.h, x.w});
    op::copy(ctx, t.cv().slice(0, c), u.v().slice(0, c));
    ffn1.forward(ctx, f.cv(), u.v().slice(c, c), b2.cv());
    return cv2(ctx, u.cv());
  }
};

/// CBLinear(c1, c2s): a 1x1 Conv2d with bias whose output is split into chunks (training only).
template <class B, class M = infer_mode>
struct cb_linear {
  using T = mode_types<B, M>;
  typename T::conv conv;
  cbl_args c2s;
  void init(int c1, const cbl_args& a) {
    c2s = a;
    conv.init_bias(c1, a.sum(), 1, 1, 1);
  }
  template <class V, class... S> static void fields(V& v, S&... s) { v.child("conv", s.conv...); }
  int offset(int i) const {
    int o = 0;
    for (int k = 0; k < i; ++k) o += c2s.c[std::size_t(k)];
    return o;
  }
  auto operator()(typename T::ctx& ctx, typename T::in x) const { return conv(ctx, x); }
};

/// CBFuse: sum of nearest-resized chunks and the target x (in that order, as upstream's stack+sum).
template <class B>
tvar cb_fuse(tape<B>& t, const std::vector<tview>& chunks, tview x) {
  auto y = t.alloc(x.shape());
  for (int n = 0; n < x.n; ++n) std::fill(y.t.image(n), y.t.image(n) + x.c * x.plane(), 0.0f);
  for (auto& c : chunks) {
    auto r = t.alloc(x.shape());
    op::resize_nearest(t, c, r.t);
    op::add_into(t, r.t, y.t);
  }
  op::add_into(t, x, y.t);
  return y;
}

template <class Ctx, class X>
auto upsample2x(Ctx& ctx, X x) {
  auto y = op::alloc(ctx, {x.n, x.c, 2 * x.h, 2 * x.w});
  op::upsample2x(ctx, x, y.v());
  return y;
}

template <class Ctx, class X>
auto concat2(Ctx& ctx, X a, X b) {
  GYOLO_CHECK(a.n == b.n && a.h == b.h && a.w == b.w, "Concat: spatial shapes differ: " + a.shape().str() + " vs " + b.shape().str());
  auto y = op::alloc(ctx, {a.n, a.c + b.c, a.h, a.w});
  op::copy(ctx, a, y.v().slice(0, a.c));
  op::copy(ctx, b, y.v().slice(a.c, b.c));
  return y;
}

}  // namespace gyolo
