// gyolo command-line tool.
//   gyolo predict --weights FILE|random --source IMAGE_OR_DIR --out DIR [options]
//   gyolo bench   --weights FILE|random [--imgsz N] [--runs N] [--threads N] [--tasks all|vision] [--per-layer]
//   gyolo info    (CPU features and kernels; --isas: the kernel sets this CPU can run)
//   gyolo train-step --weights W.gguf --batch batch.npz --out result.npz [--ni K] [--nb N] (one training iteration)
//   gyolo train   --data DATA.yaml [--variant nano] [--epochs N] ... (training runs: cli_train.cpp)
//   gyolo datagen --out DIR [--train N] [--val N] [--seed S] (generated scenes: cli_datagen.cpp)
//   gyolo --version
// Per image it writes <stem>.json, <stem>.png (the picture with masks, boxes, labels and the
// caption), <stem>_semantic.png (8-bit COCO category ids) and <stem>_panoptic.png (COCO panoptic
// PNG); --save-coco FILE writes COCO detection results for all images; --save-raw adds
// <stem>_raw/ with the raw tensors. stdout: one JSON line per image; stderr: progress (only on a
// terminal) and errors. Schema: docs/outputs.md.
// Errors: one line on stderr, non-zero exit, no partial result files. A directory with some bad
// images processes the good ones, reports the bad ones and exits with 1.
#include <glob.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cli_commands.hpp"
#include "gyolo/gyolo.hpp"
#include "gyolo/io/image.hpp"
#include "gyolo/io/video.hpp"
#include "gyolo/post/png.hpp"

namespace fs = std::filesystem;
using namespace gyolo;

namespace {

/// The flags predict and bench share.
struct model_run_options {
  std::string weights, source;
  int imgsz = 640, threads = 0;
  int device = -1;  // --device: -1 the CPU, else the CUDA device
  bool square = false;
  bool half = false;  // --half: the CUDA backend's fp16 tensor-core convolutions
};

struct options : model_run_options {
  std::string out, save_coco;
  int batch = 1;
  bool save_raw = false;
  std::optional<letterbox_mode> mode;
  post::nms_options nms = post::nms_options::predict();
  bool e2e_topk = false;
  task_set tasks;
  bool draw = true;
  bool json = false;  // JSON lines on stdout even on a terminal
  std::int64_t max_frames = -1;  // frames read from each video (< 0: all)
};

void usage(std::ostream& o) {
  o << "usage: gyolo predict --weights FILE --source IMAGE_OR_DIR --out DIR [options]\n"
       "       gyolo bench --weights FILE|random [bench options]   (gyolo bench --help)\n"
       "       gyolo train --data DATA.yaml [train options]          (gyolo train --help)\n"
       "       gyolo val --weights W.gguf --data DATA.yaml [--imgsz N]  (gyolo val --help)\n"
       "       gyolo datagen --out DIR [--train N] [--val N] [--seed S] (gyolo datagen --help)\n"
       "       gyolo train-step --weights W.gguf --batch batch.npz --out result.npz [--ni K] [--nb N]\n"
       "       gyolo info [--isas]    CPU features seen and kernels chosen\n"
       "       gyolo --version\n"
       "predict options:\n"
       "  --weights FILE      a .gguf file made by weights_tools/convert.py, or 'random' for\n"
       "                      deterministic random weights (demo only: outputs are meaningless)\n"
       "  --imgsz N           inference size, a multiple of 32 (640)\n"
       "  --square            letterbox to an imgsz x imgsz square (same as --letterbox square)\n"
       "  --letterbox MODE    predict (default: pad to a multiple of 32), square, hub (never\n"
       "                      enlarges), val (val.py: INTER_AREA long-side resize, square pad)\n"
       "  --conf X            score threshold (0.25)       --iou X       NMS IoU threshold (0.45)\n"
       "  --max-det N         detections per image (1000)  --classes L   keep classes, e.g. 0,2,3\n"
       "  --agnostic          class-agnostic NMS           --multi-label every class above conf\n"
       "  --e2e-topk          NMS-free decoding of the one-to-one head (top max-det scores)\n"
       "  --tasks LIST        any of det,mask,sem,pan,cap or all (all); panoptic needs det,mask,sem\n"
       "  --batch N           images per forward (1); images of the same input size are batched\n"
       "  --threads N         CPU threads (0 = all)\n"
       "  --device D          cpu (default), cuda or cuda:N: the vision network on that GPU (post-\n"
       "                      processing and the caption on the CPU); gyolo built with CUDA\n"
       "  --half              with --device cuda: fp16 tensor-core convolutions (fp32 accumulation)\n"
       "  --save-coco FILE    COCO detection results (bbox, score, RLE masks) for all images\n"
       "  --save-raw          also <stem>_raw/: input, pred, proto, semantic, det, masks,\n"
       "                      semantic_argmax (and caption_tokens) as .npy\n"
       "  --no-draw           do not write <stem>.png\n"
       "  --json              JSON lines on stdout also on a terminal\n"
       "  --max-frames N      read at most N frames of each video\n"
       "  --memory-limit SIZE (every command) the most memory gyolo's tensors may hold, e.g. 4G;\n"
       "                      beyond it a clear error instead of the allocation (default: 3/4 of\n"
       "                      the physical memory; 0: no limit)\n"
       "--source: an image, a video (.mp4 .mkv .avi .mov .webm ...; a stream URL such as rtsp://...),\n"
       "a folder of them, a glob pattern (quoted: 'dir/*.jpg') or a .txt file listing paths (relative\n"
       "to the list's folder).\n"
       "outputs per image in DIR: <stem>.json <stem>.png <stem>_semantic.png <stem>_panoptic.png\n"
       "(schema: docs/outputs.md); per video: <stem>.jsonl (one record per frame) and, unless\n"
       "--no-draw, <stem>.mp4 (the annotated frames). stdout: on a terminal a summary line per image\n"
       "or frame (counts per class, caption, time) and a progress bar; otherwise, or with --json, one\n"
       "JSON line per image or frame.\n";
}

bool is_int(const std::string& s) {
  if (s.empty()) return false;
  std::size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

/// --device cpu | cuda | cuda:N  ->  -1 | 0 | N
int parse_device(const std::string& v) {
  if (v == "cpu") return -1;
  if (v == "cuda") return 0;
  if (v.rfind("cuda:", 0) == 0) return parse_int("--device", v.substr(5), 0, 1023);
  throw error("--device must be cpu, cuda or cuda:N, got '" + printable(v, 64) + "'");
}

/// Parses flag `a` if it is one of model_run_options' (its value from `val`); false otherwise.
template <class Val>
bool parse_model_run_flag(const std::string& a, Val&& val, model_run_options& o) {
  if (a == "--weights") o.weights = val();
  else if (a == "--source") o.source = val();
  else if (a == "--imgsz") o.imgsz = parse_int(a, val(), 32, 8192);
  else if (a == "--threads") o.threads = parse_int(a, val(), 0, 1024);
  else if (a == "--square") o.square = true;
  else if (a == "--device") o.device = parse_device(val());
  else if (a == "--half") o.half = true;
  else return false;
  return true;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw error(a + " needs a value");
      return argv[++i];
    };
    if (parse_model_run_flag(a, val, o)) continue;
    if (a == "--out") o.out = val();
    else if (a == "--batch") o.batch = parse_int(a, val(), 1, 256);
    else if (a == "--save-raw") o.save_raw = true;
    else if (a == "--save-coco") o.save_coco = val();
    else if (a == "--conf") o.nms.conf = parse_real(a, val(), 0, 1);
    else if (a == "--iou") o.nms.iou = parse_real(a, val(), 0, 1);
    else if (a == "--max-det") o.nms.max_det = parse_int(a, val(), 1, 100000);
    else if (a == "--agnostic" || a == "--agnostic-nms") o.nms.agnostic = true;
    else if (a == "--multi-label") o.nms.multi_label = true;
    else if (a == "--e2e-topk") o.e2e_topk = true;
    else if (a == "--no-draw") o.draw = false;
    else if (a == "--json") o.json = true;
    else if (a == "--max-frames") o.max_frames = parse_int(a, val(), 1, 1 << 30);
    else if (a == "--classes") {
      // "0,2,3" or "0 2 3" (upstream's nargs='+')
      std::string v = val();
      for (std::size_t p = 0; p <= v.size();) {
        const auto q = std::min(v.find(',', p), v.size());
        o.nms.classes.push_back(parse_int(a, v.substr(p, q - p), 0, 100000));
        p = q + 1;
      }
      while (i + 1 < argc && is_int(argv[i + 1])) o.nms.classes.push_back(parse_int(a, argv[++i], 0, 100000));
    } else if (a == "--letterbox") {
      const auto v = val();
      if (v == "predict") o.mode = letterbox_mode::predict;
      else if (v == "square") o.mode = letterbox_mode::square;
      else if (v == "hub") o.mode = letterbox_mode::hub;
      else if (v == "val") o.mode = letterbox_mode::val;
      else throw error("--letterbox must be predict, square, hub or val, got '" + v + "'");
    } else if (a == "--tasks") {
      const auto v = val();
      o.tasks = {false, false, false, false, false};
      for (std::size_t p = 0; p <= v.size();) {
        const auto q = std::min(v.find(',', p), v.size());
        const auto t = v.substr(p, q - p);
        if (t == "all") o.tasks = {};
        else if (t == "det") o.tasks.detect = true;
        else if (t == "mask" || t == "seg") o.tasks.masks = true;
        else if (t == "sem") o.tasks.semantic = true;
        else if (t == "pan") o.tasks.panoptic = true;
        else if (t == "cap") o.tasks.caption = true;
        else throw error("--tasks: unknown task '" + t + "' (expected det, mask, sem, pan, cap or all)");
        p = q + 1;
      }
    } else throw error("unknown option '" + a + "' (see gyolo --help)");
  }
  if (o.weights.empty()) throw error("--weights is required (a converted .gguf file, or 'random')");
  if (o.source.empty()) throw error("--source is required");
  if (o.out.empty()) throw error("--out is required");
  if (o.imgsz % 32 != 0) throw error("--imgsz must be a multiple of 32, got " + std::to_string(o.imgsz));
  if (o.half && o.device < 0) throw error("--half needs --device cuda (the CPU backend computes in fp32)");
  if (o.square && o.mode && *o.mode != letterbox_mode::square)
    throw error("--square conflicts with the --letterbox given");
  return o;
}

