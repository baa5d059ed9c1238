// Inference part of DualDPanoptic (layer 55): one-to-one (e2e) box/class branches cv6/cv7 with DFL
// decoding (dfl3), main mask coefficients cv9, prototypes proto2, semantic logits uconv2; optionally
// the main one-to-many branches cv4/cv5 (dfl2). The training-only auxiliary parts are not built.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "gyolo/layers/blocks.hpp"

namespace gyolo {

constexpr int make_divisible(int x, int d) { return (x + d - 1) / d * d; }

template <class B>
struct detect_branch {  // one level of a box (cv4/cv6) or class (cv5/cv7) branch
  std::vector<conv_layer<B>> seq;
  void run(context<B>& ctx, cview<float> x, view<float> out) const {
    dtensor<B> cur;
    cview<float> in = x;
    for (std::size_t i = 0; i + 1 < seq.size(); ++i) {
      cur = seq[i](ctx, in);
      in = cur.cv();
    }
    seq.back().forward(ctx, in, out);
  }
};

template <class B>
struct panoptic_head {
  static constexpr int reg_max = 16;
  int nc = 80, nm = 32, sem_ch = 173, nl = 3;
  std::vector<detect_branch<B>> box, cls, mc;          // cv6, cv7, cv9 per level
  std::vector<detect_branch<B>> box_o2m, cls_o2m;      // cv4, cv5 (optional)
  conv_layer<B> proto2, uconv2;
  std::vector<float> dfl3, dfl2;
  bool with_o2m = false;

  /// ch: channels of x17, x20, x23; c46, c54: channels of the semantic and prototype inputs.
  void load(weight_source& ws, const std::string& p, int nc_, int sem_nc, int nm_, std::array<int, 3> ch, int c46,
            int c54, bool o2m) {
    nc = nc_;
    nm = nm_;
    sem_ch = sem_nc + nc;
    with_o2m = o2m;
    const int c4 = make_divisible(std::max({ch[0] / 4, reg_max * 4, 16}), 4);
    const int c5 = std::max(ch[0], std::min(nc * 2, 128));
    const int c9 = std::max(ch[0] / 4, nm);
    auto load_box = [&](const std::string& name, std::vector<detect_branch<B>>& v) {
      v.resize(3);
      for (int l = 0; l < 3; ++l) {
        const auto q = p + "." + name + "." + std::to_string(l);
        v[l].seq.resize(3);
        v[l].seq[0].load_conv_bn(ws, q + ".0", ch[l], c4, 3, 1, 1, act::silu);
        v[l].seq[1].load_conv_bn(ws, q + ".1", c4, c4, 3, 1, 4, act::silu);
        v[l].seq[2].load_conv_bias(ws, q + ".2", c4, 4 * reg_max, 1, 1, 4, act::none);
      }
    };
    auto load_cls = [&](const std::string& name, std::vector<detect_branch<B>>& v) {
      v.resize(3);
      for (int l = 0; l < 3; ++l) {
        const auto q = p + "." + name + "." + std::to_string(l);
        v[l].seq.resize(5);
        v[l].seq[0].load_conv_bn(ws, q + ".0", ch[l], ch[l], 3, 1, ch[l], act::silu);
        v[l].seq[1].load_conv_bn(ws, q + ".1", ch[l], c5, 1, 1, 1, act::silu);
        v[l].seq[2].load_conv_bn(ws, q + ".2", c5, c5, 3, 1, c5, act::silu);
        v[l].seq[3].load_conv_bn(ws, q + ".3", c5, c5, 1, 1, 1, act::silu);
        v[l].seq[4].load_conv_bias(ws, q + ".4", c5, nc, 1, 1, 1, act::none);
      }
    };
    load_box("cv6", box);
    load_cls("cv7", cls);
    mc.resize(3);
    for (int l = 0; l < 3; ++l) {
      const auto q = p + ".cv9." + std::to_string(l);
      mc[l].seq.resize(3);
      mc[l].seq[0].load_conv_bn(ws, q + ".0", ch[l], c9, 3, 1, 1, act::silu);
      mc[l].seq[1].load_conv_bn(ws, q + ".1", c9, c9, 3, 1, 1, act::silu);
      mc[l].seq[2].load_conv_bias(ws, q + ".2", c9, nm, 1, 1, 1, act::none);
    }
    proto2.load_conv_bn(ws, p + ".proto2", c54, nm, 1, 1, 1, act::silu);
    uconv2.load_conv_bias(ws, p + ".uconv2", c46, sem_ch, 1, 1, 1, act::none);
    dfl3 = ws.get(p + ".dfl3.conv.weight", {1, reg_max, 1, 1});
    if (o2m) {
      load_box("cv4", box_o2m);
      load_cls("cv5", cls_o2m);
      dfl2 = ws.get(p + ".dfl2.conv.weight", {1, reg_max, 1, 1});
    }
  }

