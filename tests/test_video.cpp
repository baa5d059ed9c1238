// gyolo::video (io/video.hpp): lossless round trips give back the frames exactly, lossy ones their
// size and count; bad input is a video_error naming the file, never a crash; the writer leaves no
// file unless finished. In a build without FFmpeg: every reader and writer is video_unavailable.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "gyolo/data/scenes.hpp"
#include "gyolo/io/video.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_video {

using namespace gyolo;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("gyolo_test_video_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

/// Generated scenes as frames (val scene k of seed 3), w x h.
std::vector<image_u8> scenes(int n, int w, int h) {
  data::scene_options so;
  so.min_size = std::min(w, h);
  so.max_size = std::min(w, h);
  std::vector<image_u8> out;
  for (int k = 0; k < n; ++k) {
    const auto s = data::make_scene(so, 3, data::image_id(true, k)).image;
    image_u8 f(h, w, 3);  // the scene in the top-left corner, the rest grey
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c)
          f.row(y)[x * 3 + c] = (y < s.height && x < s.width) ? s.row(y)[x * 3 + c] : std::uint8_t(100 + 10 * k);
    out.push_back(std::move(f));
  }
  return out;
}

void write_all(const fs::path& p, const std::vector<image_u8>& frames, video::writer_options o) {
  video::writer w(p.string(), frames[0].width, frames[0].height, o);
  for (const auto& f : frames) w.write(f);
  CHECK(w.frames_written() == std::int64_t(frames.size()));
  w.finish();
}

}  // namespace

TEST_CASE("video: a build without FFmpeg says what to install", "[video]") {
  if (video::available()) {
    CHECK(video::version().find("libavformat") != std::string::npos);
    return;
  }
  CHECK_THROWS_AS(video::reader("clip.mp4"), video_unavailable);
  try {
    video::writer("out.mp4", 64, 64);
    FAIL("no error");
  } catch (const video_unavailable& e) {
    CHECK(std::string(e.what()).find("libavformat-dev") != std::string::npos);
  }
}

TEST_CASE("video: which sources are videos", "[video]") {
  CHECK(video::looks_like_video("a/b/clip.MP4"));
  CHECK(video::looks_like_video("x.mkv"));
  CHECK(video::looks_like_video("rtsp://camera.local/stream"));
  CHECK_FALSE(video::looks_like_video("photo.jpg"));
  CHECK_FALSE(video::looks_like_video("anim.gif"));
  CHECK_FALSE(video::looks_like_video("mp4"));
}

TEST_CASE("video: FFV1 round trip gives back the frames exactly, in order, with their times", "[video]") {
  if (!video::available()) return;
  const auto d = temp_dir("ffv1");
  const auto frames = scenes(4, 99, 70);  // odd sizes: FFV1 stores RGB, no chroma subsampling
  video::writer_options o;
  o.codec = "ffv1";
  o.fps = 4;
  write_all(d / "v.mkv", frames, o);
  CHECK_FALSE(fs::exists(d / ".v.mkv.tmp"));
  video::reader r((d / "v.mkv").string());
  CHECK(r.width() == 99);
  CHECK(r.height() == 70);
  CHECK(r.fps() == Approx(4.0));
  std::size_t k = 0;
  while (auto f = r.next()) {
    REQUIRE(k < frames.size());
    CHECK(f->index == std::int64_t(k));
    CHECK(f->time_s == Approx(0.25 * double(k)));
    CHECK(f->image.width == 99);
    CHECK(f->image.height == 70);
    CHECK(f->image.data == frames[k].data);
    ++k;
  }
  CHECK(k == frames.size());
  CHECK_FALSE(r.next().has_value());  // the end stays the end
  fs::remove_all(d);
}