/// Recognises a weights file by its content.
void check_weights_kind(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw error("cannot open weights file '" + path + "'");
  char m[4] = {0, 0, 0, 0};
  f.read(m, 4);
  if (f.gcount() == 4 && std::memcmp(m, "GGUF", 4) == 0) return;
  if (f.gcount() >= 2 && m[0] == 'P' && m[1] == 'K')
    throw error("weights file '" + path + "' is a PyTorch checkpoint (zip); convert it first: "
                "/usr/bin/python3 weights_tools/convert.py --checkpoint " + path + " --out model.gguf");
  throw error("weights file '" + path + "' is not a GGUF file made by weights_tools/convert.py");
}

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

/// The image and video files of --source (or a stream URL): a file; a folder (its regular files, not hidden, sorted); a glob
/// pattern ("images/*.jpg", sorted); or a .txt file listing one path per line (relative paths are
/// relative to the list's folder; blank lines and lines starting with '#' are skipped).
std::vector<fs::path> list_sources(const std::string& src) {
  std::error_code ec;
  std::vector<fs::path> files;
  if (src.find("://") != std::string::npos) return {fs::path(src)};  // a stream URL (video)
  if (!fs::exists(src, ec)) {
    if (ec && ec != std::errc::no_such_file_or_directory) throw error("cannot access source '" + src + "': " + ec.message());
    if (!has_glob_chars(src)) throw error("source '" + src + "' does not exist");
    glob_t g{};
    const int rc = ::glob(src.c_str(), GLOB_ERR, nullptr, &g);
    if (rc == 0)
      for (std::size_t i = 0; i < g.gl_pathc; ++i)
        if (fs::is_regular_file(g.gl_pathv[i], ec)) files.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    if (rc != 0 && rc != GLOB_NOMATCH) throw error("source pattern '" + src + "' could not be expanded (an unreadable folder?)");
    if (files.empty()) throw error("source pattern '" + src + "' matches no files");
    std::sort(files.begin(), files.end());
    return files;
  }
  if (fs::is_directory(src, ec)) {
    // Regular files (not hidden). An entry whose type cannot be read (a symlink loop, a dangling
    // link) is kept: decoding it fails with the reason, it is reported, and the others still run.
    // FIFOs, sockets and devices are left out.
    for (auto& e : fs::directory_iterator(src, ec)) {
      if (e.path().filename().string()[0] == '.') continue;
      std::error_code te;
      const bool regular = e.is_regular_file(te);
      if (regular || te) files.push_back(e.path());
    }
    if (ec) throw error("cannot list source directory '" + src + "': " + ec.message());
    std::sort(files.begin(), files.end());
    if (files.empty()) throw error("source directory '" + src + "' contains no files");
  } else if (fs::path(src).extension() == ".txt") {
    std::ifstream f(src);
    if (!f) throw error("cannot read the source list '" + src + "'");
    const fs::path base = fs::path(src).parent_path();
    std::string line;
    while (std::getline(f, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
      const auto b = line.find_first_not_of(" \t");
      if (b == std::string::npos || line[b] == '#') continue;
      const fs::path p = line.substr(b);
      files.push_back(p.is_absolute() ? p : base / p);
    }
    if (files.empty()) throw error("the source list '" + src + "' names no files");
  } else if (fs::is_regular_file(src, ec)) {
    files.push_back(src);
  } else {
    throw error("source '" + src + "' is not a regular file or a folder (FIFOs, sockets and devices are not read)");
  }
  return files;
}

/// Output stems: the file stem, or the whole file name with '.' -> '_' where stems collide.
std::vector<std::string> output_stems(const std::vector<fs::path>& files) {
  std::map<std::string, int> n;
  for (const auto& f : files) ++n[f.stem().string()];
  std::vector<std::string> s;
  for (const auto& f : files) {
    std::string st = f.stem().string();
    if (n[st] > 1) {
      st = f.filename().string();
      std::replace(st.begin(), st.end(), '.', '_');
    }
    s.push_back(st);
  }
  return s;
}

template <class T>
void save_npy(const fs::path& dir, const char* name, const T* data, std::vector<std::int64_t> shape) {
  npy::save<T>((dir / (std::string(name) + ".npy")).string(), data, shape);
}

/// Images -> results on some backend (the CPU pipeline, or the CUDA one: examples/cli_cuda.cpp).
using infer_fn = std::function<std::vector<image_result>(const std::vector<image_u8>&)>;

template <variant V>
struct runner {
  using M = model<cpu, V>;
  const options& o;
  pipeline_options opts;  // as the pipeline that `infer` runs was made with
  infer_fn infer;
  nlohmann::json coco = nlohmann::json::array();
  bool tty = false;

  runner(const options& opt, pipeline_options po, infer_fn f) : o(opt), opts(std::move(po)), infer(std::move(f)) {}

  /// Everything for one image; returns its stdout line.
  nlohmann::json finish(const fs::path& file, const std::string& stem, const image_u8& img, image_result& r, double decode_ms) {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const fs::path out(o.out);
    post::atomic_file_set files;
    const auto [dets, brief] = detections_json(r);
    nlohmann::json j{{"image", file.string()},
                     {"width", r.width},
                     {"height", r.height},
                     {"input_hw", {r.geometry.input_h, r.geometry.input_w}},
                     {"letterbox",
                      {{"mode", mode_name()},
                       {"ratio", r.letterbox.ratio},
                       {"resized_hw", {r.geometry.crop_h(), r.geometry.crop_w()}},
                       {"pad_tblr", {r.geometry.top, r.geometry.bottom, r.geometry.left, r.geometry.right}}}},
                     {"detections", dets},
                     {"semantic", nullptr},
                     {"panoptic", nullptr},
                     {"caption", r.caption ? nlohmann::json(r.caption->text) : nlohmann::json(nullptr)}};
    nlohmann::json outputs;
    if (r.semantic) {
      const auto cat = r.semantic->category_map();
      const std::string name = stem + "_semantic.png";
      files.add(out / name, post::encode_png(cat.data(), r.width, r.height, 1));
      j["semantic"] = {{"png", name}, {"category_ids", r.semantic->category_ids()}};
      outputs["semantic"] = name;
      if (o.draw) {  // a picture of it: each category's colour blended over the image
        const image_u8 pic = render_semantic(img, *r.semantic);
        const auto rgbv = post::bgr_to_rgb(pic);
        files.add(out / (stem + "_semantic_color.png"), post::encode_png(rgbv.data(), pic.width, pic.height, 3));
        outputs["semantic_picture"] = stem + "_semantic_color.png";
      }
    }
    if (r.panoptic) {
      const std::string name = stem + "_panoptic.png";
      const auto rgbv = panoptic_rgb(*r.panoptic);
      files.add(out / name, post::encode_png(rgbv.data(), r.width, r.height, 3));
      j["panoptic"] = {{"png", name}, {"segments_info", segments_info_json(*r.panoptic)}};
      outputs["panoptic"] = name;
    }
    if (o.draw) {
      const auto pic = render(img, r);
      const auto rgbv = post::bgr_to_rgb(pic);
      files.add(out / (stem + ".png"), post::encode_png(rgbv.data(), pic.width, pic.height, 3));
      outputs["picture"] = stem + ".png";
    }
    outputs["json"] = stem + ".json";
    const auto t_enc = clock::now();
    auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    const auto& t = r.timing_ms;
    nlohmann::json timing{{"decode", decode_ms}, {"preprocess", t.preprocess}, {"vision", t.vision},
                          {"detect", t.detect},  {"masks", t.masks},           {"semantic", t.semantic},
                          {"panoptic", t.panoptic}, {"caption", t.caption},   {"encode", ms(t0, t_enc)}};
    j["timing_ms"] = timing;
    j["batch"] = r.batch;
    const nlohmann::json skipped = skipped_json(r);
    j["skipped"] = skipped;
    files.add(out / (stem + ".json"), j.dump(1) + "\n");
    fs::path raw_tmp;
    if (o.save_raw) raw_tmp = save_raw(out, stem, r);
    try {
      files.commit();
      if (o.save_raw) {
        const fs::path final_dir = out / (stem + "_raw");
        fs::remove_all(final_dir);
        fs::rename(raw_tmp, final_dir);
      }
    } catch (...) {
      std::error_code ec;
      if (!raw_tmp.empty()) fs::remove_all(raw_tmp, ec);
      throw;
    }
    if (!o.save_coco.empty()) {
      const nlohmann::json id = (!stem.empty() && std::all_of(stem.begin(), stem.end(), [](unsigned char ch) { return std::isdigit(ch) != 0; }) && stem.size() < 18)
                                    ? nlohmann::json(std::stoll(stem))
                                    : nlohmann::json(stem);
      for (auto& e : coco_results(r, id)) coco.push_back(std::move(e));
    }
    timing["write"] = ms(t_enc, clock::now());
    return {{"image", file.string()},
            {"width", r.width},
            {"height", r.height},
            {"input_hw", {r.geometry.input_h, r.geometry.input_w}},
            {"num_detections", r.detections.size()},
            {"detections", brief},
            {"caption", j["caption"]},
            {"files", outputs},
            {"skipped", skipped},
            {"timing_ms", timing}};
  }

  /// The detections as <stem>.json holds them (with masks when that task ran) and without masks.
  std::pair<nlohmann::json, nlohmann::json> detections_json(const image_result& r) const {
    nlohmann::json dets = nlohmann::json::array(), brief = nlohmann::json::array();
    for (const auto& d : r.detections) {
      brief.push_back(detection_json(d, false));
      dets.push_back(detection_json(d, opts.tasks.masks));
    }
    return {dets, brief};
  }

  static nlohmann::json skipped_json(const image_result& r) {
    nlohmann::json skipped = nlohmann::json::array();
    for (const auto& t : r.skipped) skipped.push_back({{"task", t.task}, {"reason", t.reason}});
    return skipped;
  }

  /// One video frame's records: the full one (<stem>.jsonl: detections with their masks as in
  /// <stem>.json, caption, skipped tasks, timings) and the stdout line (detections without masks).
  std::pair<nlohmann::json, nlohmann::json> frame_record(const std::string& source, std::int64_t index, double time_s,
                                                         const image_result& r) const {
    const auto [dets, brief] = detections_json(r);
    const nlohmann::json skipped = skipped_json(r);
    const auto& t = r.timing_ms;
    const nlohmann::json timing{{"preprocess", t.preprocess}, {"vision", t.vision}, {"detect", t.detect}, {"masks", t.masks},
                                {"semantic", t.semantic},     {"panoptic", t.panoptic}, {"caption", t.caption}};
    nlohmann::json base{{"image", source}, {"frame", index}, {"time_s", time_s}, {"width", r.width}, {"height", r.height},
                        {"input_hw", {r.geometry.input_h, r.geometry.input_w}}};
    nlohmann::json full = base, line = base;
    full["detections"] = dets;
    line["num_detections"] = r.detections.size();
    line["detections"] = brief;
    for (auto* j : {&full, &line}) {
      (*j)["caption"] = r.caption ? nlohmann::json(r.caption->text) : nlohmann::json(nullptr);
      (*j)["skipped"] = skipped;
      (*j)["timing_ms"] = timing;
    }
    return {full, line};
  }

  std::string mode_name() const {
    switch (opts.letterbox) {
      case letterbox_mode::predict: return "predict";
      case letterbox_mode::square: return "square";
      case letterbox_mode::hub: return "hub";
      case letterbox_mode::val: return "val";
    }
    return "?";
  }

  /// Writes the raw tensors to a temporary directory and returns it (renamed by the caller).
  fs::path save_raw(const fs::path& out, const std::string& stem, const image_result& r) {
    const fs::path tmp = out / ("." + stem + "_raw.tmp");
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    try {
      const auto& raw = *r.raw;
      const auto is = raw.input.shape();
      save_npy(tmp, "input", raw.input.data(), {1, 3, is.h, is.w});
      const auto p = raw.pred.shape();
      save_npy(tmp, "pred", raw.pred.data(), {p.n, p.c, p.w});
      const auto pr = raw.proto.shape();
      save_npy(tmp, "proto", raw.proto.data(), {pr.n, pr.c, pr.h, pr.w});
      const auto s = raw.semantic.shape();
      save_npy(tmp, "semantic", raw.semantic.data(), {s.n, s.c, s.h, s.w});
      const int nm = M::config.nm;
      const std::int64_t n = std::int64_t(r.detections.size());
      std::vector<float> det(std::size_t(n) * std::size_t(6 + nm));
      for (std::int64_t i = 0; i < n; ++i) {
        const auto& d = r.detections[std::size_t(i)];
        float* row = det.data() + i * (6 + nm);
        std::copy(d.box_input.begin(), d.box_input.end(), row);
        row[4] = d.score;
        row[5] = float(d.class_id);
        std::copy(d.coef.begin(), d.coef.end(), row + 6);
      }
      save_npy(tmp, "det", det.data(), {n, 6 + nm});
      const int H = r.geometry.input_h, W = r.geometry.input_w;
      if (opts.tasks.masks) {
        std::vector<std::uint8_t> mk(std::size_t(n) * std::size_t(H) * std::size_t(W), 0);
        for (std::int64_t i = 0; i < n; ++i) {
          const auto& b = r.detections[std::size_t(i)].mask_input;
          for (int y = 0; y < b.rows(); ++y)
            for (int x = 0; x < b.cols(); ++x)
              mk[(std::size_t(i) * std::size_t(H) + std::size_t(b.y0 + y)) * std::size_t(W) + std::size_t(b.x0 + x)] =
                  b.data(std::size_t(y), std::size_t(x));
        }
        save_npy(tmp, "masks", mk.data(), {n, H, W});
      }
      if (r.semantic && r.semantic->channels_input.size())
        save_npy(tmp, "semantic_argmax", r.semantic->channels_input.data(), {H, W});
      if (r.caption) {
        const auto& tk = r.caption->tokens;
        save_npy(tmp, "caption_tokens", tk.data(), {1, std::int64_t(tk.size())});
      }
    } catch (...) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
      throw;
    }
    return tmp;
  }
};

