// libFuzzer target: the image decoders (JPEG through libjpeg-turbo, PNG/BMP/... through stb_image,
// EXIF orientation) and, on what they decode, the letterbox and resizes the pipeline applies
// (any size, each letterbox mode). Success or gyolo::error only. tests/fuzz/run.sh builds and runs it.
#include <cstddef>
#include <cstdint>

#include "gyolo/io/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t sel = data[0];  // the first byte chooses the preprocessing, the rest is the file
  gyolo::decode_options o;
  o.max_pixels = std::int64_t(1) << 22;
  o.fail_on_warning = (sel & 1) != 0;
  try {
    const auto img = gyolo::decode_image_memory(data + 1, size - 1, "fuzz", o);
    const int imgsz = 32 * (1 + (sel >> 1) % 8);  // 32..256
    gyolo::letterbox_options lo;
    lo.square = (sel & 0x40) != 0;
    lo.scaleup = (sel & 0x80) != 0;
    gyolo::letterbox_info info;
    const auto lb = gyolo::letterbox(img, imgsz, lo, &info);
    if (lb.width != info.input_w || lb.height != info.input_h) __builtin_trap();
    const auto small = gyolo::resize_area(img, 1 + img.width / 3, 1 + img.height / 5);
    (void)small;
  } catch (const gyolo::error&) {
  }
  return 0;
}
