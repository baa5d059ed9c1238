// The CLI's CUDA commands in a gyolo built without the CUDA backend: a clear error.
#include "cli_commands.hpp"

int bench_cuda(const cuda_bench_request&) {
  throw gyolo::error("this gyolo was built without the CUDA backend: configure with -DGYOLO_ENABLE_CUDA=ON (nvcc), or use --device cpu");
}
bool built_with_cuda() { return false; }
