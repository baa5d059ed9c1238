// NumPy .npz archives (a ZIP of .npy members): reading what np.savez writes (stored members,
// ZIP64 fields included) and writing the same. Compressed members (np.savez_compressed) are
// refused with a clear error. Every offset and size read from the file is bounds-checked and
// every member's CRC-32 verified: archives are untrusted input.
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/io/crc32.hpp"
#include "gyolo/io/npy.hpp"

namespace gyolo::npz {

namespace detail {
inline std::uint64_t rd(const std::vector<char>& b, std::uint64_t at, int bytes, const std::string& what) {
  if (at + std::uint64_t(bytes) > b.size()) throw error("npz: '" + what + "' is truncated (a record runs past the end)");
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[std::size_t(at) + std::size_t(i)]);
  return v;
}
inline void wr(std::string& o, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) o.push_back(char((v >> (8 * i)) & 0xFF));
}
}  // namespace detail

/// The arrays of an .npz file by name (the member name without ".npy").
inline std::map<std::string, npy::array> load(const std::string& path) {
  using detail::rd;
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw error("npz: cannot open '" + path + "'");
  const auto size = static_cast<std::uint64_t>(f.tellg());
  if (size > (std::uint64_t(1) << 36)) throw error("npz: '" + path + "' is larger than 64 GiB");
  std::vector<char> b(static_cast<std::size_t>(size));
  f.seekg(0);
  if (size && !f.read(b.data(), static_cast<std::streamsize>(size))) throw error("npz: cannot read '" + path + "'");
  // end of central directory: the last signature 0x06054b50 within the final 64 KiB + 22 bytes
  if (size < 22) throw error("npz: '" + path + "' is not a ZIP archive (too short)");
  std::uint64_t eocd = size;
  for (std::uint64_t p = size - 22 + 1; p-- > 0 && size - p <= 65557;)
    if (rd(b, p, 4, path) == 0x06054b50) {
      eocd = p;
      break;
    }
  if (eocd == size) throw error("npz: '" + path + "' is not a ZIP archive (no end-of-central-directory record)");
  std::uint64_t entries = rd(b, eocd + 10, 2, path), cd_size = rd(b, eocd + 12, 4, path), cd_off = rd(b, eocd + 16, 4, path);
  if (entries == 0xFFFF || cd_off == 0xFFFFFFFF || cd_size == 0xFFFFFFFF) {  // ZIP64: the locator precedes the record
    if (eocd < 20 || rd(b, eocd - 20, 4, path) != 0x07064b50) throw error("npz: '" + path + "': ZIP64 locator missing");
    const std::uint64_t z = rd(b, eocd - 20 + 8, 8, path);
    if (rd(b, z, 4, path) != 0x06064b50) throw error("npz: '" + path + "': ZIP64 end-of-central-directory record missing");
    entries = rd(b, z + 32, 8, path);
    cd_size = rd(b, z + 40, 8, path);
    cd_off = rd(b, z + 48, 8, path);
  }
  if (cd_off > size || cd_size > size - cd_off) throw error("npz: '" + path + "': central directory outside the file");
  if (entries > cd_size / 46) throw error("npz: '" + path + "': " + std::to_string(entries) + " entries cannot fit the central directory");
  std::map<std::string, npy::array> out;
  std::uint64_t p = cd_off;
  for (std::uint64_t e = 0; e < entries; ++e) {
    if (rd(b, p, 4, path) != 0x02014b50) throw error("npz: '" + path + "': bad central directory entry " + std::to_string(e));
    const auto flags = rd(b, p + 8, 2, path), method = rd(b, p + 10, 2, path);
    const auto crc = std::uint32_t(rd(b, p + 16, 4, path));
    std::uint64_t csize = rd(b, p + 20, 4, path), usize = rd(b, p + 24, 4, path);
    const auto nlen = rd(b, p + 28, 2, path), xlen = rd(b, p + 30, 2, path), clen = rd(b, p + 32, 2, path);
    std::uint64_t loff = rd(b, p + 42, 4, path);
    if (p + 46 + nlen + xlen + clen > size) throw error("npz: '" + path + "': central directory entry runs past the end");
    std::string name(b.data() + p + 46, std::size_t(nlen));
    // ZIP64 extra field: the 64-bit values of the fields that hold 0xFFFFFFFF, in this order
    for (std::uint64_t x = p + 46 + nlen; x + 4 <= p + 46 + nlen + xlen;) {
      const auto id = rd(b, x, 2, path), len = rd(b, x + 2, 2, path);
      if (x + 4 + len > p + 46 + nlen + xlen) throw error("npz: '" + path + "': bad extra field of '" + printable(name) + "'");
      if (id == 0x0001) {
        std::uint64_t q = x + 4;
        auto take = [&](std::uint64_t& v) {
          if (v != 0xFFFFFFFF) return;
          if (q + 8 > x + 4 + len) throw error("npz: '" + path + "': short ZIP64 field of '" + printable(name) + "'");
          v = rd(b, q, 8, path);
          q += 8;
        };
        take(usize);
        take(csize);
        take(loff);
      }
      x += 4 + len;
    }
    p += 46 + nlen + xlen + clen;
    const std::string shown = path + ":" + printable(name);
    if (method != 0) throw error("npz: '" + shown + "' is compressed (method " + std::to_string(method) + "); save with np.savez, not np.savez_compressed");
    if (flags & 1) throw error("npz: '" + shown + "' is encrypted");
    if (csize != usize) throw error("npz: '" + shown + "': stored sizes differ");
    if (loff > size || rd(b, loff, 4, path) != 0x04034b50) throw error("npz: '" + shown + "': local header missing");
    const std::uint64_t data = loff + 30 + rd(b, loff + 26, 2, path) + rd(b, loff + 28, 2, path);
    if (data > size || usize > size - data) throw error("npz: '" + shown + "': member data outside the file");
    if (crc32(b.data() + data, std::size_t(usize)) != crc) throw error("npz: '" + shown + "': CRC-32 mismatch (corrupted archive)");
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0) throw error("npz: '" + shown + "' is not a .npy member");
    const std::string key = name.substr(0, name.size() - 4);
    if (out.count(key)) throw error("npz: '" + shown + "' appears twice");
    out.emplace(key, npy::parse(b.data() + data, usize, shown));
  }
  return out;
}

