// The CPU vision graph, both modes, compiled once here: programs that include gyolo see the
// extern template declarations at the end of model/vision.hpp and do not compile the network's
// layer code again (compile time per including file).
#include "gyolo/kernels/cpu.hpp"
#include "gyolo/model/vision.hpp"

// Member by member rather than `template class`: the members exist in one mode each (requires
// clauses), and clang before 15 instantiates every member of an explicitly instantiated class
// regardless of its constraints.
namespace gyolo {
template void vision_graph<cpu, infer_mode>::load(weight_source&, const variant_config&, bool);
template vision_outputs<cpu> vision_graph<cpu, infer_mode>::forward(context<cpu>&, cview<float>, bool, bool) const;
template void vision_graph<cpu, train_mode>::init(const variant_config&, bool);
template vision_train_outputs<cpu> vision_graph<cpu, train_mode>::forward(tape<cpu>&, tview) const;
}  // namespace gyolo
