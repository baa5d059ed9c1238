// The CUDA runtime behind gyolo::cudart (gyolo/cuda/backend.hpp): devices, streams, stream-ordered
// memory, copies; every failure becomes a cuda_error naming the call. Compiled by the host compiler
// against the CUDA runtime's C API.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "gyolo/cuda/backend.hpp"

namespace gyolo {
namespace cudart {
namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear a sticky-free error so that the next call does not report it again
    throw cuda_error(std::string("CUDA: ") + what + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  }
}
cudaStream_t st(void* s) { return static_cast<cudaStream_t>(s); }
}  // namespace

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

std::string describe() noexcept {
  try {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return std::string("no usable CUDA device: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    }
    if (n == 0) return "no CUDA device";
    std::string r;
    for (int i = 0; i < n; ++i) {
      const auto d = info(i);
      r += "cuda:" + std::to_string(i) + " " + d.name + " (sm_" + std::to_string(d.major) + std::to_string(d.minor) + ", " +
           std::to_string(d.multiprocessors) + " SMs, " + std::to_string(d.memory >> 20) + " MiB)\n";
    }
    return r;
  } catch (const std::exception& e) {
    return e.what();
  }
}

void require_device(int device) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw cuda_error(std::string("CUDA requested but no usable GPU: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                     "); run on the CPU backend (--device cpu)");
  }
  if (device < 0 || device >= n)
    throw cuda_error("CUDA device " + std::to_string(device) + " requested, this machine has " + std::to_string(n) +
                     (n == 1 ? " device (cuda:0)" : n ? " devices (cuda:0.." + std::to_string(n - 1) + ")" : " devices"));
}

device_info info(int device) {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  return {p.name, p.major, p.minor, p.multiProcessorCount, p.totalGlobalMem};
}

void* create_stream(int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  // Keep freed stream-ordered memory in the device's pool (the default threshold returns it to the
  // system at every synchronisation): the caching allocator.
  cudaMemPool_t pool{};
  if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
    std::uint64_t keep = UINT64_MAX;
    (void)cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
  }
  (void)cudaGetLastError();
  cudaStream_t s{};
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  return s;
}
void destroy_stream(void* s) noexcept {
  if (s) {
    (void)cudaStreamSynchronize(st(s));
    (void)cudaStreamDestroy(st(s));
  }
}
void synchronize(void* s) { check(cudaStreamSynchronize(st(s)), "a kernel on the stream (cudaStreamSynchronize)"); }

void* alloc_async(std::size_t bytes, void* s) {
  void* p = nullptr;
  if (bytes == 0) bytes = 4;
  const cudaError_t e = cudaMallocAsync(&p, bytes, st(s));
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw resource_error("CUDA: out of device memory allocating " + std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB");
  }
  check(e, "cudaMallocAsync");
  return p;
}
void free_async(void* p, void* s) noexcept {
  if (p) (void)cudaFreeAsync(p, st(s));
}
void* alloc(int device, std::size_t bytes) {
  check(cudaSetDevice(device), "cudaSetDevice");
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 4);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw resource_error("CUDA: out of device memory allocating " + std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB of parameters");
  }
  check(e, "cudaMalloc");
  return p;
}
void free(void* p) noexcept {
  if (p) (void)cudaFree(p);
}
void copy_h2d(void* d, const void* h, std::size_t n, void* s) { check(cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, st(s)), "copy to the device"); }
void copy_d2h(void* h, const void* d, std::size_t n, void* s) { check(cudaMemcpyAsync(h, d, n, cudaMemcpyDeviceToHost, st(s)), "copy to the host"); }
void copy_d2d(void* d, const void* x, std::size_t n, void* s) {
  check(cudaMemcpyAsync(d, x, n, cudaMemcpyDeviceToDevice, st(s)), "device copy");
}
void copy_h2d_sync(int device, void* d, const void* h, std::size_t n) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice), "parameter upload (cudaMemcpy)");
}
void copy_d2h_sync(int device, void* h, const void* d, std::size_t n) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost), "parameter download (cudaMemcpy)");
}
}  // namespace cudart

device_tensor to_device(context<cuda>& ctx, cview<float> x) {
  device_tensor t = storage<cuda>::alloc(ctx, x.shape());
  const std::size_t img = std::size_t(x.c) * std::size_t(x.plane()) * sizeof(float);
  if (x.contiguous()) {
    cudart::copy_h2d(t.data(), x.data, img * std::size_t(x.n), ctx.stream());
  } else {
    for (int i = 0; i < x.n; ++i) cudart::copy_h2d(t.data() + std::int64_t(i) * x.c * x.plane(), x.image(i), img, ctx.stream());
  }
  // Pageable host memory: the runtime has staged the bytes when the call returns, but wait anyway so
  // that the caller may free or reuse x at once whatever kind of memory it is.
  ctx.synchronize();
  return t;
}

tensor<float> to_host(context<cuda>& ctx, cdview x) {
  tensor<float> t(x.shape());
  const std::size_t img = std::size_t(x.c) * std::size_t(x.plane()) * sizeof(float);
  for (int i = 0; i < x.n; ++i) cudart::copy_d2h(t.data() + std::int64_t(i) * x.c * x.plane(), x.image(i), img, ctx.stream());
  ctx.synchronize();
  return t;
}

}  // namespace gyolo
