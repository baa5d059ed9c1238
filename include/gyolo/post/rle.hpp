// COCO run-length encoding, as pycocotools.mask.encode(np.asfortranarray(mask)) produces it:
//   * the mask is scanned in column-major order (down each column, columns left to right);
//   * counts alternate between runs of 0 and runs of 1, starting with 0 (a mask that starts with
//     a 1 has a leading count of 0);
//   * the compressed string (maskApi rleToString) stores each count, from the third one on, as
//     the difference from the count two places before, in little-endian groups of 5 bits; each
//     group becomes the character 48 + (group | 0x20 if more groups follow); the last group's bit
//     0x10 is the sign.
// rle_decode_string / rle_decode are the inverse (tests and tools).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/post/masks.hpp"

namespace gyolo::post {

struct coco_rle {
  int height = 0, width = 0;
  std::vector<std::uint32_t> counts;
};

/// Counts of a binary_mask (only its region is read; the rest is zeros).
inline coco_rle rle_encode(const binary_mask& m) {
  coco_rle r{m.height, m.width, {}};
  const std::int64_t h = m.height;
  std::int64_t run = 0;  // current run length
  std::uint8_t cur = 0;  // value of the current run
  auto push = [&](std::uint8_t v, std::int64_t n) {
    if (n <= 0) return;
    if (v != cur) {
      r.counts.push_back(std::uint32_t(run));
      run = 0;
      cur = v;
    }
    run += n;
  };
  const int rows = m.rows(), cols = m.cols();
  for (int x = 0; x < m.width; ++x) {
    const int c = x - m.x0;
    if (c < 0 || c >= cols || rows == 0) {
      push(0, h);
      continue;
    }
    push(0, m.y0);
    for (int rr = 0; rr < rows; ++rr) push(m.data(std::size_t(rr), std::size_t(c)), 1);
    push(0, h - m.y0 - rows);
  }
  r.counts.push_back(std::uint32_t(run));
  return r;
}

/// Counts of a dense row-major [h, w] 0/1 mask.
inline coco_rle rle_encode(const std::uint8_t* mask, int h, int w) {
  coco_rle r{h, w, {}};
  std::uint32_t run = 0;
  std::uint8_t cur = 0;
  for (int x = 0; x < w; ++x)
    for (int y = 0; y < h; ++y) {
      const std::uint8_t v = mask[std::size_t(y) * std::size_t(w) + std::size_t(x)] ? 1 : 0;
      if (v != cur) {
        r.counts.push_back(run);
        run = 0;
        cur = v;
      }
      ++run;
    }
  r.counts.push_back(run);
  return r;
}

/// pycocotools' compressed counts string (rleToString).
inline std::string rle_string(const coco_rle& r) {
  std::string s;
  for (std::size_t i = 0; i < r.counts.size(); ++i) {
    std::int64_t x = r.counts[i];
    if (i > 2) x -= std::int64_t(r.counts[i - 2]);
    bool more = true;
    while (more) {
      char c = char(x & 0x1f);
      x >>= 5;  // arithmetic shift (C++20)
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c = char(c | 0x20);
      s.push_back(char(c + 48));
    }
  }
  return s;
}

/// Inverse of rle_string (rleFrString).
inline coco_rle rle_decode_string(const std::string& s, int h, int w) {
  coco_rle r{h, w, {}};
  std::size_t p = 0;
  while (p < s.size()) {
    std::int64_t x = 0;
    int k = 0;
    bool more = true;
    while (more) {
      GYOLO_CHECK(p < s.size(), "RLE string is truncated");
      const int c = int(s[p]) - 48;
      GYOLO_CHECK(c >= 0 && c < 64 && k < 12, "RLE string is malformed");
      x |= std::int64_t(c & 0x1f) << (5 * k);
      more = (c & 0x20) != 0;
      ++p;
      ++k;
      if (!more && (c & 0x10)) x |= -(std::int64_t(1) << (5 * k));
    }
    if (r.counts.size() > 2) x += std::int64_t(r.counts[r.counts.size() - 2]);
    GYOLO_CHECK(x >= 0 && x <= 0xFFFFFFFFll, "RLE string has a negative or huge count");
    r.counts.push_back(std::uint32_t(x));
  }
  return r;
}

/// Dense row-major [h, w] mask of an RLE.
inline std::vector<std::uint8_t> rle_decode(const coco_rle& r) {
  std::vector<std::uint8_t> m(std::size_t(r.height) * std::size_t(r.width), 0);
  std::int64_t pos = 0;
  const std::int64_t total = std::int64_t(r.height) * r.width;
  std::uint8_t v = 0;
  for (auto n : r.counts) {
    GYOLO_CHECK(pos + std::int64_t(n) <= total, "RLE counts exceed the mask size");
    for (std::int64_t i = 0; i < std::int64_t(n); ++i, ++pos)
      if (v) m[std::size_t(pos % r.height) * std::size_t(r.width) + std::size_t(pos / r.height)] = 1;
    v ^= 1;
  }
  GYOLO_CHECK(pos == total, "RLE counts do not cover the mask");
  return m;
}

}  // namespace gyolo::post
