// GELAN blocks of Generalist YOLO (upstream models/common.py): RepNBottleneck, RepNCSP,
// RepNCSPELAN4(B), ADown, SPPELAN, PSA, Upsample, Concat. Concats are realised by writing the
// producers straight into channel slices of one buffer.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "gyolo/layers/conv.hpp"

namespace gyolo {

inline std::string cat(const std::string& p, const std::string& s) { return p + "." + s; }

/// RepNCSP(c1, c2, n): cv3(concat[m(cv1(x)), cv2(x)]), m = n x RepNBottleneck(c_, c_).
template <class B>
struct rep_ncsp {
  conv_layer<B> cv1, cv2, cv3;
  struct bottleneck {
    conv_layer<B> cv1, cv2;  // RepConvN, Conv 3x3
  };
  std::vector<bottleneck> m;
  int c_ = 0;

  void load(weight_source& ws, const std::string& p, int c1, int c2, int n) {
    c_ = int(0.5 * c2);
    cv1.load_conv_bn(ws, cat(p, "cv1"), c1, c_, 1, 1, 1, act::silu);
    cv2.load_conv_bn(ws, cat(p, "cv2"), c1, c_, 1, 1, 1, act::silu);
    cv3.load_conv_bn(ws, cat(p, "cv3"), 2 * c_, c2, 1, 1, 1, act::silu);
    m.resize(std::size_t(n));
    for (int j = 0; j < n; ++j) {
      const auto q = p + ".m." + std::to_string(j);
      m[j].cv1.load_repconvn(ws, cat(q, "cv1"), c_, c_);
      m[j].cv2.load_conv_bn(ws, cat(q, "cv2"), c_, c_, 3, 1, 1, act::silu);
    }
  }
  /// One RepNBottleneck: x + cv2(cv1(x)) (shortcut, c1 == c2).
  static void run_bottleneck(context<B>& ctx, const bottleneck& b, cview<float> x, view<float> y) {
    auto t = b.cv1(ctx, x);
    b.cv2.forward(ctx, t.cv(), y, x);
  }
  dtensor<B> operator()(context<B>& ctx, cview<float> x) const {
    dtensor<B> z({x.n, 2 * c_, x.h, x.w});
    cv2.forward(ctx, x, z.v().slice(c_, c_));
    auto a = cv1(ctx, x);
    for (std::size_t j = 0; j < m.size(); ++j) {
      auto dst = j + 1 == m.size() ? z.v().slice(0, c_) : view<float>{};
      if (j + 1 == m.size()) {
        run_bottleneck(ctx, m[j], a.cv(), dst);
      } else {
        dtensor<B> nx(a.shape());
        run_bottleneck(ctx, m[j], a.cv(), nx.v());
        a = std::move(nx);
      }
    }
    return cv3(ctx, z.cv());
  }
};

/// RepNCSPELAN4(c1, c2, c3, c4, c5) and, with `split_head`, RepNCSPELAN4B (cv4 + cvcap, whose
/// outputs are concatenated: folded into one conv at load).
template <class B>
struct rep_ncsp_elan4 {
  conv_layer<B> cv1, cv2_1, cv3_1, cv4;
  rep_ncsp<B> cv2_0, cv3_0;
  int c3 = 0, c4 = 0;

