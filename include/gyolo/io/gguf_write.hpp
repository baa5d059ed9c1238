// GGUF v3 writer: the counterpart of gguf.hpp's reader, writing the layout of
// weights_tools/convert.py (build_gguf) byte for byte (docs/weights-format.md):
//
//   header (magic, version 3, tensor count, kv count), the key/values in insertion order, the
//   tensor infos in insertion order (name, n_dims, ne[] innermost first, ggml type, offset), zero
//   padding to the alignment counted from the file start, then each tensor's bytes followed by
//   zero padding to the alignment (the last tensor too), offsets relative to the data section.
//
// The alignment is `general.alignment` when that key is set (convert.py sets 32), else GGUF's
// default 32. Tensors are fp32 (or fp16) in PyTorch shape order; a 0-d tensor is stored as
// ne = [1], as convert.py does. Everything the reader rejects (more than 4 dims, a zero or
// absurd dimension, an empty or over-long name, a duplicate) is rejected when it is added.
//
// Unless set_checksum(false), the file carries gyolo.crc32 (gguf.hpp): the CRC-32 of the whole
// file with its four value bytes as zero, computed at write(). The key keeps its position when
// the metadata already has it (copied from a file), else it is the last key.
//
// write(path) is atomic: the file is written to a temporary file in the same directory, synced
// and renamed over `path`; on any failure the temporary file is removed and gyolo::error names
// the path and the system's reason.
//
//   gguf::writer w;
//   w.copy_metadata(gguf::file(original));          // yaml, names, vocab, grit_config, ...
//   w.set_string("general.name", "finetuned");
//   w.add_tensor("model.0.conv.weight", {16, 3, 3, 3}, data);
//   w.write("out.gguf");
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gyolo/core/error.hpp"
#include "gyolo/io/gguf.hpp"

namespace gyolo::gguf {

/// fp32 -> fp16 bits, round to nearest even (overflow -> inf, NaN stays NaN with its top payload
/// bits). Exact inverse of half_to_float: float_to_half(half_to_float(h)) == h for every h.
inline std::uint16_t float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint16_t sign = std::uint16_t((x >> 16) & 0x8000);
  const std::uint32_t exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
  if (exp == 0xff) {  // inf / NaN
    if (mant == 0) return std::uint16_t(sign | 0x7c00);
    std::uint16_t m = std::uint16_t(mant >> 13);
    if (m == 0) m = 0x200;  // payload only in the dropped bits: keep it a (quiet) NaN
    return std::uint16_t(sign | 0x7c00 | m);
  }
  const int e = int(exp) - 127 + 15;
  if (e >= 31) return std::uint16_t(sign | 0x7c00);  // overflow
  if (e <= 0) {                                       // half subnormal or zero
    if (e < -10) return sign;                         // below half the smallest subnormal
    const std::uint32_t m = mant | 0x800000;          // implicit bit
    const int shift = 14 - e;                         // 14..24
    std::uint32_t h = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;  // may carry into the smallest normal: fine
    return std::uint16_t(sign | h);
  }
  std::uint32_t h = (std::uint32_t(e) << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // may carry into the exponent (-> inf): fine
  return std::uint16_t(sign | h);
}

class writer {
 public:
  static constexpr std::uint32_t default_alignment = 32;

  // ---------------------------------------------------------------------------------------------
  // Metadata. Setting a key that is already present replaces its value in place (the key keeps
  // its position); a new key is appended.
  // ---------------------------------------------------------------------------------------------
  void set_string(const std::string& key, const std::string& v) { put_kv(key, vtype::string, str_bytes(v)); }
  void set_u8(const std::string& key, std::uint8_t v) { put_kv(key, vtype::u8, pod_bytes(v)); }
  void set_i8(const std::string& key, std::int8_t v) { put_kv(key, vtype::i8, pod_bytes(v)); }
  void set_u16(const std::string& key, std::uint16_t v) { put_kv(key, vtype::u16, pod_bytes(v)); }
  void set_i16(const std::string& key, std::int16_t v) { put_kv(key, vtype::i16, pod_bytes(v)); }
  void set_u32(const std::string& key, std::uint32_t v) { put_kv(key, vtype::u32, pod_bytes(v)); }
  void set_i32(const std::string& key, std::int32_t v) { put_kv(key, vtype::i32, pod_bytes(v)); }
  void set_u64(const std::string& key, std::uint64_t v) { put_kv(key, vtype::u64, pod_bytes(v)); }
  void set_i64(const std::string& key, std::int64_t v) { put_kv(key, vtype::i64, pod_bytes(v)); }
  void set_f32(const std::string& key, float v) { put_kv(key, vtype::f32, pod_bytes(v)); }
  void set_f64(const std::string& key, double v) { put_kv(key, vtype::f64, pod_bytes(v)); }
  void set_bool(const std::string& key, bool v) { put_kv(key, vtype::boolean, pod_bytes(std::uint8_t(v ? 1 : 0))); }