/// The terminal's line for one image or frame: "image 2/5 dir/a.jpg 640x480: 2 persons, 1 dog; "a man ..." (85 ms)",
/// "video 1/1 (frame 3/120) clip.mp4 1280x720: ..." (`what` is the part before the path).
/// (counts per class in class order, as ultralytics' predict prints them).
std::string summary_line(const std::string& what, const fs::path& file, const image_result& r) {
  std::map<int, std::pair<std::string, int>> by_class;
  for (const auto& d : r.detections) {
    auto& e = by_class[d.class_id];
    e.first = d.label;
    ++e.second;
  }
  std::string s = what + " " + printable(file.string()) + " " + std::to_string(r.width) + "x" + std::to_string(r.height) + ":";
  if (by_class.empty()) s += " no detections";
  bool first = true;
  for (const auto& [c, e] : by_class) {
    s += std::string(first ? " " : ", ") + std::to_string(e.second) + " " + printable(e.first) + (e.second > 1 ? "s" : "");
    first = false;
  }
  if (r.caption) s += "; \"" + printable(r.caption->text) + "\"";
  for (const auto& t : r.skipped) s += "; no " + t.task;
  return s + " (" + fmt(r.timing_ms.total(), 0) + " ms)";
}

template <variant V>
int predict_as(const options& o, std::optional<gguf::file> weights_file) {
  using M = model<cpu, V>;
  const bool random = !weights_file;
  auto files = list_sources(o.source);
  const auto stems = output_stems(files);
  {
    std::error_code ec;
    if (fs::exists(o.out, ec) && !fs::is_directory(o.out, ec))
      throw error("--out '" + o.out + "' exists and is not a directory");
  }
  std::vector<std::string> names;
  if (random) {
    std::cerr << "gyolo: WARNING: no trained weights given; using deterministic RANDOM weights. "
                 "Outputs are meaningless (demo of the pipeline only).\n";
    if (M::config.nc == coco::num_things)  // readable labels for the demo
      for (int c = 0; c < coco::num_things; ++c) names.emplace_back(coco::semantic_names[std::size_t(c)]);
  }
  pipeline_options po;
  po.imgsz = o.imgsz;
  po.letterbox = o.mode ? *o.mode : (o.square ? letterbox_mode::square : letterbox_mode::predict);
  po.nms = o.nms;
  po.e2e_topk = o.e2e_topk;
  po.tasks = o.tasks;
  po.keep_raw = o.save_raw;
  po.keep_input_masks = o.save_raw;
  po.keep_semantic_input = o.save_raw;
  po.class_names = names;
  po.max_batch = o.batch;
  fs::create_directories(o.out);
  {  // the output folder must take files before any image is inferred
    const fs::path probe = fs::path(o.out) / (".gyolo-write-test-" + std::to_string(::getpid()));
    std::ofstream f(probe, std::ios::binary | std::ios::trunc);
    const bool writable = f && f.write("x", 1) && (f.close(), !f.fail());
    std::error_code ec;
    fs::remove(probe, ec);
    if (!writable) throw error("cannot write into the output folder '" + o.out + "'");
  }
  // The model and its pipeline on the backend asked for.
  std::optional<M> m;
  std::optional<context<cpu>> ctx;
  std::optional<pipeline<cpu, V>> pipe;
  infer_fn infer;
  if (o.device >= 0) {
    infer = make_cuda_infer(cuda_predict_request{V::name, o.device, o.threads, o.half}, po, weights_file ? &*weights_file : nullptr);
    weights_file.reset();
  } else {
    if (random) {
      random_weights ws(0);
      m.emplace(M::from_source(ws));
    } else {
      m.emplace(M::load(*weights_file));
      weights_file.reset();  // the file's bytes are not needed once the model holds its weights
    }
    ctx.emplace(o.threads);
    pipe.emplace(*m, po);
    infer = [&](const std::vector<image_u8>& imgs) { return pipe->run(*ctx, imgs); };
  }
  runner<V> run(o, po, std::move(infer));
  run.tty = isatty(2) != 0;
  const bool human = !o.json && isatty(1) != 0;  // a summary line per image instead of JSON
  const bool bar = run.tty && files.size() > 1;   // a progress bar on stderr
  int failed = 0, done = 0;
  const std::size_t total = files.size();
  const auto t_start = std::chrono::steady_clock::now();
  auto elapsed_s = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(); };
  auto clear_bar = [&] {
    if (bar) std::cerr << "\r\033[K" << std::flush;
  };
  auto draw_bar = [&] {
    if (!bar) return;
    const double s = elapsed_s(), rate = s > 0 ? double(done + failed) / s : 0;
    const double eta = rate > 0 ? double(total - std::size_t(done + failed)) / rate : 0;
    std::cerr << "\r" << progress_bar(done + failed, long(total)) << " " << fmt(rate, 1) << " img/s ETA " << hms(eta) << "\033[K"
              << std::flush;
  };
  auto fail = [&](const fs::path& f, const std::string& msg) {
    clear_bar();
    ++failed;
    // decoder messages already name the file
    if (msg.find(f.string()) != std::string::npos) std::cerr << "gyolo: " << msg << "\n";
    else std::cerr << "gyolo: " << f.string() << ": " << msg << "\n";
  };
  // Images are batched in list order; a video runs whole where it appears in the list.
  auto run_images = [&](const std::vector<std::size_t>& batch) {
    std::vector<image_u8> imgs;
    std::vector<std::size_t> idx;
    std::vector<double> dec_ms;
    for (const std::size_t i : batch) {
      const auto t0 = std::chrono::steady_clock::now();
      try {
        imgs.push_back(decode_image(files[i].string()));
        idx.push_back(i);
        dec_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      } catch (const std::exception& e) {
        fail(files[i], e.what());
      }
    }
    if (imgs.empty()) {
      draw_bar();
      return;
    }
    std::vector<image_result> res;
    try {
      res = run.infer(imgs);
    } catch (const std::exception& e) {
      for (auto i : idx) fail(files[i], e.what());
      draw_bar();
      return;
    }
    for (std::size_t k = 0; k < idx.size(); ++k) {
      const auto i = idx[k];
      try {
        const auto line = run.finish(files[i], stems[i], imgs[k], res[k], dec_ms[k]);
        clear_bar();
        for (const auto& t : res[k].skipped) std::cerr << "gyolo: " << files[i].string() << ": " << t.task << " skipped: " << t.reason << "\n";
        if (human) std::cout << summary_line("image " + std::to_string(i + 1) + "/" + std::to_string(total), files[i], res[k]) << "\n" << std::flush;
        else std::cout << line.dump() << "\n" << std::flush;
        ++done;
      } catch (const std::exception& e) {
        fail(files[i], e.what());
      }
      draw_bar();
    }
  };
  // A video: frames decoded ahead by video::reader, run in batches of --batch, a JSON record per
  // frame (stdout and <stem>.jsonl) and the annotated frames in <stem>.mp4. Nothing is left in the
  // output folder when the video fails.
  auto run_video = [&](std::size_t i) {
    const std::string src = files[i].string();
    auto clear_frame_bar = [&] {
      if (run.tty) std::cerr << "\r\033[K" << std::flush;
    };
    const fs::path vpath = fs::path(o.out) / (stems[i] + ".mp4"), jpath = fs::path(o.out) / (stems[i] + ".jsonl");
    try {
      if (o.save_raw) throw error("--save-raw is for images, not videos");
      video::reader_options ro;
      ro.queue = std::max(2, 2 * o.batch);
      ro.max_frames = o.max_frames;
      video::reader in(src, ro);
      std::optional<video::writer> vw;
      if (o.draw) vw.emplace(vpath.string(), in.width(), in.height(), video::writer_options{.fps = in.fps()});
      const std::int64_t n_est = in.frame_count();
      const auto t_video = std::chrono::steady_clock::now();
      std::string records;
      std::int64_t n = 0;
      for (bool end = false; !end;) {
        std::vector<video::frame> batch;
        while (!end && int(batch.size()) < o.batch) {
          auto f = in.next();
          if (f) batch.push_back(std::move(*f));
          else end = true;
        }
        if (batch.empty()) break;
        std::vector<image_u8> imgs;
        for (auto& f : batch) imgs.push_back(std::move(f.image));
        const auto res = run.infer(imgs);
        for (std::size_t k = 0; k < batch.size(); ++k) {
          const auto rec = run.frame_record(src, batch[k].index, batch[k].time_s, res[k]);
          records += rec.first.dump() + "\n";
          if (vw) vw->write(render(imgs[k], res[k]));
          clear_frame_bar();
          if (human)
            std::cout << summary_line("video " + std::to_string(i + 1) + "/" + std::to_string(total) + " (frame " +
                                          std::to_string(batch[k].index + 1) + (n_est > 0 ? "/" + std::to_string(n_est) : "") + ")",
                                      files[i], res[k])
                      << "\n" << std::flush;
          else std::cout << rec.second.dump() << "\n" << std::flush;
          ++n;
        }
        if (run.tty) {
          const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_video).count();
          std::cerr << "\r" << (n_est > 0 ? progress_bar(int(std::min(n, n_est)), long(n_est)) + " " : std::string()) << "frame " << n << " "
                    << fmt(s > 0 ? double(n) / s : 0.0, 1) << " frames/s\033[K" << std::flush;
        }
      }
      clear_frame_bar();
      if (n == 0) throw error("video '" + printable(src) + "' has no frames");
      if (vw) vw->finish();
      try {
        post::write_file_atomic(jpath, records);
      } catch (...) {
        std::error_code ec;
        if (vw) fs::remove(vpath, ec);
        throw;
      }
      if (human) std::cout << "video " << printable(src) << ": " << n << " frames -> " << (vw ? vpath.string() + ", " : "") << jpath.string() << "\n";
      ++done;
    } catch (const std::exception& e) {
      clear_frame_bar();
      fail(files[i], e.what());
    }
    draw_bar();
  };
  std::vector<std::size_t> pending;
  for (std::size_t i = 0; i < total; ++i) {
    if (video::looks_like_video(files[i].string())) {
      if (!pending.empty()) run_images(pending);
      pending.clear();
      run_video(i);
      continue;
    }
    pending.push_back(i);
    if (int(pending.size()) == o.batch) {
      run_images(pending);
      pending.clear();
    }
  }
  if (!pending.empty()) run_images(pending);
  clear_bar();
  const bool any_video = std::any_of(files.begin(), files.end(), [](const fs::path& f) { return video::looks_like_video(f.string()); });
  const std::string one = any_video ? " input" : " image", many = any_video ? " inputs" : " images";
  if (human) {
    const double s = elapsed_s();
    std::cout << done << (done == 1 ? one : many) << " in " << fmt(s, 1) << " s";
    if (!any_video) std::cout << " (" << fmt(s > 0 ? done / s : 0.0, 1) << " img/s)";
    std::cout << "; results in " << o.out << "/" << (failed ? " (" + std::to_string(failed) + " failed)" : "") << "\n";
  }
  if (!o.save_coco.empty()) {
    const fs::path p(o.save_coco);
    if (p.has_parent_path()) fs::create_directories(p.parent_path());
    post::write_file_atomic(p, run.coco.dump() + "\n");
  }
  if (failed) {
    std::cerr << "gyolo: " << failed << " of " << files.size() << (files.size() == 1 ? one : many) << " failed\n";
    return 1;
  }
  return 0;
}

