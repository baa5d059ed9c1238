// PNG and JPEG encoding (post/png.hpp), compiled once here instead of in every file that includes
// gyolo (stb_image_write is ~1,700 lines, and unoptimised copies of it made the CLI tests slow).
#include <cstdint>
#include <vector>

#include "gyolo/post/png.hpp"
#include "png_stb.inc"

namespace gyolo::post {

namespace detail {
std::vector<std::uint8_t> encode_png_unfiltered(const std::uint8_t* data, int w, int h, int comp);  // png_unfiltered.cpp
}

std::vector<std::uint8_t> encode_png(const std::uint8_t* data, int w, int h, int comp, png_filter filter) {
  GYOLO_CHECK(w > 0 && h > 0 && comp >= 1 && comp <= 4, "encode_png: bad image size or channel count");
  if (filter == png_filter::none) return detail::encode_png_unfiltered(data, w, h, comp);
  std::vector<std::uint8_t> out;
  if (!stbi_write_png_to_func(append_bytes, &out, w, h, comp, data, w * comp) || out.empty())
    throw error("PNG encoding failed");
  return out;
}

std::vector<std::uint8_t> encode_jpeg(const std::uint8_t* rgb, int w, int h, int quality) {
  GYOLO_CHECK(w > 0 && h > 0, "encode_jpeg: bad image size");
  std::vector<std::uint8_t> out;
  if (!stbi_write_jpg_to_func(append_bytes, &out, w, h, 3, rgb, quality) || out.empty())
    throw error("JPEG encoding failed");
  return out;
}

std::vector<std::uint8_t> bgr_to_rgb(const image_u8& im) {
  GYOLO_CHECK(im.channels == 3, "bgr_to_rgb: expected 3 channels");
  std::vector<std::uint8_t> v(im.data.size());
  for (std::size_t i = 0; i + 2 < v.size(); i += 3) {
    v[i] = im.data[i + 2];
    v[i + 1] = im.data[i + 1];
    v[i + 2] = im.data[i];
  }
  return v;
}

}  // namespace gyolo::post
