// What the gyolo CLI's translation units share.
#pragma once
#include <cmath>
#include <cctype>
#include <cstdio>
#include <limits>
#include <string>

#include <functional>
#include <vector>

#include "gyolo/core/error.hpp"

namespace gyolo {  // (declared only: the files that include this one stay light)
struct image_result;
struct image_u8;
struct pipeline_options;
namespace gguf {
class file;
}
}  // namespace gyolo

/// Thrown by a command's parser after it printed the command's usage for --help: the CLI exits
/// with 0 (a parser never ends the process itself, so the fuzz target can call it).
struct help_shown {};

/// The CLI: main() in examples/cli_main.cpp calls it (examples/gyolo_cli.cpp).
int cli_main(int argc, char** argv);

/// Parses a whole command line as cli_main does, and returns before any work: nothing is read,
/// written or set (the fuzz target tests/fuzz/fuzz_cli.cpp). Throws gyolo::error for a bad command
/// line, help_shown for --help.
void check_command_line(int argc, char** argv);

/// Each command's parser alone (check_command_line's parts): throws as the command would.
void check_train_args(int argc, char** argv);
void check_val_args(int argc, char** argv);
void check_datagen_args(int argc, char** argv);
void check_train_step_args(int argc, char** argv);

/// gyolo train-step (examples/cli_train_step.cpp).
int train_step_command(int argc, char** argv);

/// gyolo train (examples/cli_train.cpp).
int train_command(int argc, char** argv);

/// gyolo val (examples/cli_train.cpp).
int val_command(int argc, char** argv);

/// gyolo datagen (examples/cli_datagen.cpp).
int datagen_command(int argc, char** argv);

/// `gyolo bench --device cuda:N`: the vision network (vision_only) or the whole pipeline on the CUDA
/// backend, on a synthetic input.
struct cuda_bench_request {
  std::string weights;  // a .gguf file or "random"
  int device = 0, height = 640, width = 640, batch = 1, runs = 7, host_threads = 0;
  bool vision_only = true;
  bool per_layer = false;  // each layer's device time (the stream is waited for at every layer)
  bool half = false;       // fp16 tensor-core convolutions
};
/// Prints bench's JSON line for the CUDA backend. Defined in examples/cli_cuda.cpp when gyolo is
/// built with GYOLO_ENABLE_CUDA=ON, else in examples/cli_cuda_none.cpp, which throws gyolo::error
/// saying so.
int bench_cuda(const cuda_bench_request& r);
/// Whether this gyolo was built with the CUDA backend.
bool built_with_cuda();

/// `gyolo predict --device cuda:N`: the model of variant `variant` (gyolo_c or gyolo_shapes) on the
/// CUDA backend and its pipeline; returns the function that runs images through it. `weights`: the
/// opened file, or null for random weights. Defined in examples/cli_cuda.cpp (or throws:
/// cli_cuda_none.cpp).
struct cuda_predict_request {
  std::string variant;
  int device = 0, host_threads = 0;
  bool half = false;  // fp16 tensor-core convolutions
};
std::function<std::vector<gyolo::image_result>(const std::vector<gyolo::image_u8>&)> make_cuda_infer(const cuda_predict_request& r,
                                                                                                   const gyolo::pipeline_options& options,
                                                                                                   const gyolo::gguf::file* weights);

/// An integer flag value in [lo, hi], or an error naming the flag.
inline int parse_int(const std::string& flag, const std::string& v, int lo, int hi) {
  std::size_t pos = 0;
  long x = 0;
  try {
    x = std::stol(v, &pos);
  } catch (...) {
    pos = 0;
  }
  if (pos != v.size() || v.empty()) throw gyolo::error(flag + " expects an integer, got '" + v + "'");
  if (x < lo || x > hi) throw gyolo::error(flag + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v);
  return int(x);
}

/// x with `prec` decimals.
inline std::string fmt(double x, int prec) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, x);
  return b;
}

/// A number flag value in [lo, hi], or an error naming the flag.
inline double parse_real(const std::string& flag, const std::string& v, double lo, double hi) {
  std::size_t pos = 0;
  double x = 0;
  try {
    x = std::stod(v, &pos);
  } catch (...) {
    pos = 0;
  }
  if (pos != v.size() || v.empty() || !std::isfinite(x)) throw gyolo::error(flag + " expects a number, got '" + v + "'");
  if (x < lo || x > hi) throw gyolo::error(flag + " must be in [" + fmt(lo, 6) + ", " + fmt(hi, 6) + "], got " + v);
  return x;
}

/// A size in bytes: a whole number with an optional K, M, G or T suffix (powers of 1024), or an
/// error naming the flag.
inline std::size_t parse_size(const std::string& flag, const std::string& v) {
  std::string d = v;
  std::size_t mult = 1;
  if (!d.empty()) {
    const char u = char(std::toupper(static_cast<unsigned char>(d.back())));
    const int shift = u == 'K' ? 10 : u == 'M' ? 20 : u == 'G' ? 30 : u == 'T' ? 40 : 0;
    if (shift) d.pop_back(), mult = std::size_t(1) << shift;
  }
  const bool digits = !d.empty() && d.size() <= 15 && d.find_first_not_of("0123456789") == std::string::npos;
  if (!digits) throw gyolo::error(flag + " expects a size such as 512M or 8G, got '" + v + "'");
  const auto n = std::stoull(d);  // at most 15 digits: no overflow here
  if (n > std::numeric_limits<std::size_t>::max() / mult) throw gyolo::error(flag + " is too large: '" + v + "'");
  return std::size_t(n) * mult;
}

/// Seconds as m:ss or h:mm:ss.
inline std::string hms(double s) {
  const long t = long(s + 0.5);
  char b[32];
  if (t >= 3600) std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
  return b;
}

/// "[########................] 12/50": a progress bar of `width` cells.
inline std::string progress_bar(long done, long total, int width = 24) {
  const int fill = total > 0 ? int(double(done) / double(total) * width) : 0;
  std::string bar(std::size_t(fill < width ? fill : width), '#');
  bar.resize(std::size_t(width), '.');
  return "[" + bar + "] " + std::to_string(done) + "/" + std::to_string(total);
}