/// The variants `gyolo predict` is compiled for: the released GYOLO and the demo model trained by
/// gyolo (gyolo-shapes); a weights file's gyolo.yaml chooses.
int predict(const options& o) {
  if (o.weights == "random") return predict_as<gyolo_c>(o, std::nullopt);
  check_weights_kind(o.weights);
  gguf::file f(o.weights);  // read once: its gyolo.yaml chooses the variant, then the model loads from it
  if (f.has("gyolo.yaml")) {
    variant_config v;
    try {
      v = variant_from_yaml(nlohmann::json::parse(f.get_string("gyolo.yaml")), o.weights);
    } catch (const nlohmann::json::exception& e) {
      f.fail(std::string("gyolo.yaml is not valid JSON: ") + e.what());
    }
    if (v == gyolo_shapes::value) return predict_as<gyolo_shapes>(o, std::move(f));
  }
  return predict_as<gyolo_c>(o, std::move(f));
}

// ---------------------------------------------------------------------------------------------
// gyolo info / --version
// ---------------------------------------------------------------------------------------------

/// "portable avx2 avx512": the kernel sets this CPU can run.
std::string available_isas() {
  std::string avail;
  for (cpu_isa i : available_cpu_isas()) (avail += avail.empty() ? "" : " ") += to_string(i);
  return avail;
}

