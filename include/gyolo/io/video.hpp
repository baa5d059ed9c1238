// Video in and out (`gyolo predict --source clip.mp4`), through FFmpeg's libraries (Debian:
// libavformat-dev, libavcodec-dev, libswscale-dev, libavutil-dev).
//
// This header has no FFmpeg types: the implementation is the compiled target gyolo::video
// (src/video_ffmpeg.cpp where CMake found FFmpeg, src/video_none.cpp otherwise, whose functions throw
// video_unavailable saying what to install). gyolo::video::available() tells which one is linked.
//
//   gyolo::video::reader in("clip.mp4");                // opens, finds the video stream, starts decoding
//   while (auto f = in.next()) { ... f->image ... }      // BGR frames in order, decoded ahead on a thread
//
//   gyolo::video::writer out("out.mp4", w, h, {.fps = in.fps()});
//   out.write(frame);                                    // BGR, w x h
//   out.finish();                                        // else the destructor removes the partial file
//
// Frames are converted to 8-bit BGR (the layout of gyolo::image_u8 and decode_image). A lossless
// codec (FFV1 in .mkv, stored as RGB) gives back exactly the frames that were written.
// Sources are files or anything FFmpeg's protocols open (rtsp://, http://, ...; given as a URL).
//
// Untrusted input: every error is a gyolo::video_error that names the source and what failed
// (FFmpeg's own message included, bytes escaped); frames larger than reader_options::max_pixels are
// refused before they are converted; a decode error ends the stream with that error, never with a
// crash. A reader and a writer are each used by one thread (the reader's decoding thread is its own).
#pragma once
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "gyolo/core/error.hpp"
#include "gyolo/io/image_types.hpp"

namespace gyolo {

/// A video could not be opened, decoded or written.
struct video_error : error {
  using error::error;
};

/// gyolo was built without FFmpeg: video is not available in this build.
struct video_unavailable : video_error {
  using video_error::video_error;
};

namespace video {

/// true when this build reads and writes video (FFmpeg found at configure time).
bool available();

/// "libavformat 59.27.100, libavcodec 59.37.100, libswscale 6.7.100" or why video is off.
std::string version();

/// true for the file names `gyolo predict` treats as videos (by extension: .mp4 .mkv .avi .mov
/// .webm .m4v .mpg .mpeg .ts .flv .wmv .ogv) and for URLs ("scheme://...").
inline bool looks_like_video(const std::string& source) {
  if (source.find("://") != std::string::npos) return true;
  std::string ext = std::filesystem::path(source).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  static const char* exts[] = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv"};
  return std::any_of(std::begin(exts), std::end(exts), [&](const char* e) { return ext == e; });
}

struct reader_options {
  int queue = 4;                           // frames decoded ahead (>= 1)
  std::int64_t max_pixels = 100'000'000;   // refuse frames larger than this
  std::int64_t max_frames = -1;            // stop after this many frames (< 0: all)
};

struct frame {
  image_u8 image;          // BGR, 3 channels
  std::int64_t index = 0;  // 0, 1, 2, ... in decoding order
  double time_s = 0;       // presentation time (seconds from the stream's start; index / fps if unknown)
};

class reader {
 public:
  explicit reader(const std::string& source, const reader_options& opt = {});
  ~reader();
  reader(const reader&) = delete;
  reader& operator=(const reader&) = delete;

  /// The next frame, or nullopt at the end of the stream. Throws video_error when decoding failed
  /// (the frames before the error were returned).
  std::optional<frame> next();

  int width() const;   // of the stream's first frame (as the container declares it)
  int height() const;
  double fps() const;  // the stream's average frame rate (25 when the container does not say)
  /// The frame count the container declares (MP4, AVI, MOV); -1 when it does not (Matroska, streams),
  /// rather than a guess from the duration. At most reader_options::max_frames.
  std::int64_t frame_count() const;
  const std::string& source() const;

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

struct writer_options {
  double fps = 25;
  /// FFmpeg encoder name; empty: libx264 where available, else mpeg4 ("ffv1" is lossless: use .mkv).
  std::string codec;
  int quality = 23;  // libx264's crf (lower is better; mpeg4: qscale = quality / 8 + 1)
};

/// Writes frames to `path` (the container from its extension). The file appears only when finish()
/// succeeds: frames go to a temporary file beside it, which the destructor removes otherwise.
class writer {
 public:
  writer(const std::string& path, int width, int height, const writer_options& opt = {});
  ~writer();
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  /// One BGR frame of the writer's size (3 channels).
  void write(const image_u8& bgr);
  /// Flushes the encoder, writes the trailer and renames the file into place.
  void finish();
  /// The encoder in use (e.g. "libx264").
  const std::string& codec() const;
  std::int64_t frames_written() const;

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

}  // namespace video
}  // namespace gyolo
