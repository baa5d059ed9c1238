// gyolo's CUDA backend for programs: the backend (gyolo/cuda/backend.hpp), the vision graph, the
// model and the pipeline on it, compiled once in gyolo::cuda for the variants that ship (extern
// templates below). Link gyolo::cuda; no nvcc needed.
//
//   gyolo::cuda_load_device() = 0;                        // where parameters go (default 0)
//   auto m = gyolo::model<gyolo::cuda, gyolo::gyolo_c>::load("gyolo.gguf");
//   gyolo::pipeline p(m);
//   gyolo::context<gyolo::cuda> ctx(/*device*/ 0);        // throws gyolo::cuda_error without a GPU
//   gyolo::image_result r = p.run(ctx, gyolo::decode_image("a.jpg"));
//
// The vision network and the caption head run on the GPU; the vision outputs are copied to the host
// once per forward and post-processed there (ctx.host()'s threads).
#pragma once
#include "gyolo/cuda/backend.hpp"
#include "gyolo/model/vision.hpp"

namespace gyolo {

/// What to_host copies besides the inference outputs.
struct host_copy_options {
  bool caption_features = false;  // x11, x17, x20, x23, x44 (when the forward kept them)
};

/// A forward's outputs on the host (waits for the stream).
inline vision_outputs<cpu> to_host(context<cuda>& ctx, const vision_outputs<cuda>& o, const host_copy_options& opt = {}) {
  vision_outputs<cpu> h;
  auto copy = [&](const device_tensor& d, tensor<float>& t) {
    if (d.numel()) t = to_host(ctx, d.cv());
  };
  copy(o.pred, h.pred);
  copy(o.proto, h.proto);
  copy(o.semantic, h.semantic);
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
extern template class grit_head<cuda>;
extern template class model<cuda, gyolo_c>;
extern template class model<cuda, gyolo_shapes>;
extern template class model<cuda, gyolo_tiny>;
extern template class pipeline<cuda, gyolo_c>;
extern template class pipeline<cuda, gyolo_shapes>;
extern template class pipeline<cuda, gyolo_tiny>;
}  // namespace gyolo