std::string kernels_line() {
  return std::string(cpu_detail::active_kernels().name) + " (available: " + available_isas() + ")";
}

int info(int argc, char** argv) {
  if (argc == 3 && std::string(argv[2]) == "--isas") {
    std::cout << available_isas() << "\n";
    return 0;
  }
  const char* env = std::getenv("GYOLO_ISA");
  const std::string kernels = kernels_line();  // throws on a bad GYOLO_ISA before anything is printed
  std::cout << "gyolo " << version << "\n"
            << "cpu features: " << detected_cpu_features().summary() << "\n"
            << "kernels: " << kernels << "\n"
            << "GYOLO_ISA: " << (env ? env : "(unset: best available)") << "\n"
            << "threads: " << resolve_threads(0) << "\n";
  return 0;
}

// ---------------------------------------------------------------------------------------------
// gyolo bench
// ---------------------------------------------------------------------------------------------

struct bench_options : model_run_options {
  int runs = 7, batch = 1;
  bool per_layer = false, vision_only = false;
};


void bench_usage(std::ostream& o) {
  o << "usage: gyolo bench --weights FILE|random [options]\n"
       "  --imgsz N         inference size, a multiple of 32 (640)\n"
       "  --square          letterbox to imgsz x imgsz (default: the image's aspect, padded to 32)\n"
       "  --source IMAGE    the image to run (default: a synthetic 4:3 picture)\n"
       "  --runs N          timed runs after one warm-up run, median reported (7; at least 3)\n"
       "  --threads N       threads (0 = all)\n"
       "  --tasks T         all (the whole pipeline, default) or vision (the forward pass only)\n"
       "  --per-layer       also time each layer (0-56) with its GFLOP, GFLOP/s and share\n"
       "  --device D        cpu (default), cuda or cuda:N (the CUDA backend: gyolo built with\n"
       "                    GYOLO_ENABLE_CUDA=ON; a synthetic input; --tasks all: the caption and the\n"
       "                    semantic maps on the GPU, NMS, masks and panoptic on the CPU)\n"
       "  --batch N         images per forward with --tasks vision (1)\n"
       "  --half            with --device cuda: fp16 tensor-core convolutions (fp32 accumulation)\n"
       "prints one JSON line: median_ms, min_ms, first_ms, per-stage medians, peak_rss_mb, kernels.\n";
}

