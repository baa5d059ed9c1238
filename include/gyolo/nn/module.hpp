// Modules described once. Every module names its children, parameters, buffers and structural
// integers in ONE static function
//
//   template <class V, class... S> static void fields(V& v, S&... s) {
//     v.value("c", s.c...);          // structural integers (copied by fold, ignored by loaders)
//     v.child("cv1", s.cv1...);      // sub-modules (also std::vector / std::array of them)
//     v.param("conv.weight", s.w...);  // trainable tensors (leaves only)
//     v.buffer("bn.running_mean", s.rm...);  // non-trainable state (BatchNorm statistics)
//   }
//
// called with one module (walks: loading, saving, the list of expected tensors and shapes,
// zero-grad, optimizer state) or with two modules of the same shape in lockstep (fold: a
// train-mode module into its inference form). Nothing else in the library spells a module's
// member names.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/model/weights.hpp"

namespace gyolo {

/// Mode of a module: inference (folded Conv+BN, merged convs, no auxiliary branch) or training
/// (upstream's parameters unfolded, BatchNorm statistics, gradients).
struct infer_mode {};
struct train_mode {};
template <class M> inline constexpr bool is_train_mode = std::is_same_v<M, train_mode>;

inline std::int64_t dims_numel(const dims& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

/// A trainable tensor: fp32 values and their gradient, with its PyTorch shape.
struct param {
  dims shape;
  std::vector<float> value, grad;
  /// A BatchNorm or LayerNorm weight (set by the module's init): upstream's optimizers put these
  /// in the group without weight decay, as biases.
  bool norm_weight = false;
  /// Whether a backward step ever wrote the gradient (PyTorch: `.grad is not None`; zero_grad keeps
  /// it). Optimizers skip parameters that never received one, as torch.optim does.
  bool has_grad = false;
  void init(dims s) {
    shape = std::move(s);
    value.assign(std::size_t(dims_numel(shape)), 0.0f);
    grad.clear();
    has_grad = false;
  }
  std::int64_t numel() const { return std::int64_t(value.size()); }
  /// The gradient buffer, allocated (zero) on first use: models loaded for inference never hold one.
  /// Backward steps call it to add their contribution.
  float* g() {
    if (grad.size() != value.size()) grad.assign(value.size(), 0.0f);
    has_grad = true;
    return grad.data();
  }
};

/// A non-trainable state tensor (BatchNorm running statistics).
struct buffer {
  dims shape;
  std::vector<float> value;
  void init(dims s, float fill = 0.0f) {
    shape = std::move(s);
    value.assign(std::size_t(dims_numel(shape)), fill);
  }
  std::int64_t numel() const { return std::int64_t(value.size()); }
};

namespace nn {

template <class T> struct is_vector : std::false_type {};
template <class T, class A> struct is_vector<std::vector<T, A>> : std::true_type {};
template <class T> struct is_array : std::false_type {};
template <class T, std::size_t N> struct is_array<std::array<T, N>> : std::true_type {};

/// Calls T::fields(v, m...) or, for containers, v.child(index, element...) per element.
template <class V, class M, class... Ms>
void visit_fields(V& v, M& m, Ms&... ms) {
  using T = std::remove_cvref_t<M>;
  if constexpr (is_vector<T>::value || is_array<T>::value) {
    if constexpr (is_vector<T>::value) (ms.resize(m.size()), ...);
    for (std::size_t i = 0; i < m.size(); ++i) v.child(std::to_string(i), m[i], ms[i]...);
  } else {
    T::fields(v, m, ms...);
  }
}

/// Walks one module depth-first with dotted upstream names ("model.3.cv2.0.m.0.cv1.conv.weight").
/// F provides param(name, param&) and buffer(name, buffer&) (either may be a no-op).
/// Which optional parts of a model a walk includes: the auxiliary (training-only) branch and the
/// main one-to-many head (cv4/cv5/dfl2), which inference loads only on request.
struct parts {
  bool aux = true, o2m = true;
};

template <class F>
struct name_walker {
  std::string prefix;
  F& f;
  parts p{};
  template <class C> void child(std::string_view name, C& c) {
    name_walker sub{prefix + std::string(name) + ".", f, p};
    visit_fields(sub, c);
  }
  template <class C> void aux(std::string_view name, C& c) {
    if (p.aux) child(name, c);
  }
  template <class C> void o2m(std::string_view name, C& c) {
    if (p.o2m) child(name, c);
  }
  template <class P> void param(std::string_view name, P& p) { f.param(prefix + std::string(name), p); }
  template <class P> void buffer(std::string_view name, P& p) { f.buffer(prefix + std::string(name), p); }
  template <class I> void value(std::string_view, I&) {}
};

/// Visits every parameter and buffer of `m` under `prefix` (e.g. "model.3").
template <class M, class F>
void walk(M& m, const std::string& prefix, F&& f, parts p = {}) {
  name_walker<std::remove_reference_t<F>> w{prefix.empty() ? std::string() : prefix + ".", f, p};
  visit_fields(w, m);
}

/// Visits every parameter (not buffers): f(name, param&).
template <class M, class Fn>
void for_each_param(M& m, const std::string& prefix, Fn&& fn) {
  struct {
    Fn& fn;
    void param(const std::string& n, param& p) { fn(n, p); }
    void buffer(const std::string&, buffer&) {}
  } f{fn};
  walk(m, prefix, f);
}

/// Visits every buffer: f(name, buffer&).
template <class M, class Fn>
void for_each_buffer(M& m, const std::string& prefix, Fn&& fn) {
  struct {
    Fn& fn;
    void param(const std::string&, param&) {}
    void buffer(const std::string& n, buffer& b) { fn(n, b); }
  } f{fn};
  walk(m, prefix, f);
}

/// Reads every parameter and buffer of a train-mode module from `ws` (names and shapes from fields()).
template <class M>
void load_tensors(M& m, weight_source& ws, const std::string& prefix, parts p = {}) {
  struct {
    weight_source& ws;
    void param(const std::string& n, param& p) { p.value = ws.get(n, p.shape); }
    void buffer(const std::string& n, buffer& b) {
      b.value = ws.get(n, b.shape);
      static constexpr std::string_view rv = ".running_var";
      if (n.size() >= rv.size() && n.compare(n.size() - rv.size(), rv.size(), rv) == 0)
        for (std::size_t i = 0; i < b.value.size(); ++i)
          if (!(b.value[i] + 1e-3f > 0.0f))
            throw error("tensor '" + n + "' has a negative variance (" + std::to_string(b.value[i]) + ") at channel " +
                        std::to_string(i));
    }
  } f{ws};
  walk(m, prefix, f, p);
}

/// Every tensor the module reads, with its shape, in load order.
template <class M>
std::vector<std::pair<std::string, dims>> expected_tensors(M& m, const std::string& prefix) {
  std::vector<std::pair<std::string, dims>> r;
  struct {
    std::vector<std::pair<std::string, dims>>& r;
    void param(const std::string& n, param& p) { r.emplace_back(n, p.shape); }
    void buffer(const std::string& n, buffer& b) { r.emplace_back(n, b.shape); }
  } f{r};
  walk(m, prefix, f);
  return r;
}

/// Walks one module like name_walker but without building names (no allocation: for per-step
/// work such as zero_grad). F provides param(param&) and buffer(buffer&).
template <class F>
struct leaf_walker {
  F& f;
  parts p{};
  template <class C> void child(std::string_view, C& c) { visit_fields(*this, c); }
  template <class C> void aux(std::string_view name, C& c) {
    if (p.aux) child(name, c);
  }
  template <class C> void o2m(std::string_view name, C& c) {
    if (p.o2m) child(name, c);
  }
  template <class P> void param(std::string_view, P& x) { f.param(x); }
  template <class P> void buffer(std::string_view, P& x) { f.buffer(x); }
  template <class I> void value(std::string_view, I&) {}
};

/// Sets every gradient to zero (allocates only the first time a gradient buffer is needed).
template <class M>
void zero_grad(M& m) {
  struct {
    void param(param& p) { p.grad.assign(p.value.size(), 0.0f); }
    void buffer(buffer&) {}
  } f;
  leaf_walker<decltype(f)> w{f};
  visit_fields(w, m);
}

/// Number of trainable values.
template <class M>
std::int64_t count_params(M& m) {
  std::int64_t n = 0;
  for_each_param(m, "", [&](const std::string&, param& p) { n += p.numel(); });
  return n;
}

/// A weight source serving the tensors of train-mode modules (to save or to build another model).
class module_weights final : public weight_source {
 public:
  template <class M>
  void add(M& m, const std::string& prefix) {
    struct {
      module_weights& s;
      void param(const std::string& n, param& p) { s.t_[n] = {p.shape, &p.value}; s.order_.push_back(n); }
      void buffer(const std::string& n, buffer& b) { s.t_[n] = {b.shape, &b.value}; s.order_.push_back(n); }
    } f{*this};
    walk(m, prefix, f);
  }
  std::vector<float> get(const std::string& name, const dims& shape) override {
    auto it = t_.find(name);
    GYOLO_CHECK(it != t_.end(), "tensor '" + name + "' is missing");
    GYOLO_CHECK(it->second.shape == shape, "tensor '" + name + "': shape mismatch");
    return *it->second.v;
  }
  std::string describe() const override { return "in-memory module tensors"; }
  const std::vector<std::string>& order() const { return order_; }
  const dims& shape(const std::string& n) const { return t_.at(n).shape; }
  const std::vector<float>& values(const std::string& n) const { return *t_.at(n).v; }

 private:
  struct entry {
    dims shape;
    std::vector<float>* v = nullptr;
  };
  std::map<std::string, entry> t_;
  std::vector<std::string> order_;
};

/// The inference form of a described member that inference never reads (e.g. Grit's fc_alpha2,
/// which upstream builds and loads but never calls): folded to nothing.
struct dropped {};
template <class T> void fold_leaf(const T&, dropped&) {}

/// Lockstep walk of a train-mode module and its inference form: leaves are folded by
/// fold_leaf(const train_leaf&, infer_leaf&) found by ADL/overload, structural integers copied,
/// containers resized; a module may finish its own fold in after_fold() (e.g. merging convs).
struct fold_walker {
  parts p{false, true};  // the auxiliary branch has no inference form
  template <class T, class I> void child(std::string_view, const T& t, I& i) { fold_into(t, i); }
  template <class T, class I> void aux(std::string_view n, const T& t, I& i) {
    if (p.aux) child(n, t, i);
  }
  template <class T, class I> void o2m(std::string_view n, const T& t, I& i) {
    if (p.o2m) child(n, t, i);
  }
  template <class T, class I> void value(std::string_view, const T& t, I& i) { i = t; }
  template <class T, class I> void param(std::string_view, const T&, I&) {}
  template <class T, class I> void buffer(std::string_view, const T& t, I& i) {
    if constexpr (std::is_same_v<T, gyolo::buffer> && std::is_same_v<I, gyolo::buffer>) i = t;
  }

  template <class T, class I>
  void fold_into(const T& t, I& i) {
    if constexpr (requires { fold_leaf(t, i); }) {
      fold_leaf(t, i);
    } else {
      visit_fields(*this, t, i);
      if constexpr (requires { i.after_fold(); }) i.after_fold();
    }
  }
};

/// The inference form of a train-mode module: fold(train) -> infer. With o2m = false the main
/// one-to-many head is left out.
template <class I, class T>
I fold(const T& t, bool o2m = true) {
  I i;
  fold_walker w;
  w.p.o2m = o2m;
  w.fold_into(t, i);
  return i;
}

}  // namespace nn
}  // namespace gyolo