  /// Array of strings (e.g. gyolo.names, gyolo.vocab).
  void set_strings(const std::string& key, const std::vector<std::string>& v) {
    std::string r = array_head(vtype::string, v.size());
    for (const auto& s : v) r += str_bytes(s);
    put_kv(key, vtype::array, std::move(r));
  }
  /// Array of float32 (e.g. gyolo.stride).
  void set_f32s(const std::string& key, const std::vector<float>& v) { set_pod_array(key, vtype::f32, v); }
  void set_f64s(const std::string& key, const std::vector<double>& v) { set_pod_array(key, vtype::f64, v); }
  void set_u32s(const std::string& key, const std::vector<std::uint32_t>& v) { set_pod_array(key, vtype::u32, v); }
  void set_i32s(const std::string& key, const std::vector<std::int32_t>& v) { set_pod_array(key, vtype::i32, v); }
  void set_u64s(const std::string& key, const std::vector<std::uint64_t>& v) { set_pod_array(key, vtype::u64, v); }
  void set_i64s(const std::string& key, const std::vector<std::int64_t>& v) { set_pod_array(key, vtype::i64, v); }

  /// Any value as gguf::file reports it, with its GGUF type kept (u32 stays u32, an f32 array
  /// stays f32, ...). Values read from a file are reproduced bit-exactly, except 64-bit integer
  /// array elements beyond 2^53, which the reader already holds as (rounded) doubles. Arrays of
  /// arrays are not supported (the reader has none).
  void set(const std::string& key, const value& v) {
    if (v.type == vtype::array) {
      if (v.elem_type == vtype::string) {
        set_strings(key, v.strings);
        return;
      }
      if (v.elem_type == vtype::array) bad(key, "arrays of arrays are not supported");
      std::string r = array_head(v.elem_type, v.numbers.size());
      for (double d : v.numbers) r += number_bytes(key, v.elem_type, d);
      put_kv(key, vtype::array, std::move(r));
      return;
    }
    std::string r;
    if (v.type == vtype::string) {
      const auto* s = std::get_if<std::string>(&v.scalar);
      if (!s) bad(key, "string value does not hold a string");
      r = str_bytes(*s);
    } else if (v.type == vtype::boolean) {
      const auto* b = std::get_if<bool>(&v.scalar);
      if (!b) bad(key, "bool value does not hold a bool");
      r = pod_bytes(std::uint8_t(*b ? 1 : 0));
    } else if (const auto* u = std::get_if<std::uint64_t>(&v.scalar)) {
      r = int_bytes(key, v.type, *u, false);
    } else if (const auto* i = std::get_if<std::int64_t>(&v.scalar)) {
      r = int_bytes(key, v.type, std::uint64_t(*i), *i < 0);
    } else if (const auto* d = std::get_if<double>(&v.scalar)) {
      if (v.type == vtype::f32) r = pod_bytes(float(*d));
      else if (v.type == vtype::f64) r = pod_bytes(*d);
      else bad(key, "floating-point value for an integer type");
    } else {
      bad(key, "value does not match its type " + std::to_string(std::uint32_t(v.type)));
    }
    put_kv(key, v.type, std::move(r));
  }

  /// Copies every metadata key of `f` (types kept). Keys convert.py writes come first, in
  /// convert.py's order (the reader does not keep the file's order), then any others sorted by
  /// name; so a file made by convert.py gets its key/value section back byte for byte.
  void copy_metadata(const file& f) {
    for (const auto& k : canonical_key_order())
      if (f.has(k)) set(k, f.get(k));
    const auto& order = canonical_key_order();
    for (const auto& [k, v] : f.metadata())
      if (std::find(order.begin(), order.end(), k) == order.end()) set(k, v);
  }

