// gyolo datagen: writes a deterministic synthetic dataset (shapes on textured backgrounds, with
// instance polygons, semantic maps and captions) in the layout gyolo's training reads
// (include/gyolo/data/scenes.hpp).
//   gyolo datagen --out DIR [--train N] [--val N] [--seed S] [--min-size 192] [--max-size 320]
//                 [--captions 1] [--semantic png|polygons] [--threads T]
//   gyolo datagen --video FILE [--frames 8] [--size 256] [--fps 5] [--seed S]
#include <chrono>
#include <filesystem>
#include <cstdlib>
#include <iostream>
#include <string>

#include "cli_commands.hpp"
#include "gyolo/data/scenes.hpp"
#include "gyolo/io/video.hpp"

using namespace gyolo;

namespace {

void datagen_usage(std::ostream& o) {
  o << "usage: gyolo datagen --out DIR [--train N] [--val N] [--seed S] [--min-size 192] [--max-size 320]\n"
       "                     [--captions 1] [--semantic png|polygons] [--threads T]\n"
       "  writes a synthetic dataset (5 shapes on 7 textured backgrounds, captions) to DIR:\n"
       "  images/, labels/, stuff/ (semantic PNG label maps or polygons), annotations/captions_<split>.json,\n"
       "  data.yaml. The same options and seed give the same bytes. Defaults: 1000 train, 200 val, seed 0.\n"
       "       gyolo datagen --video FILE [--frames 8] [--size 256] [--fps 5] [--seed S]\n"
       "  writes a video whose frame k is val scene k of that seed at size x size (the image that\n"
       "  --val N --min-size SIZE --max-size SIZE writes as val/<1000001+k>.png). FILE.mkv is lossless (FFV1:\n"
       "  the frames decode to exactly those images), other extensions use the default encoder (libx264).\n";
}

struct datagen_args {
  data::dataset_gen_options data;
  std::string video;
  int frames = 8, size = 256;
  double fps = 5;
};

datagen_args parse_datagen(int argc, char** argv) {
  datagen_args args;
  auto& o = args.data;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      datagen_usage(std::cout);
      throw help_shown{};
    }
    if (i + 1 >= argc) throw error("option " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--out") o.out = v;
    else if (a == "--video") args.video = v;
    else if (a == "--frames") args.frames = parse_int(a, v, 1, 100000);
    else if (a == "--size") args.size = parse_int(a, v, 32, 8192);
    else if (a == "--fps") args.fps = parse_real(a, v, 0.1, 1000);
    else if (a == "--train") o.train = parse_int(a, v, 0, 1000000);
    else if (a == "--val") o.val = parse_int(a, v, 0, 1000000);
    else if (a == "--seed") o.seed = std::uint64_t(parse_int(a, v, 0, 2147483647));
    else if (a == "--min-size") o.scene.min_size = parse_int(a, v, 32, 8192);
    else if (a == "--max-size") o.scene.max_size = parse_int(a, v, 32, 8192);
    else if (a == "--captions") o.scene.captions = parse_int(a, v, 1, 5);
    else if (a == "--threads") o.threads = parse_int(a, v, 1, 1024);
    else if (a == "--semantic") {
      if (v == "png") o.semantic = data::semantic_format::png;
      else if (v == "polygons") o.semantic = data::semantic_format::polygons;
      else throw error("--semantic wants png or polygons, got '" + v + "'");
    }
    else throw error("unknown option '" + a + "' (gyolo datagen --help)");
  }
  if (!args.video.empty()) {
    if (!o.out.empty()) throw error("datagen: give --out DIR (a dataset) or --video FILE, not both");
    return args;
  }
  if (o.out.empty()) throw error("datagen needs --out DIR or --video FILE (gyolo datagen --help)");
  if (o.scene.max_size < o.scene.min_size)
    throw error("--max-size (" + std::to_string(o.scene.max_size) + ") is below --min-size (" + std::to_string(o.scene.min_size) + ")");
  return args;
}

void write_video(const datagen_args& a) {
  data::scene_options so = a.data.scene;
  so.min_size = so.max_size = a.size;
  video::writer_options wo;
  wo.fps = a.fps;
  if (std::filesystem::path(a.video).extension() == ".mkv") wo.codec = "ffv1";
  video::writer w(a.video, a.size, a.size, wo);
  for (int k = 0; k < a.frames; ++k) w.write(data::make_scene(so, a.data.seed, data::image_id(true, k)).image);
  w.finish();
}

}  // namespace

void check_datagen_args(int argc, char** argv) { (void)parse_datagen(argc, argv); }

int datagen_command(int argc, char** argv) {
  const auto args = parse_datagen(argc, argv);
  const auto& o = args.data;
  const auto t0 = std::chrono::steady_clock::now();
  if (!args.video.empty()) {
    write_video(args);
    std::cout << "datagen: wrote " << args.frames << (args.frames == 1 ? " frame of " : " frames of ") << args.size << "x" << args.size << " to " << args.video << " (seed "
              << o.seed << ")\n";
    return 0;
  }
  data::write_dataset(o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "datagen: wrote " << o.train << " train and " << o.val << " val images to " << o.out << " (seed " << o.seed << ", "
            << s << " s)\n";
  return 0;
}
