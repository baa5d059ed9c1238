// NumPy .npy reading and writing (format version 1.0/2.0, little-endian, C order).
// Used for --save-raw outputs and for test fixtures.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "gyolo/core/error.hpp"

namespace gyolo::npy {

template <class T> constexpr const char* descr();
template <> constexpr const char* descr<float>() { return "<f4"; }
template <> constexpr const char* descr<double>() { return "<f8"; }
template <> constexpr const char* descr<std::int64_t>() { return "<i8"; }
template <> constexpr const char* descr<std::int32_t>() { return "<i4"; }
template <> constexpr const char* descr<std::int16_t>() { return "<i2"; }
template <> constexpr const char* descr<std::uint8_t>() { return "|u1"; }

struct array {
  std::string dtype;                 // numpy descr, e.g. "<f4"
  std::vector<std::int64_t> shape;
  std::vector<char> bytes;           // raw data, C order
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  template <class T> std::vector<T> as() const {
    if (dtype != descr<T>()) throw error("npy: dtype is " + dtype + ", expected " + descr<T>());
    std::vector<T> v(static_cast<std::size_t>(numel()));
    if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));  // (an empty array's data may be null)
    return v;
  }
};

inline std::string shape_str(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    s += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) s += ",";
    if (i + 1 < shape.size()) s += " ";
  }
  return s + ")";
}

/// Writes a C-order array. Writes to `path` directly; callers that need atomic results write to a
/// temporary directory and rename it.
template <class T>
void save(const std::string& path, const T* data, const std::vector<std::int64_t>& shape) {
  std::string header = std::string("{'descr': '") + descr<T>() + "', 'fortran_order': False, 'shape': " +
                       shape_str(shape) + ", }";
  std::size_t total = 10 + header.size() + 1;
  std::size_t pad = (64 - total % 64) % 64;
  header.append(pad, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) throw error("npy: cannot open '" + path + "' for writing");
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  f.write(reinterpret_cast<const char*>(magic), 8);
  std::uint16_t hl = static_cast<std::uint16_t>(header.size());
  const unsigned char hlb[2] = {static_cast<unsigned char>(hl & 0xff), static_cast<unsigned char>(hl >> 8)};
  f.write(reinterpret_cast<const char*>(hlb), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
  if (!f) throw error("npy: write failed for '" + path + "'");
}

namespace detail {
inline std::string header_value(const std::string& h, const std::string& key) {
  auto p = h.find("'" + key + "'");
  if (p == std::string::npos) throw error("npy: header lacks '" + key + "'");
  p = h.find(':', p);
  if (p == std::string::npos) throw error("npy: malformed header");
  ++p;
  while (p < h.size() && h[p] == ' ') ++p;
  if (p >= h.size()) throw error("npy: malformed header");
  if (h[p] == '\'') {
    auto e = h.find('\'', p + 1);
    if (e == std::string::npos) throw error("npy: malformed header");
    return h.substr(p + 1, e - p - 1);
  }
  if (h[p] == '(') {
    auto e = h.find(')', p);
    if (e == std::string::npos) throw error("npy: malformed header");
    return h.substr(p, e - p + 1);
  }
  auto e = h.find_first_of(",}", p);
  return h.substr(p, e - p);
}
}  // namespace detail

/// Parses a .npy image held in memory (`what` names it in errors: a file, or an .npz member).
inline array parse(const char* data, std::uint64_t size, const std::string& what) {
  const auto* u = reinterpret_cast<const unsigned char*>(data);
  if (size < 10 || std::memcmp(u, "\x93NUMPY", 6) != 0) throw error("npy: '" + what + "' is not a .npy file");
  std::uint32_t hl = 0;
  std::uint64_t pre = 10;
  if (u[6] == 1) {
    hl = u[8] | (u[9] << 8);
  } else {
    if (size < 12) throw error("npy: '" + what + "' header is truncated");
    hl = u[8] | (u[9] << 8) | (u[10] << 16) | (static_cast<std::uint32_t>(u[11]) << 24);
    pre = 12;
  }
  if (pre + hl > size) throw error("npy: '" + what + "' header is truncated");
  const std::string h(data + pre, hl);
  array a;
  a.dtype = detail::header_value(h, "descr");
  if (detail::header_value(h, "fortran_order").find("True") != std::string::npos)
    throw error("npy: '" + what + "' is Fortran-ordered");
  std::string sh = detail::header_value(h, "shape");
  std::int64_t cur = -1;
  for (char c : sh) {
    if (c >= '0' && c <= '9') {
      cur = (cur < 0 ? 0 : cur) * 10 + (c - '0');
      if (cur > (std::int64_t(1) << 40)) throw error("npy: absurd shape in '" + what + "'");
    } else if (cur >= 0) {
      a.shape.push_back(cur);
      cur = -1;
    }
  }
  std::size_t item = 0;
  if (a.dtype.size() >= 3 && a.dtype.size() <= 4 && a.dtype[2] >= '1' && a.dtype[2] <= '9')
    item = static_cast<std::size_t>(std::stoi(a.dtype.substr(2)));
  if (item == 0) throw error("npy: '" + what + "' has unsupported dtype " + a.dtype);
  std::uint64_t n = 1;
  for (auto d : a.shape) {
    if (d != 0 && n > (std::uint64_t(1) << 40) / std::uint64_t(d)) throw error("npy: absurd shape in '" + what + "'");
    n *= std::uint64_t(d);
  }
  const std::uint64_t need = n * item;
  if (need > size - pre - hl) throw error("npy: '" + what + "' is truncated");
  a.bytes.assign(data + pre + hl, data + pre + hl + need);
  return a;
}

/// The bytes of a .npy file holding a C-order array.
template <class T>
std::string serialize(const T* data, const std::vector<std::int64_t>& shape) {
  std::string header = std::string("{'descr': '") + descr<T>() + "', 'fortran_order': False, 'shape': " + shape_str(shape) + ", }";
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(char(header.size() & 0xff));
  out.push_back(char(header.size() >> 8));
  out += header;
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  if (n > 0) out.append(reinterpret_cast<const char*>(data), std::size_t(n) * sizeof(T));
  return out;
}

inline array load(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw error("npy: cannot open '" + path + "'");
  const auto file_size = static_cast<std::uint64_t>(f.tellg());
  if (file_size > (std::uint64_t(1) << 36)) throw error("npy: '" + path + "' is larger than 64 GiB");
  std::vector<char> buf(static_cast<std::size_t>(file_size));
  f.seekg(0);
  if (file_size && !f.read(buf.data(), static_cast<std::streamsize>(file_size))) throw error("npy: cannot read '" + path + "'");
  return parse(buf.data(), file_size, path);
}

}  // namespace gyolo::npy
