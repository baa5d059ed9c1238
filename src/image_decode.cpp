// Image decoding like cv2.imread (io/image_decode.hpp has the rules), compiled once in gyolo's
// library: stb_image and the decoders are ~9,000 lines that every including file used to compile.
#include "gyolo/io/image_decode.hpp"
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include <jpeglib.h>

#include "gyolo/io/crc32.hpp"
#include "gyolo/core/error.hpp"
#include "gyolo/io/image_types.hpp"

// ---- stb_image, compiled privately (static functions) into this file.
#ifndef GYOLO_STB_IMAGE_INCLUDED
#define GYOLO_STB_IMAGE_INCLUDED
#if defined(STBI_INCLUDE_STB_IMAGE_H)
#error "gyolo/io/image_decode.hpp must be included before any other inclusion of stb_image.h"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuseless-cast"
#endif
#endif
#if __has_include(<stb/stb_image.h>)
#include <stb/stb_image.h>
#else
#include <stb_image.h>
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#undef STB_IMAGE_IMPLEMENTATION
#endif

namespace gyolo {

namespace detail::img {

inline std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

inline void check_pixels(std::int64_t w, std::int64_t h, std::int64_t max_pixels, const std::string& name,
                         const char* fmt) {
  if (w <= 0 || h <= 0)
    throw error("image '" + name + "': " + fmt + " header declares an empty size " + std::to_string(w) + "x" +
                std::to_string(h));
  if (w * h > max_pixels)
    throw error("image '" + name + "': " + fmt + " is " + std::to_string(w) + "x" + std::to_string(h) +
                " pixels, above the limit of " + std::to_string(max_pixels) + " pixels");
}

// ---------------------------------------------------------------- EXIF (OpenCV 4.6 ExifReader)
struct exif_parse_error {};

// `d` points at the TIFF header ("II*\0" / "MM\0*"). Returns the orientation value OpenCV would
// apply, or 0 when it would apply none.
inline int exif_orientation(const std::uint8_t* d, std::size_t n) {
  if (d == nullptr || n == 0) return 0;
  // getFormat(): INTEL only for "II"; everything else reads big-endian (MOTO or NONE).
  bool intel = false;
  if (!(n > 1 && d[0] != d[1]) && d[0] == 'I') intel = true;
  auto u16 = [&](std::size_t off) -> std::uint32_t {
    if (off + 1 >= n) throw exif_parse_error{};
    return intel ? std::uint32_t(d[off]) | (std::uint32_t(d[off + 1]) << 8)
                 : (std::uint32_t(d[off]) << 8) | std::uint32_t(d[off + 1]);
  };
  auto u32 = [&](std::size_t off) -> std::uint32_t {
    if (off + 3 >= n) throw exif_parse_error{};
    return intel ? std::uint32_t(d[off]) | (std::uint32_t(d[off + 1]) << 8) | (std::uint32_t(d[off + 2]) << 16) |
                       (std::uint32_t(d[off + 3]) << 24)
                 : be32(d + off);
  };
  int orientation = 0;
  bool have = false;
  try {
    if (u16(2) != 0x2A) return 0;
    std::size_t offset = u32(4);
    const std::size_t num = u16(offset);
    offset += 2;
    for (std::size_t e = 0; e < num; ++e, offset += 12) {
      const std::uint32_t tag = u16(offset);
      switch (tag) {
        case 0x010E: case 0x010F: case 0x0110: case 0x0131: case 0x0132: case 0x8298: {  // strings
          const std::size_t size = u32(offset + 4);
          std::size_t data_off = 8;
          if (size > 4) data_off = u32(offset + 8);
          if (data_off > n || data_off + size > n) throw exif_parse_error{};
          break;
        }
        case 0x0112:  // orientation: first occurrence wins (std::map::insert)
          if (!have) {
            orientation = static_cast<int>(u16(offset + 8));
            have = true;
          } else {
            (void)u16(offset + 8);
          }
          break;
        case 0x011A: case 0x011B: {  // X/Y resolution: one rational
          std::uint32_t ro = u32(offset + 8);
          (void)u32(ro);
          (void)u32(static_cast<std::uint32_t>(ro + 4u));
          break;
        }
        case 0x0128: case 0x0213: (void)u16(offset + 8); break;
        case 0x013E: case 0x013F: case 0x0211: case 0x0214: {  // 2, 6, 3, 6 rationals
          const int count = tag == 0x013E ? 2 : tag == 0x0211 ? 3 : 6;
          std::uint32_t ro = u32(offset + 8);
          for (int i = 0; i < count; ++i, ro = static_cast<std::uint32_t>(ro + 8u)) {
            (void)u32(ro);
            (void)u32(static_cast<std::uint32_t>(ro + 4u));
          }
          break;
        }
        default: break;
      }
    }
  } catch (const exif_parse_error&) {
    // OpenCV keeps the entries parsed before the failure.
  }
  return have ? orientation : 0;
}

inline image_u8 flip_image(const image_u8& s, bool horiz, bool vert) {
  image_u8 d(s.height, s.width, s.channels);
  const int c = s.channels;
  for (int y = 0; y < s.height; ++y) {
    const std::uint8_t* sr = s.row(vert ? s.height - 1 - y : y);
    std::uint8_t* dr = d.row(y);
    if (!horiz) {
      std::memcpy(dr, sr, s.row_bytes());
    } else {
      for (int x = 0; x < s.width; ++x)
        for (int k = 0; k < c; ++k) dr[x * c + k] = sr[(s.width - 1 - x) * c + k];
    }
  }
  return d;
}

inline image_u8 transpose_image(const image_u8& s) {
  image_u8 d(s.width, s.height, s.channels);
  const int c = s.channels;
  for (int y = 0; y < d.height; ++y) {
    std::uint8_t* dr = d.row(y);
    for (int x = 0; x < d.width; ++x)
      for (int k = 0; k < c; ++k) dr[x * c + k] = s.row(x)[y * c + k];
  }
  return d;
}

// OpenCV's ExifTransform (loadsave.cpp).
inline void apply_orientation(image_u8& img, int orientation) {
  switch (orientation) {
    case 2: img = flip_image(img, true, false); break;
    case 3: img = flip_image(img, true, true); break;
    case 4: img = flip_image(img, false, true); break;
    case 5: img = transpose_image(img); break;
    case 6: img = flip_image(transpose_image(img), true, false); break;
    case 7: img = flip_image(transpose_image(img), true, true); break;
    case 8: img = flip_image(transpose_image(img), false, true); break;
    default: break;  // 1 and unknown values: unchanged
  }
}

// ---------------------------------------------------------------- JPEG (libjpeg-turbo)
struct jpeg_err_mgr {
  jpeg_error_mgr pub;
  std::jmp_buf jb;
  char msg[JMSG_LENGTH_MAX + 64];
  char warn[JMSG_LENGTH_MAX + 64];
  bool have_warning;
  bool fail_on_warning;
};

extern "C" inline void gyolo_jpeg_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<jpeg_err_mgr*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->msg);
  std::longjmp(e->jb, 1);
}