bench_options parse_bench(int argc, char** argv) {
  bench_options o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw error(a + " needs a value");
      return argv[++i];
    };
    if (parse_model_run_flag(a, val, o)) continue;
    if (a == "--runs") o.runs = parse_int(a, val(), 3, 100000);
    else if (a == "--per-layer") o.per_layer = true;
    else if (a == "--batch") o.batch = parse_int(a, val(), 1, 256);
    else if (a == "--tasks") {
      const auto v = val();
      if (v == "all") o.vision_only = false;
      else if (v == "vision") o.vision_only = true;
      else throw error("--tasks for bench must be all or vision, got '" + v + "'");
    } else if (a == "--help" || a == "-h") {
      bench_usage(std::cout);
      throw help_shown{};
    } else throw error("unknown option '" + a + "' (see gyolo bench --help)");
  }
  if (o.weights.empty()) throw error("--weights is required (a converted .gguf file, or 'random')");
  if (o.imgsz % 32 != 0) throw error("--imgsz must be a multiple of 32, got " + std::to_string(o.imgsz));
  if (o.batch > 1 && !o.vision_only) throw error("--batch needs --tasks vision (the pipeline batches images of equal size itself)");
  if (o.half && o.device < 0) throw error("--half needs --device cuda (the CPU backend computes in fp32)");
  if (o.device >= 0) {
    if (!o.source.empty()) throw error("--source is not used with --device cuda (a synthetic input of --imgsz)");
  }
  return o;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// A deterministic 4:3 test picture (gradients and blocks), so a bench needs no file.
