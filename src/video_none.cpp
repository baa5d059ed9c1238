// gyolo::video in a build without FFmpeg (include/gyolo/io/video.hpp): every reader or writer
// throws video_unavailable, which says what to install. CMake compiles this file when it does not
// find libavformat, libavcodec, libswscale and libavutil (src/video_ffmpeg.cpp otherwise).
#include <algorithm>
#include <cctype>
#include <filesystem>

#include "gyolo/io/video.hpp"

namespace gyolo::video {
namespace {
const char* why =
    "this gyolo was built without video support: install FFmpeg's libraries (Debian: apt install libavformat-dev "
    "libavcodec-dev libswscale-dev libavutil-dev) and configure gyolo again";
}

bool available() { return false; }
std::string version() { return why; }

struct reader::impl {};
reader::reader(const std::string& source, const reader_options&) {
  throw video_unavailable("video '" + printable(source) + "': " + why);
}
reader::~reader() = default;
std::optional<frame> reader::next() { return std::nullopt; }
int reader::width() const { return 0; }
int reader::height() const { return 0; }
double reader::fps() const { return 0; }
std::int64_t reader::frame_count() const { return -1; }
const std::string& reader::source() const {
  static const std::string none;
  return none;
}

struct writer::impl {};
writer::writer(const std::string& path, int, int, const writer_options&) {
  throw video_unavailable("video '" + printable(path) + "': " + why);
}
writer::~writer() = default;
void writer::write(const image_u8&) {}
void writer::finish() {}
const std::string& writer::codec() const {
  static const std::string none;
  return none;
}
std::int64_t writer::frames_written() const { return 0; }

}  // namespace gyolo::video
