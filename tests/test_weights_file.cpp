// Robustness of the weights-file path: gguf::file and model<B, V>::load must turn every malformed,
// truncated, hostile or mismatched file into a one-line gyolo::error that names the problem, and
// never crash, hang or allocate absurd amounts of memory.
//
// The committed tiny.gguf is parsed here by an independent minimal GGUF reader into a small
// editable image (KV pairs as raw value bytes, tensor infos, data section), modified, and written
// back by a matching writer. Byte-level patches (absurd lengths) use the writer's recorded layout.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "gyolo/gyolo.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_weights_file {

using namespace gyolo;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

const std::string tiny_path = std::string(GYOLO_FIXTURES_DIR) + "/tiny/tiny.gguf";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// ---------------------------------------------------------------------------------------------
// Minimal independent GGUF v3 image: reader (for the valid fixture only) and writer.
// ---------------------------------------------------------------------------------------------

constexpr std::uint32_t t_u32 = 4, t_f32 = 6, t_string = 8, t_array = 9;

struct kv_entry {
  std::string key;
  std::uint32_t type = 0;
  std::string raw;  // value bytes exactly as stored after the type field
};

struct tensor_entry {
  std::string name;
  std::vector<std::uint64_t> ne;  // ggml order (innermost first)
  std::uint32_t type = 0;
  std::uint64_t offset = 0;

  std::uint64_t nbytes() const {
    std::uint64_t n = type == 0 ? 4 : 2;
    for (auto e : ne) n *= e;
    return n;
  }
};

struct layout {
  std::size_t data_begin = 0;
  std::vector<std::size_t> kv_pos;      // start of each KV (its key length field)
  std::vector<std::size_t> kv_val_pos;  // start of each KV's value (after the type field)
  std::vector<std::size_t> tinfo_pos;   // start of each tensor info (its name length field)
};

template <class T> void put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}
template <class T> T get_at(const std::string& s, std::size_t pos) {
  REQUIRE(pos + sizeof(T) <= s.size());
  T v;
  std::memcpy(&v, s.data() + pos, sizeof(T));
  return v;
}
template <class T> void patch(std::string& s, std::size_t pos, T v) {
  REQUIRE(pos + sizeof(T) <= s.size());
  std::memcpy(s.data() + pos, &v, sizeof(T));
}
std::string gstr(const std::string& s) {
  std::string r;
  put<std::uint64_t>(r, s.size());
  return r + s;
}

struct gguf_image {
  std::uint32_t version = 3;
  std::optional<std::uint64_t> n_tensors_override, n_kv_override;
  std::uint64_t alignment = 32;
  std::vector<kv_entry> kvs;
  std::vector<tensor_entry> tensors;
  std::string data;  // data section

