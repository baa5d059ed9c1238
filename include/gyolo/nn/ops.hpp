// Mode-generic operations used by layer code written once for both modes:
//   - with a context<B> (inference) they run kernels<B> on plain views;
//   - with a tape<B> (training) they run the same arithmetic on tape tensors and record the
//     backward step.
// Layer code calls op::alloc / op::copy / op::maxpool2d / ... and never branches on the mode.
#pragma once
#include "gyolo/kernels/desc.hpp"
#include "gyolo/layers/conv.hpp"
#include "gyolo/nn/tape.hpp"
#include "gyolo/train/ops_cpu.hpp"
#include "gyolo/train/ops_ref.hpp"

namespace gyolo::op {

// ---- inference --------------------------------------------------------------------------------
template <class B> dtensor<B> alloc(context<B>& ctx, shape4 s) { return storage<B>::alloc(ctx, s); }
template <class B> void copy(context<B>& ctx, cbview<B> x, bview<B> y) { kernels<B>::copy(ctx, x, y); }
template <class B> void maxpool2d(context<B>& ctx, cbview<B> x, bview<B> y, int k, int s, int p) {
  kernels<B>::maxpool2d(ctx, x, y, k, s, p);
}
template <class B> void avgpool2x2s1(context<B>& ctx, cbview<B> x, bview<B> y) { kernels<B>::avgpool2x2s1(ctx, x, y); }
template <class B> void upsample2x(context<B>& ctx, cbview<B> x, bview<B> y) { kernels<B>::upsample2x(ctx, x, y); }
template <class B> void psa_attention(context<B>& ctx, cbview<B> qkv, bview<B> y, int heads, int kd, int hd, float scale) {
  kernels<B>::psa_attention(ctx, qkv, y, heads, kd, hd, scale);
}

// ---- training ---------------------------------------------------------------------------------
template <class B> tvar alloc(tape<B>& t, shape4 s) { return t.alloc(s); }

namespace detail {
/// f(i, ws) for every image i < n of a batch, images in parallel on the context's threads, each
/// thread with its own reference-kernel workspace (the reference loops are serial).
template <class B, class F> void per_image(tape<B>& t, int n, F&& f) {
  const int T = std::max(1, std::min(t.threads(), n));
  par::for_static(T, n, [&](int i) { f(i, t.ref_workspace(train::fast::detail::thread_id())); });
}
}  // namespace detail

template <class B> void copy(tape<B>& t, tview x, tview y) {
  GYOLO_CHECK(x.shape() == y.shape(), "copy: shapes differ: " + x.shape().str() + " vs " + y.shape().str());
  for (int n = 0; n < y.n; ++n)
    for (int c = 0; c < y.c; ++c) std::memcpy(y.channel(n, c), x.channel(n, c), sizeof(float) * std::size_t(y.plane()));
  if (x.has_grad() && y.has_grad())
    t.record([&t, x, y] { train::fast::add_into(t.ctx(), y.grad(), x.grad()); });
}

template <class B> void maxpool2d(tape<B>& t, tview x, tview y, int k, int s, int p) {
  detail::per_image(t, x.n, [&](int i, train::ref::workspace&) { train::ref::maxpool2d<float>(x.batch(i).val(), y.batch(i).val(), k, s, p); });
  if (x.has_grad() && y.has_grad())
    t.record([&t, x, y, k, s, p] {
      detail::per_image(t, x.n, [&](int i, train::ref::workspace& ws) {
        train::ref::maxpool2d_backward<float>(x.batch(i).val(), y.batch(i).grad(), k, s, p, x.batch(i).grad(), &ws);
      });
    });
}

template <class B> void avgpool2x2s1(tape<B>& t, tview x, tview y) {
  detail::per_image(t, x.n, [&](int i, train::ref::workspace&) { train::ref::avgpool2x2s1<float>(x.batch(i).val(), y.batch(i).val()); });
  if (x.has_grad() && y.has_grad())
    t.record([&t, x, y] {
      detail::per_image(t, x.n, [&](int i, train::ref::workspace&) {
        train::ref::avgpool2x2s1_backward<float>(y.batch(i).grad(), x.batch(i).grad());
      });
    });
}

template <class B> void upsample2x(tape<B>& t, tview x, tview y) {
  detail::per_image(t, x.n, [&](int i, train::ref::workspace& ws) {
    train::ref::resize_nearest<float>(x.batch(i).val(), y.batch(i).val(), &ws);
  });
  if (x.has_grad() && y.has_grad())
    t.record([&t, x, y] {
      detail::per_image(t, x.n, [&](int i, train::ref::workspace& ws) {
        train::ref::resize_nearest_backward<float>(y.batch(i).grad(), x.batch(i).grad(), &ws);
      });
    });
}

/// Nearest resize to y's size (CBFuse).
template <class B> void resize_nearest(tape<B>& t, tview x, tview y) { upsample2x(t, x, y); }

template <class B> void psa_attention(tape<B>& t, tview qkv, tview y, int heads, int kd, int hd, float scale) {
  detail::per_image(t, qkv.n, [&](int i, train::ref::workspace& ws) {
    train::ref::psa_attention<float>(qkv.batch(i).val(), y.batch(i).val(), heads, kd, hd, double(scale), &ws);
  });
  if (qkv.has_grad() && y.has_grad())
    t.record([&t, qkv, y, heads, kd, hd, scale] {
      detail::per_image(t, qkv.n, [&](int i, train::ref::workspace& ws) {
        train::ref::psa_attention_backward<float>(qkv.batch(i).val(), y.batch(i).grad(), heads, kd, hd, double(scale),
                                                  qkv.batch(i).grad(), &ws);
      });
    });
}

/// y += x (elementwise, same shape), differentiable in both.
template <class B> void add_into(tape<B>& t, tview x, tview y) {
  train::fast::add_into(t.ctx(), x.val(), y.val());
  if (x.has_grad() && y.has_grad()) t.record([&t, x, y] { train::fast::add_into(t.ctx(), y.grad(), x.grad()); });
}

/// y[n, c, 0, a0 + i] = x[n, c, i] (a level's map into the flattened anchor axis).
template <class B> void flatten_into(tape<B>& t, tview x, tview y, std::int64_t a0) {
  const std::int64_t P = x.plane();
  for (int n = 0; n < x.n; ++n)
    for (int c = 0; c < x.c; ++c) std::memcpy(y.channel(n, c) + a0, x.channel(n, c), sizeof(float) * std::size_t(P));
  if (x.has_grad() && y.has_grad())
    t.record([x, y, a0, P] {
      for (int n = 0; n < x.n; ++n)
        for (int c = 0; c < x.c; ++c) {
          const float* g = y.grad().channel(n, c) + a0;
          float* d = x.grad().channel(n, c);
          for (std::int64_t i = 0; i < P; ++i) d[i] += g[i];
        }
    });
}

}  // namespace gyolo::op
