// Reverse-mode recording for train-mode modules. A train-mode forward allocates its activations
// from the tape (each value with a gradient buffer of the same layout, so a channel slice of a
// concat buffer has the matching slice of the concat's gradient) and records one backward step
// per operation; backward() runs them in reverse. Gradients ACCUMULATE everywhere (+=).
//
// Memory: the tape keeps its slots across steps (reset() rewinds, it does not free), so a
// training loop with fixed shapes allocates nothing after its first step. That includes the
// recorded backward steps: their closures live in a byte arena owned by the tape (step_arena),
// not in std::functions, and the arena's chunks are kept across reset().
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "gyolo/core/context.hpp"
#include "gyolo/core/parallel.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/train/ops_ref.hpp"

namespace gyolo {

/// A value view plus its gradient view (same shape and batch stride). gdata == nullptr: no
/// gradient flows into this value (network input, detached tensors).
struct tview : view<float> {
  float* gdata = nullptr;
  tview() = default;
  tview(view<float> v, float* g) : view<float>(v), gdata(g) {}
  view<float> val() const { return *this; }
  view<float> grad() const { return {gdata, n, c, h, w, batch_stride}; }
  bool has_grad() const { return gdata != nullptr; }
  tview slice(int c0, int count) const {
    auto s = view<float>::slice(c0, count);
    return {s, gdata ? gdata + std::int64_t(c0) * plane() : nullptr};
  }
  tview batch(int i) const { return {view<float>::batch(i), gdata ? gdata + i * batch_stride : nullptr}; }
  /// The same values with no gradient path (torch's .detach()).
  tview detach() const { return {val(), nullptr}; }
};

/// A tape-owned tensor (value + gradient): the train-mode counterpart of `dtensor<B>`.
struct tvar {
  tview t;
  shape4 shape() const { return t.shape(); }
  std::int64_t numel() const { return t.numel(); }
  tview v() const { return t; }
  tview cv() const { return t; }
};

/// Type-erased callables (the tape's backward steps) placement-constructed in chunked storage that
/// is kept across clear(): recording the same sequence of closures again allocates nothing.
class step_arena {
 public:
  step_arena() = default;
  step_arena(const step_arena&) = delete;
  step_arena& operator=(const step_arena&) = delete;
  ~step_arena() {
    clear();
    for (auto& c : chunks_) ::operator delete(c.p, std::align_val_t{chunk_align});
  }

  /// Stores a copy (or the moved value) of f; it is run by run_reverse() and destroyed by clear().
  template <class F>
  void push(F&& f) {
    using T = std::decay_t<F>;
    static_assert(std::is_invocable_v<T&>, "tape::record: the step must be callable with no arguments");
    static_assert(alignof(T) <= chunk_align, "tape::record: over-aligned step");
    void* mem = place(sizeof(T), alignof(T));
    T* obj = ::new (mem) T(std::forward<F>(f));
    entry e{obj, [](void* o) { (*static_cast<T*>(o))(); }, nullptr};
    if constexpr (!std::is_trivially_destructible_v<T>) e.destroy = [](void* o) { static_cast<T*>(o)->~T(); };
    try {
      steps_.push_back(e);
    } catch (...) {
      if (e.destroy) e.destroy(obj);
      throw;
    }
  }
  std::size_t size() const { return steps_.size(); }
  /// Runs the steps newest first.
  void run_reverse() const {
    for (std::size_t i = steps_.size(); i-- > 0;) steps_[i].call(steps_[i].obj);
  }
  /// Destroys the steps (newest first); the storage and the step vector's capacity are kept.
  void clear() {
    for (std::size_t i = steps_.size(); i-- > 0;)
      if (steps_[i].destroy) steps_[i].destroy(steps_[i].obj);
    steps_.clear();
    chunk_ = 0;
    used_ = 0;
  }
  /// Bytes of closure storage held.
  std::size_t capacity_bytes() const {
    std::size_t b = 0;
    for (auto& c : chunks_) b += c.size;
    return b;
  }

  static constexpr std::size_t chunk_align = 64;
  static constexpr std::size_t chunk_bytes = std::size_t(64) << 10;