  kv_entry* find_kv(const std::string& key) {
    for (auto& k : kvs)
      if (k.key == key) return &k;
    return nullptr;
  }
  std::size_t kv_index(const std::string& key) const {
    for (std::size_t i = 0; i < kvs.size(); ++i)
      if (kvs[i].key == key) return i;
    FAIL("no key " << key);
    return 0;
  }
  std::size_t tensor_index(const std::string& name) const {
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i].name == name) return i;
    FAIL("no tensor " << name);
    return 0;
  }
  tensor_entry& tensor(const std::string& name) { return tensors[tensor_index(name)]; }

  void set_raw(const std::string& key, std::uint32_t type, std::string raw) {
    if (auto* k = find_kv(key)) {
      k->type = type;
      k->raw = std::move(raw);
    } else {
      kvs.push_back({key, type, std::move(raw)});
    }
  }
  void set_string(const std::string& key, const std::string& v) { set_raw(key, t_string, gstr(v)); }
  void set_u32(const std::string& key, std::uint32_t v) {
    std::string r;
    put(r, v);
    set_raw(key, t_u32, r);
  }
  void set_strings(const std::string& key, const std::vector<std::string>& v) {
    std::string r;
    put<std::uint32_t>(r, t_string);
    put<std::uint64_t>(r, v.size());
    for (auto& s : v) r += gstr(s);
    set_raw(key, t_array, r);
  }
  std::string get_string(const std::string& key) {
    auto* k = find_kv(key);
    REQUIRE(k);
    REQUIRE(k->type == t_string);
    return k->raw.substr(8);
  }
  std::vector<std::string> get_strings(const std::string& key) {
    auto* k = find_kv(key);
    REQUIRE(k);
    REQUIRE(k->type == t_array);
    REQUIRE(get_at<std::uint32_t>(k->raw, 0) == t_string);
    const auto n = get_at<std::uint64_t>(k->raw, 4);
    std::vector<std::string> out;
    std::size_t p = 12;
    for (std::uint64_t i = 0; i < n; ++i) {
      const auto len = get_at<std::uint64_t>(k->raw, p);
      out.push_back(k->raw.substr(p + 8, len));
      p += 8 + len;
    }
    return out;
  }
  void erase_kv(const std::string& key) { kvs.erase(kvs.begin() + std::ptrdiff_t(kv_index(key))); }

  /// Byte offset of tensor `name`'s data within the data section.
  std::uint64_t data_offset(const std::string& name) { return tensor(name).offset; }

  std::string serialize(layout* lay = nullptr) const {
    layout l;
    std::string s = "GGUF";
    put(s, version);
    put<std::uint64_t>(s, n_tensors_override.value_or(tensors.size()));
    put<std::uint64_t>(s, n_kv_override.value_or(kvs.size()));
    for (auto& k : kvs) {
      l.kv_pos.push_back(s.size());
      s += gstr(k.key);
      put(s, k.type);
      l.kv_val_pos.push_back(s.size());
      s += k.raw;
    }
    for (auto& t : tensors) {
      l.tinfo_pos.push_back(s.size());
      s += gstr(t.name);
      put<std::uint32_t>(s, std::uint32_t(t.ne.size()));
      for (auto e : t.ne) put(s, e);
      put(s, t.type);
      put(s, t.offset);
    }
    s.append((alignment - s.size() % alignment) % alignment, '\0');
    l.data_begin = s.size();
    s += data;
    if (lay) *lay = l;
    return s;
  }
};

/// Size in bytes of a GGUF value of type `t` starting at `pos` (valid files only).
std::size_t value_size(const std::string& b, std::size_t pos, std::uint32_t t) {
  switch (t) {
    case 0: case 1: case 7: return 1;
    case 2: case 3: return 2;
    case 4: case 5: case 6: return 4;
    case 10: case 11: case 12: return 8;
    case t_string: return 8 + get_at<std::uint64_t>(b, pos);
    case t_array: {
      const auto et = get_at<std::uint32_t>(b, pos);
      const auto n = get_at<std::uint64_t>(b, pos + 4);
      std::size_t p = pos + 12;
      for (std::uint64_t i = 0; i < n; ++i) p += value_size(b, p, et);
      return p - pos;
    }
    default: FAIL("unexpected GGUF value type " << t); return 0;
  }
}

gguf_image parse_image(const std::string& b) {
  gguf_image img;
  REQUIRE(b.substr(0, 4) == "GGUF");
  img.version = get_at<std::uint32_t>(b, 4);
  const auto nt = get_at<std::uint64_t>(b, 8), nkv = get_at<std::uint64_t>(b, 16);
  std::size_t p = 24;
  auto rstr = [&] {
    const auto n = get_at<std::uint64_t>(b, p);
    std::string s = b.substr(p + 8, n);
    p += 8 + n;
    return s;
  };
  for (std::uint64_t i = 0; i < nkv; ++i) {
    kv_entry k;
    k.key = rstr();
    k.type = get_at<std::uint32_t>(b, p);
    p += 4;
    const auto n = value_size(b, p, k.type);
    k.raw = b.substr(p, n);
    p += n;
    if (k.key == "general.alignment") img.alignment = get_at<std::uint32_t>(k.raw, 0);
    img.kvs.push_back(std::move(k));
  }
  for (std::uint64_t i = 0; i < nt; ++i) {
    tensor_entry t;
    t.name = rstr();
    const auto nd = get_at<std::uint32_t>(b, p);
    p += 4;
    for (std::uint32_t d = 0; d < nd; ++d, p += 8) t.ne.push_back(get_at<std::uint64_t>(b, p));
    t.type = get_at<std::uint32_t>(b, p);
    t.offset = get_at<std::uint64_t>(b, p + 4);
    p += 12;
    img.tensors.push_back(std::move(t));
  }
  p = (p + img.alignment - 1) / img.alignment * img.alignment;
  img.data = b.substr(p);
  return img;
}

