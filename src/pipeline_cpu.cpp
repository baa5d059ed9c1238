// The model and pipeline of the variants that ship (GYOLO, the demo model, the fixtures' tiny
// variant) on the CPU, compiled once here: programs that include gyolo see the extern template
// declarations at the end of model/model.hpp and pipeline.hpp and do not compile loading,
// captioning and post-processing again (compile time per including file). Other variants are
// compiled where they are used, as before.
#include "gyolo/kernels/cpu.hpp"
#include "gyolo/pipeline.hpp"

namespace gyolo {
template class model<cpu, gyolo_c>;
template class model<cpu, gyolo_shapes>;
template class model<cpu, gyolo_tiny>;
template class pipeline<cpu, gyolo_c>;
template class pipeline<cpu, gyolo_shapes>;
template class pipeline<cpu, gyolo_tiny>;
}  // namespace gyolo
