// Image I/O and pre-processing for gyolo (spec §5.1 "Image loading and letterbox", §10 item 11).
//   decode_image / decode_image_memory   cv2.imread(path, cv2.IMREAD_COLOR)   (image_decode.hpp)
//   resize_linear / resize_area          cv2.resize INTER_LINEAR / INTER_AREA  (image_resize.hpp)
//   letterbox                            upstream utils/caption/augmentations.py::letterbox
//   to_input_chw_rgb                     HWC BGR uint8 -> CHW RGB float32 / 255 (torch CPU: x / 255)
//   val_load_resize                      val.py load_image (long side to imgsz, AREA when shrinking)
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "gyolo/core/error.hpp"
#include "gyolo/io/image_decode.hpp"
#include "gyolo/io/image_resize.hpp"
#include "gyolo/io/image_types.hpp"

namespace gyolo {

struct letterbox_info {
  int orig_w = 0, orig_h = 0;    // input image size
  int new_w = 0, new_h = 0;      // size after resizing (new_unpad)
  int input_w = 0, input_h = 0;  // size after padding (the network input)
  int top = 0, bottom = 0, left = 0, right = 0;
  double ratio = 1.0;            // r (same for width and height)
  double dw = 0.0, dh = 0.0;     // half paddings as floats (upstream's returned (dw, dh))
};

namespace detail::img {
inline int py_round(double v) { return static_cast<int>(std::nearbyint(v)); }  // Python round(): ties to even
}  // namespace detail::img

/// cv2.copyMakeBorder(img, top, bottom, left, right, BORDER_CONSTANT, value=(v, v, v)).
inline image_u8 pad_constant(const image_u8& src, int top, int bottom, int left, int right, std::uint8_t value) {
  if (top < 0 || bottom < 0 || left < 0 || right < 0) throw error("pad_constant: negative padding");
  image_u8 dst(src.height + top + bottom, src.width + left + right, src.channels);
  std::fill(dst.data.begin(), dst.data.end(), value);
  for (int y = 0; y < src.height; ++y)
    std::memcpy(dst.row(y + top) + static_cast<std::size_t>(left) * src.channels, src.row(y), src.row_bytes());
  return dst;
}

/// How the network input relates to the original image.
struct letterbox_geometry {
  int orig_h = 0, orig_w = 0;    // the original image (h0, w0)
  int input_h = 0, input_w = 0;  // the network input (H, W)
  int top = 0, bottom = 0, left = 0, right = 0;  // integer padding of the input
  double dw = 0, dh = 0;         // letterbox's float half paddings
  // val.py: boxes are rescaled with the recorded ratio_pad = ((h / h0, w / w0), (dw, dh));
  // predict.py / hubconf: ratio_pad is None and gain/pad are recomputed from the shapes.
  bool has_ratio_pad = false;
  double ratio_gain = 1.0;       // h / h0 (the first entry, which scale_boxes uses)

