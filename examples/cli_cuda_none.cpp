// The CLI's CUDA commands in a gyolo built without the CUDA backend: a clear error.
#include "cli_commands.hpp"
#include "gyolo/io/image_types.hpp"
#include "gyolo/result.hpp"

namespace {
[[noreturn]] void no_cuda() {
  throw gyolo::error("this gyolo was built without the CUDA backend: configure with -DGYOLO_ENABLE_CUDA=ON (nvcc), or use --device cpu");
}
}  // namespace

int bench_cuda(const cuda_bench_request&) { no_cuda(); }
std::function<std::vector<gyolo::image_result>(const std::vector<gyolo::image_u8>&)> make_cuda_infer(const cuda_predict_request&,
                                                                                                   const gyolo::pipeline_options&,
                                                                                                   const gyolo::gguf::file*) {
  no_cuda();
}
bool built_with_cuda() { return false; }