extern "C" inline void gyolo_jpeg_emit_message(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<jpeg_err_mgr*>(cinfo->err);
  if (level < 0) {  // corrupt-data warning
    if (!e->have_warning) {
      (*cinfo->err->format_message)(cinfo, e->warn);
      e->have_warning = true;
    }
    cinfo->err->num_warnings++;
    if (e->fail_on_warning) {
      std::snprintf(e->msg, sizeof(e->msg), "%s", e->warn);
      std::longjmp(e->jb, 1);
    }
  }
  // trace messages (level >= 0) are dropped; nothing goes to stderr
}

extern "C" inline void gyolo_jpeg_output_message(j_common_ptr) {}

struct jpeg_raw {
  int width = 0, height = 0, components = 0;  // components: 3 (RGB) or 4 (CMYK)
  std::vector<std::uint8_t> pixels;
  std::vector<std::uint8_t> app1;  // first APP1 marker's payload
  bool too_big = false;
};

// Returns false with `err` filled on a libjpeg error. No C++ object with a destructor is created
// between setjmp and the last libjpeg call in this frame.
inline bool jpeg_decode_raw(const std::uint8_t* data, std::size_t size, std::int64_t max_pixels,
                            bool fail_on_warning, jpeg_raw& out, char* err, std::size_t err_size, char* warn,
                            std::size_t warn_size, bool& have_warning) {
  jpeg_decompress_struct cinfo;
  jpeg_err_mgr jerr;
  std::memset(&cinfo, 0, sizeof(cinfo));
  cinfo.err = jpeg_std_error(&jerr.pub);
  jerr.pub.error_exit = gyolo_jpeg_error_exit;
  jerr.pub.emit_message = gyolo_jpeg_emit_message;
  jerr.pub.output_message = gyolo_jpeg_output_message;
  jerr.msg[0] = 0;
  jerr.warn[0] = 0;
  jerr.have_warning = false;
  jerr.fail_on_warning = fail_on_warning;
  volatile bool created = false;
  if (setjmp(jerr.jb)) {
    if (created) jpeg_destroy_decompress(&cinfo);
    std::snprintf(err, err_size, "%s", jerr.msg);
    have_warning = jerr.have_warning;
    std::snprintf(warn, warn_size, "%s", jerr.warn);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  created = true;
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
  jpeg_read_header(&cinfo, TRUE);
  const std::int64_t w = cinfo.image_width, h = cinfo.image_height;
  if (w <= 0 || h <= 0 || w * h > max_pixels) {
    out.width = static_cast<int>(w);
    out.height = static_cast<int>(h);
    out.too_big = true;
    jpeg_destroy_decompress(&cinfo);
    return true;
  }
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1) {
      out.app1.assign(m->data, m->data + m->data_length);  // may throw bad_alloc: only 64 KiB
      break;
    }
  }
  if (cinfo.num_components != 4) {
    cinfo.out_color_space = JCS_RGB;
    cinfo.out_color_components = 3;
  } else {
    cinfo.out_color_space = JCS_CMYK;
    cinfo.out_color_components = 4;
  }
  jpeg_start_decompress(&cinfo);
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  out.components = cinfo.output_components;
  const std::size_t stride = static_cast<std::size_t>(out.width) * static_cast<std::size_t>(out.components);
  out.pixels.resize(stride * static_cast<std::size_t>(out.height));
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW rowp = out.pixels.data() + stride * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &rowp, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  have_warning = jerr.have_warning;
  std::snprintf(warn, warn_size, "%s", jerr.warn);
  return true;
}

