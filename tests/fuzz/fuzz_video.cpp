// libFuzzer target: gyolo::video::reader (io/video.hpp) on arbitrary bytes: FFmpeg's probing and
// decoding behind gyolo's wrapper (the decoding thread, the bounded queue, the BGR conversion and
// the pixel limit). Success or gyolo::video_error only. tests/fuzz/run.sh builds and runs it.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "gyolo/io/video.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/gyolo-fuzz-video-" + std::to_string(::getpid());
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  } else {
    return 0;
  }
  try {
    gyolo::video::reader_options o;
    o.max_pixels = std::int64_t(1) << 20;
    o.max_frames = 16;
    o.queue = 2;
    gyolo::video::reader r(path, o);
    while (auto fr = r.next())
      if (fr->image.data.size() != std::size_t(fr->image.width) * std::size_t(fr->image.height) * 3) __builtin_trap();
  } catch (const gyolo::video_error&) {
  }
  return 0;
}
