// kernels<cuda>: launches of the per-element bodies (gyolo/cuda/bodies.cuh) on the context's
// stream, and the tiled implicit-GEMM convolution. No host synchronisation here: errors of a launch
// are checked (cudaGetLastError), errors while running surface at the next synchronize.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <string>

#include "gyolo/cuda/backend.hpp"
#include "gyolo/cuda/bodies.cuh"
#include "launch.cuh"

namespace gyolo {
namespace {
namespace cb = cuda_bodies;
using cuda_launch::check_launch;
using cuda_launch::dv;
using cuda_launch::launch;
using cuda_launch::stream_of;

cb::conv_params params(const conv_desc& d) { return {d.cin, d.cout, d.k, d.stride, d.pad, d.groups, int(d.activation)}; }

// The tiled implicit-GEMM convolution (cuda_bodies::conv_tile: its phases are shared with the host
// tests' emulation); the barriers between the phases are the kernel's own.
__global__ void __launch_bounds__(cb::conv_tile::threads) conv_tiled(cb::conv_tile f) {
  __shared__ cb::conv_tile::smem s;
  float acc[cb::conv_tile::TM][cb::conv_tile::TN];
#pragma unroll
  for (int i = 0; i < cb::conv_tile::TM; ++i)
#pragma unroll
    for (int j = 0; j < cb::conv_tile::TN; ++j) acc[i][j] = 0.f;
  const int K = f.K();
  for (int k0 = 0; k0 < K; k0 += cb::conv_tile::BK) {
    f.load(threadIdx.x, k0, blockIdx.x, blockIdx.y, blockIdx.z, s);
    __syncthreads();
    f.compute(threadIdx.x, s, acc);
    __syncthreads();
  }
  f.store(threadIdx.x, blockIdx.x, blockIdx.y, blockIdx.z, acc);
}

struct to_half {
  __host__ __device__ __half operator()(float v) const { return __float2half_rn(v); }
};

// The tensor-core convolution (cuda_bodies::conv_tile_tc: staging and epilogue shared with the host
// tests); WMMA 16x16x16, half inputs, fp32 accumulators; warp w computes rows (w / 2) * 32 and
// columns (w % 2) * 32 of the block's 64 x 64 tile as 2 x 2 fragments.
__global__ void __launch_bounds__(cb::conv_tile_tc<__half>::threads) conv_tc(cb::conv_tile_tc<__half> f) {
  using T = cb::conv_tile_tc<__half>;
  namespace wmma = nvcuda::wmma;
  __shared__ T::smem s;
  const int warp = int(threadIdx.x) / 32, wm = warp / 2, wn = warp % 2;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  const int K = f.K();
  for (int k0 = 0; k0 < K; k0 += T::BK) {
    f.load(int(threadIdx.x), k0, int(blockIdx.x), int(blockIdx.y), int(blockIdx.z), s, to_half{});
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &s.A[wm * 32 + i * 16][0], T::lda);
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &s.B[0][wn * 32 + j * 16], T::ldb);
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::store_matrix_sync(&s.C[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], T::ldc, wmma::mem_row_major);
  __syncthreads();
  f.store(int(threadIdx.x), int(blockIdx.x), int(blockIdx.y), int(blockIdx.z), s);
}

}  // namespace