inline image_u8 decode_jpeg(const std::uint8_t* data, std::size_t size, const std::string& name,
                            const decode_options& opt) {
  jpeg_raw raw;
  char err[JMSG_LENGTH_MAX + 64] = {0};
  char warn[JMSG_LENGTH_MAX + 64] = {0};
  bool have_warning = false;
  const bool ok = jpeg_decode_raw(data, size, opt.max_pixels, opt.fail_on_warning, raw, err, sizeof(err), warn,
                                  sizeof(warn), have_warning);
  if (!ok) throw error("image '" + name + "': JPEG decoding failed: " + err);
  if (raw.too_big) check_pixels(raw.width, raw.height, opt.max_pixels, name, "JPEG");
  if (opt.warning != nullptr) *opt.warning = have_warning ? std::string(warn) : std::string();
  image_u8 img(raw.height, raw.width, 3);
  const std::size_t n = static_cast<std::size_t>(raw.width) * static_cast<std::size_t>(raw.height);
  const std::uint8_t* s = raw.pixels.data();
  std::uint8_t* d = img.data.data();
  if (raw.components == 3) {
    for (std::size_t i = 0; i < n; ++i, s += 3, d += 3) {
      d[0] = s[2];
      d[1] = s[1];
      d[2] = s[0];
    }
  } else {  // icvCvt_CMYK2BGR_8u_C4C3R
    for (std::size_t i = 0; i < n; ++i, s += 4, d += 3) {
      int c = s[0], m = s[1], y = s[2], k = s[3];
      c = k - ((255 - c) * k >> 8);
      m = k - ((255 - m) * k >> 8);
      y = k - ((255 - y) * k >> 8);
      d[2] = static_cast<std::uint8_t>(c);
      d[1] = static_cast<std::uint8_t>(m);
      d[0] = static_cast<std::uint8_t>(y);
    }
  }
  raw.pixels = {};
  if (opt.apply_exif_orientation && raw.app1.size() > 6)  // OpenCV skips 6 bytes ("Exif\0\0") unchecked
    apply_orientation(img, exif_orientation(raw.app1.data() + 6, raw.app1.size() - 6));
  return img;
}

