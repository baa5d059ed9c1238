// Train-mode leaves: upstream's Conv (conv2d without bias + BatchNorm2d + SiLU; DWConv with
// groups), plain nn.Conv2d with bias, and RepConvN (two Conv branches summed, then SiLU), with
// parameters unfolded. fold_leaf() turns each into the inference conv_layer with upstream's
// fuse formulas (the same code the inference loader used before: layers/conv.hpp's fold::).
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "gyolo/layers/conv.hpp"
#include "gyolo/nn/module.hpp"
#include "gyolo/nn/tape.hpp"
#include "gyolo/train/ops_cpu.hpp"
#include "gyolo/train/ops_ref.hpp"

namespace gyolo {

namespace detail {
inline view<float> contiguous_view(float* p, shape4 s) { return {p, s.n, s.c, s.h, s.w, std::int64_t(s.c) * s.h * s.w}; }
}  // namespace detail

/// Upstream `Conv` (k, s, g; conv without bias, BatchNorm2d(eps 1e-3, momentum 0.03), SiLU or
/// identity) when `bn`; otherwise a plain nn.Conv2d with bias.
template <class B>
struct train_conv {
  conv_desc d;
  bool bn = true;
  mutable param w, bias, gamma, beta;  // forward is const; gradients and running statistics are state
  mutable buffer mean, var;

  void init_bn(int cin, int cout, int k, int s, int g, act a) {
    set_desc(cin, cout, k, s, g, a);
    bn = true;
    w.init({cout, cin / g, k, k});
    gamma.init({cout});
    beta.init({cout});
    mean.init({cout});
    var.init({cout}, 1.0f);
    std::fill(gamma.value.begin(), gamma.value.end(), 1.0f);
    gamma.norm_weight = true;
  }
  void init_bias(int cin, int cout, int k, int s, int g, act a = act::none) {
    set_desc(cin, cout, k, s, g, a);
    bn = false;
    w.init({cout, cin / g, k, k});
    bias.init({cout});
  }

  template <class V> static void fields(V& v, train_conv& s) {
    if (s.bn) {
      v.param("conv.weight", s.w);
      v.param("bn.weight", s.gamma);
      v.param("bn.bias", s.beta);
      v.buffer("bn.running_mean", s.mean);
      v.buffer("bn.running_var", s.var);
    } else {
      v.param("weight", s.w);
      v.param("bias", s.bias);
    }
  }

  shape4 out_shape(shape4 x) const { return {x.n, d.cout, d.out_h(x.h), d.out_w(x.w)}; }

