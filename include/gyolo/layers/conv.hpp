// Conv(+BN)(+act), DWConv, RepConvN and plain Conv2d, folded at load time with upstream's formulas
// (fuse_conv_and_bn / RepConvN.fuse_convs) in fp32. Layer math only: kernels come from kernels<B>.
#pragma once
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "gyolo/core/backend.hpp"
#include "gyolo/core/context.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/kernels/desc.hpp"
#include "gyolo/model/weights.hpp"

namespace gyolo {

/// Backend storage for tensors and parameters. Host backends use host tensors; the CUDA backend
/// specialises these.
template <class B> struct storage {
  using tensor_type = tensor<float>;
  using param_type = std::vector<float>;
  static param_type upload(std::vector<float> v) { return v; }
  /// Where a load puts the parameters (load_options::device): nothing to choose on the host.
  struct load_scope {
    explicit load_scope(int) {}
  };
  /// A tensor for the context's use (device backends allocate on its stream).
  static tensor_type alloc(context<B>&, shape4 s) { return tensor_type(s); }
};
template <class B> using dtensor = typename storage<B>::tensor_type;
template <class B> using dparam = typename storage<B>::param_type;
/// Views in backend B's memory space (host views for the CPU backends, device views for CUDA).
template <class B> using bview = view<float, typename B::space>;
template <class B> using cbview = view<const float, typename B::space>;

namespace fold {
/// BN scale s = gamma / sqrt(eps + var) and shift = beta - gamma*mean / sqrt(var + eps).
struct bn_params {
  std::vector<float> scale, shift;
};
/// fuse_conv_and_bn's scale and shift from BatchNorm's four tensors.
inline bn_params bn_fold(const float* g, const float* b, const float* m, const float* v, int c, float eps = 1e-3f,
                         const std::string& p = "bn") {
  bn_params r{std::vector<float>(std::size_t(c)), std::vector<float>(std::size_t(c))};
  for (int i = 0; i < c; ++i) {
    if (!(v[i] + eps > 0.0f))
      throw error("tensor '" + p + ".running_var' has a negative variance (" + std::to_string(v[i]) + ") at channel " + std::to_string(i));
    const float sd = std::sqrt(v[i] + eps);
    r.scale[i] = g[i] / sd;
    r.shift[i] = b[i] - g[i] * m[i] / sd;
  }
  return r;
}
inline bn_params load_bn(weight_source& ws, const std::string& p, int c, float eps = 1e-3f) {
  const dims s{c};
  auto g = ws.get(p + ".weight", s), b = ws.get(p + ".bias", s), m = ws.get(p + ".running_mean", s),
       v = ws.get(p + ".running_var", s);
  return bn_fold(g.data(), b.data(), m.data(), v.data(), c, eps, p);
}
/// Conv weight [cout, ...] scaled per output channel by BN (in place).
inline void scale_rows(std::vector<float>& w, const bn_params& bn, int cout) {
  const std::int64_t per = std::int64_t(w.size()) / cout;
  for (int o = 0; o < cout; ++o)
    for (std::int64_t i = 0; i < per; ++i) w[std::size_t(o * per + i)] *= bn.scale[std::size_t(o)];
}
/// RepConvN.fuse_convs: BN1(conv3x3) + BN2(conv1x1) as one 3x3 conv (weights, bias).
inline std::pair<std::vector<float>, std::vector<float>> repconvn_fold(const std::vector<float>& k3, const std::vector<float>& k1,
                                                                       const bn_params& bn3, const bn_params& bn1, int cout, int cin) {
  std::vector<float> fw(k3.size()), fb(static_cast<std::size_t>(cout));
  for (int o = 0; o < cout; ++o) {
    for (int i = 0; i < cin; ++i)
      for (int t = 0; t < 9; ++t) {
        const std::size_t idx = (std::size_t(o) * cin + i) * 9 + t;
        const float pad1 = t == 4 ? k1[std::size_t(o) * cin + i] * bn1.scale[o] : 0.0f;
        fw[idx] = k3[idx] * bn3.scale[o] + pad1;
      }
    fb[o] = bn3.shift[o] + bn1.shift[o];
  }
  return {std::move(fw), std::move(fb)};
}
}  // namespace fold

template <class B>
struct conv_layer {
  conv_desc d;
  dparam<B> w, b;
  dparam<B> packed;  // backend-specific packing of w (may be empty)

  /// Called once the folded weights are final.
  void finalize() {
    if constexpr (is_host_backend<B>) packed = storage<B>::upload(kernels<B>::prepack(d, w));
    else packed = kernels<B>::prepack(d, w);  // a device backend packs on the device (or not at all)
  }

