// DualDPanoptic (layer 55). Both modes share the module description (init/fields):
//   - train mode: every branch (aux one-to-many cv2/cv3/cv8/proto/uconv, main one-to-many
//     cv4/cv5/cv9/proto2/uconv2, one-to-one cv6/cv7 on detached inputs), returning upstream's
//     training outputs (d, mc, p, s);
//   - inference: the one-to-one branches cv6/cv7 with DFL decoding (dfl3), mask coefficients cv9,
//     prototypes proto2, semantic logits uconv2, and on request the main one-to-many cv4/cv5 (dfl2).
#pragma once
#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "gyolo/layers/blocks.hpp"

namespace gyolo {

constexpr int make_divisible(int x, int d) { return (x + d - 1) / d * d; }

/// One level of a head branch: nn.Sequential of Convs ending in a plain Conv2d.
template <class B, class M = infer_mode>
struct detect_branch {
  using T = mode_types<B, M>;
  std::vector<typename T::conv> seq;
  template <class V, class... S> static void fields(V& v, S&... s) { nn::visit_fields(v, s.seq...); }
  void run(typename T::ctx& ctx, typename T::in x, typename T::out out) const {
    auto cur = seq[0](ctx, x);
    for (std::size_t i = 1; i + 1 < seq.size(); ++i) cur = seq[i](ctx, cur.cv());
    seq.back().forward(ctx, cur.cv(), out);
  }
};

/// A frozen DFL conv (bins 0..15).
struct dfl_weights {
  buffer w;
  template <class V, class... S> static void fields(V& v, S&... s) { v.buffer("conv.weight", s.w...); }
};

template <class B, class M = infer_mode>
struct panoptic_head {
  using T = mode_types<B, M>;
  static constexpr int reg_max = 16;
  int nc = 80, nm = 32, sem_ch = 173, nl = 3;
  std::vector<detect_branch<B, M>> cv2, cv3, cv8;  // auxiliary one-to-many box / class / mask coefficients
  std::vector<detect_branch<B, M>> cv4, cv5;       // main one-to-many box / class
  std::vector<detect_branch<B, M>> cv6, cv7, cv9;  // one-to-one box / class; main mask coefficients
  typename T::conv proto, proto2, uconv, uconv2;
  dfl_weights dfl, dfl2, dfl3;

  /// ch_aux: channels of x32, x35, x38; ch: of x17, x20, x23; c42/c46: semantic inputs (aux/main);
  /// c50/c54: prototype inputs (aux/main).
  void init(int nc_, int sem_nc, int nm_, std::array<int, 3> ch_aux, std::array<int, 3> ch, int c42, int c46, int c50, int c54) {
    nc = nc_;
    nm = nm_;
    sem_ch = sem_nc + nc;
    auto box = [&](std::vector<detect_branch<B, M>>& v, std::array<int, 3> c) {
      const int c2 = make_divisible(std::max({c[0] / 4, reg_max * 4, 16}), 4);
      v.resize(3);
      for (int l = 0; l < 3; ++l) {
        auto& s = v[std::size_t(l)].seq;
        s.resize(3);
        s[0].init_bn(c[std::size_t(l)], c2, 3, 1, 1, act::silu);
        s[1].init_bn(c2, c2, 3, 1, 4, act::silu);
        s[2].init_bias(c2, 4 * reg_max, 1, 1, 4);
      }
    };
    auto cls = [&](std::vector<detect_branch<B, M>>& v, std::array<int, 3> c) {
      const int c3 = std::max(c[0], std::min(nc * 2, 128));
      v.resize(3);
      for (int l = 0; l < 3; ++l) {
        const int x = c[std::size_t(l)];
        auto& s = v[std::size_t(l)].seq;
        s.resize(5);
        s[0].init_bn(x, x, 3, 1, x, act::silu);  // DWConv(x, x, 3): groups gcd(x, x)
        s[1].init_bn(x, c3, 1, 1, 1, act::silu);
        s[2].init_bn(c3, c3, 3, 1, c3, act::silu);
        s[3].init_bn(c3, c3, 1, 1, 1, act::silu);
        s[4].init_bias(c3, nc, 1, 1, 1);
      }
    };
    auto mcoef = [&](std::vector<detect_branch<B, M>>& v, std::array<int, 3> c) {
      const int c8 = std::max(c[0] / 4, nm);
      v.resize(3);
      for (int l = 0; l < 3; ++l) {
        auto& s = v[std::size_t(l)].seq;
        s.resize(3);
        s[0].init_bn(c[std::size_t(l)], c8, 3, 1, 1, act::silu);
        s[1].init_bn(c8, c8, 3, 1, 1, act::silu);
        s[2].init_bias(c8, nm, 1, 1, 1);
      }
    };
    box(cv2, ch_aux);
    cls(cv3, ch_aux);
    box(cv4, ch);
    cls(cv5, ch);
    box(cv6, ch);  // deepcopy(cv4) at construction, trained separately
    cls(cv7, ch);
    mcoef(cv8, ch_aux);
    mcoef(cv9, ch);
    proto.init_bn(c50, nm, 1, 1, 1, act::silu);
    proto2.init_bn(c54, nm, 1, 1, 1, act::silu);
    uconv.init_bias(c42, sem_ch, 1, 1, 1);
    uconv2.init_bias(c46, sem_ch, 1, 1, 1);
    for (auto* d : {&dfl, &dfl2, &dfl3}) {
      d->w.init({1, reg_max, 1, 1});
      for (int k = 0; k < reg_max; ++k) d->w.value[std::size_t(k)] = float(k);
    }
  }

