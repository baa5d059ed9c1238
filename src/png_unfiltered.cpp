// PNG encoding without row filters (post::png_filter::none): a second private copy of
// stb_image_write whose filter setting (a global of stb's) is set once, here, and never changed.
#include <cstdint>
#include <vector>

#include "gyolo/core/error.hpp"
#include "png_stb.inc"

namespace gyolo::post::detail {

std::vector<std::uint8_t> encode_png_unfiltered(const std::uint8_t* data, int w, int h, int comp) {
  // (a function-local static: set once, before any thread's first encoding, without a data race)
  static const bool set = (stbi_write_force_png_filter = 0, true);
  (void)set;
  std::vector<std::uint8_t> out;
  if (!stbi_write_png_to_func(append_bytes, &out, w, h, comp, data, w * comp) || out.empty())
    throw error("PNG encoding failed");
  return out;
}

}  // namespace gyolo::post::detail