// ---------------------------------------------------------------- PNG structure (libpng's checks)
struct png_info {
  std::uint32_t width = 0, height = 0;
  const std::uint8_t* exif = nullptr;
  std::size_t exif_size = 0;
};

inline png_info scan_png(const std::uint8_t* d, std::size_t n, const std::string& name) {
  png_info info;
  std::size_t pos = 8;
  bool first = true, have_idat = false, have_iend = false;
  while (pos < n) {
    if (n - pos < 12) throw error("image '" + name + "': PNG is truncated (incomplete chunk header)");
    const std::uint32_t len = be32(d + pos);
    const std::uint8_t* type = d + pos + 4;
    if (len > 0x7FFFFFFFu) throw error("image '" + name + "': PNG chunk length is invalid");
    if (static_cast<std::uint64_t>(len) + 12 > n - pos)
      throw error("image '" + name + "': PNG is truncated (chunk '" + std::string(type, type + 4) + "')");
    const std::uint8_t* body = d + pos + 8;
    const bool critical = (type[0] & 0x20) == 0;
    const std::string t(type, type + 4);
    if (critical && crc32(type, len + 4) != be32(body + len))
      throw error("image '" + name + "': PNG chunk '" + t + "' has a CRC error");
    if (first) {
      if (t != "IHDR" || len != 13) throw error("image '" + name + "': PNG does not start with an IHDR chunk");
      info.width = be32(body);
      info.height = be32(body + 4);
      first = false;
    } else if (t == "IDAT") {
      have_idat = true;
    } else if (t == "IEND") {
      have_iend = true;
      break;
    } else if (t == "eXIf" && info.exif == nullptr && len > 0) {
      info.exif = body;
      info.exif_size = len;
    }
    pos += static_cast<std::size_t>(len) + 12;
  }
  if (first) throw error("image '" + name + "': PNG has no IHDR chunk");
  if (!have_idat) throw error("image '" + name + "': PNG has no image data (IDAT)");
  if (!have_iend) throw error("image '" + name + "': PNG is truncated (no IEND chunk)");
  return info;
}

inline image_u8 decode_stb(const std::uint8_t* data, std::size_t size, const std::string& name,
                           const decode_options& opt, const char* fmt) {
  if (size > 0x7FFFFFFFu) throw error("image '" + name + "': file is too large (over 2 GiB)");
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &comp))
    throw error("image '" + name + "': cannot read the " + fmt + " header: " + stbi_failure_reason());
  check_pixels(w, h, opt.max_pixels, name, fmt);
  stbi_uc* px = stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &comp, 3);
  if (px == nullptr) throw error("image '" + name + "': " + fmt + " decoding failed: " + stbi_failure_reason());
  image_u8 img;
  try {
    img = image_u8(h, w, 3);
  } catch (...) {
    stbi_image_free(px);
    throw;
  }
  const std::size_t n = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
  for (std::size_t i = 0; i < n; ++i) {  // RGB -> BGR
    img.data[3 * i + 0] = px[3 * i + 2];
    img.data[3 * i + 1] = px[3 * i + 1];
    img.data[3 * i + 2] = px[3 * i + 0];
  }
  stbi_image_free(px);
  return img;
}

