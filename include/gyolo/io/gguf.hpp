// GGUF v3 reader that trusts nothing: every count, length, type, offset and size is checked
// against the file before use, and every problem is one line naming what is wrong.
// Spec: https://github.com/ggerganov/ggml/blob/master/docs/gguf.md (little-endian, v3).
// Content checksum: a file may carry "gyolo.crc32" (u32), the CRC-32 of the whole file with those
// four value bytes read as zero (written by gyolo's writer and weights_tools/convert.py). It is
// verified when the file is opened (open_options::verify_checksum), so that a flipped byte in a
// class name or the stored yaml is an error, not a silently different model. Files without the
// key (earlier converters) are read as before.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/io/crc32.hpp"

namespace gyolo::gguf {

enum class vtype : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9,
  u64 = 10, i64 = 11, f64 = 12
};

enum class ttype : std::uint32_t { f32 = 0, f16 = 1 };

struct value {
  vtype type = vtype::u8;
  vtype elem_type = vtype::u8;           // for arrays
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string> scalar;
  std::vector<std::string> strings;      // array of string
  std::vector<double> numbers;           // array of numbers
};

struct tensor_info {
  std::string name;
  std::vector<std::int64_t> ne;  // ggml order: ne[0] innermost
  ttype type = ttype::f32;
  std::uint64_t offset = 0;      // relative to data section
  std::uint64_t nbytes = 0;

  /// Shape in PyTorch order (outermost first).
  std::vector<std::int64_t> torch_shape() const { return {ne.rbegin(), ne.rend()}; }
};

inline std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

