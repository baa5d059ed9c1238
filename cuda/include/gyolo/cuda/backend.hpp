// The CUDA backend as C++ sees it: device tensors and parameters (storage<cuda>), the context (a
// device, one stream, stream-ordered memory from the device's pool), and kernels<cuda>'s
// declarations. Plain C++: no CUDA header is included, so a program links gyolo::cuda without nvcc.
// The kernels are defined in cuda/src/*.cu (their per-element bodies in gyolo/cuda/bodies.cuh,
// which the host tests run too); the runtime calls in cuda/src/runtime.cpp.
//
// Layer code does not change: it allocates through op::alloc (storage<cuda>::alloc, on the
// context's stream), passes bview<cuda> / cbview<cuda> (device-space views: a host view cannot be
// handed to a device kernel, the types differ) and calls kernels<cuda>. Nothing in a forward pass
// synchronises the host; to_host() at the edge does.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gyolo/core/backend.hpp"
#include "gyolo/core/context.hpp"
#include "gyolo/core/error.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/kernels/desc.hpp"
#include "gyolo/kernels/transformer.hpp"
#include "gyolo/layers/conv.hpp"

namespace gyolo {

/// A CUDA runtime failure, or CUDA asked for where there is no usable GPU or driver. The message
/// names the call and the runtime's own words.
struct cuda_error : error {
  using error::error;
};

/// Thin wrappers over the CUDA runtime (compiled in gyolo::cuda). Streams and pointers are opaque.
namespace cudart {
/// Number of usable devices; 0 without a driver or a GPU (never throws).
int device_count() noexcept;
/// Why device_count() is 0 (the runtime's words), or a line per device.
std::string describe() noexcept;
/// Throws cuda_error unless `device` exists and can be used, naming what is missing.
void require_device(int device);
struct device_info {
  std::string name;
  int major = 0, minor = 0, multiprocessors = 0;
  std::size_t memory = 0;
};
device_info info(int device);

void* create_stream(int device);
void destroy_stream(void* stream) noexcept;
void synchronize(void* stream);
/// Stream-ordered memory from the device's default pool, which keeps freed memory for reuse
/// (release threshold raised at stream creation): no cudaMalloc per tensor after warm-up.
void* alloc_async(std::size_t bytes, void* stream);
void free_async(void* p, void* stream) noexcept;
/// Plain device allocations (parameters: loaded once).
void* alloc(int device, std::size_t bytes);
void free(void* p) noexcept;
void copy_h2d(void* dst, const void* src, std::size_t bytes, void* stream);
void copy_d2h(void* dst, const void* src, std::size_t bytes, void* stream);
void copy_d2d(void* dst, const void* src, std::size_t bytes, void* stream);
/// Blocking copy of parameters (load time).
void copy_h2d_sync(int device, void* dst, const void* src, std::size_t bytes);
void copy_d2h_sync(int device, void* dst, const void* src, std::size_t bytes);
}  // namespace cudart

namespace cuda_detail {
/// A stream and its device; shared by a context and every tensor allocated on it, so a tensor that
/// outlives its context still frees on a live stream.
struct stream_state {
  int device = 0;
  void* stream = nullptr;
  explicit stream_state(int d) : device(d), stream(cudart::create_stream(d)) {}
  stream_state(const stream_state&) = delete;
  stream_state& operator=(const stream_state&) = delete;
  ~stream_state() { cudart::destroy_stream(stream); }
};
}  // namespace cuda_detail

namespace cuda_detail {
/// Stream-ordered device scratch of n values of T (the kernels' index lists, resize axes, maps):
/// freed on its stream when it goes out of scope, so kernels queued before that still read it.
template <class T>
class scratch {
 public:
  scratch(void* stream, std::size_t n) : s_(stream) {
    if (n) p_ = static_cast<T*>(cudart::alloc_async(n * sizeof(T), s_));
  }
  /// A device copy of n host values (queued; the host data may be reused once this returns:
  /// a copy from pageable memory is staged before the call returns).
  scratch(void* stream, const T* host, std::size_t n) : scratch(stream, n) {
    if (n) cudart::copy_h2d(p_, host, n * sizeof(T), s_);
  }
  scratch(const scratch&) = delete;
  scratch& operator=(const scratch&) = delete;
  ~scratch() {
    if (p_) cudart::free_async(p_, s_);
  }
  T* get() const { return p_; }

 private:
  void* s_;
  T* p_ = nullptr;
};
}  // namespace cuda_detail

/// Owning device tensor, NCHW float32, allocated on a context's stream (stream-ordered: freeing it
/// while kernels that use it are still queued is safe). Move-only, as the host tensor.
class device_tensor {
 public:
  device_tensor() = default;
  device_tensor(std::shared_ptr<cuda_detail::stream_state> s, shape4 sh) : st_(std::move(s)) { resize(sh); }
  device_tensor(device_tensor&& o) noexcept { swap(o); }
  device_tensor& operator=(device_tensor&& o) noexcept {
    device_tensor t(std::move(o));
    swap(t);
    return *this;
  }
  ~device_tensor() { release(); }