 private:
  struct entry {
    void* obj;
    void (*call)(void*);
    void (*destroy)(void*);
  };
  struct chunk {
    std::byte* p;
    std::size_t size;
  };
  /// size bytes aligned to align in the current chunk, else in the next one that fits (chunks too
  /// small for an object are skipped, not freed; a new chunk is inserted when none fits).
  void* place(std::size_t size, std::size_t align) {
    for (;;) {
      if (chunk_ < chunks_.size()) {
        const std::size_t off = (used_ + align - 1) / align * align;
        if (off + size <= chunks_[chunk_].size) {
          used_ = off + size;
          return chunks_[chunk_].p + off;
        }
        if (used_ == 0 && chunks_[chunk_].size < size) {
          insert_chunk(chunk_, size);  // steady state: the same object lands here again next step
          continue;
        }
        ++chunk_;
        used_ = 0;
        continue;
      }
      insert_chunk(chunk_, size);
    }
  }
  void insert_chunk(std::size_t at, std::size_t need) {
    const std::size_t sz = std::max(chunk_bytes, (need + chunk_align - 1) / chunk_align * chunk_align);
    chunks_.reserve(chunks_.size() + 1);
    auto* p = static_cast<std::byte*>(::operator new(sz, std::align_val_t{chunk_align}));
    chunks_.insert(chunks_.begin() + std::ptrdiff_t(at), chunk{p, sz});
  }

  std::vector<chunk> chunks_;
  std::size_t chunk_ = 0, used_ = 0;  // bump position: chunk index, bytes used in it
  std::vector<entry> steps_;
};

template <class B>
class tape {
 public:
  explicit tape(context<B>& ctx) : ctx_(ctx), ref_ws_(std::size_t(std::max(1, ctx.threads()))) {}
  tape(const tape&) = delete;
  tape& operator=(const tape&) = delete;

  context<B>& ctx() { return ctx_; }
  int threads() const { return ctx_.threads(); }

  /// true: BatchNorm uses batch statistics and updates its running statistics (module.train());
  /// false: running statistics (module.eval()), still differentiable.
  bool training = true;
  /// true: every BatchNorm normalises with its running statistics and leaves them alone even when
  /// `training` (FrozenBatchNorm2d, as upstream's caption/tune.py); dropout still follows `training`.
  bool frozen_bn = false;
  /// BatchNorm running-statistics momentum and epsilon (upstream: 0.03, 1e-3).
  double bn_momentum = 0.03, bn_eps = 1e-3;

  /// A new zero-gradient tensor; with grad = false it carries no gradient buffer.
  tvar alloc(shape4 s, bool grad = true) {
    if (cursor_ == slots_.size()) slots_.push_back(std::make_unique<slot>());
    slot& sl = *slots_[cursor_++];
    sl.value.resize(s);
    float* g = nullptr;
    if (grad) {
      sl.grad.resize(s);
      g = sl.grad.data();
      zero(g, s.numel());
    }
    const std::int64_t bs = std::int64_t(s.c) * s.h * s.w;
    return {tview{view<float>{sl.value.data(), s.n, s.c, s.h, s.w, bs}, g}};
  }
  /// A tape-owned tensor that holds a copy of x (the network input), with or without a gradient.
  tvar input(cview<float> x, bool grad = false) {
    auto t = alloc(x.shape(), grad);
    for (int i = 0; i < x.n; ++i)
      std::memcpy(t.t.image(i), x.image(i), std::size_t(x.c * x.plane()) * sizeof(float));
    return t;
  }
  /// Small per-call saved state (BatchNorm mean/invstd): a float buffer that lives until reset().
  float* save(std::size_t n) {
    if (saved_cursor_ == saved_.size()) saved_.emplace_back();
    auto& v = saved_[saved_cursor_++];
    v.resize(n);
    return v.data();
  }
  /// Typed counterparts of save() (token ids and positions, boolean masks, row lists): n elements
  /// (contents undefined) that live until reset(); the buffers are kept across reset().
  std::int64_t* save_i64(std::size_t n) { return saved_i64_.get(n); }
  int* save_i32(std::size_t n) { return saved_i32_.get(n); }
  unsigned char* save_u8(std::size_t n) { return saved_u8_.get(n); }
  /// Temporary buffer for one backward step (index 0..3), contents undefined.
  float* scratch(int i, std::int64_t n) {
    auto& t = scratch_[std::size_t(i)];
    if (t.numel() < n) t.resize({1, 1, 1, int(n)});
    return t.data();
  }
  /// Temporary arrays of the reference kernels (train::ref::maxpool2d_backward, ...), reused
  /// across calls and steps: one per thread of the context (slot i for OpenMP thread i; the ops
  /// run images of a batch in parallel).
  train::ref::workspace& ref_workspace(int i = 0) { return ref_ws_.at(std::size_t(i)); }

