// gyolo::video on FFmpeg's libraries (include/gyolo/io/video.hpp). Built where CMake finds
// libavformat, libavcodec, libswscale and libavutil; src/video_none.cpp otherwise.
//
// Frames are converted to BGR24 by swscale with SWS_BICUBIC at the frame's own size, as OpenCV's
// VideoCapture (cap_ffmpeg_impl.hpp) does, so a frame equals what upstream's cv2-based loaders read.
#include "gyolo/io/video.hpp"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

namespace gyolo::video {
namespace {

std::string av_message(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(code, buf, sizeof buf);
  return printable(buf);
}

// FFmpeg's own error lines ("moov atom not found") are not printed: the last one is kept and
// goes into the next error message, so that an error is one line.
std::mutex log_mu;
std::string last_log;

void log_callback(void* avcl, int level, const char* fmt, va_list vl) {
  if (level > AV_LOG_ERROR) return;
  char line[512];
  int prefix = 0;  // "[mov,mp4 @ 0x...] " left out
  av_log_format_line2(nullptr, level, fmt, vl, line, sizeof line, &prefix);
  (void)avcl;
  std::string m(line);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  std::lock_guard lk(log_mu);
  last_log = m;
}

std::string take_log() {
  std::lock_guard lk(log_mu);
  std::string m;
  m.swap(last_log);
  return m;
}

[[noreturn]] void fail(const std::string& who, const std::string& what, int code) {
  std::string detail = code < 0 ? av_message(code) : std::string();
  const std::string log = take_log();
  if (!log.empty()) detail += (detail.empty() ? "" : ": ") + printable(log, 200);
  throw video_error(who + ": " + what + (detail.empty() ? std::string() : " (" + detail + ")"));
}

void quiet_ffmpeg() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_callback(&log_callback); });
}

}  // namespace

bool available() { return true; }

std::string version() {
  auto v = [](unsigned x) {
    return std::to_string(AV_VERSION_MAJOR(x)) + "." + std::to_string(AV_VERSION_MINOR(x)) + "." + std::to_string(AV_VERSION_MICRO(x));
  };
  return "libavformat " + v(avformat_version()) + ", libavcodec " + v(avcodec_version()) + ", libswscale " + v(swscale_version());
}

// ---------------------------------------------------------------------------------------- reader

struct reader::impl {
  std::string source, who;
  reader_options opt;
  AVFormatContext* fmt = nullptr;
  AVCodecContext* dec = nullptr;
  SwsContext* sws = nullptr;
  AVPacket* pkt = nullptr;
  AVFrame* fr = nullptr;
  int stream = -1, width = 0, height = 0;
  double fps = 25, time_base = 0, start = 0;
  std::int64_t count = -1, produced = 0;
  std::vector<std::uint8_t> scratch;  // swscale's output (decoding thread only)

  std::thread worker;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<frame> queue;
  std::exception_ptr err;
  bool done = false;
  std::atomic<bool> stop{false};

  static int interrupt(void* self) { return static_cast<impl*>(self)->stop.load() ? 1 : 0; }

  impl(const std::string& src, const reader_options& o) : source(src), who("video '" + printable(src) + "'"), opt(o) {
    try {
      open();
    } catch (...) {
      close();
      throw;
    }
    worker = std::thread([this] { run(); });
  }

  void open() {
    if (opt.queue < 1) throw video_error(who + ": reader_options::queue must be at least 1, got " + std::to_string(opt.queue));
    quiet_ffmpeg();
    fmt = avformat_alloc_context();
    if (!fmt) throw video_error(who + ": out of memory");
    fmt->interrupt_callback = {&impl::interrupt, this};
    AVDictionary* d = nullptr;
    av_dict_set(&d, "rw_timeout", "10000000", 0);  // network sources: 10 s without data is an error, not a hang
    int r = avformat_open_input(&fmt, source.c_str(), nullptr, &d);  // frees fmt on failure
    av_dict_free(&d);
    if (r < 0) {
      fmt = nullptr;
      fail(who, "cannot be opened", r);
    }
    if ((r = avformat_find_stream_info(fmt, nullptr)) < 0) fail(who, "has no readable stream information", r);
    const AVCodec* codec = nullptr;
    stream = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (stream == AVERROR_STREAM_NOT_FOUND) throw video_error(who + ": has no video stream");
    if (stream < 0 || !codec) fail(who, "has no video stream this FFmpeg can decode", stream < 0 ? stream : AVERROR_DECODER_NOT_FOUND);
    AVStream* st = fmt->streams[stream];
    if (!(dec = avcodec_alloc_context3(codec))) throw video_error(who + ": out of memory");
    if ((r = avcodec_parameters_to_context(dec, st->codecpar)) < 0) fail(who, "has unusable codec parameters", r);
    dec->thread_count = 0;  // FFmpeg chooses
    if ((r = avcodec_open2(dec, codec, nullptr)) < 0) fail(who, std::string("cannot open its ") + codec->name + " decoder", r);
    width = st->codecpar->width;
    height = st->codecpar->height;
    if (width <= 0 || height <= 0) throw video_error(who + ": declares an empty frame size " + std::to_string(width) + "x" + std::to_string(height));
    check_size(width, height);
    const AVRational q = av_guess_frame_rate(fmt, st, nullptr);
    if (q.num > 0 && q.den > 0) fps = av_q2d(q);
    time_base = av_q2d(st->time_base);
    start = st->start_time != AV_NOPTS_VALUE ? double(st->start_time) * time_base : 0.0;
    if (st->nb_frames > 0) count = st->nb_frames;
    if (opt.max_frames >= 0 && (count < 0 || count > opt.max_frames)) count = opt.max_frames;
    pkt = av_packet_alloc();
    fr = av_frame_alloc();
    if (!pkt || !fr) throw video_error(who + ": out of memory");
  }