void kernels<cuda>::conv2d(ctx_t& ctx, cdview x, conv_weights<device_space> wt, dview y, const conv_desc& d, cdview residual) {
  if (y.numel() == 0) return;
  const cb::conv_params p = params(d);
  const int cin_g = d.cin / d.groups, cout_g = d.cout / d.groups;
  ctx.add_flop(2.0 * double(y.numel()) * cin_g * d.k * d.k);
  // Few inputs per output (depthwise) or few outputs per group: the direct kernel.
  if (cin_g * d.k * d.k < cb::conv_tile::BK || cout_g < 16) {
    launch(ctx, cb::conv_direct{dv(x), wt.w, wt.b, dv(y), dv(residual), p}, y.numel(), "conv_direct");
    return;
  }
  if (ctx.precision() == cuda_precision::fp16) {
    const cb::conv_tile_tc<__half> f{dv(x), wt.w, wt.b, dv(y), dv(residual), p};
    const dim3 grid(unsigned(f.grid_x()), unsigned(f.grid_y()), unsigned(f.grid_z()));
    GYOLO_CHECK(grid.z <= 65535u, "conv2d (cuda): batch x groups " + std::to_string(grid.z) + " exceeds the grid's 65535");
    conv_tc<<<grid, cb::conv_tile_tc<__half>::threads, 0, stream_of(ctx)>>>(f);
    check_launch("conv_tc");
    return;
  }
  const cb::conv_tile f{dv(x), wt.w, wt.b, dv(y), dv(residual), p};
  const dim3 grid(unsigned(f.grid_x()), unsigned(f.grid_y()), unsigned(f.grid_z()));
  GYOLO_CHECK(grid.z <= 65535u, "conv2d (cuda): batch x groups " + std::to_string(grid.z) + " exceeds the grid's 65535");
  conv_tiled<<<grid, cb::conv_tile::threads, 0, stream_of(ctx)>>>(f);
  check_launch("conv_tiled");
}

void kernels<cuda>::maxpool2d(ctx_t& ctx, cdview x, dview y, int k, int s, int p) {
  launch(ctx, cb::maxpool{dv(x), dv(y), k, s, p}, y.numel(), "maxpool");
}
void kernels<cuda>::avgpool2x2s1(ctx_t& ctx, cdview x, dview y) { launch(ctx, cb::avgpool2x2s1{dv(x), dv(y)}, y.numel(), "avgpool"); }
void kernels<cuda>::upsample2x(ctx_t& ctx, cdview x, dview y) { launch(ctx, cb::upsample2x{dv(x), dv(y)}, y.numel(), "upsample2x"); }
void kernels<cuda>::copy(ctx_t& ctx, cdview x, dview y) {
  GYOLO_CHECK(x.shape() == y.shape(), "copy (cuda): shapes differ: " + x.shape().str() + " vs " + y.shape().str());
  launch(ctx, cb::copy{dv(x), dv(y)}, y.numel(), "copy");
}
void kernels<cuda>::add(ctx_t& ctx, cdview a, cdview b, dview y) { launch(ctx, cb::add{dv(a), dv(b), dv(y)}, y.numel(), "add"); }
void kernels<cuda>::psa_attention(ctx_t& ctx, cdview qkv, dview y, int heads, int kd, int hd, float scale) {
  launch(ctx, cb::psa_attention{dv(qkv), dv(y), heads, kd, hd, scale}, std::int64_t(qkv.n) * heads * hd * qkv.h * qkv.w, "psa_attention");
}
void kernels<cuda>::flatten_into(ctx_t& ctx, cdview x, dview y, std::int64_t a0) {
  launch(ctx, cb::flatten_into{dv(x), dv(y), a0}, x.numel(), "flatten_into");
}
void kernels<cuda>::detect_decode(ctx_t& ctx, const std::vector<cdview>& levels, const std::vector<float>& strides, const float* dfl_w,
                                  int reg_max, int nc, dview pred) {
  GYOLO_CHECK(!levels.empty() && levels.size() <= std::size_t(cb::detect_decode::max_levels) && strides.size() == levels.size(),
              "detect_decode (cuda): 1 to 4 levels, one stride each");
  GYOLO_CHECK(reg_max > 0 && reg_max <= cb::detect_decode::max_reg, "detect_decode (cuda): reg_max must be 1..16");
  cb::detect_decode f{};
  f.nl = int(levels.size());
  f.reg_max = reg_max;
  f.nc = nc;
  std::int64_t a = 0;
  for (int l = 0; l < f.nl; ++l) {
    f.lv[l] = dv(levels[std::size_t(l)]);
    f.stride[l] = strides[std::size_t(l)];
    f.start[l] = a;
    a += std::int64_t(levels[std::size_t(l)].h) * levels[std::size_t(l)].w;
  }
  f.start[f.nl] = a;
  for (int i = 0; i < reg_max; ++i) f.dfl[i] = dfl_w[i];
  f.pred = dv(pred);
  launch(ctx, f, std::int64_t(pred.n) * a, "detect_decode");
}

}  // namespace gyolo
