// The CPU vision graph, both modes, compiled once here: programs that include gyolo see the
// extern template declarations at the end of model/vision.hpp and do not compile the network's
// layer code again (compile time per including file).
#include "gyolo/kernels/cpu.hpp"
#include "gyolo/model/vision.hpp"

template class gyolo::vision_graph<gyolo::cpu, gyolo::infer_mode>;
template class gyolo::vision_graph<gyolo::cpu, gyolo::train_mode>;