  ~impl() {
    stop = true;
    cv.notify_all();
    if (worker.joinable()) worker.join();
    close();
  }

  void close() {
    sws_freeContext(sws);
    sws = nullptr;
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    if (fmt) avformat_close_input(&fmt);
  }

  void check_size(int w, int h) const {
    if (std::int64_t(w) * h > opt.max_pixels)
      throw video_error(who + ": frames are " + std::to_string(w) + "x" + std::to_string(h) + " pixels, above the limit of " +
                        std::to_string(opt.max_pixels) + " pixels");
  }

  bool finished() const { return stop.load() || (opt.max_frames >= 0 && produced >= opt.max_frames); }

  // Converts fr to BGR and queues it; waits while the queue is full. false: stop.
  bool emit() {
    if (fr->width <= 0 || fr->height <= 0) throw video_error(who + ": frame " + std::to_string(produced) + " is empty");
    check_size(fr->width, fr->height);
    sws = sws_getCachedContext(sws, fr->width, fr->height, AVPixelFormat(fr->format), fr->width, fr->height, AV_PIX_FMT_BGR24,
                               SWS_BICUBIC, nullptr, nullptr, nullptr);
    if (!sws) throw video_error(who + ": frame " + std::to_string(produced) + " has a pixel format swscale cannot convert");
    frame f;
    f.image = image_u8(fr->height, fr->width, 3);
    // swscale's SIMD code may write past the end of a row: convert into a buffer with 64-byte aligned
    // rows and a padded tail (as av_image_alloc gives), then copy the rows out
    const std::size_t row = f.image.row_bytes(), stride = (row + 63) / 64 * 64;
    scratch.resize(stride * (std::size_t(fr->height) + 1) + 64);
    std::uint8_t* base = scratch.data() + (64 - reinterpret_cast<std::uintptr_t>(scratch.data()) % 64) % 64;
    std::uint8_t* dst[4] = {base, nullptr, nullptr, nullptr};
    int dst_stride[4] = {int(stride), 0, 0, 0};
    if (sws_scale(sws, fr->data, fr->linesize, 0, fr->height, dst, dst_stride) != fr->height)
      throw video_error(who + ": frame " + std::to_string(produced) + " could not be converted");
    for (int y = 0; y < fr->height; ++y) std::memcpy(f.image.row(y), base + std::size_t(y) * stride, row);
    f.index = produced++;
    const std::int64_t ts = fr->best_effort_timestamp;
    f.time_s = ts != AV_NOPTS_VALUE ? double(ts) * time_base - start : double(f.index) / fps;
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return stop.load() || int(queue.size()) < opt.queue; });
    if (stop) return false;
    queue.push_back(std::move(f));
    cv.notify_all();
    return !finished();
  }

  // Receives every frame the decoder has ready. false: stop.
  bool drain() {
    for (;;) {
      const int r = avcodec_receive_frame(dec, fr);
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return true;
      if (r < 0) fail(who, "frame " + std::to_string(produced) + " cannot be decoded", r);
      const bool more = emit();
      av_frame_unref(fr);
      if (!more) return false;
    }
  }

  void run() {
    try {
      for (bool more = !finished(); more;) {
        const int r = av_read_frame(fmt, pkt);
        if (r == AVERROR_EOF) {
          const int s = avcodec_send_packet(dec, nullptr);
          if (s < 0 && s != AVERROR_EOF) fail(who, "cannot flush its decoder", s);
          drain();
          break;
        }
        if (r < 0) {
          if (stop) break;
          fail(who, "cannot be read after frame " + std::to_string(produced), r);
        }
        if (pkt->stream_index == stream) {
          // EAGAIN: the decoder's output must be read before it takes this packet (frame threads)
          int s = avcodec_send_packet(dec, pkt);
          for (int tries = 0; s == AVERROR(EAGAIN) && tries < 1000 && (more = drain()); ++tries) s = avcodec_send_packet(dec, pkt);
          av_packet_unref(pkt);
          if (!more) break;
          if (s < 0) fail(who, "frame " + std::to_string(produced) + " cannot be decoded", s);
          more = drain();
        } else {
          av_packet_unref(pkt);
        }
      }
    } catch (...) {
      std::lock_guard lk(mu);
      err = std::current_exception();
    }
    std::lock_guard lk(mu);
    done = true;
    cv.notify_all();
  }

  std::optional<frame> next() {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return !queue.empty() || done; });
    if (!queue.empty()) {
      frame f = std::move(queue.front());
      queue.pop_front();
      cv.notify_all();
      return f;
    }
    if (err) {
      auto e = err;
      err = nullptr;
      std::rethrow_exception(e);
    }
    return std::nullopt;
  }
};