image_u8 synthetic_image(int w, int h) {
  image_u8 im(h, w, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      std::uint8_t* p = im.data.data() + (std::size_t(y) * w + x) * 3;
      const bool blk = ((x / 40) + (y / 40)) % 2;
      p[0] = std::uint8_t((x * 255) / w);
      p[1] = std::uint8_t((y * 255) / h);
      p[2] = std::uint8_t(blk ? 200 : 40);
    }
  return im;
}

/// The kernel set's multiply-add peak with `threads` threads at once, GFLOP/s (best of 3).
double fma_peak_gflops(int threads) {
  const auto& kt = cpu_detail::active_kernels();
  const long iters = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> gf(std::size_t(threads), 0.0);
    volatile float sink = 0;
#pragma omp parallel num_threads(threads)
    {
      const auto t0 = std::chrono::steady_clock::now();
      const float r = kt.fma_loop(iters);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      gf[std::size_t(omp_get_thread_num())] = double(iters) * kt.fma_flop_per_iter / s * 1e-9;
      if (r == 12345.f) sink = r;
    }
    (void)sink;
    double sum = 0;
    for (double g : gf) sum += g;
    best = std::max(best, sum);
  }
  return best;
}

int bench(const bench_options& o) {
  if (o.device >= 0) {
    if (o.weights != "random") check_weights_kind(o.weights);
    const int h = o.square ? o.imgsz : o.imgsz * 3 / 4 / 32 * 32;
    return bench_cuda({.weights = o.weights, .device = o.device, .height = h, .width = o.imgsz, .batch = o.batch, .runs = o.runs,
                       .host_threads = o.threads, .vision_only = o.vision_only, .per_layer = o.per_layer, .half = o.half});
  }
  using M = model<cpu, gyolo_c>;
  using clock = std::chrono::steady_clock;
  const bool random = o.weights == "random";
  if (!random) check_weights_kind(o.weights);
  std::optional<M> m;
  if (random) {
    random_weights ws(0);
    m.emplace(M::from_source(ws));
  } else {
    m.emplace(M::load(o.weights));
  }
  const image_u8 img = o.source.empty() ? synthetic_image(o.imgsz, o.imgsz * 3 / 4) : decode_image(o.source);
  context<cpu> ctx(o.threads);
  pipeline_options po;
  po.imgsz = o.imgsz;
  po.letterbox = o.square ? letterbox_mode::square : letterbox_mode::predict;
  pipeline<cpu, gyolo_c> p(*m, po);
  const auto prepared = prepare_input(img, o.imgsz, po.letterbox);
  const bool caption = !o.vision_only && m->has_caption() && p.options().tasks.caption;
  // --batch: the prepared input repeated
  tensor<float> batched({o.batch, 3, prepared.x.shape().h, prepared.x.shape().w});
  for (int i = 0; i < o.batch; ++i)
    std::copy(prepared.x.data(), prepared.x.data() + prepared.x.numel(), batched.data() + std::int64_t(i) * prepared.x.numel());

  std::vector<double> total;
  std::map<std::string, std::vector<double>> stages;
  auto one = [&] {
    const auto t0 = clock::now();
    if (o.vision_only) {
      auto out = m->forward(ctx, batched.cv());
      const double ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
      stages["vision"].push_back(ms);
      return ms;
    }
    auto r = p.run(ctx, img);
    const double ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    const auto& t = r.timing_ms;
    for (auto [name, v] : {std::pair{"preprocess", t.preprocess}, {"vision", t.vision}, {"detect", t.detect}, {"masks", t.masks},
                           {"semantic", t.semantic}, {"panoptic", t.panoptic}, {"caption", t.caption}})
      stages[name].push_back(v);
    return ms;
  };
  // The warm-up run (excluded from the timings) also counts the vision graph's FLOPs.
  layer_profiler counter;
  ctx.set_profiler(&counter);
  const double first = one();
  ctx.set_profiler(nullptr);
  double vision_flop = 0;
  for (const auto& row : counter.rows) vision_flop += row.flop;
  stages.clear();
  for (int r = 0; r < o.runs; ++r) total.push_back(one());

  nlohmann::ordered_json j;
  j["command"] = "bench";
  j["weights"] = random ? "random" : fs::path(o.weights).filename().string();
  j["input"] = {prepared.x.shape().h, prepared.x.shape().w};
  j["batch"] = o.batch;
  j["device"] = "cpu";
  j["threads"] = ctx.threads();
  j["runs"] = o.runs;
  j["tasks"] = o.vision_only ? "vision" : "all";
  j["kernels"] = cpu_detail::active_kernels().name;
  j["cpu"] = detected_cpu_features().summary();
  j["median_ms"] = round_to(median(total), 100);
  j["min_ms"] = round_to(*std::min_element(total.begin(), total.end()), 100);
  j["first_ms"] = round_to(first, 100);
  nlohmann::ordered_json st = nlohmann::ordered_json::object();
  for (const char* name : {"preprocess", "vision", "detect", "masks", "semantic", "panoptic", "caption"})
    if (stages.count(name)) st[name] = round_to(median(stages[name]), 100);
  j["stages_median_ms"] = st;
  // How close the vision graph runs to the machine's multiply-add peak (same threads, same kernels).
  const double peak = fma_peak_gflops(ctx.threads());
  const double vis_ms = median(stages["vision"]);
  j["vision_gflop"] = round_to(vision_flop * 1e-9, 100);
  j["vision_gflops"] = round_to(vis_ms > 0 ? vision_flop * 1e-6 / vis_ms : 0.0, 10);
  j["fma_peak_gflops"] = round_to(peak, 10);
  j["vision_fraction_of_peak"] = round_to(peak > 0 && vis_ms > 0 ? vision_flop * 1e-6 / vis_ms / peak : 0.0, 1000);

  if (o.per_layer) {
    // The same work with a profiler attached: each layer's time (median over runs) and FLOPs.
    std::vector<std::string> order;
    std::map<std::string, std::vector<double>> ms;
    std::map<std::string, double> flop;
    for (int r = 0; r < o.runs; ++r) {
      layer_profiler prof;
      ctx.set_profiler(&prof);
      auto out = m->forward(ctx, prepared.x.cv(), {.caption_features = caption});
      if (caption) {
        prof.start();
        auto c = m->caption(ctx, out);
        prof.mark("56");
      }
      ctx.set_profiler(nullptr);
      for (const auto& row : prof.rows) {
        if (!ms.count(row.layer)) order.push_back(row.layer);
        ms[row.layer].push_back(row.ms);
        flop[row.layer] = row.flop;
      }
    }
    double sum = 0;
    for (const auto& l : order) sum += median(ms[l]);
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (const auto& l : order) {
      const double t = median(ms[l]);
      nlohmann::ordered_json e;
      e["layer"] = l;
      e["ms"] = round_to(t, 1000);
      e["gflop"] = round_to(flop[l] * 1e-9, 10000);
      e["gflops"] = round_to(t > 0 ? flop[l] * 1e-6 / t : 0.0, 10);
      e["share"] = round_to(sum > 0 ? t / sum : 0.0, 10000);
      layers.push_back(e);
    }
    j["layers"] = layers;
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  j["peak_rss_mb"] = round_to(double(ru.ru_maxrss) / 1024.0, 10);
  std::cout << j.dump() << std::endl;
  return 0;
}

}  // namespace

