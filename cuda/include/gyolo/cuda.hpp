// gyolo's CUDA backend for programs: the backend (gyolo/cuda/backend.hpp), the vision graph, the
// model and the pipeline on it, compiled once in gyolo::cuda for the variants that ship (extern
// templates below). Link gyolo::cuda; no nvcc needed.
//
//   auto m = gyolo::model<gyolo::cuda, gyolo::gyolo_c>::load("gyolo.gguf", {.device = 0});  // parameters on device 0
//   gyolo::pipeline p(m);
//   gyolo::context<gyolo::cuda> ctx(/*device*/ 0);        // throws gyolo::cuda_error without a GPU
//   gyolo::image_result r = p.run(ctx, gyolo::decode_image("a.jpg"));
//
// The vision network, the caption head and the semantic maps run on the GPU; the other vision
// outputs are copied to the host once per forward and post-processed there (ctx.host()'s threads).
#pragma once
#include "gyolo/cuda/backend.hpp"
#include "gyolo/model/vision.hpp"

namespace gyolo {

/// What to_host copies besides the inference outputs.
struct host_copy_options {
  bool caption_features = false;  // x11, x17, x20, x23, x44 (when the forward kept them)
  bool semantic = true;           // the semantic logits (the pipeline makes its maps on the device)
};

/// A forward's outputs on the host (waits for the stream).
inline vision_outputs<cpu> to_host(context<cuda>& ctx, const vision_outputs<cuda>& o, const host_copy_options& opt = {}) {
  vision_outputs<cpu> h;
  auto copy = [&](const device_tensor& d, tensor<float>& t) {
    if (d.numel()) t = to_host(ctx, d.cv());
  };
  copy(o.pred, h.pred);
  copy(o.proto, h.proto);
  if (opt.semantic) copy(o.semantic, h.semantic);
  for (std::size_t l = 0; l < o.d3.size(); ++l) copy(o.d3[l], h.d3[l]);
  copy(o.pred_o2m, h.pred_o2m);
  if (opt.caption_features) {
    copy(o.x11, h.x11);
    copy(o.x17, h.x17);
    copy(o.x20, h.x20);
    copy(o.x23, h.x23);
    copy(o.x44, h.x44);
  }
  return h;
}

extern template void vision_graph<cuda, infer_mode>::load(weight_source&, const variant_config&, bool);
extern template vision_outputs<cuda> vision_graph<cuda, infer_mode>::forward(context<cuda>&, cdview, bool, bool) const;

}  // namespace gyolo

#include "gyolo/pipeline.hpp"

namespace gyolo {
/// Image img's semantic maps from a forward's semantic logits [B, C, H/4, W/4], computed on the
/// device with post::semantic_argmax's arithmetic (the same bits on the same logits); only the
/// int16 maps come back (waits for the stream). want_original is always on.
post::semantic_maps semantic_maps(context<cuda>& ctx, cdview logits, int img, const letterbox_geometry& g, bool want_input);

template <>
struct device_postprocess<cuda> {
  static post::semantic_maps semantic(context<cuda>& ctx, cdview logits, int img, const letterbox_geometry& g, bool want_input) {
    return semantic_maps(ctx, logits, img, g, want_input);
  }
};

extern template class grit_head<cuda>;
extern template class model<cuda, gyolo_c>;
extern template class model<cuda, gyolo_shapes>;
extern template class model<cuda, gyolo_tiny>;
extern template class pipeline<cuda, gyolo_c>;
extern template class pipeline<cuda, gyolo_shapes>;
extern template class pipeline<cuda, gyolo_tiny>;
}  // namespace gyolo
