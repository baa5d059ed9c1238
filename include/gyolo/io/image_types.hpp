// gyolo::image_u8: an 8-bit interleaved HWC image (channels 3 = BGR, like cv2, unless noted).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gyolo {

struct image_u8 {
  int height = 0, width = 0, channels = 0;
  std::vector<std::uint8_t> data;  // height * width * channels bytes, row-major, interleaved

  image_u8() = default;
  image_u8(int h, int w, int c)
      : height(h), width(w), channels(c),
        data(static_cast<std::size_t>(h) * static_cast<std::size_t>(w) * static_cast<std::size_t>(c)) {}
  bool empty() const { return data.empty(); }
  std::size_t row_bytes() const { return static_cast<std::size_t>(width) * static_cast<std::size_t>(channels); }
  std::uint8_t* row(int y) { return data.data() + static_cast<std::size_t>(y) * row_bytes(); }
  const std::uint8_t* row(int y) const { return data.data() + static_cast<std::size_t>(y) * row_bytes(); }
};

}  // namespace gyolo
