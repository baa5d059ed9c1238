// CRC-32 (IEEE 802.3, the polynomial of ZIP, PNG and zlib.crc32), slice-by-8 on little-endian
// hosts (about 2 GB/s: a 200 MB weights file in ~0.1 s), byte-wise elsewhere.
#pragma once
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace gyolo {

namespace detail {
inline const std::array<std::array<std::uint32_t, 256>, 8>& crc32_tables() {
  static const auto t = [] {
    std::array<std::array<std::uint32_t, 256>, 8> r{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      r[0][i] = c;
    }
    for (std::size_t k = 1; k < 8; ++k)
      for (std::size_t i = 0; i < 256; ++i) r[k][i] = (r[k - 1][i] >> 8) ^ r[0][r[k - 1][i] & 0xFF];
    return r;
  }();
  return t;
}
}  // namespace detail

/// Continues a CRC-32 over n more bytes: crc is the CRC of what came before (0 to start), as
/// zlib's crc32(crc, data, n).
inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n) {
  const auto& t = detail::crc32_tables();
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~crc;
  if constexpr (std::endian::native == std::endian::little) {
    for (; n >= 8; n -= 8, p += 8) {
      std::uint32_t lo, hi;
      std::memcpy(&lo, p, 4);
      std::memcpy(&hi, p + 4, 4);
      lo ^= c;
      c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^ t[3][hi & 0xFF] ^
          t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    }
  }
  for (; n > 0; --n, ++p) c = t[0][(c ^ *p) & 0xFF] ^ (c >> 8);
  return ~c;
}

inline std::uint32_t crc32(const void* data, std::size_t n) { return crc32_update(0, data, n); }

}  // namespace gyolo
