// CPU-feature detection and the choice of kernel set (see gyolo/kernels/cpu_isa.hpp).
#include "gyolo/kernels/cpu_isa.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace gyolo {
namespace cpu_detail {
const isa_kernels* isa_portable_kernels();
#if GYOLO_X86_KERNELS
const isa_kernels* isa_avx2_kernels();
const isa_kernels* isa_avx512_kernels();
#endif
}  // namespace cpu_detail

namespace {

cpu_features detect() {
  cpu_features f;
#if defined(__x86_64__)
  f.arch = "x86_64";
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV).
  f.sse2 = __builtin_cpu_supports("sse2");
  f.avx = __builtin_cpu_supports("avx");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = f.avx512f && (a & (1u << 5));
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  if (__get_cpuid(1, &a1, &b1, &c1, &d1)) f.f16c = f.avx && (c1 & (1u << 29));
#elif defined(__aarch64__)
  f.arch = "aarch64";
  f.neon = true;  // Advanced SIMD is mandatory on AArch64
#elif defined(__arm__)
  f.arch = "arm";
#else
  f.arch = "unknown";
#endif
  return f;
}

const cpu_detail::isa_kernels* table_of(cpu_isa i) {
  using namespace cpu_detail;
  const auto& f = detected_cpu_features();
  switch (i) {
    case cpu_isa::portable: return isa_portable_kernels();
#if GYOLO_X86_KERNELS
    case cpu_isa::avx2: return f.avx2 && f.fma ? isa_avx2_kernels() : nullptr;
    case cpu_isa::avx512: return f.avx512f && f.fma ? isa_avx512_kernels() : nullptr;
#else
    default: (void)f; return nullptr;
#endif
  }
  return nullptr;
}

std::atomic<const cpu_detail::isa_kernels*> g_active{nullptr};
std::mutex g_mutex;

std::string why_unavailable(cpu_isa i) {
#if !GYOLO_X86_KERNELS
  if (i != cpu_isa::portable) return std::string("this build of gyolo has no ") + to_string(i) + " kernels (not an x86-64 build)";
#endif
  return std::string("this CPU lacks ") + (i == cpu_isa::avx512 ? "avx512f/fma" : "avx2/fma") + " (it has: " +
         detected_cpu_features().summary() + ")";
}

}  // namespace

std::string cpu_features::summary() const {
  std::string s = arch;
  auto add = [&](bool b, const char* n) {
    if (b) (s += ' ') += n;
  };
  add(sse2, "sse2");
  add(avx, "avx");
  add(avx2, "avx2");
  add(fma, "fma");
  add(f16c, "f16c");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512dq, "avx512dq");
  add(avx512vl, "avx512vl");
  add(avx512_bf16, "avx512_bf16");
  add(neon, "neon");
  return s;
}

const cpu_features& detected_cpu_features() {
  static const cpu_features f = detect();
  return f;
}

const char* to_string(cpu_isa i) {
  switch (i) {
    case cpu_isa::portable: return "portable";
    case cpu_isa::avx2: return "avx2";
    case cpu_isa::avx512: return "avx512";
  }
  return "?";
}

cpu_isa parse_cpu_isa(std::string_view n) {
  if (n == "portable") return cpu_isa::portable;
  if (n == "avx2") return cpu_isa::avx2;
  if (n == "avx512") return cpu_isa::avx512;
  std::string shown;
  for (char ch : n.substr(0, 40)) {
    const auto u = static_cast<unsigned char>(ch);
    if (u >= 0x20 && u < 0x7f) {
      shown += ch;
    } else {
      static const char* hex = "0123456789abcdef";
      shown += "\\x";
      shown += hex[u >> 4];
      shown += hex[u & 15];
    }
  }
  throw isa_error("unknown CPU kernel set '" + shown + "' (expected portable, avx2, avx512 or best)");
}

bool cpu_isa_available(cpu_isa i) { return table_of(i) != nullptr; }

std::vector<cpu_isa> available_cpu_isas() {
  std::vector<cpu_isa> v;
  for (cpu_isa i : {cpu_isa::portable, cpu_isa::avx2, cpu_isa::avx512})
    if (cpu_isa_available(i)) v.push_back(i);
  return v;
}

cpu_isa best_cpu_isa() { return available_cpu_isas().back(); }

void set_cpu_isa(cpu_isa i) {
  const auto* t = table_of(i);
  if (!t) throw isa_error(std::string("CPU kernel set ") + to_string(i) + " is not available: " + why_unavailable(i));
  g_active.store(t, std::memory_order_release);
}

cpu_isa active_cpu_isa() { return cpu_detail::active_kernels().id; }

namespace cpu_detail {

const isa_kernels* isa_table(cpu_isa i) { return table_of(i); }

const isa_kernels& active_kernels() {
  if (const auto* t = g_active.load(std::memory_order_acquire)) return *t;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (const auto* t = g_active.load(std::memory_order_acquire)) return *t;
  cpu_isa want = best_cpu_isa();
  if (const char* e = std::getenv("GYOLO_ISA"); e && *e && std::string_view(e) != "best") {
    try {
      want = parse_cpu_isa(e);
    } catch (const isa_error& err) {
      throw isa_error(std::string("GYOLO_ISA: ") + err.what());
    }
    if (!table_of(want))
      throw isa_error(std::string("GYOLO_ISA=") + to_string(want) + " is not available: " + why_unavailable(want));
  }
  const auto* t = table_of(want);
  g_active.store(t, std::memory_order_release);
  return *t;
}

}  // namespace cpu_detail
}  // namespace gyolo