const std::string& tiny_bytes() {
  static const std::string b = slurp(tiny_path);
  return b;
}
const gguf_image& tiny_image() {
  static const gguf_image img = parse_image(tiny_bytes());
  return img;
}

// ---------------------------------------------------------------------------------------------
// Scratch files and load helpers
// ---------------------------------------------------------------------------------------------

struct scratch_dir {
  fs::path dir;
  scratch_dir() {
    dir = fs::temp_directory_path() / ("gyolo_test_weights_file_" + std::to_string(::getpid()));
    fs::create_directories(dir);
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::string write_tmp(const std::string& bytes, const std::string& name = "case.gguf") {
  static scratch_dir sd;
  const auto p = (sd.dir / name).string();
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  f.close();
  REQUIRE(f.good());
  return p;
}

constexpr const char* loaded_ok = "<loaded>";

/// Loads `path` as variant V; returns the gyolo::error message, or loaded_ok. Any other exception
/// escapes and fails the test.
template <class V = gyolo_tiny> std::string load_result(const std::string& path) {
  try {
    auto m = model<cpu, V>::load(path);
    (void)m;
    return loaded_ok;
  } catch (const gyolo::error& e) {
    return e.what();
  }
}

/// Writes `bytes`, loads them, requires a one-line gyolo::error containing every `parts` entry.
template <class V = gyolo_tiny>
std::string expect_error(const std::string& bytes, std::initializer_list<std::string> parts) {
  const auto msg = load_result<V>(write_tmp(bytes));
  INFO("message: " << msg);
  CHECK(msg != loaded_ok);
  CHECK(msg.find('\n') == std::string::npos);
  CHECK_THAT(msg, Contains("weights file '"));
  for (const auto& p : parts) CHECK_THAT(msg, Contains(p));
  return msg;
}
template <class V = gyolo_tiny> std::string expect_error(const gguf_image& img, std::initializer_list<std::string> parts) {
  return expect_error<V>(img.serialize(), parts);
}

void patch_yaml(gguf_image& img, const std::function<void(nlohmann::json&)>& edit) {
  auto y = nlohmann::json::parse(img.get_string("gyolo.yaml"));
  edit(y);
  img.set_string("gyolo.yaml", y.dump());
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("weights file: the test's GGUF writer reproduces tiny.gguf and it loads", "[weights_file]") {
  const auto& img = tiny_image();
  REQUIRE(img.tensors.size() == 1362);
  REQUIRE(img.serialize() == tiny_bytes());
  CHECK(load_result(tiny_path) == loaded_ok);
}

TEST_CASE("weights file: truncation at many offsets is a clean error", "[weights_file]") {
  const auto& b = tiny_bytes();
  layout lay;
  const auto& img = tiny_image();
  img.serialize(&lay);
  std::uint64_t data_end = 0;  // end of the last tensor's bytes (trailing padding is optional)
  for (auto& t : img.tensors) data_end = std::max(data_end, lay.data_begin + t.offset + t.nbytes());
  std::vector<std::size_t> cuts;
  for (std::size_t c = 0; c < lay.data_begin + 97; c += 97) cuts.push_back(c);  // whole header
  for (std::size_t c : {std::size_t(1), std::size_t(4), std::size_t(8), std::size_t(23), std::size_t(24),
                        std::size_t(25), lay.data_begin - 1, lay.data_begin, lay.data_begin + 1})
    cuts.push_back(c);
  for (int i = 1; i <= 8; ++i) cuts.push_back(lay.data_begin + (data_end - lay.data_begin) * std::size_t(i) / 9);
  cuts.push_back(data_end - 1);
  INFO("header+infos are " << lay.data_begin << " bytes, " << cuts.size() << " cuts");
  for (auto c : cuts) {
    const auto msg = load_result(write_tmp(b.substr(0, c), "trunc.gguf"));
    INFO("cut at " << c << ": " << msg);
    REQUIRE(msg != loaded_ok);
    REQUIRE(msg.find('\n') == std::string::npos);
    const bool named = msg.find("truncated") != std::string::npos || msg.find("too small") != std::string::npos ||
                       msg.find("exceeds the file") != std::string::npos;
    REQUIRE(named);
  }
}

TEST_CASE("weights file: header errors", "[weights_file]") {
  auto b = tiny_bytes();
  SECTION("bad magic") {
    b[0] = 'X';
    expect_error(b, {"bad magic"});
  }
  SECTION("empty file") { expect_error(std::string(), {"too small"}); }
  SECTION("missing file") {
    const auto msg = load_result("/nonexistent/dir/x.gguf");
    CHECK_THAT(msg, Contains("cannot open"));
  }
  SECTION("version 2") {
    patch<std::uint32_t>(b, 4, 2);
    expect_error(b, {"unsupported GGUF version 2"});
  }
  SECTION("version 4") {
    patch<std::uint32_t>(b, 4, 4);
    expect_error(b, {"unsupported GGUF version 4"});
  }
  SECTION("absurd tensor count") {
    patch<std::uint64_t>(b, 8, std::uint64_t(1) << 60);
    expect_error(b, {"tensor count 1152921504606846976"});
  }
  SECTION("absurd metadata count") {
    patch<std::uint64_t>(b, 16, std::uint64_t(1) << 60);
    expect_error(b, {"metadata count 1152921504606846976"});
  }
  SECTION("all-ones counts") {
    patch<std::uint64_t>(b, 8, ~std::uint64_t(0));
    patch<std::uint64_t>(b, 16, ~std::uint64_t(0));
    expect_error(b, {"impossible"});
  }
  SECTION("tensor count one too many") {
    patch<std::uint64_t>(b, 8, get_at<std::uint64_t>(b, 8) + 1);
    expect_error(b, {"tensor #1362"});  // reads padding as a 0-length name
  }
}

TEST_CASE("weights file: absurd string and array lengths", "[weights_file]") {
  auto img = tiny_image();
  layout lay;
  auto b = img.serialize(&lay);
  SECTION("metadata key length 2^60") {
    patch<std::uint64_t>(b, lay.kv_pos[0], std::uint64_t(1) << 60);
    expect_error(b, {"metadata key"});
  }
  SECTION("metadata key length 2^64-1") {
    patch<std::uint64_t>(b, lay.kv_pos[3], ~std::uint64_t(0));
    expect_error(b, {"metadata key"});
  }
  SECTION("string value length 2^60") {
    patch<std::uint64_t>(b, lay.kv_val_pos[img.kv_index("gyolo.yaml")], std::uint64_t(1) << 60);
    expect_error(b, {"gyolo.yaml"});
  }
  SECTION("tensor name length 2^60") {
    patch<std::uint64_t>(b, lay.tinfo_pos[7], std::uint64_t(1) << 60);
    expect_error(b, {"tensor name"});
  }
  SECTION("string array length 2^60") {
    patch<std::uint64_t>(b, lay.kv_val_pos[img.kv_index("gyolo.names")] + 4, std::uint64_t(1) << 60);
    expect_error(b, {"gyolo.names", "array length 1152921504606846976"});
  }
  SECTION("number array length 2^60") {
    patch<std::uint64_t>(b, lay.kv_val_pos[img.kv_index("gyolo.stride")] + 4, std::uint64_t(1) << 60);
    expect_error(b, {"gyolo.stride", "array length 1152921504606846976"});
  }
  SECTION("string inside an array with length 2^60") {
    patch<std::uint64_t>(b, lay.kv_val_pos[img.kv_index("gyolo.vocab")] + 12, std::uint64_t(1) << 60);
    expect_error(b, {"gyolo.vocab"});
  }
  SECTION("array of arrays") {
    patch<std::uint32_t>(b, lay.kv_val_pos[img.kv_index("gyolo.stride")], t_array);
    expect_error(b, {"gyolo.stride", "unsupported array element type 9"});
  }
  SECTION("unknown value type") {
    patch<std::uint32_t>(b, lay.kv_val_pos[img.kv_index("gyolo.nc")] - 4, 13);
    expect_error(b, {"gyolo.nc", "unknown value type 13"});
  }
  SECTION("invalid bool") {
    img.set_raw("gyolo.flag", 7, std::string(1, '\x02'));
    expect_error(img, {"gyolo.flag", "bool"});
  }
  SECTION("duplicate metadata key") {
    img.kvs.push_back(img.kvs[0]);
    expect_error(img, {"duplicate metadata key 'general.architecture'"});
  }
  SECTION("bad alignment") {
    img.set_u32("general.alignment", 48);
    expect_error(img, {"general.alignment"});
  }
}

TEST_CASE("weights file: tensor info errors", "[weights_file]") {
  auto img = tiny_image();
  const std::string w = "model.2.conv.weight";
  SECTION("n_dims 0") {
    img.tensor(w).ne.clear();
    expect_error(img, {w, "0 dimensions"});
  }
  SECTION("n_dims 7") {
    img.tensor(w).ne = {3, 3, 8, 16, 1, 1, 1};
    expect_error(img, {w, "7 dimensions"});
  }
  SECTION("dimension 0") {
    img.tensor(w).ne[1] = 0;
    expect_error(img, {w, "invalid dimension 0"});
  }
  SECTION("dimension 2^40") {
    img.tensor(w).ne[3] = std::uint64_t(1) << 40;
    expect_error(img, {w, "invalid dimension 1099511627776"});
  }
  SECTION("dimensions whose product overflows 64 bits") {
    // 2^32 * 2^32 wraps to 0 in u64: the reader must not accept this as a 0-byte tensor.
    img.tensor(w).ne = {std::uint64_t(1) << 32, std::uint64_t(1) << 32, 1, 1};
    expect_error(img, {w, "absurdly large"});
  }
  SECTION("huge but in-range tensor beyond the file") {
    img.tensor(w).ne = {std::uint64_t(1) << 16, std::uint64_t(1) << 16, 4, 1};
    expect_error(img, {w, "beyond the end of the file"});
  }
  SECTION("unknown tensor type (Q4_0)") {
    img.tensor(w).type = 2;
    expect_error(img, {w, "unsupported type 2"});
  }
  SECTION("tensor type 2^31") {
    img.tensor(w).type = 0x80000000u;
    expect_error(img, {w, "unsupported type"});
  }
  SECTION("misaligned offset") {
    img.tensor(w).offset += 2;
    expect_error(img, {w, "not aligned"});
  }
  SECTION("offset past the end") {
    img.tensor(w).offset = (img.data.size() + 64) / 32 * 32;
    expect_error(img, {w, "beyond the end of the file"});
  }
  SECTION("offset 2^63 (overflow of offset + size)") {
    img.tensor(w).offset = std::uint64_t(1) << 63;
    expect_error(img, {w, "beyond the end of the file"});
  }
  SECTION("last tensor runs one byte past the end") {
    auto& last = img.tensors.back();
    img.data.resize(last.offset + last.nbytes() - 1);
    expect_error(img, {last.name, "beyond the end of the file"});
  }
  SECTION("empty tensor name") {
    img.tensors[5].name.clear();
    expect_error(img, {"tensor #5 has an invalid name"});
  }
  SECTION("duplicate tensor name") {
    img.tensors[1].name = img.tensors[0].name;
    expect_error(img, {"duplicate tensor '" + img.tensors[0].name + "'"});
  }
}

TEST_CASE("weights file: overlapping but in-bounds tensor data is accepted", "[weights_file]") {
  // Documented behaviour: GGUF does not forbid two infos pointing at the same bytes, and reading
  // them is safe (bounds are checked per tensor), so the reader accepts it and both tensors see the
  // same values. Here model.1.bn.bias is aliased onto model.1.bn.weight (same shape and type).
  auto img = tiny_image();
  auto& wt = img.tensor("model.1.bn.weight");
  auto& bs = img.tensor("model.1.bn.bias");
  REQUIRE(wt.ne == bs.ne);
  bs.offset = wt.offset;
  const auto path = write_tmp(img.serialize());
  gguf::file f(path);
  CHECK(f.read_f32(*f.find("model.1.bn.bias")) == f.read_f32(*f.find("model.1.bn.weight")));
  CHECK(load_result(path) == loaded_ok);
}

TEST_CASE("weights file: model-level errors", "[weights_file]") {
  auto img = tiny_image();
  SECTION("missing required tensor") {
    const std::string n = "model.17.cv4.conv.weight";
    img.tensors.erase(img.tensors.begin() + std::ptrdiff_t(img.tensor_index(n)));
    expect_error(img, {"tensor '" + n + "' is missing", "expected shape [16, 64, 1, 1]"});
  }
  SECTION("wrong shape") {
    const std::string n = "model.2.conv.weight";
    img.tensor(n).ne = {1, 1, 8, 16};  // [16, 8, 3, 3] -> [16, 8, 1, 1]: still in bounds
    expect_error(img, {"tensor '" + n + "'", "expected shape [16, 8, 3, 3]", "found [16, 8, 1, 1]"});
  }
  SECTION("transposed shape") {
    const std::string n = "model.2.conv.weight";
    img.tensor(n).ne = {3, 3, 16, 8};
    expect_error(img, {"tensor '" + n + "'", "expected shape [16, 8, 3, 3]", "found [8, 16, 3, 3]"});
  }
  SECTION("NaN in a weight") {
    const std::string n = "model.3.cv1.conv.weight";
    REQUIRE(img.tensor(n).type == 1);
    patch<std::uint16_t>(img.data, img.data_offset(n) + 6, 0x7e00);
    expect_error(img, {"tensor '" + n + "' contains NaN or Inf"});
  }
  SECTION("Inf in a BN statistic") {
    const std::string n = "model.5.cv1.bn.running_var";
    patch<std::uint16_t>(img.data, img.data_offset(n), 0xfc00);
    expect_error(img, {"tensor '" + n + "' contains NaN or Inf"});
  }
  SECTION("general.architecture wrong") {
    img.set_string("general.architecture", "llama");
    expect_error(img, {"general.architecture is not 'gyolo'"});
  }
  SECTION("general.architecture missing") {
    img.erase_kv("general.architecture");
    expect_error(img, {"general.architecture is not 'gyolo'"});
  }
  SECTION("general.architecture not a string") {
    img.set_u32("general.architecture", 1);
    expect_error(img, {"general.architecture", "not a string"});
  }
  SECTION("format_version 2") {
    img.set_u32("gyolo.format_version", 2);
    expect_error(img, {"unsupported gyolo.format_version 2"});
  }
  SECTION("format_version missing") {
    img.erase_kv("gyolo.format_version");
    expect_error(img, {"gyolo.format_version", "missing"});
  }
  SECTION("gyolo.yaml not JSON") {
    img.set_string("gyolo.yaml", "nc: 80\nbackbone: [");
    expect_error(img, {"gyolo.yaml is not valid JSON"});
  }
  SECTION("gyolo.yaml missing") {
    img.erase_kv("gyolo.yaml");
    expect_error(img, {"gyolo.yaml", "missing"});
  }
  SECTION("gyolo.yaml JSON of the wrong shape") {
    img.set_string("gyolo.yaml", "[1, 2, 3]");
    expect_error(img, {"model yaml is malformed"});
  }
  SECTION("gyolo.yaml with a changed channel count") {
    patch_yaml(img, [](nlohmann::json& y) { y["backbone"][5][3][0] = 128; });  // RepNCSPELAN4 64 -> 128
    expect_error(img, {"variant mismatch with compiled variant 'gyolo-tiny'", "layer 5", "(64,32,16,1)",
                       "(128,32,16,1)"});
  }
  SECTION("gyolo.yaml with a changed width_multiple") {
    patch_yaml(img, [](nlohmann::json& y) { y["width_multiple"] = 2.0; });
    expect_error(img, {"variant mismatch", "nm: compiled variant has 32, file has 64"});
  }
  SECTION("gyolo.yaml with a changed module type") {
    patch_yaml(img, [](nlohmann::json& y) { y["backbone"][4][2] = "Conv"; });
    expect_error(img, {"model yaml layer 4 is Conv, gyolo expects ADown"});
  }
  SECTION("gyolo.yaml with changed wiring") {
    patch_yaml(img, [](nlohmann::json& y) { y["head"][3][0] = nlohmann::json::array({-1, 6}); });
    expect_error(img, {"model yaml layer 13 reads from [-1,6], gyolo expects [-1,7]"});
  }
  SECTION("gyolo.yaml with a layer removed") {
    patch_yaml(img, [](nlohmann::json& y) { y["head"].erase(y["head"].size() - 1); });
    expect_error(img, {"model yaml has 57 layers"});
  }
  SECTION("gyolo.yaml with nc changed") {
    patch_yaml(img, [](nlohmann::json& y) { y["nc"] = 79; });
    expect_error(img, {"variant mismatch", "nc: compiled variant has 80, file has 79"});
  }
  SECTION("class names count wrong") {
    auto names = img.get_strings("gyolo.names");
    REQUIRE(names.size() == 80);
    names.pop_back();
    img.set_strings("gyolo.names", names);
    expect_error(img, {"gyolo.names has 79 entries, expected nc = 80"});
  }
  SECTION("class names not strings") {
    auto* k = img.find_kv("gyolo.stride");
    img.set_raw("gyolo.names", k->type, k->raw);
    expect_error(img, {"gyolo.names", "not an array of strings"});
  }
  SECTION("message names the producing converter") {
    img.set_u32("gyolo.format_version", 7);
    expect_error(img, {"(file made by gyolo converter 0.1.0)"});
  }
}

TEST_CASE("weights file: tiny.gguf loaded as the full gyolo variant is a variant mismatch", "[weights_file]") {
  const auto msg = load_result<gyolo_c>(tiny_path);
  INFO(msg);
  CHECK_THAT(msg, Contains("variant mismatch with compiled variant 'gyolo'"));
  CHECK_THAT(msg, Contains("layer 1: compiled variant has 64, file has 8"));
}

TEST_CASE("weights file: deterministic random corruption of the header never crashes", "[weights_file]") {
  // Mutations are applied in place to one scratch copy and undone afterwards, so no 4 MB rewrite per
  // case. A mutation may leave a loadable file (e.g. a changed class name); both outcomes are fine,
  // anything other than gyolo::error is not.
  const auto& b = tiny_bytes();
  layout lay;
  tiny_image().serialize(&lay);
  const auto path = write_tmp(b, "flip.gguf");
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  REQUIRE(f);
  std::mt19937_64 rng(20240607);
  int loaded = 0, rejected = 0;
  for (int it = 0; it < 300; ++it) {
    // Half the mutations hit the first 4 KiB (header and KV pairs), half anywhere in the infos.
    const std::size_t region = it % 2 ? lay.data_begin : std::min<std::size_t>(4096, lay.data_begin);
    const std::size_t pos = std::size_t(rng() % region);
    const int kind = int(rng() % 4);
    std::size_t len = kind == 3 ? std::min<std::size_t>(8, b.size() - pos) : 1;
    std::string bytes = b.substr(pos, len);
    switch (kind) {
      case 0: bytes[0] = char(bytes[0] ^ char(1u << (rng() % 8))); break;  // one bit
      case 1: bytes[0] = char(rng() & 0xff); break;                         // one byte
      case 2: bytes[0] = char(0xff); break;                                 // saturate
      default: for (auto& c : bytes) c = char(0xff); break;                 // 8 bytes of 0xff
    }
    f.seekp(std::streamoff(pos));
    f.write(bytes.data(), std::streamsize(len));
    f.flush();
    REQUIRE(f.good());
    std::string outcome;
    try {
      outcome = load_result(path);
    } catch (const std::exception& e) {
      FAIL("mutation " << it << " (kind " << kind << " at " << pos << ") threw a non-gyolo exception: " << e.what());
    } catch (...) {
      FAIL("mutation " << it << " (kind " << kind << " at " << pos << ") threw a non-std exception");
    }
    if (outcome == loaded_ok) {
      ++loaded;
    } else {
      ++rejected;
      INFO("mutation " << it << ": " << outcome);
      REQUIRE(outcome.find('\n') == std::string::npos);
    }
    f.seekp(std::streamoff(pos));
    f.write(b.data() + pos, std::streamsize(len));
    f.flush();
    REQUIRE(f.good());
  }
  INFO(loaded << " loaded, " << rejected << " rejected");
  CHECK(rejected > 100);
  CHECK(loaded + rejected == 300);
}

}  // namespace test_weights_file
