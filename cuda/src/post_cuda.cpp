// Post-processing on the device (plain C++: the kernel launch is in transformer.cu): the semantic
// maps. The resize axes are post::interp_axis's, uploaded; the body is cuda_bodies::semantic_map.
#include <cstring>
#include <vector>

#include "gyolo/cuda.hpp"
#include "gyolo/cuda/bodies.cuh"
#include "gyolo/post/interp.hpp"

namespace gyolo {
namespace cuda_detail {
void launch_semantic_map(context<cuda>& ctx, const cuda_bodies::semantic_map& f, std::int64_t n);

namespace {
/// The axes, packed: per axis i0, i1 (ints) then l0, l1 (floats), each `out` long.
struct packed_axes {
  std::vector<char> bytes;
  std::vector<std::size_t> at;  // offset of each axis
  void add(const post::interp_axis& a) {
    at.push_back(bytes.size());
    const std::size_t n = std::size_t(a.out);
    auto put = [&](const void* p, std::size_t b) {
      const std::size_t o = bytes.size();
      bytes.resize(o + b);
      std::memcpy(bytes.data() + o, p, b);
    };
    put(a.i0.data(), n * sizeof(int));
    put(a.i1.data(), n * sizeof(int));
    put(a.l0.data(), n * sizeof(float));
    put(a.l1.data(), n * sizeof(float));
  }
  static cuda_bodies::axis on(const char* base, std::size_t n) {
    const int* i = reinterpret_cast<const int*>(base);
    const float* l = reinterpret_cast<const float*>(base + 2 * n * sizeof(int));
    return {i, i + n, l, l + n};
  }
};
}  // namespace
}  // namespace cuda_detail

post::semantic_maps semantic_maps(context<cuda>& ctx, cdview logits, int img, const letterbox_geometry& g, bool want_input) {
  const int C = logits.c, mh = logits.h, mw = logits.w, H = g.input_h, W = g.input_w;
  GYOLO_CHECK(C > 0 && C <= 32767 && mh > 0 && mw > 0 && img >= 0 && img < logits.n, "semantic_maps (cuda): empty logits");
  const int ch = g.crop_h(), cw = g.crop_w();
  GYOLO_CHECK(H > 0 && W > 0 && ch > 0 && cw > 0 && g.orig_h > 0 && g.orig_w > 0 && g.top >= 0 && g.left >= 0 && g.top + ch <= H &&
                  g.left + cw <= W,
              "semantic_maps (cuda): bad letterbox geometry");
  const post::interp_axis ay(mh, H), ax(mw, W), uy(ch, g.orig_h), ux(cw, g.orig_w);
  cuda_detail::packed_axes pk;
  for (const auto* a : {&ay, &ax, &uy, &ux}) pk.add(*a);
  const std::size_t nor = std::size_t(g.orig_h) * std::size_t(g.orig_w), nin = want_input ? std::size_t(H) * std::size_t(W) : 0;
  const cuda_detail::scratch<char> axes(ctx.stream(), pk.bytes.data(), pk.bytes.size());
  const cuda_detail::scratch<std::int16_t> maps(ctx.stream(), nor + nin);
  const char* base = static_cast<const char*>(axes.get());
  auto A = [&](int k, const post::interp_axis& a) { return cuda_detail::packed_axes::on(base + pk.at[std::size_t(k)], std::size_t(a.out)); };
  std::int16_t* out = maps.get();
  cuda_bodies::semantic_map f{logits.data + std::int64_t(img) * logits.batch_stride, C, mw, std::int64_t(mh) * mw, A(0, ay), A(1, ax), true,
                              A(2, uy), A(3, ux), g.top, g.left, g.orig_w, out};
  cuda_detail::launch_semantic_map(ctx, f, std::int64_t(nor));
  if (want_input) {
    f.unletterbox = false;
    f.out_w = W;
    f.out = out + nor;
    cuda_detail::launch_semantic_map(ctx, f, std::int64_t(nin));
  }
  post::semantic_maps r;
  r.original = xt::xtensor<std::int16_t, 2>::from_shape({std::size_t(g.orig_h), std::size_t(g.orig_w)});
  r.input = xt::xtensor<std::int16_t, 2>::from_shape({want_input ? std::size_t(H) : 0, want_input ? std::size_t(W) : 0});
  cudart::copy_d2h(r.original.data(), out, nor * sizeof(std::int16_t), ctx.stream());
  if (want_input) cudart::copy_d2h(r.input.data(), out + nor, nin * sizeof(std::int16_t), ctx.stream());
  ctx.synchronize();
  return r;
}

}  // namespace gyolo