  void resize(shape4 s) {
    GYOLO_CHECK(s.n >= 0 && s.c >= 0 && s.h >= 0 && s.w >= 0, "device tensor: negative shape " + s.str());
    GYOLO_CHECK(st_ != nullptr, "device tensor: no stream (allocate through a context<cuda>)");
    if (s.numel() > capacity_) {
      release();
      data_ = static_cast<float*>(cudart::alloc_async(std::size_t(s.numel()) * sizeof(float), st_->stream));
      capacity_ = s.numel();
    }
    shape_ = s;
  }
  shape4 shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  float* data() { return data_; }
  const float* data() const { return data_; }
  view<float, device_space> v() { return {data_, shape_.n, shape_.c, shape_.h, shape_.w, std::int64_t(shape_.c) * shape_.h * shape_.w}; }
  view<const float, device_space> v() const {
    return {data_, shape_.n, shape_.c, shape_.h, shape_.w, std::int64_t(shape_.c) * shape_.h * shape_.w};
  }
  view<const float, device_space> cv() const { return v(); }

 private:
  void release() noexcept {
    if (data_) cudart::free_async(data_, st_->stream);
    data_ = nullptr;
    capacity_ = 0;
    shape_ = {};
  }
  void swap(device_tensor& o) noexcept {
    std::swap(st_, o.st_);
    std::swap(data_, o.data_);
    std::swap(capacity_, o.capacity_);
    std::swap(shape_, o.shape_);
  }
  std::shared_ptr<cuda_detail::stream_state> st_;
  float* data_ = nullptr;
  std::int64_t capacity_ = 0;
  shape4 shape_{};
};

/// Immutable device parameters (weights, biases): uploaded once at load time; copies share them.
class device_param {
 public:
  device_param() = default;
  const float* data() const { return p_.get(); }
  bool empty() const { return n_ == 0; }
  std::size_t size() const { return n_; }
  static device_param upload(int device, const std::vector<float>& v) {
    device_param d;
    d.device_ = device;
    if (v.empty()) return d;
    float* p = static_cast<float*>(cudart::alloc(device, v.size() * sizeof(float)));
    d.p_ = std::shared_ptr<float>(p, [](float* q) { cudart::free(q); });
    d.n_ = v.size();
    cudart::copy_h2d_sync(device, p, v.data(), v.size() * sizeof(float));
    return d;
  }
  /// The device the parameters live on.
  int device() const { return device_; }
  std::vector<float> download() const {
    std::vector<float> v(n_);
    if (n_) cudart::copy_d2h_sync(device_, v.data(), p_.get(), n_ * sizeof(float));
    return v;
  }

 private:
  std::shared_ptr<float> p_;
  std::size_t n_ = 0;
  int device_ = 0;
};

/// The device that parameters loaded on this thread are uploaded to (default 0). model::load and
/// model::from_source set it from load_options::device for the load's duration
/// (storage<cuda>::load_scope); a thread of its own loads on its own device.
inline int& cuda_load_device() {
  static thread_local int d = 0;
  return d;
}

/// How the CUDA backend's convolutions compute. fp32: SIMT fp32 throughout, within 1e-3 x max|ref|
/// of the CPU backend (the default). fp16: tiles rounded to half precision as they are staged and
/// multiplied on the tensor cores with fp32 accumulation (activations and weights stay fp32 in
/// memory); faster, less exact.
enum class cuda_precision { fp32, fp16 };

template <>
class context<cuda> : public single_user, public profiled {
 public:
  /// A stream on `device`, and a CPU context of `host_threads` threads (0: all) for the host-side
  /// work beside it (post-processing, the caption head). Throws cuda_error naming the problem when
  /// there is no usable GPU.
  explicit context(int device = 0, int host_threads = 0)
      : st_((cudart::require_device(device), std::make_shared<cuda_detail::stream_state>(device))), host_(host_threads) {}
  int device() const { return st_->device; }
  /// The CPU context of the host-side work.
  context<cpu>& host() { return host_; }
  void* stream() const { return st_->stream; }
  const std::shared_ptr<cuda_detail::stream_state>& stream_state() const { return st_; }
  /// Waits for everything queued on the stream (and reports a failed kernel).
  void synchronize() const { cudart::synchronize(st_->stream); }
  /// The host-side threads (post-processing).
  int threads() const { return host_.threads(); }
  void set_precision(cuda_precision p) { precision_ = p; }
  cuda_precision precision() const { return precision_; }

  /// Per-layer profile (set_profiler): with a profiler attached each layer mark waits for the
  /// stream, so the times are the layers' device times (and the pass is slower).
  template <class T>
  T layer(std::string_view name, T&& v) {
    if (prof_) {
      synchronize();
      prof_->mark(name);
    }
    return std::forward<T>(v);
  }