  template <class V, class... S> static void fields(V& v, S&... s) {
    v.value("nc", s.nc...);
    v.value("nm", s.nm...);
    v.value("sem_ch", s.sem_ch...);
    v.aux("cv2", s.cv2...);
    v.aux("cv3", s.cv3...);
    v.o2m("cv4", s.cv4...);
    v.o2m("cv5", s.cv5...);
    v.child("cv6", s.cv6...);
    v.child("cv7", s.cv7...);
    v.aux("dfl", s.dfl...);
    v.o2m("dfl2", s.dfl2...);
    v.child("dfl3", s.dfl3...);
    v.aux("proto", s.proto...);
    v.child("proto2", s.proto2...);
    v.aux("uconv", s.uconv...);
    v.child("uconv2", s.uconv2...);
    v.aux("cv8", s.cv8...);
    v.child("cv9", s.cv9...);
  }
  /// Whether the main one-to-many head is present (inference folds it only on request).
  bool has_o2m() const { return !cv4.empty(); }

  struct outputs {
    dtensor<B> pred;                  // [B, 4+nc+nm, 1, A]
    std::array<dtensor<B>, 3> d3;     // raw e2e maps [B, 4*reg+nc, H_l, W_l]
    dtensor<B> proto;                 // [B, nm, H/4, W/4]
    dtensor<B> semantic;              // [B, sem_ch, H/4, W/4]
    dtensor<B> pred_o2m;              // [B, 4+nc+nm, 1, A] when enabled
  };

