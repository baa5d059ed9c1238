// The caption head on the CPU, both forms, compiled once here: programs that include gyolo see the
// extern template declarations at the end of layers/grit.hpp and layers/grit_train.hpp and do not
// compile Grit's encoder, decoder and beam search again (compile time per including file).
#include "gyolo/kernels/cpu.hpp"
#include "gyolo/layers/grit.hpp"

namespace gyolo {
template struct grit_train<cpu>;
template class grit_head<cpu>;
}  // namespace gyolo
