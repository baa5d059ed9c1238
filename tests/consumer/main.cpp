// A program of a gyolo user: its own compile-time variant (the same structure as the shipped demo
// model, declared here rather than taken from gyolo's list), loaded from a weights file and run on
// one image with every task.
//   consumer MODEL.gguf IMAGE [IMGSZ]
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>

#include <gyolo/gyolo.hpp>

// "compile-time configured variants" from the user's side: a name and a variant_config. The loader
// checks the file's structure against it.
struct my_variant {
  static constexpr const char* name = "my-shapes";
  static constexpr gyolo::variant_config value = gyolo::nano_variant(/*nc=*/5, /*sem_nc=*/7);
};

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf IMAGE [IMGSZ]\n", argv[0]);
    return 2;
  }
  try {
    const auto model = gyolo::model<gyolo::cpu, my_variant>::load(argv[1]);
    gyolo::pipeline_options opt;
    if (argc > 3) opt.imgsz = std::atoi(argv[3]);
    const gyolo::pipeline pipe(model, opt);
    gyolo::context<gyolo::cpu> ctx(/*threads=*/0);
    const gyolo::image_result r = pipe.run(ctx, gyolo::decode_image(argv[2]));
    std::map<std::string, int> counts;
    for (const auto& d : r.detections) ++counts[d.label];
    std::printf("gyolo %s, variant %s: %dx%d image, %zu detections\n", gyolo::version, my_variant::name, r.width, r.height,
                r.detections.size());
    for (const auto& [label, n] : counts) std::printf("  %s: %d\n", label.c_str(), n);
    if (r.caption) std::printf("caption: %s\n", r.caption->text.c_str());
    return r.detections.empty() ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
