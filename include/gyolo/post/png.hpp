// PNG / JPEG encoding to memory (stb_image_write, compiled once in gyolo's library: src/png.cpp)
// and atomic file writes (temporary file in the same directory, then rename).
#pragma once
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/io/image_types.hpp"

namespace gyolo::post {

/// Row filters of a PNG: `adaptive` lets the encoder choose one per row (smallest files for photos),
/// `none` leaves rows unfiltered (faster, and smaller for flat synthetic images such as datagen's).
enum class png_filter { adaptive, none };

/// PNG of `comp` interleaved 8-bit channels (1 = gray, 3 = RGB, 4 = RGBA), rows top to bottom
/// (stb_image_write, compiled once in gyolo's library; safe to call from several threads).
std::vector<std::uint8_t> encode_png(const std::uint8_t* data, int w, int h, int comp,
                                     png_filter filter = png_filter::adaptive);

/// JPEG (quality 1..100) of 3 interleaved RGB channels.
std::vector<std::uint8_t> encode_jpeg(const std::uint8_t* rgb, int w, int h, int quality = 90);

/// BGR image_u8 (as decoded) -> RGB bytes.
std::vector<std::uint8_t> bgr_to_rgb(const image_u8& im);

namespace detail {
/// Writes bytes to the temporary file beside `path` (".<name>.tmp") and returns its path; on
/// failure removes it and throws gyolo::error naming `path`.
inline std::filesystem::path write_temp(const std::filesystem::path& path, const void* data, std::size_t size) {
  namespace fs = std::filesystem;
  const fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (!f) throw error("cannot write '" + tmp.string() + "'");
  f.write(static_cast<const char*>(data), std::streamsize(size));
  f.close();
  if (!f) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw error("writing '" + path.string() + "' failed (disk full?)");
  }
  return tmp;
}
}  // namespace detail

/// Writes bytes to `path` atomically: a temporary file next to it, then a rename. On failure
/// nothing is left behind and gyolo::error is thrown.
inline void write_file_atomic(const std::filesystem::path& path, const void* data, std::size_t size) {
  namespace fs = std::filesystem;
  const fs::path tmp = detail::write_temp(path, data, size);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw error("cannot rename '" + tmp.string() + "' to '" + path.string() + "'");
  }
}

inline void write_file_atomic(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}
inline void write_file_atomic(const std::filesystem::path& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

/// Several files written all-or-nothing (the outputs of one image): add() keeps the bytes, commit()
/// checks that no target is a folder or another non-file, writes every file under a temporary name
/// beside its target, then renames them all. When anything fails, the temporary files and the
/// targets already renamed are removed and gyolo::error names the file.
class atomic_file_set {
 public:
  void add(const std::filesystem::path& p, std::vector<std::uint8_t> bytes) { files_.emplace_back(p, std::move(bytes)); }
  void add(const std::filesystem::path& p, const std::string& text) {
    files_.emplace_back(p, std::vector<std::uint8_t>(text.begin(), text.end()));
  }
  std::size_t size() const { return files_.size(); }

  void commit() {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const auto& [p, b] : files_) {
      const auto st = fs::symlink_status(p, ec);
      if (!ec && fs::exists(st) && !fs::is_regular_file(st))
        throw error("cannot write '" + p.string() + "': it exists and is not a regular file");
    }
    std::vector<fs::path> tmps, renamed;
    auto cleanup = [&] {
      std::error_code e;
      for (const auto& t : tmps) fs::remove(t, e);
      for (const auto& r : renamed) fs::remove(r, e);
    };
    try {
      for (const auto& [p, b] : files_) tmps.push_back(detail::write_temp(p, b.data(), b.size()));
      for (std::size_t i = 0; i < files_.size(); ++i) {
        fs::rename(tmps[i], files_[i].first, ec);
        if (ec) throw error("cannot rename '" + tmps[i].string() + "' to '" + files_[i].first.string() + "': " + ec.message());
        renamed.push_back(files_[i].first);
      }
    } catch (...) {
      cleanup();
      throw;
    }
  }

 private:
  std::vector<std::pair<std::filesystem::path, std::vector<std::uint8_t>>> files_;
};

}  // namespace gyolo::post
