// Threads sharing one model (the README's contract; docs/reliability.md): one loaded model and one
// pipeline, N worker threads each with its own context, every task on generated scenes of mixed
// sizes. Every result must be bit-identical to the one computed first on the main thread with a
// context of the same thread count (boxes, scores, masks, semantic and panoptic maps, caption
// tokens and log-probabilities, compared bit for bit). The sanitizer stage (tests/sanitize/run.sh)
// runs it under ThreadSanitizer, with LLVM's OpenMP runtime and its Archer tool so that TSan sees
// OpenMP's synchronisation; a plain build runs it as ctest `threads_shared_model`.
//   gyolo_threads MODEL.gguf [--workers 4] [--omp 2] [--images 6] [--rounds 2] [--max 256] [--full]
// --full: MODEL is the full GYOLO (80 classes, e.g. a converted gyolo.pt or the random-weight
// reference of weights_tools/make_fixtures.py --variant full); default: the shapes model's variant.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gyolo/data/scenes.hpp>
#include <gyolo/gyolo.hpp>

namespace {

struct fingerprint {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  void bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  template <class T> void pod(const T& v) { bytes(&v, sizeof v); }
};

/// Everything a result says, bit for bit (timings excepted).
std::uint64_t fingerprint_of(const gyolo::image_result& r) {
  fingerprint f;
  f.pod(r.width);
  f.pod(r.height);
  f.pod(r.detections.size());
  for (const auto& d : r.detections) {
    f.pod(d.box);
    f.pod(d.score);
    f.pod(d.class_id);
    f.bytes(d.coef.data(), d.coef.size() * sizeof(float));
    f.pod(d.mask.y0);
    f.pod(d.mask.x0);
    f.pod(d.mask.rows());
    f.pod(d.mask.cols());
    f.bytes(d.mask.data.data(), d.mask.data.size());
  }
  if (r.semantic) f.bytes(r.semantic->channels.data(), r.semantic->channels.size() * sizeof(std::int16_t));
  if (r.panoptic) {
    f.bytes(r.panoptic->ids.data(), r.panoptic->ids.size() * sizeof(std::uint32_t));
    f.pod(r.panoptic->segments.size());
  }
  if (r.caption) {
    f.bytes(r.caption->text.data(), r.caption->text.size());
    f.bytes(r.caption->tokens.data(), r.caption->tokens.size() * sizeof(std::int64_t));
    f.bytes(r.caption->token_log_probs.data(), r.caption->token_log_probs.size() * sizeof(float));
    f.pod(r.caption->log_prob);
  }
  f.pod(r.skipped.size());
  return f.h;
}

template <gyolo::variant V>
int run(const char* path, int workers, int omp, int n_images, int rounds, int max_side) {
  using M = gyolo::model<gyolo::cpu, V>;
  const auto model = M::load(path);
  gyolo::pipeline_options po;
  po.imgsz = max_side;
  const gyolo::pipeline pipe(model, po);
  // images of several sizes and aspects (every task runs: at least 128 px for the caption)
  std::vector<gyolo::image_u8> images;
  gyolo::data::scene_options so;
  for (int k = 0; k < n_images; ++k) {
    const auto s = gyolo::data::make_scene(so, 7, k).image;
    const int w = 128 + (k * 37) % (max_side - 127), h = 128 + (k * 59) % (max_side - 127);
    images.push_back(gyolo::resize_linear(s, w, h));
  }
  std::vector<std::uint64_t> expected;
  {
    gyolo::context<gyolo::cpu> ctx(omp);
    for (const auto& im : images) expected.push_back(fingerprint_of(pipe.run(ctx, im)));
  }
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      try {
        gyolo::context<gyolo::cpu> ctx(omp);  // each thread its own context
        for (int r = 0; r < rounds; ++r)
          for (int k = 0; k < n_images; ++k) {
            const int i = (k + w + r) % n_images;  // the threads run different images at once
            if (fingerprint_of(pipe.run(ctx, images[std::size_t(i)])) != expected[std::size_t(i)]) {
              std::lock_guard<std::mutex> g(mu);
              failures.push_back("worker " + std::to_string(w) + ", round " + std::to_string(r) + ", image " + std::to_string(i) +
                                 ": result differs from the single-threaded one");
            }
          }
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> g(mu);
        failures.push_back("worker " + std::to_string(w) + ": " + e.what());
      }
    });
  for (auto& t : pool) t.join();
  for (const auto& f : failures) std::fprintf(stderr, "%s\n", f.c_str());
  // the fingerprints too: two processes' lines must be equal (results reproducible run to run)
  std::string fps;
  for (const auto f : expected) fps += (fps.empty() ? "\"" : ",\"") + std::to_string(f) + "\"";
  std::printf("{\"workers\":%d,\"omp_threads\":%d,\"images\":%d,\"rounds\":%d,\"runs\":%d,\"mismatches\":%zu,\"fingerprints\":[%s]}\n",
              workers, omp, n_images, rounds, workers * rounds * n_images, failures.size(), fps.c_str());
  return failures.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [--workers 4] [--omp 2] [--images 6] [--rounds 2] [--max 256] [--full]\n", argv[0]);
    return 2;
  }
  int workers = 4, omp = 2, n_images = 6, rounds = 2, max_side = 256;
  bool full = false;
  for (int i = 2; i < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--full") {
      full = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", a.c_str());
      return 2;
    }
    const int v = std::atoi(argv[i + 1]);
    if (a == "--workers") workers = v;
    else if (a == "--omp") omp = v;
    else if (a == "--images") n_images = v;
    else if (a == "--rounds") rounds = v;
    else if (a == "--max") max_side = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (workers < 1 || omp < 1 || n_images < 1 || rounds < 1 || max_side < 64) {
    std::fprintf(stderr, "bad arguments\n");
    return 2;
  }
  try {
    return full ? run<gyolo::gyolo_c>(argv[1], workers, omp, n_images, rounds, max_side)
                : run<gyolo::gyolo_shapes>(argv[1], workers, omp, n_images, rounds, max_side);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