 private:
  std::shared_ptr<cuda_detail::stream_state> st_;
  context<cpu> host_;
  cuda_precision precision_ = cuda_precision::fp32;
};

template <>
struct storage<cuda> {
  using tensor_type = device_tensor;
  using param_type = device_param;
  static param_type upload(std::vector<float> v) { return device_param::upload(cuda_load_device(), v); }
  static std::vector<float> download(const param_type& p) { return p.download(); }
  /// Uploads on this thread go to `device` while it lives (model::load: load_options::device).
  class load_scope {
   public:
    explicit load_scope(int device) : prev_(cuda_load_device()) { cuda_load_device() = device; }
    load_scope(const load_scope&) = delete;
    load_scope& operator=(const load_scope&) = delete;
    ~load_scope() { cuda_load_device() = prev_; }

   private:
    int prev_;
  };
  static tensor_type alloc(context<cuda>& ctx, shape4 s) { return device_tensor(ctx.stream_state(), s); }
};

using dview = view<float, device_space>;
using cdview = view<const float, device_space>;

/// Host -> device at the edge of a pass (queued on the context's stream; the host view may be
/// reused as soon as this returns).
device_tensor to_device(context<cuda>& ctx, cview<float> x);
/// Device -> host: waits for the stream.
tensor<float> to_host(context<cuda>& ctx, cdview x);

template <>
struct kernels<cuda> {
  using ctx_t = context<cuda>;
  /// No packing: the kernels read [cout, cin/g, k, k].
  static device_param prepack(const conv_desc&, const device_param&) { return {}; }
  /// y = act(conv(x, w) + b) [+ residual]
  static void conv2d(ctx_t& ctx, cdview x, conv_weights<device_space> wt, dview y, const conv_desc& d, cdview residual = {});
  static void maxpool2d(ctx_t& ctx, cdview x, dview y, int k, int s, int p);
  static void avgpool2x2s1(ctx_t& ctx, cdview x, dview y);
  static void upsample2x(ctx_t& ctx, cdview x, dview y);
  static void copy(ctx_t& ctx, cdview x, dview y);
  static void add(ctx_t& ctx, cdview a, cdview b, dview y);
  static void psa_attention(ctx_t& ctx, cdview qkv, dview y, int heads, int kd, int hd, float scale);
  /// levels and strides as kernels<reference>::detect_decode; dfl_w is a host pointer (reg_max
  /// values, passed to the kernel by value).
  static void detect_decode(ctx_t& ctx, const std::vector<cdview>& levels, const std::vector<float>& strides, const float* dfl_w,
                            int reg_max, int nc, dview pred);
  static void flatten_into(ctx_t& ctx, cdview x, dview y, std::int64_t a0);
};

/// The caption head's token buffers on the device: [1, 1, 1, n] tensors on the context's stream.
template <>
struct token_store<cuda> {
  using type = device_tensor;
  static type make(context<cuda>& ctx, std::size_t n) { return device_tensor(ctx.stream_state(), {1, 1, 1, int(n)}); }
  static std::size_t size(const type& t) { return std::size_t(t.numel()); }
};

/// The caption head's kernels on the device (cuda/src/transformer.cu; per-element and per-row
/// bodies in gyolo/cuda/bodies.cuh). Matrix views hold device pointers; index lists (ids, anchor
/// positions, rows) and the attention's key mask are host data, copied to the device (the mask by
/// value) by the call. region_scores, semantic_argmax and download_rows wait for the stream: their
/// results are host data.
template <>
struct tkernels<cuda> {
  using ctx_t = context<cuda>;
  static constexpr bool packed_only = false;
  /// Keys a masked attention takes (the mask travels as a kernel argument).
  static constexpr int max_masked_keys = 128;
  /// Largest d_model / heads the attention kernel takes.
  static constexpr int max_head_dim = 64;

  /// No packing: the kernel reads torch's [out, in] layout.
  static linear_pack prepack_linear(const std::vector<float>&, int, int) { return {}; }
  static void linear(ctx_t& ctx, cmview x, const linear_params& p, mview y, act a = act::none);
  static void add_layernorm(ctx_t& ctx, cmview x, cmview r, const float* gamma, const float* beta, float eps, mview y);
  static void attention(ctx_t& ctx, cmview q, cmview k, cmview v, int heads, mview y, const unsigned char* key_masked = nullptr);
  static void gate_mix(ctx_t& ctx, cmview e1, cmview a1, cmview e2, cmview a2, mview y);
  static void log_softmax(ctx_t& ctx, cmview x, mview y);
  static void copy(ctx_t& ctx, cmview x, mview y);
  static void fill(ctx_t& ctx, mview y, float v);
  static void embed(ctx_t& ctx, const float* table, std::span<const std::int64_t> ids, const float* pos, mview y);
  static void gather_columns(ctx_t& ctx, cdview x, int img, std::span<const std::int64_t> at, dview g);
  static void columns_to_rows(ctx_t& ctx, cdview y, std::span<const int> rows, int row0, mview out);
  static std::vector<float> region_scores(ctx_t& ctx, const std::array<cdview, 3>& d3, int img, int reg_max);
  static std::vector<std::int64_t> semantic_argmax(ctx_t& ctx, cdview sem, int img);
  static void download_rows(ctx_t& ctx, cmview x, std::span<const int> rows, float* dst, std::int64_t ld);
};

}  // namespace gyolo