TEST_CASE("video: the default encoder (H.264 in MP4) keeps size, count and content", "[video]") {
  if (!video::available()) return;
  const auto d = temp_dir("mp4");
  const auto frames = scenes(5, 128, 96);
  write_all(d / "v.mp4", frames, {});
  video::reader r((d / "v.mp4").string());
  CHECK(r.frame_count() == 5);
  CHECK(r.fps() == Approx(25.0));
  std::size_t k = 0;
  while (auto f = r.next()) {
    REQUIRE(k < frames.size());
    REQUIRE(f->image.data.size() == frames[k].data.size());
    double err = 0;
    for (std::size_t i = 0; i < f->image.data.size(); ++i) err += std::abs(int(f->image.data[i]) - int(frames[k].data[i]));
    CHECK(err / double(f->image.data.size()) < 6.0);  // lossy, but the same picture
    ++k;
  }
  CHECK(k == frames.size());
  SECTION("max_frames stops early") {
    video::reader_options ro;
    ro.max_frames = 2;
    ro.queue = 1;
    video::reader r2((d / "v.mp4").string(), ro);
    CHECK(r2.frame_count() == 2);
    int n = 0;
    while (r2.next()) ++n;
    CHECK(n == 2);
  }
  SECTION("a reader destroyed before the end stops its thread") {
    video::reader_options ro;
    ro.queue = 1;
    video::reader r3((d / "v.mp4").string(), ro);
    CHECK(r3.next().has_value());
  }
  fs::remove_all(d);
}

TEST_CASE("video: bad input is a video_error naming the source", "[video]") {
  if (!video::available()) return;
  const auto d = temp_dir("bad");
  auto expect_error = [](const std::string& src, const std::string& part) {
    try {
      video::reader r(src);
      while (r.next()) {
      }
      FAIL("no error for " << src);
    } catch (const video_error& e) {
      const std::string m = e.what();
      CHECK(m.find(part) != std::string::npos);
      CHECK(m.find('\n') == std::string::npos);
    }
  };
  expect_error((d / "missing.mp4").string(), "missing.mp4");
  {
    std::ofstream f(d / "junk.mp4", std::ios::binary);
    for (int i = 0; i < 4000; ++i) f.put(char((i * 7919) & 255));
  }
  expect_error((d / "junk.mp4").string(), "junk.mp4");
  // a valid video cut short: the frames before the cut or an error, never a crash
  write_all(d / "v.mp4", scenes(6, 64, 64), {});
  const auto size = fs::file_size(d / "v.mp4");
  for (double frac : {0.1, 0.5, 0.9}) {
    fs::copy_file(d / "v.mp4", d / "cut.mp4", fs::copy_options::overwrite_existing);
    fs::resize_file(d / "cut.mp4", std::uintmax_t(double(size) * frac));
    try {
      video::reader r((d / "cut.mp4").string());
      int n = 0;
      while (auto f = r.next()) {
        CHECK(f->image.width == 64);
        ++n;
      }
      CHECK(n <= 6);
    } catch (const video_error& e) {
      CHECK(std::string(e.what()).find("cut.mp4") != std::string::npos);
    }
  }
  // frames above the pixel limit are refused before conversion
  video::reader_options ro;
  ro.max_pixels = 64 * 63;
  try {
    video::reader r((d / "v.mp4").string(), ro);
    FAIL("no error");
  } catch (const video_error& e) {
    CHECK(std::string(e.what()).find("above the limit of 4032 pixels") != std::string::npos);
  }
  fs::remove_all(d);
}

TEST_CASE("video: the writer checks its frames and leaves nothing unless finished", "[video]") {
  if (!video::available()) return;
  const auto d = temp_dir("writer");
  {
    video::writer w((d / "a.mp4").string(), 64, 48);
    CHECK(w.codec() == "libx264");
    w.write(scenes(1, 64, 48)[0]);
    CHECK_THROWS_AS(w.write(image_u8(48, 65, 3)), video_error);
    CHECK_THROWS_AS(w.write(image_u8(48, 64, 1)), video_error);
  }  // not finished
  CHECK(fs::is_empty(d));
  CHECK_THROWS_AS(video::writer((d / "b.nosuchcontainer").string(), 64, 48), video_error);
  CHECK_THROWS_AS(video::writer((d / "c.mp4").string(), 0, 48), video_error);
  video::writer_options o;
  o.codec = "no-such-encoder";
  CHECK_THROWS_AS(video::writer((d / "d.mp4").string(), 64, 48, o), video_error);
  o = {};
  o.fps = 0;
  CHECK_THROWS_AS(video::writer((d / "e.mp4").string(), 64, 48, o), video_error);
  CHECK(fs::is_empty(d));
  CHECK_THROWS_AS(video::writer((d / "nodir" / "f.mp4").string(), 64, 48), video_error);
  fs::remove_all(d);
}

}  // namespace test_video
