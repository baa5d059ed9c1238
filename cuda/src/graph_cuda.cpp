// The CUDA vision graph compiled once in gyolo::cuda (by the host compiler: the layer code is
// plain C++ that calls kernels<cuda>, whose definitions are in kernels.cu). Loading folds on the
// host (the reference backend's train-mode graph) and uploads each folded layer.
#include "gyolo/cuda/backend.hpp"
#include "gyolo/kernels/reference.hpp"
#include "gyolo/model/vision.hpp"

namespace gyolo {
template void vision_graph<cuda, infer_mode>::load(weight_source&, const variant_config&, bool);
template vision_outputs<cuda> vision_graph<cuda, infer_mode>::forward(context<cuda>&, cdview, bool, bool) const;
}  // namespace gyolo
