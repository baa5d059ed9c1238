// Image decoding that reproduces cv2.imread(path, cv2.IMREAD_COLOR) of OpenCV 4.6 (Debian 12):
// 8-bit BGR output, format chosen by content (not by extension), EXIF orientation applied.
//
//   JPEG  libjpeg-turbo with default decompression settings (ISLOW IDCT, fancy upsampling), output
//         JCS_RGB then swapped to BGR as OpenCV does; 4-component (CMYK/YCCK) JPEGs are decoded as
//         CMYK and converted with OpenCV's icvCvt_CMYK2BGR formula; grayscale is replicated.
//         Corrupt-data warnings (e.g. a truncated scan) do not fail: like cv2 the partly decoded
//         image is returned (libjpeg fills the missing blocks); the first warning is reported in
//         decode_options::warning when given, and decode_options::fail_on_warning turns it into an
//         error. Fatal libjpeg errors become gyolo::error (error_exit longjmps, never exit()).
//   PNG   stb_image (16-bit -> v >> 8, as libpng's png_set_strip_16 in cv2; gray replicated; alpha
//         dropped, not blended; palette expanded). Chunk structure and the CRC of critical chunks are
//         checked as libpng does; a missing IEND (truncated file) is an error, as in cv2.
//   BMP   stb_image.
//   PPM/PGM binary (P5/P6)  own reader, as OpenCV's PxM decoder: samples are not rescaled by
//         maxval; maxval > 255 means 16-bit big-endian samples, reduced by v >> 8; gray replicated;
//         a short data section is an error. (stb 2.27's PNM loader overflows on 16-bit PGM.)
//   Anything else (GIF, TIFF, WebP, ASCII PNM, ...) is refused with a one-line gyolo::error.
// EXIF orientation (JPEG: first APP1 segment; PNG: first eXIf chunk) is parsed with the exact
// rules of OpenCV 4.6's ExifReader (IFD0 only, first occurrence wins, a malformed later entry
// does not cancel an orientation already read) and applied with ExifTransform's flips/transpose.
// Size cap: width*height above decode_options::max_pixels (default 100 MP) is refused from the
// header, before any pixel buffer is allocated.
#pragma once
// Compiled once in gyolo's library (src/image_decode.cpp, with stb_image and libjpeg-turbo).
#include <cstdint>
#include <string>

#include "gyolo/core/error.hpp"
#include "gyolo/io/image_types.hpp"

namespace gyolo {

inline constexpr std::int64_t default_max_pixels = 100'000'000;

struct decode_options {
  std::int64_t max_pixels = default_max_pixels;  // refuse width*height above this (from the header)
  bool apply_exif_orientation = true;             // cv2.IMREAD_COLOR does
  bool fail_on_warning = false;                   // JPEG corrupt-data warnings -> error (cv2: no)
  std::string* warning = nullptr;                 // receives the first decoder warning, if any
};

/// Decodes an image held in memory; `name` is used in error messages.
image_u8 decode_image_memory(const std::uint8_t* data, std::size_t size, const std::string& name,
                             const decode_options& opt = {});

/// Reads and decodes an image file like cv2.imread(path, cv2.IMREAD_COLOR).
image_u8 decode_image(const std::string& path, const decode_options& opt = {});

/// decode_image with a pixel cap (decode_options::max_pixels).
image_u8 decode_image(const std::string& path, std::int64_t max_pixels);

}  // namespace gyolo