/// Collects arrays and writes them as an uncompressed .npz (what np.load reads).
class writer {
 public:
  template <class T>
  void add(const std::string& name, const T* data, const std::vector<std::int64_t>& shape) {
    members_.push_back({name + ".npy", npy::serialize(data, shape)});
  }
  template <class T>
  void add(const std::string& name, const std::vector<T>& v, const std::vector<std::int64_t>& shape) {
    add(name, v.data(), shape);
  }
  /// Writes the archive (to `path` directly: callers that need atomic results write a temporary
  /// file and rename it).
  void save(const std::string& path) const {
    if (members_.size() > 0xFFFF) throw error("npz: more than 65535 arrays (ZIP64 writing is not supported)");
    std::string central, out;
    for (const auto& m : members_) {
      if (out.size() + m.bytes.size() > 0xFFFFFFF0u) throw error("npz: archive larger than 4 GiB (ZIP64 writing is not supported)");
      const std::uint32_t crc = crc32(m.bytes.data(), m.bytes.size());
      const std::uint64_t off = out.size();
      auto header = [&](std::string& o, bool central_entry) {
        using detail::wr;
        wr(o, central_entry ? 0x02014b50 : 0x04034b50, 4);
        if (central_entry) wr(o, 20, 2);  // version made by
        wr(o, 20, 2);                      // version needed
        wr(o, 0, 2);                       // flags
        wr(o, 0, 2);                       // stored
        wr(o, 0, 2);                       // time
        wr(o, 0x21, 2);                    // date (1980-01-01)
        wr(o, crc, 4);
        wr(o, m.bytes.size(), 4);
        wr(o, m.bytes.size(), 4);
        wr(o, m.name.size(), 2);
        wr(o, 0, 2);  // extra
        if (central_entry) {
          wr(o, 0, 2);  // comment
          wr(o, 0, 2);  // disk
          wr(o, 0, 2);  // internal attributes
          wr(o, 0, 4);  // external attributes
          wr(o, off, 4);
        }
        o += m.name;
      };
      header(out, false);
      out += m.bytes;
      header(central, true);
    }
    const std::uint64_t cd_off = out.size();
    out += central;
    using detail::wr;
    wr(out, 0x06054b50, 4);
    wr(out, 0, 2);
    wr(out, 0, 2);
    wr(out, members_.size(), 2);
    wr(out, members_.size(), 2);
    wr(out, central.size(), 4);
    wr(out, cd_off, 4);
    wr(out, 0, 2);
    std::ofstream f(path, std::ios::binary);
    if (!f) throw error("npz: cannot open '" + path + "' for writing");
    f.write(out.data(), static_cast<std::streamsize>(out.size()));
    if (!f) throw error("npz: write failed for '" + path + "'");
  }

 private:
  struct member {
    std::string name, bytes;
  };
  std::vector<member> members_;
};

}  // namespace gyolo::npz
