// The GGUF writer (gguf_write.hpp) and nn::save_tensors: what the library writes is read back
// bit-exactly by gguf::file (and by convert.py's read_gguf), a file made by convert.py goes
// through the writer byte for byte, a train-mode model survives save + load unchanged, and
// write() is atomic.
#include <catch2/catch.hpp>
#include <set>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <unistd.h>
#include <vector>

#include "gyolo/gyolo.hpp"
#include "gyolo/io/gguf_write.hpp"
#include "gyolo/nn/module.hpp"
#include "gyolo/nn/save.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_gguf_write {

using namespace gyolo;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

const std::string fixtures = GYOLO_FIXTURES_DIR;
const std::string tiny_path = fixtures + "/tiny/tiny.gguf";
const std::string train_path = fixtures + "/train/weights.gguf";

struct scratch_dir {
  fs::path dir;
  scratch_dir() {
    dir = fs::temp_directory_path() / ("gyolo_test_gguf_write_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }
};
scratch_dir& scratch() {
  static scratch_dir sd;
  return sd;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::vector<std::string> dir_entries(const fs::path& d) {
  std::vector<std::string> r;
  for (const auto& e : fs::directory_iterator(d)) r.push_back(e.path().filename().string());
  std::sort(r.begin(), r.end());
  return r;
}

template <class T> std::uint64_t bits_of(T v) {
  std::uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
float float_from_bits(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

/// Metadata values equal in type and bits (doubles compared by bits, so NaN == NaN).
void require_same_value(const std::string& key, const gguf::value& a, const gguf::value& b) {
  INFO("metadata key " << key);
  REQUIRE(a.type == b.type);
  REQUIRE(a.scalar.index() == b.scalar.index());
  if (a.type == gguf::vtype::array) {
    REQUIRE(a.elem_type == b.elem_type);
    REQUIRE(a.strings == b.strings);
    REQUIRE(a.numbers.size() == b.numbers.size());
    for (std::size_t i = 0; i < a.numbers.size(); ++i) REQUIRE(bits_of(a.numbers[i]) == bits_of(b.numbers[i]));
  } else if (auto p = std::get_if<double>(&a.scalar)) {
    REQUIRE(bits_of(*p) == bits_of(std::get<double>(b.scalar)));
  } else {
    REQUIRE(a.scalar == b.scalar);
  }
}

void require_same_metadata(const gguf::file& a, const gguf::file& b, const std::set<std::string>& ignore = {}) {
  auto count = [&](const gguf::file& f) {
    std::size_t n = 0;
    for (const auto& kv : f.metadata()) n += ignore.count(kv.first) == 0;
    return n;
  };
  REQUIRE(count(a) == count(b));
  for (const auto& [k, v] : a.metadata()) {
    if (ignore.count(k)) continue;
    INFO(k);
    REQUIRE(b.has(k));
    require_same_value(k, v, b.get(k));
  }
}

/// Same tensor names, order, types, shapes, offsets and bytes (fp16 compared through the exact
/// half -> float conversion, which is injective up to NaN payloads; bits checked via float_to_half).
void require_same_tensors(const gguf::file& a, const gguf::file& b) {
  REQUIRE(a.tensors().size() == b.tensors().size());
  for (std::size_t i = 0; i < a.tensors().size(); ++i) {
    const auto& ta = a.tensors()[i];
    const auto& tb = b.tensors()[i];
    INFO(ta.name);
    REQUIRE(ta.name == tb.name);
    REQUIRE(ta.type == tb.type);
    REQUIRE(ta.ne == tb.ne);
    REQUIRE(ta.offset == tb.offset);
    REQUIRE(ta.nbytes == tb.nbytes);
    const auto va = a.read_f32(ta), vb = b.read_f32(tb);
    REQUIRE(va.size() == vb.size());
    REQUIRE(std::memcmp(va.data(), vb.data(), va.size() * 4) == 0);
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const gyolo::error& e) {
    return e.what();
  }
  return "<no error>";
}

bool python_with_numpy() {
  static const int ok = [] {
    if (!fs::exists("/usr/bin/python3")) return 0;
    return std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0 ? 1 : 0;
  }();
  return ok == 1;
}

/// Runs a Python snippet (with convert.py importable as `convert`) on `arg`; returns its exit status.
int run_python(const std::string& code, const std::string& arg) {
  const std::string script = scratch().path("check.py");
  {
    std::ofstream f(script);
    f << "import sys\nsys.path.insert(0, " << '"' << fixtures << "/../../weights_tools" << '"' << ")\n"
      << "import convert\n" << code;
  }
  const std::string cmd = "/usr/bin/python3 '" + script + "' '" + arg + "'";
  return std::system(cmd.c_str());
}

// A file with every metadata type and a few tensors (test (a)).
const float nan_payload = float_from_bits(0x7fc12345u);
const std::vector<float> special_f32 = {0.1f, -0.0f, 1e-45f, float_from_bits(0x00400000u), -3.4e38f,
                                        std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                                        nan_payload, 1.0f};
const std::string weird_string = std::string("caf\xc3\xa9 \xe2\x9c\x93 with\0nul", 18);

std::vector<float> ramp(std::size_t n, float scale) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * float(int(i) - int(n / 2)) + 0.25f;
  return v;
}

gguf::writer every_type_writer() {
  gguf::writer w;
  w.set_string("general.architecture", "gyolo");
  w.set_u32("general.alignment", 32);
  w.set_u8("t.u8", 250);
  w.set_i8("t.i8", -100);
  w.set_u16("t.u16", 65000);
  w.set_i16("t.i16", -30000);
  w.set_u32("t.u32", 1);  // replaced below: keeps its position
  w.set_i32("t.i32", -2000000000);
  w.set_u64("t.u64", (std::uint64_t(1) << 63) + 12345);
  w.set_i64("t.i64", -(std::int64_t(1) << 62) - 7);
  w.set_f32("t.f32", 0.1f);
  w.set_f32("t.f32.nan", nan_payload);
  w.set_f32("t.f32.neg0", -0.0f);
  w.set_f64("t.f64", 0.1);
  w.set_bool("t.bool1", true);
  w.set_bool("t.bool0", false);
  w.set_string("t.string", weird_string);
  w.set_string("t.empty", "");
  w.set_strings("t.strings", {"person", "", "caf\xc3\xa9", std::string(300, 'x')});
  w.set_strings("t.strings.empty", {});
  w.set_f32s("t.f32s", special_f32);
  w.set_f64s("t.f64s", {0.1, -0.0, 1e300});
  w.set_u32s("t.u32s", {0, 1, 4294967295u});
  w.set_i32s("t.i32s", {-2147483647 - 1, 0, 2147483647});
  w.set_u64s("t.u64s", {0, std::uint64_t(1) << 53});
  w.set_i64s("t.i64s", {-(std::int64_t(1) << 53), 5});
  {  // the generic setter: array types without a dedicated setter
    gguf::value v;
    v.type = gguf::vtype::array;
    v.elem_type = gguf::vtype::i8;
    v.numbers = {-128, 0, 127};
    w.set("t.i8s", v);
    v.elem_type = gguf::vtype::u16;
    v.numbers = {0, 65535};
    w.set("t.u16s", v);
    v.elem_type = gguf::vtype::boolean;
    v.numbers = {1, 0, 1};
    w.set("t.bools", v);
  }
  w.set_u32("t.u32", 4000000000u);
  w.add_tensor("w.1d", {5}, ramp(5, 0.5f));
  w.add_tensor("w.2d", {3, 7}, ramp(21, 0.125f));
  w.add_tensor("w.special", {9}, special_f32);
  w.add_tensor_f16("w.3d.f16", {2, 3, 4}, ramp(24, 0.5f));
  w.add_tensor("w.4d", {4, 3, 3, 3}, ramp(108, 1.0f / 64));
  w.add_tensor("w.0d", {}, std::vector<float>{42.0f});
  {
    std::vector<std::uint16_t> all(65536);
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = std::uint16_t(i);
    w.add_tensor_f16_bits("w.f16.all_bits", {256, 256}, all.data());
  }
  return w;
}

}  // namespace

TEST_CASE("gguf writer: every metadata type and tensors read back bit-exactly", "[gguf_write]") {
  const auto path = scratch().path("every_type.gguf");
  auto w = every_type_writer();
  w.write(path);
  REQUIRE(fs::file_size(path) == w.file_size());
  REQUIRE(fs::file_size(path) % 32 == 0);
  const auto bytes = slurp(path);
  std::size_t crc_at = 0;
  std::string head = w.header(&crc_at);
  REQUIRE(crc_at > 0);
  head.replace(crc_at, 4, bytes, crc_at, 4);  // the checksum's value is computed by write()
  REQUIRE(bytes.compare(0, head.size(), head) == 0);
  CHECK(w.keys()[6] == "t.u32");  // replaced in place

  gguf::file f(path);
  using gguf::vtype;
  auto scalar_type = [&](const char* k) { return f.get(k).type; };
  CHECK(f.metadata().size() == w.kv_count() + 1);  // + gyolo.crc32
  CHECK(f.has_checksum());
  CHECK(f.get_string("general.architecture") == "gyolo");
  CHECK(f.get_uint("general.alignment") == 32);
  CHECK(scalar_type("t.u8") == vtype::u8);
  CHECK(f.get_uint("t.u8") == 250);
  CHECK(scalar_type("t.i8") == vtype::i8);
  CHECK(std::get<std::int64_t>(f.get("t.i8").scalar) == -100);
  CHECK(scalar_type("t.u16") == vtype::u16);
  CHECK(f.get_uint("t.u16") == 65000);
  CHECK(scalar_type("t.i16") == vtype::i16);
  CHECK(std::get<std::int64_t>(f.get("t.i16").scalar) == -30000);
  CHECK(scalar_type("t.u32") == vtype::u32);
  CHECK(f.get_uint("t.u32") == 4000000000u);
  CHECK(scalar_type("t.i32") == vtype::i32);
  CHECK(std::get<std::int64_t>(f.get("t.i32").scalar) == -2000000000);
  CHECK(scalar_type("t.u64") == vtype::u64);
  CHECK(f.get_uint("t.u64") == (std::uint64_t(1) << 63) + 12345);
  CHECK(scalar_type("t.i64") == vtype::i64);
  CHECK(std::get<std::int64_t>(f.get("t.i64").scalar) == -(std::int64_t(1) << 62) - 7);
  CHECK(scalar_type("t.f32") == vtype::f32);
  CHECK(bits_of(float(std::get<double>(f.get("t.f32").scalar))) == bits_of(0.1f));
  CHECK(bits_of(float(std::get<double>(f.get("t.f32.nan").scalar))) == 0x7fc12345u);
  CHECK(bits_of(float(std::get<double>(f.get("t.f32.neg0").scalar))) == 0x80000000u);
  CHECK(scalar_type("t.f64") == vtype::f64);
  CHECK(bits_of(std::get<double>(f.get("t.f64").scalar)) == bits_of(0.1));
  CHECK(scalar_type("t.bool1") == vtype::boolean);
  CHECK(std::get<bool>(f.get("t.bool1").scalar) == true);
  CHECK(std::get<bool>(f.get("t.bool0").scalar) == false);
  CHECK(f.get_string("t.string") == weird_string);
  CHECK(f.get_string("t.empty").empty());
  CHECK(f.get_strings("t.strings") == std::vector<std::string>{"person", "", "caf\xc3\xa9", std::string(300, 'x')});
  CHECK(f.get_strings("t.strings.empty").empty());
  {
    const auto& v = f.get("t.f32s");
    REQUIRE(v.elem_type == vtype::f32);
    REQUIRE(v.numbers.size() == special_f32.size());
    for (std::size_t i = 0; i < special_f32.size(); ++i) CHECK(bits_of(float(v.numbers[i])) == bits_of(special_f32[i]));
  }
  {
    const auto& v = f.get("t.f64s");
    REQUIRE(v.elem_type == vtype::f64);
    REQUIRE(v.numbers.size() == 3);
    CHECK(bits_of(v.numbers[0]) == bits_of(0.1));
    CHECK(bits_of(v.numbers[1]) == bits_of(-0.0));
    CHECK(v.numbers[2] == 1e300);
  }
  auto numbers = [&](const char* k, vtype t) {
    const auto& v = f.get(k);
    CHECK(v.type == vtype::array);
    CHECK(v.elem_type == t);
    return v.numbers;
  };
  CHECK(numbers("t.u32s", vtype::u32) == std::vector<double>{0, 1, 4294967295.0});
  CHECK(numbers("t.i32s", vtype::i32) == std::vector<double>{-2147483648.0, 0, 2147483647});
  CHECK(numbers("t.u64s", vtype::u64) == std::vector<double>{0, 9007199254740992.0});
  CHECK(numbers("t.i64s", vtype::i64) == std::vector<double>{-9007199254740992.0, 5});
  CHECK(numbers("t.i8s", vtype::i8) == std::vector<double>{-128, 0, 127});
  CHECK(numbers("t.u16s", vtype::u16) == std::vector<double>{0, 65535});
  CHECK(numbers("t.bools", vtype::boolean) == std::vector<double>{1, 0, 1});

  // tensors: order, PyTorch shapes, types, aligned offsets, bits
  const std::vector<std::pair<std::string, dims>> want = {
      {"w.1d", {5}}, {"w.2d", {3, 7}}, {"w.special", {9}}, {"w.3d.f16", {2, 3, 4}}, {"w.4d", {4, 3, 3, 3}}, {"w.0d", {1}},
      {"w.f16.all_bits", {256, 256}}};
  REQUIRE(f.tensors().size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    const auto& t = f.tensors()[i];
    INFO(t.name);
    CHECK(t.name == want[i].first);
    CHECK(t.torch_shape() == want[i].second);
    CHECK(t.offset % 32 == 0);
  }
  CHECK(f.find("w.4d")->ne == std::vector<std::int64_t>{3, 3, 3, 4});  // ggml order
  auto same_bits = [&](const std::string& name, const std::vector<float>& v) {
    INFO(name);
    const auto* t = f.find(name);
    REQUIRE(t);
    CHECK(t->type == gguf::ttype::f32);
    const auto got = f.read_f32(*t);
    REQUIRE(got.size() == v.size());
    CHECK(std::memcmp(got.data(), v.data(), v.size() * 4) == 0);
  };
  same_bits("w.1d", ramp(5, 0.5f));
  same_bits("w.2d", ramp(21, 0.125f));
  same_bits("w.special", special_f32);
  same_bits("w.4d", ramp(108, 1.0f / 64));
  same_bits("w.0d", {42.0f});
  {
    const auto* t = f.find("w.3d.f16");
    REQUIRE(t->type == gguf::ttype::f16);
    const auto got = f.read_f32(*t), src = ramp(24, 0.5f);  // exactly representable in fp16
    CHECK(std::memcmp(got.data(), src.data(), 24 * 4) == 0);
  }
  {
    const auto* t = f.find("w.f16.all_bits");
    REQUIRE(t->type == gguf::ttype::f16);
    REQUIRE(t->nbytes == 65536 * 2);
    const auto got = f.read_f32(*t);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i) bad += gguf::float_to_half(got[i]) != std::uint16_t(i);
    CHECK(bad == 0);  // every half bit pattern survives, and float_to_half inverts half_to_float
  }

  // A second write gives the same bytes.
  const auto path2 = scratch().path("every_type2.gguf");
  every_type_writer().write(path2);
  CHECK(slurp(path2) == bytes);

  if (python_with_numpy()) {
    // convert.py's reader agrees (key order, types as Python values, tensors as numpy arrays).
    const int rc = run_python(R"PY(
import math, struct
import numpy as np
kv, t = convert.read_gguf(sys.argv[1])
f32 = lambda x: struct.unpack('<I', struct.pack('<f', x))[0]
keys = list(kv)
assert keys[:3] == ['general.architecture', 'general.alignment', 't.u8'], keys
assert keys[6] == 't.u32', keys
assert kv['t.u8'] == 250 and kv['t.i8'] == -100 and kv['t.u16'] == 65000 and kv['t.i16'] == -30000
assert kv['t.u32'] == 4000000000 and kv['t.i32'] == -2000000000
assert kv['t.u64'] == 2**63 + 12345 and kv['t.i64'] == -2**62 - 7
assert f32(kv['t.f32']) == f32(0.1) and f32(kv['t.f32.nan']) == 0x7fc12345 and f32(kv['t.f32.neg0']) == 0x80000000
assert kv['t.f64'] == 0.1 and kv['t.bool1'] is True and kv['t.bool0'] is False
assert kv['t.string'] == 'caf\u00e9 \u2713 with\0nul' and kv['t.empty'] == ''
assert kv['t.strings'] == ['person', '', 'caf\u00e9', 'x' * 300] and kv['t.strings.empty'] == []
assert [f32(x) for x in kv['t.f32s']][:3] == [f32(0.1), 0x80000000, 1]
assert kv['t.u32s'] == [0, 1, 4294967295] and kv['t.i32s'] == [-2**31, 0, 2**31 - 1]
assert kv['t.u64s'] == [0, 2**53] and kv['t.i64s'] == [-2**53, 5]
assert kv['t.i8s'] == [-128, 0, 127] and kv['t.u16s'] == [0, 65535] and kv['t.bools'] == [True, False, True]
assert list(t) == ['w.1d', 'w.2d', 'w.special', 'w.3d.f16', 'w.4d', 'w.0d', 'w.f16.all_bits'], list(t)
shapes = {k: (v.shape, v.dtype.str) for k, v in t.items()}
assert shapes['w.2d'] == ((3, 7), '<f4') and shapes['w.4d'] == ((4, 3, 3, 3), '<f4'), shapes
assert shapes['w.3d.f16'] == ((2, 3, 4), '<f2') and shapes['w.0d'] == ((1,), '<f4'), shapes
ramp = lambda n, s: np.array([np.float32(s) * np.float32(i - n // 2) + np.float32(0.25) for i in range(n)], dtype='<f4')
assert t['w.4d'].reshape(-1).tobytes() == ramp(108, 1.0 / 64).tobytes()
assert t['w.3d.f16'].astype('<f4').reshape(-1).tobytes() == ramp(24, 0.5).tobytes()
assert t['w.f16.all_bits'].view('<u2').reshape(-1).tolist() == list(range(65536))
assert t['w.special'].view('<u4')[7] == 0x7fc12345
)PY",
                             path);
    CHECK(rc == 0);
  } else {
    WARN("no /usr/bin/python3 with numpy: convert.py's reader not checked");
  }
}

TEST_CASE("gguf writer: float_to_half rounds to nearest even", "[gguf_write]") {
  using gguf::float_to_half;
  CHECK(float_to_half(1.0f) == 0x3c00);
  CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);      // tie -> even
  CHECK(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);  // tie -> even (up)
  CHECK(float_to_half(65504.0f) == 0x7bff);
  CHECK(float_to_half(65519.0f) == 0x7bff);
  CHECK(float_to_half(65520.0f) == 0x7c00);  // rounds to inf
  CHECK(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);  // tie -> even (zero)
  CHECK(float_to_half(3 * std::ldexp(1.0f, -26)) == 0x0001);
  CHECK(float_to_half(-0.0f) == 0x8000);
  CHECK(float_to_half(-std::numeric_limits<float>::infinity()) == 0xfc00);
  CHECK((float_to_half(float_from_bits(0x7f800001u)) & 0x7fff) > 0x7c00);  // NaN stays NaN
}

TEST_CASE("gguf writer: invalid tensors and values are refused", "[gguf_write]") {
  gguf::writer w;
  const std::vector<float> v(64, 1.0f);
  w.add_tensor("ok", {2, 2}, v.data());
  CHECK_THAT(error_of([&] { w.add_tensor("ok", {2, 2}, v.data()); }), Contains("'ok'") && Contains("twice"));
  CHECK_THAT(error_of([&] { w.add_tensor("five", {1, 2, 2, 2, 2}, v.data()); }), Contains("more than 4 dimensions"));
  CHECK_THAT(error_of([&] { w.add_tensor("zero", {2, 0}, v.data()); }), Contains("invalid dimension"));
  CHECK_THAT(error_of([&] { w.add_tensor("neg", {-1}, v.data()); }), Contains("invalid dimension"));
  CHECK_THAT(error_of([&] { w.add_tensor("", {1}, v.data()); }), Contains("name"));
  CHECK_THAT(error_of([&] { w.add_tensor(std::string(257, 'n'), {1}, v.data()); }), Contains("name"));
  CHECK_THAT(error_of([&] { w.add_tensor("count", {3, 3}, v); }), Contains("'count'") && Contains("64 values"));
  CHECK(w.tensor_count() == 1);
  gguf::value bad;
  bad.type = gguf::vtype::u8;
  bad.scalar = std::uint64_t(300);
  CHECK_THAT(error_of([&] { w.set("k", bad); }), Contains("'k'") && Contains("does not fit"));
  bad.type = gguf::vtype::array;
  bad.elem_type = gguf::vtype::u32;
  bad.numbers = {1.5};
  CHECK_THAT(error_of([&] { w.set("k", bad); }), Contains("not an integer"));
  w.set_u32("general.alignment", 48);
  CHECK_THAT(error_of([&] { w.write(scratch().path("never.gguf")); }), Contains("power of two"));
  CHECK(!fs::exists(scratch().path("never.gguf")));
  w.set_u32("general.alignment", 64);  // a different valid alignment is honoured
  w.write(scratch().path("align64.gguf"));
  gguf::file f(scratch().path("align64.gguf"));
  CHECK(fs::file_size(scratch().path("align64.gguf")) % 64 == 0);
  CHECK(f.read_f32(f.tensors()[0]) == std::vector<float>(4, 1.0f));
}

TEST_CASE("gguf writer: a convert.py file goes through the writer byte for byte", "[gguf_write]") {
  for (const auto& src : {train_path, tiny_path}) {  // fp32 (--training) and fp16 (inference)
    INFO(src);
    gguf::file f(src);
    gguf::writer w;
    w.set_checksum(false);  // the fixtures predate the content checksum
    w.copy_metadata(f);
    w.copy_tensors(f);
    const auto out = scratch().path("roundtrip.gguf");
    w.write(out);
    gguf::file g(out);
    require_same_metadata(f, g);
    require_same_tensors(f, g);
    // The layout rules (convert.py's key order, alignment 32, padding after every tensor) are
    // the writer's: the whole file is identical.
    CHECK(slurp(out) == slurp(src));
  }
}

TEST_CASE("gguf writer: a train-mode model saved with nn::save_tensors loads back bit-exactly", "[gguf_write][train]") {
  const auto out = scratch().path("trained.gguf");
  vision_graph<cpu, train_mode> g;
  g.init(gyolo_tiny::value);
  random_weights rw(3);
  nn::load_tensors(g, rw, "model");
  {
    gguf::writer w;
    w.copy_metadata(gguf::file(tiny_path));
    w.set_string("general.name", "trained");
    nn::save_tensors(w, g, "model");
    CHECK(w.tensor_count() == nn::expected_tensors(g, "model").size());
    w.write(out);
  }
  gguf::file f(out);
  {
    gguf::file tiny(tiny_path);
    for (const auto& [k, v] : tiny.metadata())
      if (k != "general.name") require_same_value(k, v, f.get(k));
    CHECK(f.get_string("general.name") == "trained");
  }
  vision_graph<cpu, train_mode> h;
  h.init(gyolo_tiny::value);
  {
    gguf_weights ws(f);
    nn::load_tensors(h, ws, "model");
    CHECK(ws.used().size() == f.tensors().size());  // every saved tensor is one the module reads
  }
  nn::module_weights a, b;
  a.add(g, "model");
  b.add(h, "model");
  REQUIRE(a.order() == b.order());
  std::size_t n_params = 0, n_buffers = 0;
  nn::for_each_param(g, "model", [&](const std::string&, param&) { ++n_params; });
  nn::for_each_buffer(g, "model", [&](const std::string&, buffer&) { ++n_buffers; });
  CHECK(n_params > 0);
  CHECK(n_buffers > 0);
  REQUIRE(a.order().size() == n_params + n_buffers);
  for (const auto& n : a.order()) {
    INFO(n);
    REQUIRE(a.shape(n) == b.shape(n));
    const auto& va = a.values(n);
    const auto& vb = b.values(n);
    REQUIRE(va.size() == vb.size());
    REQUIRE(std::memcmp(va.data(), vb.data(), va.size() * 4) == 0);
  }
  // The tensors' file order is the walk order (upstream's state_dict order).
  REQUIRE(f.tensors().size() == a.order().size());
  for (std::size_t i = 0; i < a.order().size(); ++i) REQUIRE(f.tensors()[i].name == a.order()[i]);

  // The inference model reads its subset of the file (layers 0-23, 43-46, 51-54, head 55's
  // one-to-one branch) and, from the same values, computes what the in-memory weights give.
  auto m = model<cpu, gyolo_tiny>::load(out);
  CHECK(m.names() == gguf::file(tiny_path).get_strings("gyolo.names"));
  CHECK(!m.has_caption());  // no model.56 tensors saved
  auto ref = model<cpu, gyolo_tiny>::from_source(rw);
  context<cpu> ctx(2);
  tensor<float> x({1, 3, 64, 64});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float((i * 7919) % 1000) / 1000.0f;
  const auto r1 = m.forward(ctx, x.cv()), r2 = ref.forward(ctx, x.cv());
  REQUIRE(r1.pred.numel() == r2.pred.numel());
  CHECK(std::memcmp(r1.pred.data(), r2.pred.data(), std::size_t(r1.pred.numel()) * 4) == 0);
}

TEST_CASE("gguf writer: saving the graph loaded from convert.py --training output reproduces the file", "[gguf_write][train]") {
  // Train graph loaded from weights.gguf, saved with the same metadata and Grit's (layer 56)
  // tensors copied after it: the bytes convert.py --training wrote.
  gguf::file f(train_path);
  vision_graph<cpu, train_mode> g;
  g.init(gyolo_tiny::value);
  {
    gguf_weights ws(f);
    nn::load_tensors(g, ws, "model");
  }
  gguf::writer w;
  w.set_checksum(false);  // the fixture predates the content checksum
  w.copy_metadata(f);
  nn::save_tensors(w, g, "model");
  for (const auto& t : f.tensors())
    if (t.name.rfind("model.56.", 0) == 0) w.copy_tensor(f, t);
  const auto out = scratch().path("retrained.gguf");
  w.write(out);
  CHECK(slurp(out) == slurp(train_path));
}

TEST_CASE("gguf writer: saving the whole train model (Grit as child 56) reproduces convert.py --training output", "[gguf_write][train]") {
  // One module, one load, one save: every tensor of the file, Grit included, from the descriptions.
  gguf::file f(train_path);
  train_model<cpu> m;
  m.init(gyolo_tiny::value, grit_config::from_json(nlohmann::json::parse(f.get_string("gyolo.grit_config"))));
  {
    gguf_weights ws(f);
    nn::load_tensors(m, ws, "model");
  }
  gguf::writer w;
  w.set_checksum(false);  // the fixture predates the content checksum
  w.copy_metadata(f);
  nn::save_tensors(w, m, "model");
  CHECK(w.tensor_count() == f.tensors().size());
  const auto out = scratch().path("retrained_whole.gguf");
  w.write(out);
  CHECK(slurp(out) == slurp(train_path));
}

TEST_CASE("gguf writer: nn::save_tensors refuses non-finite values", "[gguf_write][train]") {
  vision_graph<cpu, train_mode> g;
  g.init(gyolo_tiny::value);
  random_weights rw(3);
  nn::load_tensors(g, rw, "model");
  std::string victim;
  nn::for_each_param(g, "model", [&](const std::string& n, param& p) {
    if (victim.empty()) {
      victim = n;
      p.value[1] = std::numeric_limits<float>::quiet_NaN();
    }
  });
  gguf::writer w;
  CHECK_THAT(error_of([&] { nn::save_tensors(w, g, "model"); }), Contains("'" + victim + "'") && Contains("not finite"));
}

TEST_CASE("gguf writer: write is atomic", "[gguf_write]") {
  const fs::path base = scratch().dir / "atomic";
  fs::create_directories(base);
  gguf::writer w;
  w.set_string("general.architecture", "gyolo");
  w.add_tensor("x", {3}, std::vector<float>{1, 2, 3});

  SECTION("a missing directory: error naming the path and the reason, nothing created") {
    const auto path = (base / "no" / "such" / "dir" / "out.gguf").string();
    const auto msg = error_of([&] { w.write(path); });
    CHECK_THAT(msg, Contains(path) && Contains("No such file or directory"));
    CHECK(msg.find('\n') == std::string::npos);
    CHECK(dir_entries(base).empty());
  }
  SECTION("rename fails (the target is a directory): the temporary file is removed") {
    fs::create_directories(base / "taken.gguf" / "inside");
    const auto path = (base / "taken.gguf").string();
    const auto msg = error_of([&] { w.write(path); });
    CHECK_THAT(msg, Contains(path) && Contains("rename"));
    CHECK(dir_entries(base) == std::vector<std::string>{"taken.gguf"});
    CHECK(fs::is_directory(base / "taken.gguf" / "inside"));
  }
  SECTION("an existing file is replaced whole, and no temporary file remains") {
    const auto path = (base / "out.gguf").string();
    {
      std::ofstream o(path, std::ios::binary);
      o << "old contents";
    }
    w.write(path);
    gguf::file f(path);
    CHECK(f.read_f32(f.tensors()[0]) == std::vector<float>{1, 2, 3});
    CHECK(dir_entries(base) == std::vector<std::string>{"out.gguf"});
  }
  SECTION("a relative path in the current directory") {
    const auto cwd = fs::current_path();
    fs::current_path(base);
    w.write("rel.gguf");
    fs::current_path(cwd);
    CHECK(dir_entries(base) == std::vector<std::string>{"rel.gguf"});
    gguf::file f((base / "rel.gguf").string());
    CHECK(f.get_string("general.architecture") == "gyolo");
  }
  fs::remove_all(base);
}

TEST_CASE("gguf: the content checksum finds a flipped byte in a class name; files without one still load", "[gguf_write]") {
  gguf::file src(tiny_path);
  REQUIRE_FALSE(src.has_checksum());  // written before checksums existed
  gguf::writer w;
  w.copy_metadata(src);
  w.copy_tensors(src);
  const auto out = scratch().path("crc.gguf");
  w.write(out);
  gguf::file f(out);
  CHECK(f.has_checksum());
  CHECK(w.keys().back() != gguf::checksum_key);  // added at write(), not kept in the writer
  require_same_metadata(src, f, {gguf::checksum_key});
  require_same_tensors(src, f);
  // written again from the file that has it: the key keeps its place, the bytes are identical
  {
    gguf::writer w2;
    w2.copy_metadata(f);
    w2.copy_tensors(f);
    const auto out2 = scratch().path("crc2.gguf");
    w2.write(out2);
    CHECK(slurp(out2) == slurp(out));
  }
  // one byte of a class name flipped ("person" -> "Person"): refused by name, unless not verified
  std::string bytes = slurp(out);
  const auto name = f.get_strings("gyolo.names").at(0);
  const auto at = bytes.find(name, bytes.find("gyolo.names"));
  REQUIRE(at != std::string::npos);
  bytes[at] = char(bytes[at] ^ 0x20);
  const auto bad = scratch().path("crc_bad.gguf");
  std::ofstream(bad, std::ios::binary) << bytes;
  CHECK_THROWS_WITH(gguf::file(bad), Catch::Contains("content checksum mismatch") && Catch::Contains("crc_bad.gguf"));
  using tiny_model = model<cpu, gyolo_tiny>;
  CHECK_THROWS_WITH(tiny_model::load(bad), Catch::Contains("content checksum mismatch"));
  gguf::file unchecked(bad, gguf::open_options{.verify_checksum = false});
  CHECK(unchecked.get_strings("gyolo.names").at(0) != name);
  load_options lo;
  lo.verify_checksum = false;
  CHECK_NOTHROW(tiny_model::load(bad, lo));
  // a byte of tensor data flipped: refused too
  std::string b2 = slurp(out);
  b2[b2.size() - 100] = char(b2[b2.size() - 100] ^ 1);
  const auto bad2 = scratch().path("crc_bad2.gguf");
  std::ofstream(bad2, std::ios::binary) << b2;
  CHECK_THROWS_WITH(gguf::file(bad2), Catch::Contains("content checksum mismatch"));
  // without the checksum: no key
  gguf::writer w3;
  w3.set_checksum(false);
  w3.copy_metadata(f);  // drops the copied (stale) key
  w3.copy_tensors(f);
  const auto out3 = scratch().path("nocrc.gguf");
  w3.write(out3);
  CHECK_FALSE(gguf::file(out3).has_checksum());
  CHECK(slurp(out3) == slurp(tiny_path));
}

TEST_CASE("crc32: slice-by-8 equals the byte-wise definition and zlib's check value", "[gguf_write]") {
  const std::string s = "123456789";
  CHECK(crc32(s.data(), s.size()) == 0xCBF43926u);  // the standard check value
  std::vector<unsigned char> v(1000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<unsigned char>(i * 37 + 11);
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 63u, 1000u}) {
    std::uint32_t c = 0xFFFFFFFFu;  // the byte-wise definition
    for (std::size_t i = 0; i < n; ++i) {
      c ^= v[i];
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    CHECK(crc32(v.data(), n) == ~c);
    // split anywhere: the same as in one go
    CHECK(crc32_update(crc32(v.data(), n / 3), v.data() + n / 3, n - n / 3) == ~c);
  }
}

}  // namespace test_gguf_write
