// Soak test: many inferences at mixed sizes in one process, watching resident memory and open file
// descriptors (docs/reliability.md).
//   gyolo_soak MODEL.gguf [--runs 10000] [--warmup 200] [--min 64] [--max 640] [--max-batch 4]
//              [--threads N] [--seed S] [--every 500] [--rss-tolerance 1] [--malloc-trim 0|1]
// Each run: a generated scene resized to a random size in [min, max] (any aspect), a batch of 1..max-batch
// such images, every task. After the warm-up, the resident set (VmRSS) may grow by what the block
// cache still had to fill up to its cap (gyolo::memory_usage().cache_cap_bytes) and 1 % more
// (--rss-tolerance), and
// the file descriptors must not grow; the program prints one JSON line per --every runs (with the C
// heap's figures where glibc gives them) and a summary,
// and exits 1 when either bound is broken. --malloc-trim 1 returns the C heap's free pages to the
// system after each run (glibc's malloc_trim(0)), as a long-running server may do.
#include <dirent.h>
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include <gyolo/data/scenes.hpp>
#include <gyolo/gyolo.hpp>

namespace {

long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string k;
  long v = -1;
  while (f >> k)
    if (k == "VmRSS:") {
      f >> v;
      break;
    }
  return v;
}

// The C heap's own figures (glibc): bytes in its arenas, in use and free there, and in chunks it
// mapped itself; "" elsewhere.
std::string heap_json() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 m = mallinfo2();
  return ",\"heap_arena_kib\":" + std::to_string(m.arena / 1024) + ",\"heap_used_kib\":" + std::to_string(m.uordblks / 1024) +
         ",\"heap_free_kib\":" + std::to_string(m.fordblks / 1024) + ",\"heap_mapped_kib\":" + std::to_string(m.hblkhd / 1024);
#else
  return "";
#endif
}

int open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n - 3;  // ".", ".." and the DIR's own descriptor
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [--runs N] [--warmup N] [--min 64] [--max 640] [--max-batch 4] [--threads N] [--seed S] [--every N] [--rss-tolerance PCT] [--malloc-trim 0|1]\n", argv[0]);
    return 2;
  }
  int runs = 10000, warmup = 200, lo = 64, hi = 640, max_batch = 4, threads = 0, every = 500;
  bool trim = false;
  double tolerance_pct = 1.0;  // allowed resident-set growth after the warm-up, beyond the cache's filling
  std::uint64_t seed = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const long v = std::strtol(argv[i + 1], nullptr, 10);
    if (a == "--runs") runs = int(v);
    else if (a == "--warmup") warmup = int(v);
    else if (a == "--min") lo = int(v);
    else if (a == "--max") hi = int(v);
    else if (a == "--max-batch") max_batch = int(v);
    else if (a == "--threads") threads = int(v);
    else if (a == "--seed") seed = std::uint64_t(v);
    else if (a == "--every") every = int(v);
    else if (a == "--rss-tolerance") tolerance_pct = std::strtod(argv[i + 1], nullptr);
    else if (a == "--malloc-trim") trim = v != 0;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    using M = gyolo::model<gyolo::cpu, gyolo::gyolo_shapes>;
    const auto model = M::load(argv[1]);
    gyolo::pipeline_options po;
    po.imgsz = 640;
    const gyolo::pipeline pipe(model, po);
    gyolo::context<gyolo::cpu> ctx(threads);
    gyolo::data::scene_options so;
    std::vector<gyolo::image_u8> scenes;
    for (int k = 0; k < 16; ++k) scenes.push_back(gyolo::data::make_scene(so, seed, k).image);
    gyolo::splitmix64 rng(seed);
    auto uniform = [&](int a, int b) { return a + int(rng.next() % std::uint64_t(b - a + 1)); };
    long rss0 = 0, rss_max = 0, cached0_kib = 0;
    int fds0 = 0, fds_max = 0;
    std::size_t images = 0, skipped = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < warmup + runs; ++r) {
      if (trim) malloc_trim(0);  // the previous run's buffers are freed by now
      const int n = uniform(1, max_batch), w = uniform(lo, hi), h = uniform(lo, hi);
      std::vector<gyolo::image_u8> batch;
      for (int b = 0; b < n; ++b) batch.push_back(gyolo::resize_linear(scenes[std::size_t(uniform(0, 15))], w, h));
      const auto res = pipe.run(ctx, batch);
      images += res.size();
      for (const auto& x : res) skipped += x.skipped.size();
      if (r + 1 == warmup) {
        cached0_kib = long(gyolo::memory_usage().cached_bytes / 1024);
        rss0 = rss_max = rss_kib();
        fds0 = fds_max = open_fds();
      }
      if (r + 1 > warmup) {
        rss_max = std::max(rss_max, rss_kib());
        fds_max = std::max(fds_max, open_fds());
      }
      if ((r + 1) % every == 0 || r + 1 == warmup + runs) {
        const auto m = gyolo::memory_usage();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::cout << "{\"run\":" << r + 1 << ",\"images\":" << images << ",\"rss_kib\":" << rss_kib() << ",\"fds\":" << open_fds()
                  << ",\"live_bytes\":" << m.live_bytes << ",\"cached_bytes\":" << m.cached_bytes << heap_json() << ",\"seconds\":" << s << "}\n"
                  << std::flush;
      }
    }
    // the block cache may still fill up to its cap after the warm-up; beyond that, growth < 1 %
    const auto cap_kib = long(gyolo::memory_usage().cache_cap_bytes / 1024);
    const long bound = rss0 + long(double(rss0) * tolerance_pct / 100.0) + std::max(0L, cap_kib - cached0_kib);
    const bool ok = rss_max <= bound && fds_max <= fds0;
    std::cout << "{\"summary\":true,\"runs\":" << runs << ",\"warmup\":" << warmup << ",\"images\":" << images
              << ",\"skipped_tasks\":" << skipped << ",\"rss_after_warmup_kib\":" << rss0 << ",\"rss_max_kib\":" << rss_max
              << ",\"bound_kib\":" << bound << ",\"cache_cap_kib\":" << cap_kib << ",\"cached_after_warmup_kib\":" << cached0_kib << ",\"fds_after_warmup\":" << fds0
              << ",\"fds_max\":" << fds_max << ",\"ok\":" << (ok ? "true" : "false") << "}\n";
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