  /// Sets the folded weights [cout, cin/groups, k, k] and bias.
  void assign(const conv_desc& desc, std::vector<float> wv, std::vector<float> bv) {
    d = desc;
    w = storage<B>::upload(std::move(wv));
    b = storage<B>::upload(std::move(bv));
    finalize();
  }
  /// `Conv` block: <p>.conv.weight + <p>.bn.* (no conv bias), activation `a`.
  void load_conv_bn(weight_source& ws, const std::string& p, int cin, int cout, int k, int s, int g, act a) {
    set_desc(cin, cout, k, s, g, a);
    auto wv = ws.get(p + ".conv.weight", wshape());
    auto bn = fold::load_bn(ws, p + ".bn", cout);
    fold::scale_rows(wv, bn, cout);
    assign(d, std::move(wv), std::move(bn.shift));
  }
  /// Plain nn.Conv2d with bias: <p>.weight, <p>.bias.
  void load_conv_bias(weight_source& ws, const std::string& p, int cin, int cout, int k, int s, int g, act a) {
    set_desc(cin, cout, k, s, g, a);
    auto wv = ws.get(p + ".weight", wshape());
    assign(d, std::move(wv), ws.get(p + ".bias", {cout}));
  }
  /// RepConvN: SiLU(BN1(conv3x3) + BN2(conv1x1)) folded into one 3x3 conv (fuse_convs).
  void load_repconvn(weight_source& ws, const std::string& p, int cin, int cout) {
    set_desc(cin, cout, 3, 1, 1, act::silu);
    auto k3 = ws.get(p + ".conv1.conv.weight", wshape());
    auto k1 = ws.get(p + ".conv2.conv.weight", {cout, cin, 1, 1});
    auto bn3 = fold::load_bn(ws, p + ".conv1.bn", cout), bn1 = fold::load_bn(ws, p + ".conv2.bn", cout);
    auto [fw, fb] = fold::repconvn_fold(k3, k1, bn3, bn1, cout, cin);
    assign(d, std::move(fw), std::move(fb));
  }
  /// Appends the output channels of another conv with identical input (RepNCSPELAN4B cv4+cvcap).
  void append_outputs(const conv_layer& o) {
    GYOLO_CHECK(o.d.cin == d.cin && o.d.k == d.k && o.d.stride == d.stride && o.d.groups == 1 && d.groups == 1,
                "append_outputs: incompatible convs");
    if constexpr (is_host_backend<B>) {
      w.insert(w.end(), o.w.begin(), o.w.end());
      b.insert(b.end(), o.b.begin(), o.b.end());
    } else {  // device parameters: concatenated on the host (load time only)
      auto wv = storage<B>::download(w), ov = storage<B>::download(o.w), bv = storage<B>::download(b), obv = storage<B>::download(o.b);
      wv.insert(wv.end(), ov.begin(), ov.end());
      bv.insert(bv.end(), obv.begin(), obv.end());
      w = storage<B>::upload(std::move(wv));
      b = storage<B>::upload(std::move(bv));
    }
    d.cout += o.d.cout;
    finalize();
  }

  shape4 out_shape(shape4 x) const { return {x.n, d.cout, d.out_h(x.h), d.out_w(x.w)}; }

  void forward(context<B>& ctx, cbview<B> x, bview<B> y, cbview<B> residual = {}) const {
    GYOLO_CHECK(x.c == d.cin, "conv: input has " + std::to_string(x.c) + " channels, expected " + std::to_string(d.cin));
    GYOLO_CHECK(y.shape() == out_shape(x.shape()), "conv: output view " + y.shape().str() + " != " + out_shape(x.shape()).str());
    kernels<B>::conv2d(ctx, x, conv_weights<typename B::space>{w.data(), b.data(), packed.empty() ? nullptr : packed.data()}, y, d,
                       residual);
  }
  dtensor<B> operator()(context<B>& ctx, cbview<B> x, cbview<B> residual = {}) const {
    auto y = storage<B>::alloc(ctx, out_shape(x.shape()));
    forward(ctx, x, y.v(), residual);
    return y;
  }

 private:
  void set_desc(int cin, int cout, int k, int s, int g, act a) {
    GYOLO_CHECK(cin > 0 && cout > 0 && g > 0 && cin % g == 0 && cout % g == 0, "conv: bad channel/group configuration");
    d = conv_desc{cin, cout, k, s, k / 2, g, a};
  }
  dims wshape() const { return {d.cout, d.cin / d.groups, d.k, d.k}; }
};

}  // namespace gyolo
