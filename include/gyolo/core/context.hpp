// Runtime knobs of a backend: thread count and scratch memory. One context per concurrent caller.
#pragma once
#include <algorithm>
#include <vector>

#include "gyolo/core/backend.hpp"
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

template <class B>
class context {
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

  /// Per-thread scratch buffer of at least n floats (slot `threads()` is for the calling thread
  /// outside parallel regions). Contents are undefined.
  float* scratch(int slot, std::int64_t n) {
    auto& t = scratch_.at(std::size_t(slot));
    if (t.numel() < n) t.resize({1, 1, 1, int(n)});
    return t.data();
  }

 private:
  int threads_ = 1;
  std::vector<tensor<float>> scratch_;
};

}  // namespace gyolo