  struct outputs {
    dtensor<B> pred;                  // [B, 4+nc+nm, 1, A]
    std::array<dtensor<B>, 3> d3;     // raw e2e maps [B, 4*reg+nc, H_l, W_l]
    dtensor<B> proto;                 // [B, nm, H/4, W/4]
    dtensor<B> semantic;              // [B, sem_ch, H/4, W/4]
    dtensor<B> pred_o2m;              // [B, 4+nc+nm, 1, A] when enabled
  };

  outputs operator()(context<B>& ctx, std::array<cview<float>, 3> x, cview<float> x46, cview<float> x54,
                     std::array<float, 3> strides, bool run_o2m) const {
    outputs o;
    const int n = x[0].n;
    int A = 0;
    for (auto& v : x) A += v.h * v.w;
    const int no = 4 * reg_max + nc;
    o.pred = dtensor<B>({n, 4 + nc + nm, 1, A});
    std::vector<cview<float>> levels;
    int a0 = 0;
    for (int l = 0; l < 3; ++l) {
      o.d3[l] = dtensor<B>({n, no, x[l].h, x[l].w});
      box[l].run(ctx, x[l], o.d3[l].v().slice(0, 4 * reg_max));
      cls[l].run(ctx, x[l], o.d3[l].v().slice(4 * reg_max, nc));
      levels.push_back(o.d3[l].cv());
      dtensor<B> m({n, nm, x[l].h, x[l].w});
      mc[l].run(ctx, x[l], m.v());
      kernels<B>::flatten_into(ctx, m.cv(), o.pred.v().slice(4 + nc, nm), a0);
      a0 += x[l].h * x[l].w;
    }
    const std::vector<float> st(strides.begin(), strides.end());
    kernels<B>::detect_decode(ctx, levels, st, dfl3.data(), reg_max, nc, o.pred.v().slice(0, 4 + nc));
    o.proto = proto2(ctx, x54);
    o.semantic = uconv2(ctx, x46);
    if (run_o2m && with_o2m) {
      o.pred_o2m = dtensor<B>({n, 4 + nc + nm, 1, A});
      std::vector<dtensor<B>> d2(3);
      std::vector<cview<float>> lv;
      for (int l = 0; l < 3; ++l) {
        d2[l] = dtensor<B>({n, no, x[l].h, x[l].w});
        box_o2m[l].run(ctx, x[l], d2[l].v().slice(0, 4 * reg_max));
        cls_o2m[l].run(ctx, x[l], d2[l].v().slice(4 * reg_max, nc));
        lv.push_back(d2[l].cv());
      }
      kernels<B>::detect_decode(ctx, lv, st, dfl2.data(), reg_max, nc, o.pred_o2m.v().slice(0, 4 + nc));
      kernels<B>::copy(ctx, o.pred.cv().slice(4 + nc, nm), o.pred_o2m.v().slice(4 + nc, nm));
    }
    return o;
  }
};

}  // namespace gyolo
