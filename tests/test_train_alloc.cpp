// No heap allocation per training step in steady state: a train-mode forward + backward on a tape
// that has already run the same step once must not call operator new or malloc.
//
// This file REPLACES the global allocation functions of the whole test binary (every test links
// them): operator new/delete in every form, and, when no sanitizer is active, malloc, calloc,
// realloc, aligned_alloc, posix_memalign and memalign (glibc documents replacing malloc this way).
// The replacements only forward — to malloc/free, and to glibc's own __libc_* allocator — and
// count while alloc_probe::counting is on. free(), malloc_usable_size(), valloc() and friends are
// not replaced: every block still comes from glibc's allocator, so glibc's versions handle them.
// Under ASan/TSan/MSan malloc is left to the sanitizer (only operator new is counted then).
//
// Allocations made by the OpenMP runtime itself are counted apart (malloc's caller is inside
// libgomp): GCC's libgomp mallocs and frees a team structure for every parallel region that runs
// on ONE thread (num_threads(1), or a false if() clause; teams of more threads are cached), so
// such a region would cost a malloc/free pair per call. gyolo's loops go through
// core/parallel.hpp (par::for_static, for_dynamic, team), which enter no region on one thread:
// the checks below require both counts to be zero.
//
// Debugging: GYOLO_ALLOC_TRACE=N prints the call stacks of the first N counted allocations made
// outside the OpenMP runtime (symbolise with addr2line -f -C -e gyolo_tests <offsets>).
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <execinfo.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "gyolo/gyolo.hpp"
#include "gyolo/layers/grit_train.hpp"
#include "gyolo/nn/module.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GYOLO_ALLOC_PROBE_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define GYOLO_ALLOC_PROBE_MALLOC 0
#endif
#endif
#if !defined(GYOLO_ALLOC_PROBE_MALLOC) && defined(__GLIBC__)
#define GYOLO_ALLOC_PROBE_MALLOC 1
#endif
#ifndef GYOLO_ALLOC_PROBE_MALLOC
#define GYOLO_ALLOC_PROBE_MALLOC 0
#endif

