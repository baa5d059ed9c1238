// The smallest complete use of gyolo: load a converted model, run every task on one image, print.
//   build/bin/gyolo_minimal model.gguf image.jpg
#include <cstdio>
#include <exception>

#include <gyolo/gyolo.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf IMAGE\n", argv[0]);
    return 2;
  }
  try {
    const auto model = gyolo::model<gyolo::cpu, gyolo::gyolo_c>::load(argv[1]);
    const gyolo::pipeline pipe(model, gyolo::pipeline_options{});  // predict.py defaults
    gyolo::context<gyolo::cpu> ctx(/*threads=*/0);                  // all cores
    const gyolo::image_result r = pipe.run(ctx, gyolo::decode_image(argv[2]));
    std::printf("%dx%d image, %zu detections\n", r.width, r.height, r.detections.size());
    for (const auto& d : r.detections)
      std::printf("  %-14s %.3f  [%.1f %.1f %.1f %.1f]\n", d.label.c_str(), d.score, d.box[0], d.box[1], d.box[2], d.box[3]);
    if (r.caption) std::printf("caption: %s\n", r.caption->text.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