  /// convert.py's key order.
  static const std::vector<std::string>& canonical_key_order() {
    static const std::vector<std::string> keys = {
        "general.architecture", "general.name",      "general.alignment", "gyolo.format_version",
        "gyolo.converter_version", "gyolo.source_sha256", "gyolo.source_key", "gyolo.yaml",
        "gyolo.nc",             "gyolo.names",       "gyolo.stride",      "gyolo.grit_config",
        "gyolo.vocab"};
    return keys;
  }

  bool has(const std::string& key) const { return find_kv(key) != kvs_.size(); }
  /// Removes a key (no-op when absent).
  void erase(const std::string& key) {
    const auto i = find_kv(key);
    if (i != kvs_.size()) kvs_.erase(kvs_.begin() + std::ptrdiff_t(i));
  }
  std::vector<std::string> keys() const {
    std::vector<std::string> r;
    for (const auto& k : kvs_) r.push_back(k.key);
    return r;
  }

  // ---------------------------------------------------------------------------------------------
  // Tensors, written in the order they are added. Shapes are PyTorch order (outermost first).
  // The data is copied.
  // ---------------------------------------------------------------------------------------------

  /// fp32 tensor: numel(torch_shape) floats at `data`, stored bit-exactly.
  void add_tensor(const std::string& name, const std::vector<std::int64_t>& torch_shape, const float* data) {
    auto& t = new_tensor(name, torch_shape, ttype::f32);
    t.bytes.resize(std::size_t(t.numel) * 4);
    if (t.numel) std::memcpy(t.bytes.data(), data, t.bytes.size());
  }
  /// fp32 tensor from a vector, whose size must match the shape.
  void add_tensor(const std::string& name, const std::vector<std::int64_t>& torch_shape, const std::vector<float>& data) {
    check_count(name, torch_shape, data.size());
    add_tensor(name, torch_shape, data.data());
  }
  /// fp16 tensor from fp32 values, rounded to nearest even.
  void add_tensor_f16(const std::string& name, const std::vector<std::int64_t>& torch_shape, const float* data) {
    auto& t = new_tensor(name, torch_shape, ttype::f16);
    t.bytes.resize(std::size_t(t.numel) * 2);
    for (std::int64_t i = 0; i < t.numel; ++i) {
      const std::uint16_t h = float_to_half(data[i]);
      std::memcpy(t.bytes.data() + 2 * i, &h, 2);
    }
  }
  void add_tensor_f16(const std::string& name, const std::vector<std::int64_t>& torch_shape, const std::vector<float>& data) {
    check_count(name, torch_shape, data.size());
    add_tensor_f16(name, torch_shape, data.data());
  }
  /// fp16 tensor from raw IEEE half bits.
  void add_tensor_f16_bits(const std::string& name, const std::vector<std::int64_t>& torch_shape, const std::uint16_t* bits) {
    auto& t = new_tensor(name, torch_shape, ttype::f16);
    t.bytes.resize(std::size_t(t.numel) * 2);
    if (t.numel) std::memcpy(t.bytes.data(), bits, t.bytes.size());
  }

  /// Copies one tensor of `f` with its type, shape and bytes (fp16 stays fp16, bit-exactly).
  void copy_tensor(const file& f, const tensor_info& ti, const std::string& new_name = "") {
    const std::string& name = new_name.empty() ? ti.name : new_name;
    const auto v = f.read_f32(ti);
    const auto shape = ti.torch_shape();
    if (ti.type == ttype::f32) add_tensor(name, shape, v);
    else add_tensor_f16(name, shape, v);  // half -> float -> half is the identity on bits
  }
  /// Copies every tensor of `f`, in file order.
  void copy_tensors(const file& f) {
    for (const auto& t : f.tensors()) copy_tensor(f, t);
  }

  bool has_tensor(const std::string& name) const { return index_.count(name) != 0; }
  std::size_t tensor_count() const { return tensors_.size(); }
  std::size_t kv_count() const { return kvs_.size(); }

  // ---------------------------------------------------------------------------------------------
  // Output
  // ---------------------------------------------------------------------------------------------

  /// The alignment the file will use: general.alignment if set, else 32.
  std::uint32_t alignment() const {
    const auto i = find_kv("general.alignment");
    if (i == kvs_.size()) return default_alignment;
    const auto& k = kvs_[i];
    std::uint64_t a = 0;
    switch (k.type) {
      case vtype::u8: a = std::uint8_t(k.raw[0]); break;
      case vtype::u16: { std::uint16_t x; std::memcpy(&x, k.raw.data(), 2); a = x; break; }
      case vtype::u32: { std::uint32_t x; std::memcpy(&x, k.raw.data(), 4); a = x; break; }
      case vtype::u64: { std::uint64_t x; std::memcpy(&x, k.raw.data(), 8); a = x; break; }
      default: throw error("gguf writer: general.alignment must be an unsigned integer");
    }
    if (a == 0 || (a & (a - 1)) != 0 || a > 4096)
      throw error("gguf writer: general.alignment must be a power of two <= 4096, got " + std::to_string(a));
    return std::uint32_t(a);
  }

