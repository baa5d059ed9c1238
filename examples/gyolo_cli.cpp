// gyolo command-line tool.
//   gyolo predict --weights FILE --source IMAGE_OR_DIR --out DIR [--imgsz 640] [--square]
//                 [--threads N] [--save-raw]
// Errors: one line on stderr, non-zero exit, no partial result files.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gyolo/gyolo.hpp"
#include "gyolo/io/image.hpp"

namespace fs = std::filesystem;
using namespace gyolo;

namespace {

struct options {
  std::string weights, source, out;
  int imgsz = 640, threads = 0;
  bool square = false, save_raw = false;
};

void usage(std::ostream& o) {
  o << "usage: gyolo predict --weights FILE --source IMAGE_OR_DIR --out DIR [--imgsz 640] [--square]\n"
       "                     [--threads N] [--save-raw]\n"
       "  --weights FILE  a .gguf file made by weights_tools/convert.py, or 'random' for\n"
       "                  deterministic random weights (demo only: outputs are meaningless)\n";
}

int parse_int(const std::string& flag, const std::string& v, int lo, int hi) {
  std::size_t pos = 0;
  long x = 0;
  try {
    x = std::stol(v, &pos);
  } catch (...) {
    pos = 0;
  }
  if (pos != v.size() || v.empty()) throw error(flag + " expects an integer, got '" + v + "'");
  if (x < lo || x > hi) throw error(flag + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v);
  return int(x);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--weights") o.weights = val();
    else if (a == "--source") o.source = val();
    else if (a == "--out") o.out = val();
    else if (a == "--imgsz") o.imgsz = parse_int(a, val(), 32, 8192);
    else if (a == "--threads") o.threads = parse_int(a, val(), 0, 1024);
    else if (a == "--square") o.square = true;
    else if (a == "--save-raw") o.save_raw = true;
    else throw error("unknown option '" + a + "' (see gyolo --help)");
  }
  if (o.weights.empty()) throw error("--weights is required (a converted .gguf file, or 'random')");
  if (o.source.empty()) throw error("--source is required");
  if (o.out.empty()) throw error("--out is required");
  if (o.imgsz % 32 != 0) throw error("--imgsz must be a multiple of 32, got " + std::to_string(o.imgsz));
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

std::vector<fs::path> list_sources(const std::string& src) {
  std::error_code ec;
  if (!fs::exists(src, ec)) throw error("source '" + src + "' does not exist");
  std::vector<fs::path> files;
  if (fs::is_directory(src, ec)) {
    for (auto& e : fs::directory_iterator(src, ec))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) throw error("source directory '" + src + "' contains no files");
  } else {
    files.push_back(src);
  }
  return files;
}

template <class T>
void save_npy(const fs::path& dir, const char* name, const T* data, std::vector<std::int64_t> shape) {
  npy::save<T>((dir / (std::string(name) + ".npy")).string(), data, shape);
}

int predict(const options& o) {
  using M = model<cpu, gyolo_c>;
  const bool random = o.weights == "random";
  if (!random) check_weights_kind(o.weights);
  auto files = list_sources(o.source);
  std::optional<M> m;
  if (random) {
    std::cerr << "gyolo: WARNING: no trained weights given; using deterministic RANDOM weights. "
                 "Outputs are meaningless (demo of the pipeline only).\n";
    random_weights ws(0);
    m.emplace(M::from_source(ws));
  } else {
    m.emplace(M::load(o.weights));
  }
  context<cpu> ctx(o.threads);
  fs::create_directories(o.out);
  int failed = 0;
  for (const auto& file : files) {
    const auto stem = file.stem().string();
    try {
      const auto t0 = std::chrono::steady_clock::now();
      auto img = decode_image(file.string());
      letterbox_info info{};
      auto lb = letterbox(img, o.imgsz, o.square, true, 32, &info);
      tensor<float> x(shape4{1, 3, lb.height, lb.width});
      to_input_chw_rgb(lb, x.data());
      const auto t1 = std::chrono::steady_clock::now();
      auto out = m->forward(ctx, x.cv());
      const auto t2 = std::chrono::steady_clock::now();
      if (o.save_raw) {
        const fs::path final_dir = fs::path(o.out) / (stem + "_raw");
        const fs::path tmp = fs::path(o.out) / ("." + stem + "_raw.tmp");
        fs::remove_all(tmp);
        fs::create_directories(tmp);
        const auto& p = out.pred.shape();
        save_npy(tmp, "input", x.data(), {1, 3, lb.height, lb.width});
        save_npy(tmp, "pred", out.pred.data(), {p.n, p.c, p.w});
        const auto& pr = out.proto.shape();
        save_npy(tmp, "proto", out.proto.data(), {pr.n, pr.c, pr.h, pr.w});
        const auto& s = out.semantic.shape();
        save_npy(tmp, "semantic", out.semantic.data(), {s.n, s.c, s.h, s.w});
        fs::remove_all(final_dir);
        fs::rename(tmp, final_dir);
      }
      const auto t3 = std::chrono::steady_clock::now();
      auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
      nlohmann::json j{{"image", file.string()},
                       {"width", img.width},
                       {"height", img.height},
                       {"input_hw", {lb.height, lb.width}},
                       {"timing_ms", {{"preprocess", ms(t0, t1)}, {"vision", ms(t1, t2)}, {"save", ms(t2, t3)}}}};
      std::cout << j.dump() << "\n" << std::flush;
    } catch (const std::exception& e) {
      ++failed;
      std::cerr << "gyolo: " << file.string() << ": " << e.what() << "\n";
    }
  }
  if (failed) {
    std::cerr << "gyolo: " << failed << " of " << files.size() << " images failed\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
      usage(argc < 2 ? std::cerr : std::cout);
      return argc < 2 ? 2 : 0;
    }
    const std::string cmd = argv[1];
    if (cmd != "predict") throw error("unknown command '" + cmd + "' (expected: predict)");
    return predict(parse(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "gyolo: error: " << e.what() << "\n";
    return 2;
  }
}