/// fp16 bits -> fp32, exact (including subnormals, inf, nan).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { ++e; mant <<= 1; } while ((mant & 0x400) == 0);
      bits = sign | (std::uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// How a file is opened.
struct open_options {
  bool verify_checksum = true;  // check gyolo.crc32 when the file has it
};

/// The metadata key of the content checksum.
inline constexpr const char* checksum_key = "gyolo.crc32";

class file {
 public:
  static constexpr std::uint64_t max_file_bytes = std::uint64_t(8) << 30;

  explicit file(const std::string& path, open_options opt = {}) : path_(path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) fail("cannot open file");
    const auto size = f.tellg();
    if (size < 0) fail("cannot read file");
    if (std::uint64_t(size) > max_file_bytes) fail("file is larger than 8 GiB");
    buf_.resize(std::size_t(size));
    f.seekg(0);
    if (size > 0 && !f.read(buf_.data(), size)) fail("read error");
    parse();
    if (crc_at_ && opt.verify_checksum) verify_checksum();
  }

  /// A file already in memory (embedded weights, fuzzing): `name` stands for the path in messages.
  static file from_memory(std::string name, std::vector<char> bytes, open_options opt = {}) {
    return file(std::move(name), std::move(bytes), opt);
  }

  /// Whether the file carries a content checksum (gyolo.crc32).
  bool has_checksum() const { return crc_at_ != 0; }

  const std::string& path() const { return path_; }
  const std::map<std::string, value>& metadata() const { return kv_; }
  const std::vector<tensor_info>& tensors() const { return tensors_; }
  bool has(const std::string& key) const { return kv_.count(key) != 0; }

  const value& get(const std::string& key) const {
    auto it = kv_.find(key);
    if (it == kv_.end()) fail("metadata key '" + key + "' is missing");
    return it->second;
  }
  std::string get_string(const std::string& key) const {
    const auto& v = get(key);
    if (v.type != vtype::string) fail("metadata key '" + key + "' is not a string");
    return std::get<std::string>(v.scalar);
  }
  std::uint64_t get_uint(const std::string& key) const {
    const auto& v = get(key);
    if (auto p = std::get_if<std::uint64_t>(&v.scalar)) return *p;
    if (auto p = std::get_if<std::int64_t>(&v.scalar); p && *p >= 0) return std::uint64_t(*p);
    fail("metadata key '" + key + "' is not an unsigned integer");
  }
  const std::vector<std::string>& get_strings(const std::string& key) const {
    const auto& v = get(key);
    if (v.type != vtype::array || v.elem_type != vtype::string) fail("metadata key '" + key + "' is not an array of strings");
    return v.strings;
  }
  const std::vector<double>& get_numbers(const std::string& key) const {
    const auto& v = get(key);
    if (v.type != vtype::array || v.elem_type == vtype::string || v.elem_type == vtype::array)
      fail("metadata key '" + key + "' is not an array of numbers");
    return v.numbers;
  }

  const tensor_info* find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }

  /// Tensor data converted to fp32.
  std::vector<float> read_f32(const tensor_info& t) const {
    const char* p = buf_.data() + data_start_ + t.offset;
    std::uint64_t n = t.type == ttype::f32 ? t.nbytes / 4 : t.nbytes / 2;
    std::vector<float> out(n);
    if (t.type == ttype::f32) {
      std::memcpy(out.data(), p, n * 4);
    } else {
      for (std::uint64_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = half_to_float(h);
      }
    }
    return out;
  }

  /// Throws gyolo::error naming the file. `what` may quote keys, names and strings read from the
  /// file: control characters and other non-printable bytes are shown escaped (`\xNN`), never raw.
  [[noreturn]] void fail(const std::string& what) const {
    throw error("weights file '" + path_ + "': " + printable(what) + producer());
  }

 private:
  file(std::string name, std::vector<char> bytes, open_options opt) : path_(std::move(name)), buf_(std::move(bytes)) {
    if (buf_.size() > max_file_bytes) fail("file is larger than 8 GiB");
    parse();
    if (crc_at_ && opt.verify_checksum) verify_checksum();
  }

  std::string producer() const {
    auto it = kv_.find("gyolo.converter_version");
    if (it != kv_.end() && it->second.type == vtype::string)
      return " (file made by gyolo converter " + printable(std::get<std::string>(it->second.scalar), 64) + ")";
    return "";
  }

  void need(std::uint64_t n, const char* what) {
    if (n > buf_.size() - pos_) fail(std::string("truncated while reading ") + what + " at offset " + std::to_string(pos_));
  }
  template <class T> T rd(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, buf_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string rd_string(const char* what) {
    const auto len = rd<std::uint64_t>(what);
    need(len, what);
    std::string s(buf_.data() + pos_, std::size_t(len));
    pos_ += len;
    return s;
  }
  static std::uint64_t scalar_size(vtype t) {
    switch (t) {
      case vtype::u8: case vtype::i8: case vtype::boolean: return 1;
      case vtype::u16: case vtype::i16: return 2;
      case vtype::u32: case vtype::i32: case vtype::f32: return 4;
      case vtype::u64: case vtype::i64: case vtype::f64: return 8;
      default: return 0;
    }
  }
  void rd_scalar(vtype t, value& v, const std::string& key) {
    switch (t) {
      case vtype::u8: v.scalar = std::uint64_t(rd<std::uint8_t>(key.c_str())); break;
      case vtype::i8: v.scalar = std::int64_t(rd<std::int8_t>(key.c_str())); break;
      case vtype::u16: v.scalar = std::uint64_t(rd<std::uint16_t>(key.c_str())); break;
      case vtype::i16: v.scalar = std::int64_t(rd<std::int16_t>(key.c_str())); break;
      case vtype::u32: v.scalar = std::uint64_t(rd<std::uint32_t>(key.c_str())); break;
      case vtype::i32: v.scalar = std::int64_t(rd<std::int32_t>(key.c_str())); break;
      case vtype::u64: v.scalar = rd<std::uint64_t>(key.c_str()); break;
      case vtype::i64: v.scalar = rd<std::int64_t>(key.c_str()); break;
      case vtype::f32: v.scalar = double(rd<float>(key.c_str())); break;
      case vtype::f64: v.scalar = rd<double>(key.c_str()); break;
      case vtype::boolean: {
        const auto b = rd<std::uint8_t>(key.c_str());
        if (b > 1) fail("metadata key '" + key + "' has an invalid bool value");
        v.scalar = b != 0;
        break;
      }
      case vtype::string: v.scalar = rd_string(key.c_str()); break;
      default: fail("metadata key '" + key + "' has unknown value type " + std::to_string(std::uint32_t(t)));
    }
  }
  static double as_number(const value& v) {
    if (auto p = std::get_if<std::uint64_t>(&v.scalar)) return double(*p);
    if (auto p = std::get_if<std::int64_t>(&v.scalar)) return double(*p);
    if (auto p = std::get_if<double>(&v.scalar)) return *p;
    if (auto p = std::get_if<bool>(&v.scalar)) return *p ? 1.0 : 0.0;
    return 0;
  }

  /// The CRC-32 of the file with the checksum's value bytes read as zero.
  std::uint32_t content_crc() const {
    static const char zero[4] = {};
    std::uint32_t c = crc32_update(0, buf_.data(), std::size_t(crc_at_));
    c = crc32_update(c, zero, 4);
    return crc32_update(c, buf_.data() + crc_at_ + 4, buf_.size() - std::size_t(crc_at_) - 4);
  }
  void verify_checksum() const {
    std::uint32_t stored;
    std::memcpy(&stored, buf_.data() + crc_at_, 4);
    const std::uint32_t actual = content_crc();
    if (stored != actual) {
      char b[96];
      std::snprintf(b, sizeof b, "content checksum mismatch: gyolo.crc32 is 0x%08x, the file's bytes give 0x%08x", unsigned(stored),
                    unsigned(actual));
      fail(std::string(b) + " (the file is corrupt or was edited; open_options/load_options verify_checksum = false skips the check)");
    }
  }

  void parse() {
    if (buf_.size() < 24) fail("too small to be a GGUF file (" + std::to_string(buf_.size()) + " bytes)");
    if (std::memcmp(buf_.data(), "GGUF", 4) != 0) fail("not a GGUF file (bad magic)");
    pos_ = 4;
    const auto version = rd<std::uint32_t>("version");
    if (version != 3) fail("unsupported GGUF version " + std::to_string(version) + " (expected 3)");
    const auto n_tensors = rd<std::uint64_t>("tensor count");
    const auto n_kv = rd<std::uint64_t>("metadata count");
    // Every entry needs at least 8 bytes: bound the counts by the file size before looping.
    if (n_kv > buf_.size() / 8) fail("metadata count " + std::to_string(n_kv) + " is impossible for a file of " + std::to_string(buf_.size()) + " bytes (truncated or corrupt)");
    if (n_tensors > buf_.size() / 8) fail("tensor count " + std::to_string(n_tensors) + " is impossible for a file of " + std::to_string(buf_.size()) + " bytes (truncated or corrupt)");
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      std::string key = rd_string("metadata key");
      if (kv_.count(key)) fail("duplicate metadata key '" + key + "'");
      value v;
      v.type = vtype(rd<std::uint32_t>(key.c_str()));
      if (key == checksum_key) {
        if (v.type != vtype::u32) fail(std::string(checksum_key) + " must be a u32");
        crc_at_ = pos_;
      }
      if (v.type == vtype::array) {
        v.elem_type = vtype(rd<std::uint32_t>(key.c_str()));
        const auto len = rd<std::uint64_t>(key.c_str());
        if (v.elem_type == vtype::string) {
          if (len > (buf_.size() - pos_) / 8) fail("metadata key '" + key + "': array length " + std::to_string(len) + " exceeds the file");
          v.strings.reserve(std::size_t(len));
          for (std::uint64_t j = 0; j < len; ++j) v.strings.push_back(rd_string(key.c_str()));
        } else {
          const auto es = scalar_size(v.elem_type);
          if (es == 0) fail("metadata key '" + key + "': unsupported array element type " + std::to_string(std::uint32_t(v.elem_type)));
          if (len > (buf_.size() - pos_) / es) fail("metadata key '" + key + "': array length " + std::to_string(len) + " exceeds the file");
          v.numbers.reserve(std::size_t(len));
          for (std::uint64_t j = 0; j < len; ++j) {
            value e;
            rd_scalar(v.elem_type, e, key);
            v.numbers.push_back(as_number(e));
          }
        }
      } else {
        rd_scalar(v.type, v, key);
      }
      kv_.emplace(std::move(key), std::move(v));
    }
    std::uint64_t alignment = 32;
    if (auto it = kv_.find("general.alignment"); it != kv_.end()) {
      const auto* a = std::get_if<std::uint64_t>(&it->second.scalar);
      if (!a || *a == 0 || (*a & (*a - 1)) != 0 || *a > 4096) fail("general.alignment must be a power of two <= 4096");
      alignment = *a;
    }
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      tensor_info t;
      t.name = rd_string("tensor name");
      if (t.name.empty() || t.name.size() > 256) fail("tensor #" + std::to_string(i) + " has an invalid name");
      if (index_.count(t.name)) fail("duplicate tensor '" + t.name + "'");
      const auto nd = rd<std::uint32_t>(t.name.c_str());
      if (nd == 0 || nd > 4) fail("tensor '" + t.name + "' has " + std::to_string(nd) + " dimensions (1..4 allowed)");
      std::uint64_t numel = 1;
      for (std::uint32_t d = 0; d < nd; ++d) {
        const auto e = rd<std::uint64_t>(t.name.c_str());
        if (e == 0 || e > (std::uint64_t(1) << 32)) fail("tensor '" + t.name + "' has invalid dimension " + std::to_string(e));
        // Checked before multiplying: numel (<= 2^34) * e (<= 2^32) could wrap around 2^64.
        if (numel > (std::uint64_t(1) << 34) / e) fail("tensor '" + t.name + "' is absurdly large");
        numel *= e;
        t.ne.push_back(std::int64_t(e));
      }
      const auto ty = rd<std::uint32_t>(t.name.c_str());
      if (ty != 0 && ty != 1) fail("tensor '" + t.name + "' has unsupported type " + std::to_string(ty) + " (F32 or F16 expected)");
      t.type = ttype(ty);
      t.offset = rd<std::uint64_t>(t.name.c_str());
      if (t.offset % alignment) fail("tensor '" + t.name + "' offset " + std::to_string(t.offset) + " is not aligned");
      t.nbytes = numel * (t.type == ttype::f32 ? 4 : 2);
      index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }
    data_start_ = (pos_ + alignment - 1) / alignment * alignment;
    if (data_start_ > buf_.size()) fail("truncated before the tensor data");
    const std::uint64_t data_size = buf_.size() - data_start_;
    for (const auto& t : tensors_)
      if (t.offset > data_size || t.nbytes > data_size - t.offset)
        fail("tensor '" + t.name + "' data [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
             ") lies beyond the end of the file (data section is " + std::to_string(data_size) + " bytes): truncated?");
  }

  std::string path_;
  std::vector<char> buf_;
  std::uint64_t pos_ = 0, data_start_ = 0;
  std::uint64_t crc_at_ = 0;  // offset of gyolo.crc32's value (0: none; it never starts a file)
  std::map<std::string, value> kv_;
  std::vector<tensor_info> tensors_;
  std::map<std::string, std::size_t> index_;
};

}  // namespace gyolo::gguf