  /// Whether write() adds the content checksum gyolo.crc32 (default: yes).
  void set_checksum(bool on) { checksum_ = on; }
  bool checksum() const { return checksum_; }

  /// Header, key/values, tensor infos and padding: everything before the data section. With the
  /// checksum on, *crc_at (when given) receives the offset of gyolo.crc32's value, which is left
  /// as it is (write() fills it in).
  std::string header(std::size_t* crc_at = nullptr) const {
    const std::uint64_t align = alignment();
    const bool present = find_kv(checksum_key) != kvs_.size();
    const std::size_t n_kv = kvs_.size() + (checksum_ && !present ? 1 : 0) - (!checksum_ && present ? 1 : 0);
    std::string h = "GGUF";
    h += pod_bytes(std::uint32_t(3));
    h += pod_bytes(std::uint64_t(tensors_.size()));
    h += pod_bytes(std::uint64_t(n_kv));
    for (const auto& k : kvs_) {
      if (k.key == checksum_key) {
        if (!checksum_) continue;  // a copied checksum would be stale
        if (k.type != vtype::u32) throw error(std::string("gguf writer: ") + checksum_key + " must be a u32");
        h += str_bytes(k.key);
        h += pod_bytes(std::uint32_t(k.type));
        if (crc_at) *crc_at = h.size();
        h += k.raw;
        continue;
      }
      h += str_bytes(k.key);
      h += pod_bytes(std::uint32_t(k.type));
      h += k.raw;
    }
    if (checksum_ && !present) {
      h += str_bytes(checksum_key);
      h += pod_bytes(std::uint32_t(vtype::u32));
      if (crc_at) *crc_at = h.size();
      h += pod_bytes(std::uint32_t(0));
    }
    std::uint64_t offset = 0;
    for (const auto& t : tensors_) {
      h += str_bytes(t.name);
      h += pod_bytes(std::uint32_t(t.ne.size()));
      for (auto e : t.ne) h += pod_bytes(std::uint64_t(e));
      h += pod_bytes(std::uint32_t(t.type));
      h += pod_bytes(offset);
      offset += padded(t.bytes.size(), align);
    }
    h.append(std::size_t(padded(h.size(), align) - h.size()), '\0');
    return h;
  }

  /// Size in bytes of the file write() produces.
  std::uint64_t file_size() const {
    const std::uint64_t align = alignment();
    std::uint64_t n = header().size();
    for (const auto& t : tensors_) n += padded(t.bytes.size(), align);
    return n;
  }

  /// Writes the file atomically (temporary file in the same directory, fsync, rename). On failure
  /// nothing is left behind and gyolo::error names `path` and the system's reason.
  void write(const std::string& path) const {
    const std::uint64_t align = alignment();
    std::size_t crc_at = 0;
    std::string head = header(&crc_at);
    std::uint64_t total = head.size();
    for (const auto& t : tensors_) total += padded(t.bytes.size(), align);
    if (total > file::max_file_bytes)
      throw error("cannot write weights file '" + path + "': " + std::to_string(total) +
                  " bytes is more than gguf::file reads (8 GiB)");
    static const std::array<char, 4096> zeros{};
    if (checksum_) {  // the CRC-32 of the file as written, its own four bytes as zero
      std::memset(head.data() + crc_at, 0, 4);
      std::uint32_t c = crc32_update(0, head.data(), head.size());
      for (const auto& t : tensors_) {
        c = crc32_update(c, t.bytes.data(), t.bytes.size());
        c = crc32_update(c, zeros.data(), std::size_t(padded(t.bytes.size(), align) - t.bytes.size()));
      }
      std::memcpy(head.data() + crc_at, &c, 4);
    }

    const std::string tmp = temp_name(path);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) fail(path, "cannot create temporary file '" + tmp + "'", errno);
    struct guard {
      int fd;
      const std::string& tmp;
      bool done = false;
      ~guard() {
        if (done) return;
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
      }
    } g{fd, tmp};

