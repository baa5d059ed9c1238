// What the .cu files share to launch the per-element bodies (gyolo/cuda/bodies.cuh) on a context's
// stream: the grid-stride kernel, the launch with its error check, and the views as the bodies see
// them. Internal to gyolo::cuda (included by kernels.cu and transformer.cu only).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "gyolo/cuda/backend.hpp"
#include "gyolo/cuda/bodies.cuh"

namespace gyolo::cuda_launch {

/// Throws cuda_error if the last launch failed (errors while running surface at a synchronisation).
inline void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw cuda_error(std::string("CUDA kernel ") + what + " failed to launch: " + cudaGetErrorString(e));
}

inline cudaStream_t stream_of(const context<cuda>& ctx) { return static_cast<cudaStream_t>(ctx.stream()); }

template <class F>
__global__ void each_kernel(F f, std::int64_t n) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) f(i);
}

/// Runs body f over [0, n) on the context's stream (grid-stride loop, `threads` per block).
template <class F>
void launch(context<cuda>& ctx, const F& f, std::int64_t n, const char* what, int threads = 256) {
  if (n <= 0) return;
  const std::int64_t blocks = std::min<std::int64_t>((n + threads - 1) / threads, std::int64_t(1) << 20);
  each_kernel<<<unsigned(blocks), unsigned(threads), 0, stream_of(ctx)>>>(f, n);
  check_launch(what);
}

inline cuda_bodies::tv dv(dview v) { return {v.data, v.n, v.c, v.h, v.w, v.batch_stride}; }
inline cuda_bodies::ctv dv(cdview v) { return {v.data, v.n, v.c, v.h, v.w, v.batch_stride}; }

}  // namespace gyolo::cuda_launch