  /// Records the backward step of the operation just run: any callable with no arguments (a
  /// lambda), stored in the tape's step arena (no allocation once the arena has grown to a step's
  /// size). It is destroyed by reset() or the tape's destructor.
  template <class F>
  void record(F&& f) { steps_.push(std::forward<F>(f)); }
  std::size_t steps() const { return steps_.size(); }

  /// Runs every recorded backward step, newest first. The caller has written dL/d(output) into
  /// the outputs' gradient buffers.
  void backward() {
    if (prof_) prof_->start_backward();
    steps_.run_reverse();
    if (prof_) prof_->end_backward();
  }
  /// Forgets the recorded steps and rewinds the arena (buffers are kept for the next step).
  void reset() {
    steps_.clear();  // destroys the closures, keeps their storage
    cursor_ = 0;
    saved_cursor_ = 0;
    saved_i64_.cursor = 0;
    saved_i32_.cursor = 0;
    saved_u8_.cursor = 0;
  }
  /// Bytes held by activations and gradients.
  std::size_t bytes() const {
    std::size_t b = 0;
    for (auto& s : slots_) b += std::size_t(s->value.numel() + s->grad.numel()) * sizeof(float);
    return b;
  }

  /// Sets n floats to zero, in parallel when large (the gradient buffers of a 640x640 step are
  /// gigabytes: a serial memset leaves the other threads idle).
  void zero(float* p, std::int64_t n) {
    const int T = ctx_.threads();
    if (n < (std::int64_t(1) << 18) || T <= 1) {
      std::memset(p, 0, sizeof(float) * std::size_t(n));
      return;
    }
    par::for_static(T, T, [&](int i) {
      const std::int64_t a = n * i / T, b = n * (i + 1) / T;
      std::memset(p + a, 0, sizeof(float) * std::size_t(b - a));
    });
  }

  /// Per-layer profile of the forward and the backward (null: none, the default). Not owned. The
  /// graph marks the end of each layer with layer(); layer names must outlive the step.
  void set_profiler(layer_profiler* p) { prof_ = p; }
  layer_profiler* profiler() const { return prof_; }
  template <class T>
  T layer(std::string_view name, T&& v) {
    if (prof_) {
      prof_->mark(name);
      record([p = prof_, name] { p->mark_backward(name); });
    }
    return std::forward<T>(v);
  }
  void add_flop(double) {}

 private:
  struct slot {
    tensor<float> value, grad;
  };
  /// Buffers of T handed out in order and rewound by reset() (a buffer's storage survives the
  /// outer vector's growth: moving a std::vector keeps its data pointer).
  template <class T>
  struct saved_pool {
    std::vector<std::vector<T>> bufs;
    std::size_t cursor = 0;
    T* get(std::size_t n) {
      if (cursor == bufs.size()) bufs.emplace_back();
      auto& v = bufs[cursor++];
      v.resize(std::max<std::size_t>(n, 1));
      return v.data();
    }
  };
  context<B>& ctx_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::size_t cursor_ = 0;
  std::vector<std::vector<float>> saved_;
  std::size_t saved_cursor_ = 0;
  saved_pool<std::int64_t> saved_i64_;
  saved_pool<int> saved_i32_;
  saved_pool<unsigned char> saved_u8_;
  std::array<tensor<float>, 4> scratch_;
  std::vector<train::ref::workspace> ref_ws_;
  layer_profiler* prof_ = nullptr;
  step_arena steps_;  // declared last: closures are destroyed before the buffers they may point to
};

}  // namespace gyolo
