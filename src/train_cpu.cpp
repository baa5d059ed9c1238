// Training on the CPU compiled once here: one iteration (trainer), the epoch loop with validation
// and checkpoints (fitter) and the validation metrics (evaluator). Programs that include gyolo's
// training headers see their extern template declarations and do not compile them again.
#include "gyolo/kernels/cpu.hpp"
#include "gyolo/train/fit.hpp"

namespace gyolo::train {
template class trainer<cpu>;
template class evaluator<cpu>;
template class fitter<cpu>;
}  // namespace gyolo::train