namespace alloc_probe {
// Constant-initialised: usable from allocation calls made before main and from any thread.
std::atomic<bool> counting{false};
std::atomic<long> count{0};      // outside the OpenMP runtime
std::atomic<long> omp_count{0};  // by the OpenMP runtime (see above)
std::atomic<long> trace_left{0};
std::atomic<bool> tracing{false};
thread_local bool in_probe = false;  // the tracer's own allocations (backtrace) are not counted

void trace() {
  void* frames[48];
  const int n = backtrace(frames, 48);
  static const char hdr[] = "---- counted allocation during a steady-state training step:\n";
  (void)!write(2, hdr, sizeof(hdr) - 1);
  backtrace_symbols_fd(frames, n, 2);  // writes directly, no malloc
}

/// true when `ret` (a return address) lies in the OpenMP runtime library.
inline bool in_openmp_runtime(void* ret) {
  Dl_info info{};
  if (!ret || !dladdr(ret, &info) || !info.dli_fname) return false;
  const char* f = info.dli_fname;
  for (const char* p = f; *p; ++p)
    if (p[0] == '/' || p == f) {
      const char* b = p[0] == '/' ? p + 1 : p;
      if (!std::strncmp(b, "libgomp", 7) || !std::strncmp(b, "libomp", 6) || !std::strncmp(b, "libiomp", 7)) return true;
    }
  return false;
}

/// Called by every allocation function; `ret` is the allocation function's return address when
/// it may be called from another library (malloc), null otherwise (operator new).
inline void note(void* ret = nullptr) {
  if (!counting.load(std::memory_order_relaxed) || in_probe) return;
  in_probe = true;
  const bool omp = in_openmp_runtime(ret);
  in_probe = false;
  if (omp) {
    omp_count.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  count.fetch_add(1, std::memory_order_relaxed);
  if (tracing.load(std::memory_order_relaxed) && trace_left.load(std::memory_order_relaxed) > 0 && trace_left.fetch_sub(1) > 0) {
    in_probe = true;
    trace();
    in_probe = false;
  }
}

/// Counts the allocations made while alive (all threads: OpenMP workers included).
struct scope {
  explicit scope(bool trace = true) {
    static const bool init = [] {
      if (const char* e = std::getenv("GYOLO_ALLOC_TRACE")) trace_left = std::atol(e);
      void* f[2];
      backtrace(f, 2);  // loads libgcc's unwinder now, not inside the counted region
      return true;
    }();
    (void)init;
    count = 0;
    omp_count = 0;
    tracing = trace;
    counting = true;
  }
  ~scope() { counting = false; }
  long n() const { return count.load(); }
  long n_omp() const { return omp_count.load(); }
};

inline void* checked(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}
inline void* new_impl(std::size_t n) {
  for (;;) {
    if (void* p = std::malloc(n ? n : 1)) return p;
    std::new_handler h = std::get_new_handler();
    if (!h) throw std::bad_alloc();
    h();
  }
}
inline void* new_aligned_impl(std::size_t n, std::align_val_t a) {
  std::size_t al = static_cast<std::size_t>(a);
  if (al < sizeof(void*)) al = sizeof(void*);
  for (;;) {
    void* p = nullptr;
    if (posix_memalign(&p, al, n ? n : 1) == 0) return p;
    std::new_handler h = std::get_new_handler();
    if (!h) throw std::bad_alloc();
    h();
  }
}
}  // namespace alloc_probe

// ---- operator new / delete (all forms) --------------------------------------------------------
// Under GYOLO_ALLOC_PROBE_MALLOC the malloc below counts; otherwise operator new counts itself.
#if GYOLO_ALLOC_PROBE_MALLOC
#define GYOLO_NEW_NOTE()
#else
#define GYOLO_NEW_NOTE() alloc_probe::note()
#endif
void* operator new(std::size_t n) {
  GYOLO_NEW_NOTE();
  return alloc_probe::new_impl(n);
}
void* operator new[](std::size_t n) {
  GYOLO_NEW_NOTE();
  return alloc_probe::new_impl(n);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  GYOLO_NEW_NOTE();
  try {
    return alloc_probe::new_impl(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  GYOLO_NEW_NOTE();
  try {
    return alloc_probe::new_impl(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a) {
  GYOLO_NEW_NOTE();
  return alloc_probe::new_aligned_impl(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a) {
  GYOLO_NEW_NOTE();
  return alloc_probe::new_aligned_impl(n, a);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  GYOLO_NEW_NOTE();
  try {
    return alloc_probe::new_aligned_impl(n, a);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  GYOLO_NEW_NOTE();
  try {
    return alloc_probe::new_aligned_impl(n, a);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

// ---- malloc family (glibc, no sanitizer) --------------------------------------------------------
#if GYOLO_ALLOC_PROBE_MALLOC
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);

void* malloc(std::size_t n) {
  alloc_probe::note(__builtin_return_address(0));
  return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
  alloc_probe::note(__builtin_return_address(0));
  return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
  alloc_probe::note(__builtin_return_address(0));
  return __libc_realloc(p, n);
}
void* memalign(std::size_t al, std::size_t n) {
  alloc_probe::note(__builtin_return_address(0));
  return __libc_memalign(al, n);
}
void* aligned_alloc(std::size_t al, std::size_t n) {
  alloc_probe::note(__builtin_return_address(0));
  if (al == 0 || (al & (al - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  return __libc_memalign(al, n);
}
int posix_memalign(void** out, std::size_t al, std::size_t n) {
  alloc_probe::note(__builtin_return_address(0));
  if (al % sizeof(void*) != 0 || (al & (al - 1)) != 0 || al == 0) return EINVAL;
  void* p = __libc_memalign(al, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}
#endif

using namespace gyolo;

namespace {
const std::string tdir = std::string(GYOLO_FIXTURES_DIR) + "/train/";

TEST_CASE("train alloc: the probe counts operator new and malloc", "[train][alloc]") {
  long a = 0, b = 0;
  {
    alloc_probe::scope s(false);
    static std::vector<int>* volatile keep = nullptr;  // volatile: the pair cannot be elided
    keep = new std::vector<int>(100);
    delete keep;
    a = s.n();
  }
  CHECK(a >= 2);
#if GYOLO_ALLOC_PROBE_MALLOC
  {
    alloc_probe::scope s(false);
    void* volatile p = std::malloc(24);
    std::free(p);
    void* volatile q = std::aligned_alloc(64, 128);
    std::free(q);
    b = s.n();
  }
  CHECK(b == 2);
#if defined(_OPENMP) && defined(__GNUC__) && !defined(__clang__)
  {
    // libgomp's one-thread team is what par:: avoids: the probe must see it, apart from the count
    // outside the runtime; par:: with one thread enters no region
    long region = 0, outside = 0, helpers = 0;
    std::atomic<int> calls{0};
    {
      alloc_probe::scope s(false);
      int one = 1;
      volatile int sink = 0;
#pragma omp parallel num_threads(one)
      sink = sink + 1;
      region = s.n_omp();
      outside = s.n();
      par::for_static(1, 8, [&](int) { ++calls; });
      par::team(1, [&] { ++calls; });
      helpers = s.n_omp() - region;
    }
    CHECK(region >= 1);
    CHECK(outside == 0);
    CHECK(calls == 9);
    CHECK(helpers == 0);
  }
#endif
#else
  (void)b;
#endif
  {
    alloc_probe::scope s(false);
    int x = 3;
    (void)x;
    CHECK(s.n() == 0);
  }
}

TEST_CASE("train alloc: the step arena reuses its storage and destroys its closures", "[train][alloc]") {
  int live = 0, runs = 0;  // before the arena: its destructor destroys closures that count here
  struct counted {
    int* live;
    int* runs;
    std::array<char, 3000> pad{};  // forces several chunks
    counted(int* l, int* r) : live(l), runs(r) { ++*live; }
    counted(const counted& o) : live(o.live), runs(o.runs), pad(o.pad) { ++*live; }
    ~counted() { --*live; }
    void operator()() const { ++*runs; }
  };
  struct alignas(64) over {
    double v[3];
    void operator()() const { CHECK(reinterpret_cast<std::uintptr_t>(this) % 64 == 0); }
  };
  std::array<char, 200000> big{};  // larger than a chunk
  step_arena a;
  auto fill = [&] {
    for (int i = 0; i < 50; ++i) {
      a.push(counted(&live, &runs));
      a.push(over{});
      if (i == 10) a.push([big] { (void)big; });
    }
  };
  fill();
  const std::size_t cap = a.capacity_bytes();
  CHECK(live == 50);
  a.run_reverse();
  CHECK(runs == 50);
  a.clear();
  CHECK(live == 0);
  CHECK(a.size() == 0);
  long n = 0;
  {
    alloc_probe::scope s;
    fill();
    n = s.n();
  }
  CHECK(n == 0);
  CHECK(a.capacity_bytes() == cap);
  a.run_reverse();
  CHECK(runs == 100);
}

/// One training step: zero_grad, train-mode forward, seed every output's gradient, backward.
template <class B>
void vision_step(tape<B>& tp, vision_graph<B, train_mode>& g, const tensor<float>& x) {
  tp.reset();
  nn::zero_grad(g);
  auto in = tp.input(x.cv(), true);
  auto o = g.forward(tp, in.t);
  for (auto& d : o.head.d)
    for (auto& l : d) std::fill(l.t.gdata, l.t.gdata + l.numel(), 1.0f);
  for (int k = 0; k < 2; ++k) {
    std::fill(o.head.p[std::size_t(k)].t.gdata, o.head.p[std::size_t(k)].t.gdata + o.head.p[std::size_t(k)].numel(), 0.5f);
    std::fill(o.head.s[std::size_t(k)].t.gdata, o.head.s[std::size_t(k)].t.gdata + o.head.s[std::size_t(k)].numel(), 0.25f);
  }
  tp.backward();
}

template <class B>
void vision_steady_state(int threads, bool training) {
  context<B> ctx(threads);
  vision_graph<B, train_mode> g;
  g.init(gyolo_tiny::value);
  {
    gguf::file wf(tdir + "weights.gguf");
    gguf_weights ws(wf);
    nn::load_tensors(g, ws, "model");
  }
  tensor<float> x({2, 3, 64, 64});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float((i * 7919) % 1000) / 1000.0f;
  tape<B> tp(ctx);
  tp.training = training;
  vision_step(tp, g, x);  // first step: the tape, the step arena and every scratch buffer grow
  long n = 0, n_omp = 0;
  {
    alloc_probe::scope s;
    vision_step(tp, g, x);  // second step: must reuse all of it
    n = s.n();
    n_omp = s.n_omp();
  }
  INFO("allocations in the second step (GYOLO_ALLOC_TRACE=5 prints where): " << n);
  CHECK(n == 0);
  INFO("allocations by the OpenMP runtime (a parallel region entered with one thread)");
  CHECK(n_omp == 0);
}
}  // namespace

// Both counts, the OpenMP runtime's included (tag [train-alloc-omp]).
TEST_CASE("train alloc: a second vision step allocates nothing (reference backend)", "[train][alloc][train-alloc-omp]") {
  SECTION("train mode (batch statistics)") { vision_steady_state<reference>(1, true); }
  SECTION("eval mode (running statistics)") { vision_steady_state<reference>(1, false); }
}

// The fast CPU kernels (train/ops_cpu.hpp) take their temporaries from the context's scratch;
// kernels<cpu>::conv2d packs the train-mode (unpacked) weights into context::pack_scratch.
TEST_CASE("train alloc: a second vision step allocates nothing (cpu backend)", "[train][alloc]") {
  SECTION("1 thread") { vision_steady_state<cpu>(1, true); }
  SECTION("2 threads") { vision_steady_state<cpu>(2, true); }
}

namespace {
/// Vision forward, Grit on top (teacher forcing), caption loss, backward.
template <class B>
void grit_step(tape<B>& tp, vision_graph<B, train_mode>& vg, grit_train<B>& g, const tensor<float>& x,
               const std::vector<std::int64_t>& caps, int L) {
  tp.reset();
  nn::zero_grad(vg);
  nn::zero_grad(g);
  auto in = tp.input(x.cv(), true);
  auto o = vg.forward(tp, in.t);
  auto logp = g.forward(tp, grit_train_inputs::from_vision(o, caps.data(), L));
  caption_nll(logp.t, caps.data(), g.cfg.pad, 0.1);
  tp.backward();
}

template <class B>
void grit_steady_state() {
  context<B> ctx(1);
  vision_graph<B, train_mode> vg;
  vg.init(gyolo_tiny::value);
  grit_train<B> g;
  {
    gguf::file wf(tdir + "weights.gguf");
    const auto c = gyolo_tiny::value;
    g.init(grit_config::from_json(nlohmann::json::parse(wf.get_string("gyolo.grit_config"))),
           {c.e17.c2, c.e20.c2, c.e23.c2, c.psa, c.e43.c2});
    gguf_weights ws(wf);
    nn::load_tensors(vg, ws, "model");
    nn::load_tensors(g, ws, "model.56");
  }
  tensor<float> x({2, 3, 128, 160});  // Grit selects 300 anchors: needs 128x160 at least
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float((i * 7919) % 1000) / 1000.0f;
  const std::vector<std::int64_t> caps{2, 17, 45, 9, 3, 2, 88, 3, 0, 0};
  tape<B> tp(ctx);
  grit_step(tp, vg, g, x, caps, 5);
  long n = 0, n_omp = 0;
  {
    alloc_probe::scope s;
    grit_step(tp, vg, g, x, caps, 5);
    n = s.n();
    n_omp = s.n_omp();
  }
  INFO("allocations in the second vision + Grit step (GYOLO_ALLOC_TRACE=5 prints where): " << n);
  CHECK(n == 0);
  INFO("allocations by the OpenMP runtime (a parallel region entered with one thread)");
  CHECK(n_omp == 0);
}
}  // namespace

// layers/grit_train.hpp keeps its per-step state on the tape: token-selection jobs, positions, row
// lists, caption ids and masks in the tape's typed save buffers (save_i32 / save_i64 / save_u8 /
// save), the reference kernels' temporaries (LayerNorm, attention) in tape.ref_workspace(0), and the
// top-k selection's storage in a member reused across forwards.
TEST_CASE("train alloc: a second vision + Grit step allocates nothing (reference backend)", "[train][alloc][train-alloc-grit]") {
  grit_steady_state<reference>();
}