  /// Inference: x = x17, x20, x23; x46, x54 the semantic and prototype inputs.
  outputs operator()(context<B>& ctx, std::array<cbview<B>, 3> x, cbview<B> x46, cbview<B> x54,
                     std::array<float, 3> strides, bool run_o2m) const
    requires(!is_train_mode<M>)
  {
    outputs o;
    const int n = x[0].n;
    int A = 0;
    for (auto& v : x) A += v.h * v.w;
    const int no = 4 * reg_max + nc;
    o.pred = op::alloc(ctx, {n, 4 + nc + nm, 1, A});
    std::vector<cbview<B>> levels;
    int a0 = 0;
    for (int l = 0; l < 3; ++l) {
      o.d3[l] = op::alloc(ctx, {n, no, x[l].h, x[l].w});
      cv6[l].run(ctx, x[l], o.d3[l].v().slice(0, 4 * reg_max));
      cv7[l].run(ctx, x[l], o.d3[l].v().slice(4 * reg_max, nc));
      levels.push_back(o.d3[l].cv());
      auto m = op::alloc(ctx, {n, nm, x[l].h, x[l].w});
      cv9[l].run(ctx, x[l], m.v());
      kernels<B>::flatten_into(ctx, m.cv(), o.pred.v().slice(4 + nc, nm), a0);
      a0 += x[l].h * x[l].w;
    }
    const std::vector<float> st(strides.begin(), strides.end());
    kernels<B>::detect_decode(ctx, levels, st, dfl3.w.value.data(), reg_max, nc, o.pred.v().slice(0, 4 + nc));
    o.proto = proto2(ctx, x54);
    o.semantic = uconv2(ctx, x46);
    if (run_o2m && has_o2m()) {
      o.pred_o2m = op::alloc(ctx, {n, 4 + nc + nm, 1, A});
      std::vector<dtensor<B>> d2(3);
      std::vector<cbview<B>> lv;
      for (int l = 0; l < 3; ++l) {
        d2[l] = op::alloc(ctx, {n, no, x[l].h, x[l].w});
        cv4[l].run(ctx, x[l], d2[l].v().slice(0, 4 * reg_max));
        cv5[l].run(ctx, x[l], d2[l].v().slice(4 * reg_max, nc));
        lv.push_back(d2[l].cv());
      }
      kernels<B>::detect_decode(ctx, lv, st, dfl2.w.value.data(), reg_max, nc, o.pred_o2m.v().slice(0, 4 + nc));
      kernels<B>::copy(ctx, o.pred.cv().slice(4 + nc, nm), o.pred_o2m.v().slice(4 + nc, nm));
    }
    return o;
  }

  /// Training outputs (upstream's (d, mc, p, s)): d[k][l] raw maps of d1 (aux), d2 (main
  /// one-to-many), d3 (one-to-one, on detached inputs); mc[k] [B, nm, 1, A]; p[k]; s[k].
  struct train_outputs {
    std::array<std::array<tvar, 3>, 3> d;
    std::array<tvar, 2> mc, p, s;
  };
  /// Training: xa = x32, x35, x38 (aux); x = x17, x20, x23; then x42, x46, x50, x54.
  train_outputs operator()(tape<B>& t, std::array<tview, 3> xa, std::array<tview, 3> x, tview x42, tview x46, tview x50,
                           tview x54) const
    requires(is_train_mode<M>)
  {
    train_outputs o;
    const int n = x[0].n, no = 4 * reg_max + nc;
    auto level = [&](const std::vector<detect_branch<B, M>>& bx, const std::vector<detect_branch<B, M>>& cl, tview in, int l) {
      auto d = t.alloc({n, no, in.h, in.w});
      bx[std::size_t(l)].run(t, in, d.t.slice(0, 4 * reg_max));
      cl[std::size_t(l)].run(t, in, d.t.slice(4 * reg_max, nc));
      return d;
    };
    auto coef = [&](const std::vector<detect_branch<B, M>>& br, const std::array<tview, 3>& in) {
      int A = 0;
      for (auto& v : in) A += v.h * v.w;
      auto m = t.alloc({n, nm, 1, A});
      int a0 = 0;
      for (int l = 0; l < 3; ++l) {
        // the branch writes [B, nm, H, W]; its row-major plane is the A-slice [a0, a0 + H*W)
        const auto& v = in[std::size_t(l)];
        auto tmp = t.alloc({n, nm, v.h, v.w});
        br[std::size_t(l)].run(t, v, tmp.t);
        op::flatten_into(t, tmp.t, m.t, a0);
        a0 += v.h * v.w;
      }
      return m;
    };
    for (int l = 0; l < 3; ++l) {
      o.d[0][std::size_t(l)] = level(cv2, cv3, xa[std::size_t(l)], l);
      o.d[1][std::size_t(l)] = level(cv4, cv5, x[std::size_t(l)], l);
      o.d[2][std::size_t(l)] = level(cv6, cv7, x[std::size_t(l)].detach(), l);
    }
    o.mc[0] = coef(cv8, xa);
    o.mc[1] = coef(cv9, x);
    o.p[0] = proto(t, x50);
    o.p[1] = proto2(t, x54);
    o.s[0] = uconv(t, x42);
    o.s[1] = uconv2(t, x46);
    return o;
  }
};

}  // namespace gyolo
