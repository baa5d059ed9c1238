// Reverse-mode recording for train-mode modules. A train-mode forward allocates its activations
// from the tape (each value with a gradient buffer of the same layout, so a channel slice of a
// concat buffer has the matching slice of the concat's gradient) and records one backward step
// per operation; backward() runs them in reverse. Gradients ACCUMULATE everywhere (+=).
//
// Memory: the tape keeps its slots across steps (reset() rewinds, it does not free), so a
// training loop with fixed shapes allocates nothing after its first step.
#pragma once
#include <cstring>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "gyolo/core/context.hpp"
#include "gyolo/core/tensor.hpp"

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

/// A tape-owned tensor (value + gradient): the train-mode counterpart of dtensor<B>.
struct tvar {
  tview t;
  shape4 shape() const { return t.shape(); }
  std::int64_t numel() const { return t.numel(); }
  tview v() const { return t; }
  tview cv() const { return t; }
};

template <class B>
class tape {
 public:
  explicit tape(context<B>& ctx) : ctx_(ctx) {}
  tape(const tape&) = delete;
  tape& operator=(const tape&) = delete;

  context<B>& ctx() { return ctx_; }
  int threads() const { return ctx_.threads(); }

  /// true: BatchNorm uses batch statistics and updates its running statistics (module.train());
  /// false: running statistics (module.eval()), still differentiable.
  bool training = true;
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
  /// Temporary buffer for one backward step (index 0..3), contents undefined.
  float* scratch(int i, std::int64_t n) {
    auto& t = scratch_[std::size_t(i)];
    if (t.numel() < n) t.resize({1, 1, 1, int(n)});
    return t.data();
  }

  /// Records the backward step of the operation just run.
  void record(std::function<void()> f) { steps_.push_back(std::move(f)); }
  std::size_t steps() const { return steps_.size(); }

  /// Runs every recorded backward step, newest first. The caller has written dL/d(output) into
  /// the outputs' gradient buffers.
  void backward() {
    for (std::size_t i = steps_.size(); i-- > 0;) steps_[i]();
  }
  /// Forgets the recorded steps and rewinds the arena (buffers are kept for the next step).
  void reset() {
    steps_.clear();
    cursor_ = 0;
    saved_cursor_ = 0;
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
#pragma omp parallel for schedule(static) num_threads(T)
    for (int i = 0; i < T; ++i) {
      const std::int64_t a = n * i / T, b = n * (i + 1) / T;
      std::memset(p + a, 0, sizeof(float) * std::size_t(b - a));
    }
  }

  // Mirrors of context<B>'s profiling hooks so that mode-generic layer code compiles.
  layer_profiler* profiler() const { return nullptr; }
  template <class T> T layer(std::string_view, T&& v) { return std::forward<T>(v); }
  void add_flop(double) {}

 private:
  struct slot {
    tensor<float> value, grad;
  };
  context<B>& ctx_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::size_t cursor_ = 0;
  std::vector<std::vector<float>> saved_;
  std::size_t saved_cursor_ = 0;
  std::array<tensor<float>, 4> scratch_;
  std::vector<std::function<void()>> steps_;
};

}  // namespace gyolo