  void load(weight_source& ws, const std::string& p, int c1, int c2, int c3_, int c4_, int c5, bool split_head) {
    c3 = c3_;
    c4 = c4_;
    cv1.load_conv_bn(ws, cat(p, "cv1"), c1, c3, 1, 1, 1, act::silu);
    cv2_0.load(ws, cat(p, "cv2.0"), c3 / 2, c4, c5);
    cv2_1.load_conv_bn(ws, cat(p, "cv2.1"), c4, c4, 3, 1, 1, act::silu);
    cv3_0.load(ws, cat(p, "cv3.0"), c4, c4, c5);
    cv3_1.load_conv_bn(ws, cat(p, "cv3.1"), c4, c4, 3, 1, 1, act::silu);
    if (split_head) {
      cv4.load_conv_bn(ws, cat(p, "cv4"), c3 + 2 * c4, c2 / 2, 1, 1, 1, act::silu);
      conv_layer<B> cap;
      cap.load_conv_bn(ws, cat(p, "cvcap"), c3 + 2 * c4, c2 / 2, 1, 1, 1, act::silu);
      cv4.append_outputs(cap);
    } else {
      cv4.load_conv_bn(ws, cat(p, "cv4"), c3 + 2 * c4, c2, 1, 1, 1, act::silu);
    }
  }
  int out_channels() const { return cv4.d.cout; }
  dtensor<B> operator()(context<B>& ctx, cview<float> x) const {
    dtensor<B> y({x.n, c3 + 2 * c4, x.h, x.w});
    auto Y = y.v();
    cv1.forward(ctx, x, Y.slice(0, c3));
    auto t2 = cv2_0(ctx, Y.slice(c3 / 2, c3 / 2));
    cv2_1.forward(ctx, t2.cv(), Y.slice(c3, c4));
    auto t3 = cv3_0(ctx, Y.slice(c3, c4));
    cv3_1.forward(ctx, t3.cv(), Y.slice(c3 + c4, c4));
    return cv4(ctx, y.cv());
  }
};

/// ADown(c1, c2): avgpool 2x2/s1, then [cv1 3x3/s2 on first half, cv2 1x1 on maxpool 3/2/1 of second half].
template <class B>
struct adown {
  conv_layer<B> cv1, cv2;
  int c1 = 0, c2 = 0;
  void load(weight_source& ws, const std::string& p, int c1_, int c2_) {
    c1 = c1_;
    c2 = c2_;
    cv1.load_conv_bn(ws, cat(p, "cv1"), c1 / 2, c2 / 2, 3, 2, 1, act::silu);
    cv2.load_conv_bn(ws, cat(p, "cv2"), c1 / 2, c2 / 2, 1, 1, 1, act::silu);
  }
  dtensor<B> operator()(context<B>& ctx, cview<float> x) const {
    GYOLO_CHECK(x.h >= 2 && x.w >= 2, "ADown: input too small " + x.shape().str());
    dtensor<B> a({x.n, x.c, x.h - 1, x.w - 1});
    kernels<B>::avgpool2x2s1(ctx, x, a.v());
    const auto av = a.cv();
    const int oh = (a.shape().h + 2 - 3) / 2 + 1, ow = (a.shape().w + 2 - 3) / 2 + 1;
    dtensor<B> mp({x.n, c1 / 2, oh, ow});
    kernels<B>::maxpool2d(ctx, av.slice(c1 / 2, c1 / 2), mp.v(), 3, 2, 1);
    dtensor<B> y({x.n, c2, oh, ow});
    cv1.forward(ctx, av.slice(0, c1 / 2), y.v().slice(0, c2 / 2));
    cv2.forward(ctx, mp.cv(), y.v().slice(c2 / 2, c2 / 2));
    return y;
  }
};

/// SPPELAN(c1, c2, c3): cv5(concat[y0, p(y0), p(p(y0)), p(p(p(y0)))]), p = maxpool 5/1/2.
template <class B>
struct sppelan {
  conv_layer<B> cv1, cv5;
  int c3 = 0;
  void load(weight_source& ws, const std::string& p, int c1, int c2, int c3_) {
    c3 = c3_;
    cv1.load_conv_bn(ws, cat(p, "cv1"), c1, c3, 1, 1, 1, act::silu);
    cv5.load_conv_bn(ws, cat(p, "cv5"), 4 * c3, c2, 1, 1, 1, act::silu);
  }
  dtensor<B> operator()(context<B>& ctx, cview<float> x) const {
    dtensor<B> y({x.n, 4 * c3, x.h, x.w});
    auto Y = y.v();
    cv1.forward(ctx, x, Y.slice(0, c3));
    for (int i = 1; i < 4; ++i) kernels<B>::maxpool2d(ctx, Y.slice((i - 1) * c3, c3), Y.slice(i * c3, c3), 5, 1, 2);
    return cv5(ctx, y.cv());
  }
};

/// YOLOv10 PSA(c1, c1): a, b = split(cv1(x)); b += Attention(b); b += FFN(b); cv2(concat[a, b]).
template <class B>
struct psa {
  conv_layer<B> cv1, cv2, qkv, proj, pe, ffn0, ffn1;
  int c = 0, heads = 0, key_dim = 0, head_dim = 0;
  float scale = 0;
  void load(weight_source& ws, const std::string& p, int c1, int c2) {
    GYOLO_CHECK(c1 == c2, "PSA requires c1 == c2");
    c = c1 / 2;
    heads = c / 64;
    GYOLO_CHECK(heads > 0, "PSA: " + std::to_string(c) + " channels give zero attention heads");
    head_dim = c / heads;
    key_dim = int(head_dim * 0.5);
    scale = float(std::pow(double(key_dim), -0.5));
    const int h = c + key_dim * heads * 2;
    cv1.load_conv_bn(ws, cat(p, "cv1"), c1, 2 * c, 1, 1, 1, act::silu);
    cv2.load_conv_bn(ws, cat(p, "cv2"), 2 * c, c1, 1, 1, 1, act::silu);
    qkv.load_conv_bn(ws, cat(p, "attn.qkv"), c, h, 1, 1, 1, act::none);
    proj.load_conv_bn(ws, cat(p, "attn.proj"), c, c, 1, 1, 1, act::none);
    pe.load_conv_bn(ws, cat(p, "attn.pe"), c, c, 3, 1, c, act::none);
    ffn0.load_conv_bn(ws, cat(p, "ffn.0"), c, 2 * c, 1, 1, 1, act::silu);
    ffn1.load_conv_bn(ws, cat(p, "ffn.1"), 2 * c, c, 1, 1, 1, act::none);
  }
  /// Attention(b) (+ residual when given), written to a new tensor.
  dtensor<B> attention(context<B>& ctx, cview<float> b, cview<float> residual = {}) const {
    auto q = qkv(ctx, b);
    dtensor<B> att({b.n, c, b.h, b.w});
    kernels<B>::psa_attention(ctx, q.cv(), att.v(), heads, key_dim, head_dim, scale);
    // x = attn_out + pe(v), pe depthwise per head over v's channels (v of head h sits at
    // channel h*(2kd+hd) + 2kd of qkv).
    dtensor<B> z({b.n, c, b.h, b.w});
    const int blk = 2 * key_dim + head_dim;
    for (int h = 0; h < heads; ++h) {
      conv_desc dh = pe.d;  // the per-head slice of the depthwise pe conv
      dh.cin = dh.cout = dh.groups = head_dim;
      const conv_weights<> wt{pe.w.data() + std::int64_t(h) * head_dim * 9, pe.b.data() + h * head_dim};
      kernels<B>::conv2d(ctx, q.cv().slice(h * blk + 2 * key_dim, head_dim), wt, z.v().slice(h * head_dim, head_dim),
                         dh, att.cv().slice(h * head_dim, head_dim));
    }
    return proj(ctx, z.cv(), residual);
  }
  dtensor<B> operator()(context<B>& ctx, cview<float> x) const {
    auto t = cv1(ctx, x);
    auto b2 = attention(ctx, t.cv().slice(c, c), t.cv().slice(c, c));
    auto f = ffn0(ctx, b2.cv());
    ffn1.forward(ctx, f.cv(), t.v().slice(c, c), b2.cv());
    return cv2(ctx, t.cv());
  }
};

template <class B>
dtensor<B> upsample2x(context<B>& ctx, cview<float> x) {
  dtensor<B> y({x.n, x.c, 2 * x.h, 2 * x.w});
  kernels<B>::upsample2x(ctx, x, y.v());
  return y;
}

template <class B>
dtensor<B> concat2(context<B>& ctx, cview<float> a, cview<float> b) {
  GYOLO_CHECK(a.n == b.n && a.h == b.h && a.w == b.w, "Concat: spatial shapes differ: " + a.shape().str() + " vs " + b.shape().str());
  dtensor<B> y({a.n, a.c + b.c, a.h, a.w});
  kernels<B>::copy(ctx, a, y.v().slice(0, a.c));
  kernels<B>::copy(ctx, b, y.v().slice(a.c, b.c));
  return y;
}

}  // namespace gyolo