  /// y = act(BN(conv(x))) [+ residual]; BN with batch statistics (and running-statistics update)
  /// when t.training (and not t.frozen_bn), else with the running statistics.
  void forward(tape<B>& t, tview x, tview y, tview residual = {}) const {
    GYOLO_CHECK(x.c == d.cin, "conv: input has " + std::to_string(x.c) + " channels, expected " + std::to_string(d.cin));
    GYOLO_CHECK(y.shape() == out_shape(x.shape()), "conv: output view " + y.shape().str() + " != " + out_shape(x.shape()).str());
    GYOLO_CHECK(d.activation == act::none || d.activation == act::silu, "train_conv: only SiLU or no activation");
    conv_desc dn = d;
    dn.activation = act::none;
    const shape4 ys = y.shape();
    const int C = d.cout;
    tvar z;  // pre-BN conv output, kept for backward
    float *mu = nullptr, *is = nullptr;
    const bool batch = bn && t.training && !t.frozen_bn;
    if (bn) {
      z = t.alloc(ys, false);
      kernels<B>::conv2d(t.ctx(), x.val(), conv_weights<>{w.value.data(), nullptr, nullptr}, z.t.val(), dn);
      mu = t.save(std::size_t(C));
      is = t.save(std::size_t(C));
      if (batch) {  // BatchNorm and the activation in one pass
        train_kernels<B>::batchnorm_act_train(t.ctx(), z.t.val(), gamma.value.data(), beta.value.data(), y.val(), mu, is,
                                              mean.value.data(), var.value.data(), t.bn_momentum, t.bn_eps, d.activation);
      } else {
        for (int c = 0; c < C; ++c) {
          mu[c] = mean.value[std::size_t(c)];
          is[c] = float(1.0 / std::sqrt(double(var.value[std::size_t(c)]) + t.bn_eps));
        }
        train::ref::batchnorm_eval<float>(z.t.val(), gamma.value.data(), beta.value.data(), mean.value.data(), var.value.data(),
                                          t.bn_eps, y.val());
      }
    } else {
      kernels<B>::conv2d(t.ctx(), x.val(), conv_weights<>{w.value.data(), bias.value.data(), nullptr}, y.val(), dn);
    }
    if (d.activation == act::silu && !batch) train_kernels<B>::silu_inplace(t.ctx(), y.val());
    if (residual.data) train::fast::add_into(t.ctx(), residual.val(), y.val());
    if (!y.has_grad()) return;
    t.record([this, &t, x, y, residual, z, mu, is, batch, ys, dn, C] {
      const view<float> dy = y.grad();
      if (residual.has_grad()) train::fast::add_into(t.ctx(), dy, residual.grad());
      view<float> dz = dy;
      if (batch) {  // dz = dL/dz through the activation and BatchNorm (batch statistics), one fused pass
        dz = detail::contiguous_view(t.scratch(1, ys.numel()), ys);
        train_kernels<B>::batchnorm_act_backward(t.ctx(), z.t.val(), gamma.value.data(), beta.value.data(), mu, is, dy, d.activation,
                                                 dz, gamma.g(), beta.g(), t.scratch(0, ys.numel()));
      } else {
        // du = dy * act'(u), u = BN(z) with running statistics (recomputed) or conv + bias
        view<float> du = dy;
        if (d.activation == act::silu) {
          du = detail::contiguous_view(t.scratch(0, ys.numel()), ys);
          if (bn) {
            train_kernels<B>::silu_backward(t.ctx(), z.t.val(), mu, is, gamma.value.data(), beta.value.data(), dy, du);
          } else {
            // u is not kept for plain convs with SiLU (none in GYOLO's graph): recompute it.
            kernels<B>::conv2d(t.ctx(), x.val(), conv_weights<>{w.value.data(), bias.value.data(), nullptr}, du, dn);
            train_kernels<B>::silu_backward(t.ctx(), du, nullptr, nullptr, nullptr, nullptr, dy, du);
          }
        }
        dz = du;
        if (bn) {  // eval-mode BatchNorm: a per-channel affine map
          dz = detail::contiguous_view(t.scratch(1, ys.numel()), ys);
          for (int c = 0; c < C; ++c) {
            double sg = 0, sb = 0;
            const float sc = is[c] * gamma.value[std::size_t(c)];
            for (int n = 0; n < ys.n; ++n) {
              const float* zp = z.t.channel(n, c);
              const float* g = du.channel(n, c);
              float* o = dz.channel(n, c);
              for (std::int64_t i = 0; i < du.plane(); ++i) {
                o[i] = g[i] * sc;
                sg += double(g[i]) * (zp[i] - mu[c]) * is[c];
                sb += g[i];
              }
            }
            gamma.g()[c] += float(sg);
            beta.g()[c] += float(sb);
          }
        }
      }
      train_kernels<B>::conv2d_backward(t.ctx(), x.val(), w.value.data(), dz, dn, x.has_grad() ? x.grad() : view<float>{}, w.g(),
                                        bn ? nullptr : bias.g());
    });
  }
  tvar operator()(tape<B>& t, tview x, tview residual = {}) const {
    auto y = t.alloc(out_shape(x.shape()));
    forward(t, x, y.t, residual);
    return y;
  }

 private:
  void set_desc(int cin, int cout, int k, int s, int g, act a) {
    GYOLO_CHECK(cin > 0 && cout > 0 && g > 0 && cin % g == 0 && cout % g == 0, "conv: bad channel/group configuration");
    d = conv_desc{cin, cout, k, s, k / 2, g, a};
  }
};

/// RepConvN(c1, c2, 3, 1): SiLU(Conv3x3(x) + Conv1x1(x)), both Conv without activation.
template <class B>
struct train_repconvn {
  conv_desc d;
  train_conv<B> conv1, conv2;

