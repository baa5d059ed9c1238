// One short, complete example per task (docs/tasks.md shows them), built with the examples and run by
// the CLI tests on the shipped model and scene:
//   gyolo_tasks detect|masks|semantic|panoptic|caption MODEL.gguf IMAGE
// Each function is what a program needs for that task alone: the model, a pipeline with only that
// task on, one context, one image.
#include <cstdio>
#include <cstring>
#include <exception>

#include <gyolo/gyolo.hpp>
#include <gyolo/post/png.hpp>

using model_t = gyolo::model<gyolo::cpu, gyolo::gyolo_shapes>;  // gyolo::gyolo_c for the official gyolo.pt

// [detect] Boxes, scores and labels in original image pixels.
int detect(const model_t& model, const gyolo::image_u8& image) {
  gyolo::pipeline_options opt;
  opt.imgsz = 256;                                    // a multiple of 32 (640 for gyolo.pt)
  opt.tasks = {.detect = true, .masks = false, .semantic = false, .panoptic = false, .caption = false};
  opt.nms.conf = 0.5;
  const gyolo::pipeline pipe(model, opt);
  gyolo::context<gyolo::cpu> ctx(/*threads=*/0);
  const gyolo::image_result r = pipe.run(ctx, image);
  for (const auto& d : r.detections)
    std::printf("%s %.2f [%.0f %.0f %.0f %.0f]\n", d.label.c_str(), d.score, d.box[0], d.box[1], d.box[2], d.box[3]);
  return 0;
}
// [detect]

// [masks] One binary mask per detection, at the original resolution.
int masks(const model_t& model, const gyolo::image_u8& image) {
  gyolo::pipeline_options opt;
  opt.imgsz = 256;
  opt.tasks = {.detect = true, .masks = true, .semantic = false, .panoptic = false, .caption = false};
  opt.nms.conf = 0.5;
  const gyolo::pipeline pipe(model, opt);
  gyolo::context<gyolo::cpu> ctx(0);
  const gyolo::image_result r = pipe.run(ctx, image);
  for (const auto& d : r.detections)  // d.mask: a tight region (x0, y0, data) of an image-sized mask
    std::printf("%s: %lld pixels, region at (%d, %d) of %dx%d\n", d.label.c_str(), static_cast<long long>(d.mask.area()),
                d.mask.x0, d.mask.y0, d.mask.cols(), d.mask.rows());
  const auto all = r.masks_dense();  // [N, height, width] uint8
  std::printf("dense: %zu x %zu x %zu\n", all.shape()[0], all.shape()[1], all.shape()[2]);
  return 0;
}
// [masks]

// [semantic] A class per pixel, and its category ids.
int semantic(const model_t& model, const gyolo::image_u8& image) {
  gyolo::pipeline_options opt;
  opt.imgsz = 256;
  opt.tasks = {.detect = false, .masks = false, .semantic = true, .panoptic = false, .caption = false};
  const gyolo::pipeline pipe(model, opt);
  gyolo::context<gyolo::cpu> ctx(0);
  const gyolo::image_result r = pipe.run(ctx, image);
  const auto cat = r.semantic->category_map();  // [height, width] category ids (COCO's, or channel + 1)
  std::printf("categories present:");
  for (int id : r.semantic->category_ids()) std::printf(" %d", id);
  std::printf("\ncentre pixel: channel %d\n", int(r.semantic->channels(std::size_t(r.height / 2), std::size_t(r.width / 2))));
  gyolo::post::write_file_atomic("semantic.png", gyolo::post::encode_png(cat.data(), r.width, r.height, 1));
  return 0;
}
// [semantic]

// [panoptic] Things from the instance masks, stuff from the semantic map, one id per pixel.
int panoptic(const model_t& model, const gyolo::image_u8& image) {
  gyolo::pipeline_options opt;
  opt.imgsz = 256;
  opt.tasks = {.detect = false, .masks = false, .semantic = false, .panoptic = true, .caption = false};  // turns on what it needs
  const gyolo::pipeline pipe(model, opt);
  gyolo::context<gyolo::cpu> ctx(0);
  const gyolo::image_result r = pipe.run(ctx, image);
  for (const auto& s : r.panoptic->segments)
    std::printf("segment %u: category %d (%s), %lld pixels\n", s.id, s.category_id, s.is_thing ? "thing" : "stuff",
                static_cast<long long>(s.area));
  const auto rgb = gyolo::panoptic_rgb(*r.panoptic);  // COCO panoptic PNG: id = R + 256 G + 256^2 B
  gyolo::post::write_file_atomic("panoptic.png", gyolo::post::encode_png(rgb.data(), r.width, r.height, 3));
  return 0;
}
// [panoptic]

// [caption] A sentence, with its tokens and their log-probabilities.
int caption(const model_t& model, const gyolo::image_u8& image) {
  gyolo::pipeline_options opt;
  opt.imgsz = 256;
  opt.tasks = {.detect = false, .masks = false, .semantic = false, .panoptic = false, .caption = true};
  const gyolo::pipeline pipe(model, opt);
  gyolo::context<gyolo::cpu> ctx(0);
  const gyolo::image_result r = pipe.run(ctx, image);
  if (!r.caption) {  // the model has no caption head, or the image was too small for one
    for (const auto& t : r.skipped) std::printf("%s skipped: %s\n", t.task.c_str(), t.reason.c_str());
    return 1;
  }
  std::printf("%s\n(%zu tokens, log-probability %.3f)\n", r.caption->text.c_str(), r.caption->tokens.size(), r.caption->log_prob);
  return 0;
}
// [caption]

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s detect|masks|semantic|panoptic|caption MODEL.gguf IMAGE\n", argv[0]);
    return 2;
  }
  try {
    const auto model = model_t::load(argv[2]);
    const auto image = gyolo::decode_image(argv[3]);
    const char* task = argv[1];
    if (!std::strcmp(task, "detect")) return detect(model, image);
    if (!std::strcmp(task, "masks")) return masks(model, image);
    if (!std::strcmp(task, "semantic")) return semantic(model, image);
    if (!std::strcmp(task, "panoptic")) return panoptic(model, image);
    if (!std::strcmp(task, "caption")) return caption(model, image);
    std::fprintf(stderr, "unknown task '%s'\n", task);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
