// Runtime knobs of a backend: thread count and scratch memory. One context per concurrent caller:
// the model and the pipeline are shared between threads, contexts are not. A context that two
// threads use at once is detected (context::enter) and the second call fails with gyolo::error.
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "gyolo/core/backend.hpp"
#include "gyolo/core/error.hpp"
#include "gyolo/core/tensor.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace gyolo {

/// A thread count: t when positive, else OpenMP's default (1 without OpenMP).
inline int resolve_threads(int t) {
  if (t > 0) return t;
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Per-layer wall time and arithmetic, collected while attached to a context (`gyolo bench
/// --per-layer`). Layer code marks the end of each layer; kernels add their FLOPs.
struct layer_profiler {
  struct row {
    std::string layer;  // gyolo.yaml index, e.g. "17" or "12-13"
    double ms = 0, flop = 0;
  };
  std::vector<row> rows;
  /// With record_convs: every convolution run, in order (layer: the layer it belongs to).
  struct conv_call {
    std::string layer;
    int n = 0, cin = 0, h = 0, w = 0, cout = 0, k = 0, stride = 0, pad = 0, groups = 0, activation = 0;
    bool residual = false;
  };
  bool record_convs = false;
  std::vector<conv_call> convs;

  void start() {
    last_ = std::chrono::steady_clock::now();
    flop_ = 0;
  }
  void mark(std::string_view layer) {
    for (std::size_t i = first_unmarked_; i < convs.size(); ++i) convs[i].layer = std::string(layer);
    first_unmarked_ = convs.size();
    const auto now = std::chrono::steady_clock::now();
    rows.push_back({std::string(layer), std::chrono::duration<double, std::milli>(now - last_).count(), flop_});
    flop_ = 0;
    last_ = now;
  }
  void add_flop(double f) { flop_ += f; }

  /// Backward profile (a tape's): each layer's mark in the forward also records a backward step
  /// that calls mark_backward(); steps run newest first, so the time between two such steps is
  /// the backward of the layer marked after the earlier one. Rows are named "bwd <layer>".
  void start_backward() {
    last_ = std::chrono::steady_clock::now();
    open_ = {};
  }
  void mark_backward(std::string_view layer) {
    const auto now = std::chrono::steady_clock::now();
    rows.push_back({"bwd " + std::string(open_.empty() ? "(after last mark)" : open_),
                    std::chrono::duration<double, std::milli>(now - last_).count(), 0});
    open_ = layer;
    last_ = now;
  }
  void end_backward() {
    if (!open_.empty()) mark_backward({});
  }

 private:
  std::chrono::steady_clock::time_point last_{};
  double flop_ = 0;
  std::size_t first_unmarked_ = 0;
  std::string_view open_;  // layer whose backward runs now (names are string literals)
};

/// The single-caller check every context has (enter()): which thread is inside an entry
/// point with the context, and how deeply (nested calls of the same thread: the pipeline calls the
/// model). A moved-to context starts unused.
class single_user {
  struct use_state {
    std::atomic<std::thread::id> owner{};
    int depth = 0;
    use_state() = default;
    use_state(const use_state&) {}
    use_state& operator=(const use_state&) { return *this; }
  };

 public:
  /// Holds the context for the calling thread (see enter()).
  class [[nodiscard]] use_guard {
   public:
    explicit use_guard(single_user* c) : c_(c) {}
    use_guard(const use_guard&) = delete;
    use_guard& operator=(const use_guard&) = delete;
    ~use_guard() {
      if (--c_->use_.depth == 0) c_->use_.owner.store(std::thread::id{}, std::memory_order_release);
    }

   private:
    single_user* c_;
  };

  /// Called by every entry point that runs with this context (model forward and caption, the
  /// pipeline, training steps): marks it in use by the calling thread until the guard ends.
  /// Another thread entering meanwhile gets gyolo::error instead of silently wrong results
  /// (the context's scratch memory would be shared); the same thread may enter again (nested).
  use_guard enter(const char* what) {
    const auto me = std::this_thread::get_id();
    std::thread::id expected{};
    if (!use_.owner.compare_exchange_strong(expected, me, std::memory_order_acq_rel) && expected != me)
      throw error(std::string(what) + ": this gyolo::context is in use by another thread at the same time; give each thread its own context "
                  "(the model and the pipeline can be shared)");
    ++use_.depth;
    return use_guard(this);
  }

 private:
  use_state use_;
};

/// The per-layer profiler a context may carry (not owned; null: none, the default), shared by every
/// backend's context. Each context marks layers its own way (layer()): a device context waits for
/// its stream first.
class profiled {
 public:
  void set_profiler(layer_profiler* p) { prof_ = p; }
  layer_profiler* profiler() const { return prof_; }
  void add_flop(double f) {
    if (prof_) prof_->add_flop(f);
  }

 protected:
  layer_profiler* prof_ = nullptr;
};

/// Threads and scratch memory of backend B for one caller at a time. Thread-safety contract: a
/// loaded model and a pipeline are read-only and may be shared by any number of threads; a context
/// may not. Give each thread its own context (bit-identical results to a single thread's with the
/// same thread count: tests/threads.cpp, also under ThreadSanitizer); a context entered by a second
/// thread while in use throws gyolo::error instead of corrupting its scratch memory (enter()).
/// Device backends specialise it (the CUDA backend: a device, a stream, stream-ordered memory).
template <class B>
class context : public single_user, public profiled {
 public:
  explicit context(int threads = 0) { set_threads(threads); }

  /// 0 = all hardware threads.
  void set_threads(int t) {
#ifdef _OPENMP
    threads_ = t > 0 ? t : omp_get_num_procs();
#else
    threads_ = 1;
    (void)t;
#endif
    scratch_.resize(std::size_t(threads_) + 1);
  }
  int threads() const { return threads_; }

  /// Marks the end of `layer` when profiling and passes its result through: y = ctx.layer("3", f(x)).
  template <class T>
  T layer(std::string_view name, T&& v) {
    if (prof_) prof_->mark(name);
    return std::forward<T>(v);
  }

  /// Per-thread scratch buffer of at least n floats (slot `threads()` is for the calling thread
  /// outside parallel regions). Contents are undefined.
  float* scratch(int slot, std::int64_t n) {
    auto& t = scratch_.at(std::size_t(slot));
    if (t.numel() < n) t.resize({1, 1, 1, int(n)});
    return t.data();
  }
  /// Buffer of at least n floats for weights packed per call (convolutions given unpacked weights:
  /// the train-mode ones), separate from scratch(); kept across calls. Contents are undefined.
  float* pack_scratch(std::int64_t n) {
    if (pack_.numel() < n) pack_.resize({1, 1, 1, int(n)});
    return pack_.data();
  }
  /// Workspace `i` (0..3) of at least n floats for the calling thread's kernels (the training
  /// backward's packed weights and column buffers), separate from scratch() and pack_scratch();
  /// kept across calls, so a loop with fixed shapes allocates nothing after its first step.
  float* workspace(int i, std::int64_t n) {
    auto& t = work_.at(std::size_t(i));
    if (t.numel() < n) t.resize({1, 1, 1, int(n)});
    return t.data();
  }

 private:
  int threads_ = 1;
  std::vector<tensor<float>> scratch_;
  tensor<float> pack_;
  std::array<tensor<float>, 4> work_;
};

}  // namespace gyolo