  void init(int cin, int cout) {
    d = conv_desc{cin, cout, 3, 1, 1, 1, act::silu};
    conv1.init_bn(cin, cout, 3, 1, 1, act::none);
    conv2.init_bn(cin, cout, 1, 1, 1, act::none);
  }
  template <class V> static void fields(V& v, train_repconvn& s) {
    v.child("conv1", s.conv1);
    v.child("conv2", s.conv2);
  }
  shape4 out_shape(shape4 x) const { return conv1.out_shape(x); }
  void forward(tape<B>& t, tview x, tview y) const {
    auto a = conv1(t, x);
    auto b = conv2(t, x);
    const tview av = a.t, bv = b.t;
    sum_planes(t, av, bv, y.val());
    train_kernels<B>::silu_inplace(t.ctx(), y.val());
    if (!y.has_grad()) return;
    t.record([&t, av, bv, y] {
      const shape4 s = y.shape();
      view<float> u = detail::contiguous_view(t.scratch(0, s.numel()), s), du = detail::contiguous_view(t.scratch(1, s.numel()), s);
      sum_planes(t, av, bv, u);
      train_kernels<B>::silu_backward(t.ctx(), u, nullptr, nullptr, nullptr, nullptr, y.grad(), du);
      train::fast::add_into(t.ctx(), du, av.grad());
      train::fast::add_into(t.ctx(), du, bv.grad());
    });
  }
  /// o = a + b, planes in parallel.
  static void sum_planes(tape<B>& t, cview<float> a, cview<float> b, view<float> o) {
    const std::int64_t planes = std::int64_t(o.n) * o.c, P = o.plane();
    par::for_static(t.threads(), planes, [&](std::int64_t k) {
      const int n = int(k / o.c), c = int(k % o.c);
      const float *p = a.channel(n, c), *q = b.channel(n, c);
      float* r = o.channel(n, c);
      for (std::int64_t i = 0; i < P; ++i) r[i] = p[i] + q[i];
    });
  }
  tvar operator()(tape<B>& t, tview x) const {
    auto y = t.alloc(out_shape(x.shape()));
    forward(t, x, y.t);
    return y;
  }
};

/// Conv (+BN) folded into one conv with bias (fuse_conv_and_bn), on the host; the inference
/// layer's backend BI may differ (a device backend folds the reference backend's train-mode graph).
template <class B, class BI>
void fold_leaf(const train_conv<B>& t, conv_layer<BI>& i) {
  if (t.bn) {
    auto bn = fold::bn_fold(t.gamma.value.data(), t.beta.value.data(), t.mean.value.data(), t.var.value.data(), t.d.cout);
    auto wv = t.w.value;
    fold::scale_rows(wv, bn, t.d.cout);
    i.assign(t.d, std::move(wv), std::move(bn.shift));
  } else {
    i.assign(t.d, t.w.value, t.bias.value);
  }
}

/// RepConvN folded into one 3x3 conv (RepConvN.fuse_convs).
template <class B, class BI>
void fold_leaf(const train_repconvn<B>& t, conv_layer<BI>& i) {
  auto b3 = fold::bn_fold(t.conv1.gamma.value.data(), t.conv1.beta.value.data(), t.conv1.mean.value.data(),
                          t.conv1.var.value.data(), t.d.cout);
  auto b1 = fold::bn_fold(t.conv2.gamma.value.data(), t.conv2.beta.value.data(), t.conv2.mean.value.data(),
                          t.conv2.var.value.data(), t.d.cout);
  auto [fw, fb] = fold::repconvn_fold(t.conv1.w.value, t.conv2.w.value, b3, b1, t.d.cout, t.d.cin);
  i.assign(t.d, std::move(fw), std::move(fb));
}

/// Per-mode module types: layer code names `conv_t<B, M>` and gets the folded conv_layer for
/// inference, the unfolded train_conv for training.
template <class B, class M> struct mode_types;
template <class B> struct mode_types<B, infer_mode> {
  using ctx = context<B>;
  using in = cbview<B>;
  using out = bview<B>;
  using conv = conv_layer<B>;
  using repconv = conv_layer<B>;
};
template <class B> struct mode_types<B, train_mode> {
  using ctx = tape<B>;
  using in = tview;
  using out = tview;
  using conv = train_conv<B>;
  using repconv = train_repconvn<B>;
};

}  // namespace gyolo