reader::reader(const std::string& source, const reader_options& opt) : p_(std::make_unique<impl>(source, opt)) {}
reader::~reader() = default;
std::optional<frame> reader::next() { return p_->next(); }
int reader::width() const { return p_->width; }
int reader::height() const { return p_->height; }
double reader::fps() const { return p_->fps; }
std::int64_t reader::frame_count() const { return p_->count; }
const std::string& reader::source() const { return p_->source; }

// ---------------------------------------------------------------------------------------- writer

struct writer::impl {
  std::filesystem::path path, tmp;
  std::string who, codec_name;
  AVFormatContext* oc = nullptr;
  AVCodecContext* enc = nullptr;
  AVStream* st = nullptr;
  SwsContext* sws = nullptr;
  AVFrame* fr = nullptr;
  AVPacket* pkt = nullptr;
  int width = 0, height = 0;
  std::int64_t n = 0;
  bool opened = false, finished = false;

  impl(const std::string& p, int w, int h, const writer_options& opt) : path(p), who("video '" + printable(p) + "'") {
    try {
      open(w, h, opt);
    } catch (...) {
      close();
      throw;
    }
  }

  void open(int w, int h, const writer_options& opt) {
    quiet_ffmpeg();
    if (w <= 0 || h <= 0 || std::int64_t(w) * h > 100'000'000)
      throw video_error(who + ": cannot write frames of " + std::to_string(w) + "x" + std::to_string(h) + " pixels");
    if (!(opt.fps > 0) || opt.fps > 1000) throw video_error(who + ": frame rate " + std::to_string(opt.fps) + " is not in (0, 1000]");
    width = w;
    height = h;
    tmp = path.parent_path() / ("." + path.filename().string() + ".tmp");
    int r = avformat_alloc_output_context2(&oc, nullptr, nullptr, path.string().c_str());
    if (r < 0 || !oc) fail(who, "has an extension that names no container FFmpeg writes", r);
    const AVCodec* codec = nullptr;
    if (opt.codec.empty()) {
      codec = avcodec_find_encoder_by_name("libx264");
      if (!codec) codec = avcodec_find_encoder_by_name("mpeg4");
    } else {
      codec = avcodec_find_encoder_by_name(opt.codec.c_str());
    }
    if (!codec) throw video_error(who + ": this FFmpeg has no encoder '" + printable(opt.codec.empty() ? "mpeg4" : opt.codec) + "'");
    codec_name = codec->name;
    if (!(st = avformat_new_stream(oc, nullptr)) || !(enc = avcodec_alloc_context3(codec))) throw video_error(who + ": out of memory");
    // BGR0 for FFV1 (lossless RGB), else 4:2:0 as players expect (even sizes)
    AVPixelFormat pf = AV_PIX_FMT_NONE;
    const AVPixelFormat want = codec_name == "ffv1" ? AV_PIX_FMT_BGR0 : AV_PIX_FMT_YUV420P;
    for (const AVPixelFormat* f = codec->pix_fmts; f && *f != AV_PIX_FMT_NONE; ++f) {
      if (pf == AV_PIX_FMT_NONE) pf = *f;
      if (*f == want) pf = want;
    }
    if (pf == AV_PIX_FMT_NONE) throw video_error(who + ": encoder " + codec_name + " declares no pixel format");
    enc->pix_fmt = pf;
    const bool subsampled = pf == AV_PIX_FMT_YUV420P;
    enc->width = subsampled ? std::max(2, w & ~1) : w;
    enc->height = subsampled ? std::max(2, h & ~1) : h;
    enc->framerate = av_d2q(opt.fps, 60000);
    enc->time_base = av_inv_q(enc->framerate);
    enc->gop_size = 12;
    enc->thread_count = 0;
    enc->flags |= AV_CODEC_FLAG_BITEXACT;  // reproducible files (no encoder version strings)
    if (codec_name == "libx264") {
      av_opt_set(enc->priv_data, "crf", std::to_string(opt.quality).c_str(), 0);
      av_opt_set(enc->priv_data, "preset", "fast", 0);
    } else if (codec_name == "mpeg4") {
      enc->flags |= AV_CODEC_FLAG_QSCALE;
      enc->global_quality = FF_QP2LAMBDA * std::clamp(opt.quality / 8 + 1, 1, 31);
    }
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if ((r = avcodec_open2(enc, codec, nullptr)) < 0) fail(who, "cannot open the " + codec_name + " encoder", r);
    if ((r = avcodec_parameters_from_context(st->codecpar, enc)) < 0) fail(who, "cannot set the stream parameters", r);
    st->time_base = enc->time_base;
    oc->flags |= AVFMT_FLAG_BITEXACT;
    if (!(oc->oformat->flags & AVFMT_NOFILE) && (r = avio_open(&oc->pb, tmp.string().c_str(), AVIO_FLAG_WRITE)) < 0)
      fail(who, "cannot write '" + printable(tmp.string()) + "'", r);
    opened = true;
    if ((r = avformat_write_header(oc, nullptr)) < 0) fail(who, "cannot write the container header", r);
    fr = av_frame_alloc();
    pkt = av_packet_alloc();
    if (!fr || !pkt) throw video_error(who + ": out of memory");
    fr->format = pf;
    fr->width = enc->width;
    fr->height = enc->height;
    if ((r = av_frame_get_buffer(fr, 0)) < 0) fail(who, "cannot allocate a frame", r);
    sws = sws_getContext(w, h, AV_PIX_FMT_BGR24, enc->width, enc->height, pf, SWS_BICUBIC, nullptr, nullptr, nullptr);
    if (!sws) throw video_error(who + ": swscale cannot convert BGR to the " + codec_name + " encoder's pixel format");
  }