// Uncompressed BMPs must hold all their rows (OpenCV fails on a short file; stb would pad with 0).
inline void check_bmp_size(const std::uint8_t* d, std::size_t n, const std::string& name) {
  auto le16 = [&](std::size_t o) { return static_cast<std::uint32_t>(d[o] | (d[o + 1] << 8)); };
  auto le32 = [&](std::size_t o) { return le16(o) | (le16(o + 2) << 16); };
  if (n < 26) throw error("image '" + name + "': BMP header is truncated");
  const std::uint32_t off = le32(10), hsize = le32(14);
  std::int64_t w, h;
  std::uint32_t bpp, comp = 0;
  if (hsize == 12) {
    w = le16(18);
    h = le16(20);
    bpp = le16(24);
  } else {
    if (n < 34) throw error("image '" + name + "': BMP header is truncated");
    w = static_cast<std::int32_t>(le32(18));
    h = static_cast<std::int32_t>(le32(22));
    bpp = le16(28);
    comp = le32(30);
  }
  if (h < 0) h = -h;
  if (w <= 0 || h <= 0) throw error("image '" + name + "': BMP declares an empty size");
  if (comp != 0 && comp != 3) return;  // compressed: left to the decoder
  const std::uint64_t row = ((static_cast<std::uint64_t>(w) * bpp + 31) / 32) * 4;
  if (static_cast<std::uint64_t>(off) + row * static_cast<std::uint64_t>(h) > n)
    throw error("image '" + name + "': BMP pixel data is truncated");
}

inline bool is_ws(std::uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

inline image_u8 decode_pnm(const std::uint8_t* d, std::size_t n, const std::string& name, const decode_options& opt) {
  const bool color = d[1] == '6';
  std::size_t pos = 2;
  auto number = [&](const char* what) -> std::int64_t {
    for (;;) {  // skip whitespace and '#' comments
      while (pos < n && is_ws(d[pos])) ++pos;
      if (pos < n && d[pos] == '#') {
        while (pos < n && d[pos] != '\n' && d[pos] != '\r') ++pos;
        continue;
      }
      break;
    }
    if (pos >= n || d[pos] < '0' || d[pos] > '9')
      throw error("image '" + name + "': PNM header has no valid " + what);
    std::int64_t v = 0;
    while (pos < n && d[pos] >= '0' && d[pos] <= '9') {
      v = v * 10 + (d[pos++] - '0');
      if (v > 0x7FFFFFFF) throw error("image '" + name + "': PNM " + what + " is too large");
    }
    return v;
  };
  const std::int64_t w = number("width"), h = number("height"), maxval = number("maxval");
  if (maxval < 1 || maxval > 65535) throw error("image '" + name + "': PNM maxval " + std::to_string(maxval) + " is invalid");
  check_pixels(w, h, opt.max_pixels, name, "PNM");
  if (pos >= n || !is_ws(d[pos])) throw error("image '" + name + "': PNM header is not followed by whitespace");
  ++pos;
  const int cn = color ? 3 : 1;
  const int bytes = maxval > 255 ? 2 : 1;
  const std::uint64_t need = static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(h) * cn * bytes;
  if (n - pos < need) throw error("image '" + name + "': PNM pixel data is truncated");
  image_u8 img(static_cast<int>(h), static_cast<int>(w), 3);
  const std::uint8_t* s = d + pos;
  const std::size_t np = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
  for (std::size_t i = 0; i < np; ++i) {
    std::uint8_t v[3];
    for (int c = 0; c < cn; ++c) v[c] = s[(i * cn + c) * bytes];  // 16-bit: high byte (v >> 8)
    if (!color) v[1] = v[2] = v[0];
    img.data[3 * i + 0] = v[2];
    img.data[3 * i + 1] = v[1];
    img.data[3 * i + 2] = v[0];
  }
  return img;
}

}  // namespace detail::img

