// The CUDA vision graph, the caption head, and the model and pipeline of the variants that ship on it, compiled once
// in gyolo::cuda (by the host compiler: the layer code is plain C++ that calls kernels<cuda>, whose
// definitions are in kernels.cu). Loading folds on the host (the reference backend's train-mode
// graph) and uploads each folded layer.
#include "gyolo/kernels/cpu.hpp"
#include "gyolo/kernels/reference.hpp"
#include "gyolo/cuda.hpp"

namespace gyolo {
template void vision_graph<cuda, infer_mode>::load(weight_source&, const variant_config&, bool);
template vision_outputs<cuda> vision_graph<cuda, infer_mode>::forward(context<cuda>&, cdview, bool, bool) const;
template class grit_head<cuda>;
template class model<cuda, gyolo_c>;
template class model<cuda, gyolo_shapes>;
template class model<cuda, gyolo_tiny>;
template class pipeline<cuda, gyolo_c>;
template class pipeline<cuda, gyolo_shapes>;
template class pipeline<cuda, gyolo_tiny>;
}  // namespace gyolo
