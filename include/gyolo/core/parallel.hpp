// Parallel loops over OpenMP that enter no parallel region when they would run on one thread.
//
// GCC's libgomp mallocs and frees a team structure for every parallel region that runs on ONE
// thread (num_threads(1) or a false if() clause; teams of more threads are cached), and a
// training step enters thousands of regions: with one thread, or one iteration, these helpers
// call the body on the calling thread instead, so a loop with fixed shapes allocates nothing.
// Orphaned worksharing inside team() bodies (`#pragma omp for schedule(static)`) binds to the
// team, or runs on the caller alone when there is none.
#pragma once
#include <cstdint>

namespace gyolo::par {

/// body(i) for i in [0, n), statically scheduled over up to `threads` threads.
template <class I, class F>
inline void for_static(int threads, I n, F&& body) {
  if (threads <= 1 || n <= 1) {
    for (I i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (I i = 0; i < n; ++i) body(i);
}

/// body(i) for i in [0, n), dynamically scheduled (tasks of uneven cost) over up to `threads` threads.
template <class I, class F>
inline void for_dynamic(int threads, I n, F&& body) {
  if (threads <= 1 || n <= 1) {
    for (I i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (I i = 0; i < n; ++i) body(i);
}

/// body() run by a team of `threads` threads, or by the caller alone when threads <= 1.
template <class F>
inline void team(int threads, F&& body) {
  if (threads <= 1) {
    body();
    return;
  }
#pragma omp parallel num_threads(threads)
  body();
}

}  // namespace gyolo::par