  ~impl() { close(); }

  void close() {
    if (oc && opened && !(oc->oformat->flags & AVFMT_NOFILE)) avio_closep(&oc->pb);
    if (!finished && opened) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
    }
    sws_freeContext(sws);
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&enc);
    if (oc) avformat_free_context(oc);
    oc = nullptr;
    sws = nullptr;
    opened = false;
  }

  void write_packets() {
    for (;;) {
      const int r = avcodec_receive_packet(enc, pkt);
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) fail(who, "the encoder failed", r);
      if (pkt->duration <= 0) pkt->duration = 1;  // one frame: else MP4's edit list cuts the last frame
      av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
      pkt->stream_index = st->index;
      const int w = av_interleaved_write_frame(oc, pkt);  // takes the packet's reference
      if (w < 0) fail(who, "cannot write a packet (disk full?)", w);
    }
  }

  void write(const image_u8& img) {
    if (finished) throw video_error(who + ": write() after finish()");
    if (img.width != width || img.height != height || img.channels != 3)
      throw video_error(who + ": frame " + std::to_string(n) + " is " + std::to_string(img.width) + "x" + std::to_string(img.height) + "x" +
                        std::to_string(img.channels) + ", the video is " + std::to_string(width) + "x" + std::to_string(height) + "x3");
    int r = av_frame_make_writable(fr);
    if (r < 0) fail(who, "cannot reuse its frame buffer", r);
    const std::uint8_t* src[4] = {img.data.data(), nullptr, nullptr, nullptr};
    const int src_stride[4] = {int(img.row_bytes()), 0, 0, 0};
    sws_scale(sws, src, src_stride, 0, height, fr->data, fr->linesize);
    fr->pts = n++;
    if ((r = avcodec_send_frame(enc, fr)) < 0) fail(who, "the encoder refused frame " + std::to_string(n - 1), r);
    write_packets();
  }

  void finish() {
    if (finished) return;
    int r = avcodec_send_frame(enc, nullptr);
    if (r < 0 && r != AVERROR_EOF) fail(who, "cannot flush the encoder", r);
    write_packets();
    if ((r = av_write_trailer(oc)) < 0) fail(who, "cannot write the container trailer", r);
    if (!(oc->oformat->flags & AVFMT_NOFILE) && (r = avio_closep(&oc->pb)) < 0) fail(who, "cannot close the file", r);
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
      std::filesystem::remove(tmp, ec);
      throw video_error(who + ": cannot rename the finished file into place");
    }
    finished = true;
  }
};

writer::writer(const std::string& path, int width, int height, const writer_options& opt)
    : p_(std::make_unique<impl>(path, width, height, opt)) {}
writer::~writer() = default;
void writer::write(const image_u8& bgr) { p_->write(bgr); }
void writer::finish() { p_->finish(); }
const std::string& writer::codec() const { return p_->codec_name; }
std::int64_t writer::frames_written() const { return p_->n; }

}  // namespace gyolo::video