  /// From letterbox() on the original image (predict.py, hubconf.py).
  static letterbox_geometry from_letterbox(const letterbox_info& i) {
    letterbox_geometry g;
    g.orig_h = i.orig_h;
    g.orig_w = i.orig_w;
    g.input_h = i.input_h;
    g.input_w = i.input_w;
    g.top = i.top;
    g.bottom = i.bottom;
    g.left = i.left;
    g.right = i.right;
    g.dw = i.dw;
    g.dh = i.dh;
    return g;
  }
  /// val.py: val_load_resize (h0, w0) -> (h, w), then letterbox(square, scaleup=False) with info `i`.
  static letterbox_geometry from_val(int h0, int w0, const letterbox_info& i) {
    letterbox_geometry g = from_letterbox(i);
    g.orig_h = h0;
    g.orig_w = w0;
    g.has_ratio_pad = true;
    g.ratio_gain = double(i.orig_h) / double(h0);
    return g;
  }
  /// Rows / columns of the input that hold the (resized) image: hubconf's _unletterbox crop.
  int crop_h() const { return input_h - top - bottom; }
  int crop_w() const { return input_w - left - right; }
};

/// How letterbox() pads and scales (upstream's letterbox arguments).
struct letterbox_options {
  bool square = false;  // false: pad only up to the next multiple of `stride` (predict.py, auto=True);
                        // true: pad to imgsz x imgsz (val.py, auto=False)
  bool scaleup = true;  // false: never enlarge (val.py, hubconf.py)
  int stride = 32;
};

/// Upstream letterbox(im, imgsz, color=(114,114,114), auto=!o.square, scaleFill=False, o.scaleup,
/// o.stride); `info` (optional) receives the geometry.
inline image_u8 letterbox(const image_u8& img, int imgsz, const letterbox_options& o = {}, letterbox_info* info = nullptr) {
  using detail::img::py_round;
  const bool square = o.square, scaleup = o.scaleup;
  const int stride = o.stride;
  if (img.width <= 0 || img.height <= 0 || img.channels <= 0) throw error("letterbox: image is empty");
  if (imgsz <= 0) throw error("letterbox: imgsz must be positive, got " + std::to_string(imgsz));
  if (!square && stride <= 0) throw error("letterbox: stride must be positive, got " + std::to_string(stride));
  const int h = img.height, w = img.width;
  double r = std::min(static_cast<double>(imgsz) / h, static_cast<double>(imgsz) / w);
  if (!scaleup) r = std::min(r, 1.0);
  const int new_w = py_round(w * r), new_h = py_round(h * r);
  if (new_w <= 0 || new_h <= 0)
    throw error("letterbox: image " + std::to_string(w) + "x" + std::to_string(h) + " resizes to an empty image");
  int dwi = imgsz - new_w, dhi = imgsz - new_h;
  if (!square) {  // np.mod: result has the sign of the divisor
    dwi = ((dwi % stride) + stride) % stride;
    dhi = ((dhi % stride) + stride) % stride;
  }
  const double dw = dwi / 2.0, dh = dhi / 2.0;
  const int top = py_round(dh - 0.1), bottom = py_round(dh + 0.1);
  const int left = py_round(dw - 0.1), right = py_round(dw + 0.1);
  image_u8 out = (new_w != w || new_h != h) ? pad_constant(resize_linear(img, new_w, new_h), top, bottom, left, right, 114)
                                            : pad_constant(img, top, bottom, left, right, 114);
  if (info != nullptr) {
    info->orig_w = w;
    info->orig_h = h;
    info->new_w = new_w;
    info->new_h = new_h;
    info->input_w = out.width;
    info->input_h = out.height;
    info->top = top;
    info->bottom = bottom;
    info->left = left;
    info->right = right;
    info->ratio = r;
    info->dw = dw;
    info->dh = dh;
  }
  return out;
}

/// HWC BGR uint8 -> CHW RGB float32 in [0, 1]: out[c][y][x] = img[y][x][2 - c] / 255.0f (true
/// division, as torch does for `im /= 255` on a CPU float tensor). `out` holds 3*H*W floats.
inline void to_input_chw_rgb(const image_u8& img, float* out) {
  if (img.channels != 3) throw error("to_input_chw_rgb: expected a 3-channel image, got " + std::to_string(img.channels));
  const std::size_t hw = static_cast<std::size_t>(img.height) * static_cast<std::size_t>(img.width);
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v) / 255.0f;
  const std::uint8_t* s = img.data.data();
  for (std::size_t i = 0; i < hw; ++i, s += 3) {
    out[i] = lut[s[2]];
    out[hw + i] = lut[s[1]];
    out[2 * hw + i] = lut[s[0]];
  }
}

/// val.py load_image: r = imgsz / max(h0, w0); if r != 1, resize to (int(w0*r), int(h0*r)) with
/// INTER_AREA when shrinking, INTER_LINEAR when enlarging (augment = False).
inline image_u8 val_load_resize(const image_u8& img, int imgsz) {
  if (img.width <= 0 || img.height <= 0) throw error("val_load_resize: image is empty");
  const double r = static_cast<double>(imgsz) / std::max(img.height, img.width);
  if (r == 1.0) return img;
  const int nw = static_cast<int>(img.width * r), nh = static_cast<int>(img.height * r);
  return r > 1 ? resize_linear(img, nw, nh) : resize_area(img, nw, nh);
}

}  // namespace gyolo