/// --memory-limit SIZE, accepted by every command: gyolo::set_memory_limit (when `apply`), then
/// taken out of argv.
void take_memory_limit(int& argc, char** argv, bool apply) {
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) != "--memory-limit") continue;
    if (i + 1 >= argc) throw error("--memory-limit needs a value");
    const std::size_t limit = parse_size("--memory-limit", argv[i + 1]);
    if (apply) set_memory_limit(limit);
    for (int j = i; j + 2 <= argc; ++j) argv[j] = argv[j + 2];  // argv[argc] (null) moves down too
    argc -= 2;
    --i;
  }
}

namespace {

void check_info_args(int argc, char** argv) {
  if (argc > 3 || (argc == 3 && std::string(argv[2]) != "--isas")) throw error("gyolo info takes no arguments but --isas");
}

/// The commands: each one's parser alone (check_command_line) and the command (cli_main).
struct command {
  const char* name;
  void (*check)(int, char**);
  int (*run)(int, char**);
};
constexpr command commands[] = {
    {"predict", [](int c, char** v) { (void)parse(c, v); }, [](int c, char** v) { return predict(parse(c, v)); }},
    {"bench", [](int c, char** v) { (void)parse_bench(c, v); }, [](int c, char** v) { return bench(parse_bench(c, v)); }},
    {"info", check_info_args, [](int c, char** v) { return (check_info_args(c, v), info(c, v)); }},
    {"train", check_train_args, train_command},
    {"val", check_val_args, val_command},
    {"datagen", check_datagen_args, datagen_command},
    {"train-step", check_train_step_args, train_step_command},
};

/// The command named argv[1], or an error listing them.
const command& find_command(const std::string& name) {
  for (const auto& c : commands)
    if (name == c.name) return c;
  throw error("unknown command '" + name + "' (expected: predict, bench, info, train, val, datagen, train-step)");
}

}  // namespace

void check_command_line(int argc, char** argv) {
  take_memory_limit(argc, argv, false);
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--version") return;
  find_command(argv[1]).check(argc, argv);
}

int cli_main(int argc, char** argv) {
  try {
    take_memory_limit(argc, argv, true);
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
      usage(argc < 2 ? std::cerr : std::cout);
      return argc < 2 ? 2 : 0;
    }
    if (std::string(argv[1]) == "--version") {
      std::cout << "gyolo " << version << " (kernels " << kernels_line() << "; cpu " << detected_cpu_features().summary()
                << ")\n";
      return 0;
    }
    return find_command(argv[1]).run(argc, argv);
  } catch (const help_shown&) {
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "gyolo: error: " << e.what() << "\n";
    return 2;
  }
}