    std::string buf;
    buf.reserve(chunk_bytes);
    auto flush = [&] {
      const char* p = buf.data();
      std::size_t n = buf.size();
      while (n > 0) {
        const ssize_t w = ::write(g.fd, p, n);
        if (w < 0) {
          if (errno == EINTR) continue;
          fail(path, "write to '" + tmp + "' failed", errno);
        }
        if (w == 0) fail(path, "write to '" + tmp + "' failed", ENOSPC);
        p += w;
        n -= std::size_t(w);
      }
      buf.clear();
    };
    auto emit = [&](const char* p, std::size_t n) {
      while (n > 0) {
        const std::size_t k = std::min(n, chunk_bytes - buf.size());
        buf.append(p, k);
        p += k;
        n -= k;
        if (buf.size() == chunk_bytes) flush();
      }
    };
    emit(head.data(), head.size());
    for (const auto& t : tensors_) {
      emit(t.bytes.data(), t.bytes.size());
      emit(zeros.data(), std::size_t(padded(t.bytes.size(), align) - t.bytes.size()));
    }
    flush();
    if (::fsync(g.fd) != 0 && errno != EINVAL && errno != ENOTSUP) fail(path, "fsync of '" + tmp + "' failed", errno);
    const int fd_close = g.fd;
    g.fd = -1;
    if (::close(fd_close) != 0) fail(path, "closing '" + tmp + "' failed", errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail(path, "cannot rename '" + tmp + "' to it", errno);
    g.done = true;
    // Make the rename itself durable (best effort: not every file system allows it).
    const int dfd = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  struct kv {
    std::string key;
    vtype type;
    std::string raw;  // value bytes after the type field
  };
  struct tensor {
    std::string name;
    std::vector<std::int64_t> ne;  // ggml order
    ttype type;
    std::int64_t numel = 0;
    std::vector<char> bytes;
  };

  static constexpr std::size_t chunk_bytes = std::size_t(4) << 20;

  std::vector<kv> kvs_;
  bool checksum_ = true;
  std::vector<tensor> tensors_;
  std::map<std::string, std::size_t> index_;

  template <class T> static std::string pod_bytes(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::string r(sizeof(T), '\0');
    std::memcpy(r.data(), &v, sizeof(T));
    return r;
  }
  static std::string str_bytes(const std::string& s) { return pod_bytes(std::uint64_t(s.size())) + s; }
  static std::string array_head(vtype elem, std::size_t n) {
    return pod_bytes(std::uint32_t(elem)) + pod_bytes(std::uint64_t(n));
  }
  static std::uint64_t padded(std::uint64_t n, std::uint64_t align) { return (n + align - 1) / align * align; }

  [[noreturn]] static void bad(const std::string& key, const std::string& what) {
    throw error("gguf writer: metadata key '" + key + "': " + what);
  }
  [[noreturn]] static void fail(const std::string& path, const std::string& what, int err) {
    throw error("cannot write weights file '" + path + "': " + what + ": " + std::generic_category().message(err));
  }

  std::size_t find_kv(const std::string& key) const {
    for (std::size_t i = 0; i < kvs_.size(); ++i)
      if (kvs_[i].key == key) return i;
    return kvs_.size();
  }
  void put_kv(const std::string& key, vtype t, std::string raw) {
    if (key.empty()) throw error("gguf writer: empty metadata key");
    const auto i = find_kv(key);
    if (i != kvs_.size()) {
      kvs_[i].type = t;
      kvs_[i].raw = std::move(raw);
    } else {
      kvs_.push_back({key, t, std::move(raw)});
    }
  }
  template <class T> void set_pod_array(const std::string& key, vtype elem, const std::vector<T>& v) {
    std::string r = array_head(elem, v.size());
    const std::size_t n0 = r.size();
    r.resize(n0 + v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(r.data() + n0, v.data(), v.size() * sizeof(T));
    put_kv(key, vtype::array, std::move(r));
  }

  /// Integer scalar of type t from a value the reader produced (neg: the value is a negative int64).
  static std::string int_bytes(const std::string& key, vtype t, std::uint64_t u, bool neg) {
    const auto s = std::int64_t(u);
    auto in = [&](std::int64_t lo, std::uint64_t hi) {
      return neg ? (s >= lo) : (u <= hi);
    };
    switch (t) {
      case vtype::u8: if (!neg && u <= 0xff) return pod_bytes(std::uint8_t(u)); break;
      case vtype::u16: if (!neg && u <= 0xffff) return pod_bytes(std::uint16_t(u)); break;
      case vtype::u32: if (!neg && u <= 0xffffffffu) return pod_bytes(std::uint32_t(u)); break;
      case vtype::u64: if (!neg) return pod_bytes(u); break;
      case vtype::i8: if (in(-128, 127)) return pod_bytes(std::int8_t(s)); break;
      case vtype::i16: if (in(-32768, 32767)) return pod_bytes(std::int16_t(s)); break;
      case vtype::i32: if (in(std::numeric_limits<std::int32_t>::min(), 0x7fffffff)) return pod_bytes(std::int32_t(s)); break;
      case vtype::i64: if (in(std::numeric_limits<std::int64_t>::min(), 0x7fffffffffffffffull)) return pod_bytes(s); break;
      default: bad(key, "integer value for non-integer type " + std::to_string(std::uint32_t(t)));
    }
    bad(key, "value " + (neg ? std::to_string(s) : std::to_string(u)) + " does not fit type " + std::to_string(std::uint32_t(t)));
  }

  /// One numeric array element (held as double by the reader) in its element type.
  static std::string number_bytes(const std::string& key, vtype t, double d) {
    switch (t) {
      case vtype::f32: return pod_bytes(float(d));
      case vtype::f64: return pod_bytes(d);
      case vtype::boolean:
        if (d != 0.0 && d != 1.0) bad(key, "bool array element is not 0 or 1");
        return pod_bytes(std::uint8_t(d != 0.0));
      default: break;
    }
    if (!std::isfinite(d) || d != std::floor(d)) bad(key, "integer array element " + std::to_string(d) + " is not an integer");
    if (d < 0) {
      if (d < -9223372036854775808.0) bad(key, "array element " + std::to_string(d) + " is out of range");
      return int_bytes(key, t, std::uint64_t(std::int64_t(d)), true);
    }
    if (d >= 18446744073709551616.0) bad(key, "array element " + std::to_string(d) + " is out of range");
    return int_bytes(key, t, std::uint64_t(d), false);
  }

  static void check_count(const std::string& name, const std::vector<std::int64_t>& shape, std::size_t n) {
    std::int64_t numel = 1;
    for (auto d : shape) numel *= d;
    if (std::int64_t(n) != numel)
      throw error("gguf writer: tensor '" + name + "' has " + std::to_string(n) + " values, shape " + shape_str(shape) +
                  " needs " + std::to_string(numel));
  }

  tensor& new_tensor(const std::string& name, const std::vector<std::int64_t>& torch_shape, ttype type) {
    auto fail_t = [&](const std::string& what) { throw error("gguf writer: tensor '" + name + "': " + what); };
    if (name.empty() || name.size() > 256) fail_t("name must have 1 to 256 bytes");
    if (index_.count(name)) fail_t("added twice");
    if (torch_shape.size() > 4) fail_t("shape " + shape_str(torch_shape) + " has more than 4 dimensions");
    tensor t;
    t.name = name;
    t.type = type;
    t.ne.assign(torch_shape.rbegin(), torch_shape.rend());
    if (t.ne.empty()) t.ne.push_back(1);  // 0-d: ne = [1], as convert.py
    std::uint64_t numel = 1;
    for (auto e : t.ne) {
      if (e <= 0 || std::uint64_t(e) > (std::uint64_t(1) << 32)) fail_t("invalid dimension in shape " + shape_str(torch_shape));
      if (numel > (std::uint64_t(1) << 34) / std::uint64_t(e)) fail_t("shape " + shape_str(torch_shape) + " is too large");
      numel *= std::uint64_t(e);
    }
    t.numel = std::int64_t(numel);
    index_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(t));
    return tensors_.back();
  }

  static std::string dir_of(const std::string& path) {
    const auto s = path.find_last_of('/');
    if (s == std::string::npos) return ".";
    if (s == 0) return "/";
    return path.substr(0, s);
  }
  /// "<dir>/.<name>.tmp-<pid>-<n>": same directory (rename stays atomic), unique per process and call.
  static std::string temp_name(const std::string& path) {
    static std::atomic<unsigned> counter{0};
    const auto s = path.find_last_of('/');
    const std::string dir = s == std::string::npos ? "" : path.substr(0, s + 1);
    const std::string base = s == std::string::npos ? path : path.substr(s + 1);
    return dir + "." + base + ".tmp-" + std::to_string(long(::getpid())) + "-" + std::to_string(counter++);
  }
};

}  // namespace gyolo::gguf