image_u8 decode_image_memory(const std::uint8_t* data, std::size_t size, const std::string& name,
                             const decode_options& opt) {
  using namespace detail::img;
  if (opt.warning != nullptr) opt.warning->clear();
  if (data == nullptr || size == 0) throw error("image '" + name + "': file is empty");
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(data, size, name, opt);
  static const std::uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(data, png_sig, 8) == 0) {
    const png_info info = scan_png(data, size, name);
    check_pixels(info.width, info.height, opt.max_pixels, name, "PNG");
    image_u8 img = decode_stb(data, size, name, opt, "PNG");
    if (opt.apply_exif_orientation && info.exif != nullptr)
      apply_orientation(img, exif_orientation(info.exif, info.exif_size));
    return img;
  }
  if (size >= 2 && data[0] == 'B' && data[1] == 'M') {
    int w = 0, h = 0, comp = 0;
    if (size <= 0x7FFFFFFFu && stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &comp))
      check_pixels(w, h, opt.max_pixels, name, "BMP");  // size cap first, then completeness
    check_bmp_size(data, size, name);
    return decode_stb(data, size, name, opt, "BMP");
  }
  if (size >= 3 && data[0] == 'P' && (data[1] == '5' || data[1] == '6') && is_ws(data[2]))
    return decode_pnm(data, size, name, opt);
  std::string what = "unrecognized image format";
  if (size >= 6 && (std::memcmp(data, "GIF87a", 6) == 0 || std::memcmp(data, "GIF89a", 6) == 0))
    what = "GIF is not supported";
  else if (size >= 4 && (std::memcmp(data, "II*\0", 4) == 0 || std::memcmp(data, "MM\0*", 4) == 0))
    what = "TIFF is not supported";
  else if (size >= 12 && std::memcmp(data, "RIFF", 4) == 0 && std::memcmp(data + 8, "WEBP", 4) == 0)
    what = "WebP is not supported";
  else if (size >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '4')
    what = "ASCII/bitmap PNM (P1-P4) is not supported";
  throw error("image '" + name + "': " + what + " (supported: JPEG, PNG, BMP, binary PPM/PGM)");
}

image_u8 decode_image(const std::string& path, const decode_options& opt) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) throw error("image '" + path + "': cannot access the file: " + ec.message());
  if (ec || !fs::exists(st)) throw error("image '" + path + "': no such file");
  if (fs::is_directory(st)) throw error("image '" + path + "': is a directory, not an image file");
  // a FIFO, socket or device could block the read forever or never end: only regular files are read
  if (!fs::is_regular_file(st)) throw error("image '" + path + "': not a regular file (FIFOs, sockets and devices are not read)");
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw error("image '" + path + "': cannot open the file for reading");
  const std::streamoff end = f.tellg();
  if (end < 0) throw error("image '" + path + "': cannot determine the file size");
  if (end == 0) throw error("image '" + path + "': file is empty");
  if (static_cast<std::uint64_t>(end) > 0x7FFFFFFFu) throw error("image '" + path + "': file is too large (over 2 GiB)");
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(end));
  f.seekg(0);
  if (!f.read(reinterpret_cast<char*>(buf.data()), end)) throw error("image '" + path + "': read failed");
  return decode_image_memory(buf.data(), buf.size(), path, opt);
}

image_u8 decode_image(const std::string& path, std::int64_t max_pixels) {
  decode_options o;
  o.max_pixels = max_pixels;
  return decode_image(path, o);
}

}  // namespace gyolo
