// gyolo's CUDA backend for programs: the backend (gyolo/cuda/backend.hpp) and the vision graph on it,
// compiled once in gyolo::cuda (extern templates below). Link gyolo::cuda; no nvcc needed.
#pragma once
#include "gyolo/cuda/backend.hpp"
#include "gyolo/model/vision.hpp"

namespace gyolo {
extern template void vision_graph<cuda, infer_mode>::load(weight_source&, const variant_config&, bool);
extern template vision_outputs<cuda> vision_graph<cuda, infer_mode>::forward(context<cuda>&, cdview, bool, bool) const;
}  // namespace gyolo
