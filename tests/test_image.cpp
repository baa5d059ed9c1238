// Image decoding, resize and letterbox against cv2 (OpenCV 4.6) references made by
// weights_tools/make_image_fixtures.py (tests/fixtures/image/cases.txt lists every case).
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gyolo/io/image.hpp"
#include "gyolo/io/npy.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_image {

namespace {

const std::string kDir = std::string(GYOLO_FIXTURES_DIR) + "/image/";

// ---- minimal SHA-256 (FIPS 180-4)
std::string sha256_hex(const void* data, std::size_t len) {
  static const std::uint32_t K[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
      0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
      0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
      0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
      0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
      0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
      0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2};
  std::uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  auto rotr = [](std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  std::vector<std::uint8_t> msg(static_cast<const std::uint8_t*>(data), static_cast<const std::uint8_t*>(data) + len);
  const std::uint64_t bits = static_cast<std::uint64_t>(len) * 8;
  msg.push_back(0x80);
  while (msg.size() % 64 != 56) msg.push_back(0);
  for (int i = 7; i >= 0; --i) msg.push_back(static_cast<std::uint8_t>(bits >> (8 * i)));
  for (std::size_t off = 0; off < msg.size(); off += 64) {
    std::uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (std::uint32_t(msg[off + 4 * i]) << 24) | (std::uint32_t(msg[off + 4 * i + 1]) << 16) |
             (std::uint32_t(msg[off + 4 * i + 2]) << 8) | msg[off + 4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; ++i) {
      const std::uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const std::uint32_t ch = (e & f) ^ (~e & g);
      const std::uint32_t t1 = hh + S1 + ch + K[i] + w[i];
      const std::uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const std::uint32_t mj = (a & b) ^ (a & c) ^ (b & c);
      const std::uint32_t t2 = S0 + mj;
      hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  char out[65];
  for (int i = 0; i < 8; ++i) std::snprintf(out + 8 * i, 9, "%08x", h[i]);
  return std::string(out, 64);
}

std::vector<std::vector<std::string>> cases(const std::string& kind) {
  std::ifstream f(kDir + "cases.txt");
  REQUIRE(f.good());
  std::vector<std::vector<std::string>> out;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream is(line);
    std::vector<std::string> tok;
    std::string t;
    while (is >> t) tok.push_back(t);
    if (!tok.empty() && tok[0] == kind) out.push_back(tok);
  }
  return out;
}

gyolo::image_u8 load_ref(const std::string& npy_name) {
  const auto a = gyolo::npy::load(kDir + npy_name);
  REQUIRE(a.dtype == "|u1");
  REQUIRE(a.shape.size() == 3);
  gyolo::image_u8 img(static_cast<int>(a.shape[0]), static_cast<int>(a.shape[1]), static_cast<int>(a.shape[2]));
  std::memcpy(img.data.data(), a.bytes.data(), img.data.size());
  return img;
}

// Exact comparison; on failure reports the first differing element and the number of differences.
void require_same(const gyolo::image_u8& got, const gyolo::image_u8& want, const std::string& what) {
  INFO(what);
  REQUIRE(got.height == want.height);
  REQUIRE(got.width == want.width);
  REQUIRE(got.channels == want.channels);
  REQUIRE(got.data.size() == want.data.size());
  std::size_t ndiff = 0, first = 0;
  for (std::size_t i = 0; i < got.data.size(); ++i)
    if (got.data[i] != want.data[i]) {
      if (ndiff == 0) first = i;
      ++ndiff;
    }
  if (ndiff != 0) {
    const std::size_t px = first / got.channels;
    INFO("first difference at y=" << px / got.width << " x=" << px % got.width << " c=" << first % got.channels
                                  << ": got " << int(got.data[first]) << ", cv2 " << int(want.data[first]) << "; "
                                  << ndiff << " values differ");
    CHECK(ndiff == 0);
  }
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("sha256 helper matches known vectors", "[image]") {
  CHECK(sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(sha256_hex(two.data(), two.size()) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("decode_image matches cv2.imread(IMREAD_COLOR) on every fixture format", "[image]") {
  const auto cs = cases("decode");
  REQUIRE(cs.size() >= 30);
  for (const auto& c : cs) {
    const std::string& file = c[1];
    gyolo::image_u8 got;
    std::string warn;
    gyolo::decode_options opt;
    opt.warning = &warn;
    REQUIRE_NOTHROW(got = gyolo::decode_image(kDir + file, opt));
    require_same(got, load_ref(c[2]), "decode " + file);
    if (file == "truncated_scan.jpg") {
      CHECK(!warn.empty());  // cv2 prints "Premature end of JPEG file" and returns the partial image
    } else {
      CHECK(warn.empty());
    }
  }
}

TEST_CASE("decode_image_memory sniffs content, not the extension", "[image]") {
  const auto bytes = read_bytes(kDir + "rgb8.png");
  const auto img = gyolo::decode_image_memory(bytes.data(), bytes.size(), "misnamed.jpg");
  require_same(img, load_ref("rgb8.png.npy"), "png bytes named .jpg");
  const auto jb = read_bytes(kDir + "baseline420.jpg");
  const auto img2 = gyolo::decode_image_memory(jb.data(), jb.size(), "photo.png");
  require_same(img2, load_ref("baseline420.jpg.npy"), "jpeg bytes named .png");
}

TEST_CASE("EXIF orientation can be ignored, and every orientation changes the shape as cv2", "[image]") {
  gyolo::decode_options opt;
  opt.apply_exif_orientation = false;
  const auto raw = gyolo::decode_image(kDir + "exif6.jpg", opt);
  require_same(raw, load_ref("exif1.jpg.npy"), "exif6 with orientation ignored == exif1");
  for (int o = 5; o <= 8; ++o) {
    const auto img = gyolo::decode_image(kDir + "exif" + std::to_string(o) + ".jpg");
    CHECK(img.width == raw.height);
    CHECK(img.height == raw.width);
  }
}

TEST_CASE("the truncated-scan warning becomes an error on request", "[image]") {
  gyolo::decode_options opt;
  opt.fail_on_warning = true;
  CHECK_THROWS_AS(gyolo::decode_image(kDir + "truncated_scan.jpg", opt), gyolo::error);
}

TEST_CASE("broken inputs give one-line gyolo::error naming the file", "[image]") {
  const auto cs = cases("error");
  REQUIRE(cs.size() >= 8);
  for (const auto& c : cs) {
    INFO(c[1]);
    const std::string path = kDir + c[1];
    bool threw = false;
    try {
      (void)gyolo::decode_image(path);
    } catch (const gyolo::error& e) {
      threw = true;
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(path) != std::string::npos);
      CHECK(msg.find('\n') == std::string::npos);
    }
    CHECK(threw);
  }
  CHECK_THROWS_WITH(gyolo::decode_image(kDir + "does_not_exist.png"), Catch::Contains("no such file"));
  CHECK_THROWS_WITH(gyolo::decode_image(kDir), Catch::Contains("directory"));
  CHECK_THROWS_WITH(gyolo::decode_image(kDir + "empty.jpg"), Catch::Contains("empty"));
  CHECK_THROWS_WITH(gyolo::decode_image(kDir + "huge.png"), Catch::Contains("above the limit"));
  CHECK_THROWS_WITH(gyolo::decode_image(kDir + "huge.jpg"), Catch::Contains("above the limit"));
  CHECK_THROWS_WITH(gyolo::decode_image(kDir + "bad_crc.png"), Catch::Contains("CRC"));
  CHECK_THROWS_WITH(gyolo::decode_image(kDir + "truncated.png"), Catch::Contains("truncated"));
  CHECK_THROWS_WITH(gyolo::decode_image(kDir + "random.bin"), Catch::Contains("unrecognized"));
  // the pixel cap is a parameter, applied from the header
  CHECK_THROWS_WITH(gyolo::decode_image(kDir + "baseline420.jpg", 37 * 23 - 1), Catch::Contains("above the limit"));
  CHECK_NOTHROW(gyolo::decode_image(kDir + "baseline420.jpg", 37 * 23));
  CHECK_THROWS_WITH(gyolo::decode_image(kDir + "rgb8.png", 100), Catch::Contains("above the limit"));
  CHECK_THROWS_WITH(gyolo::decode_image(kDir + "rgb.bmp", 100), Catch::Contains("above the limit"));
  // a GIF is recognized and refused (cv2 4.6 has no GIF reader)
  const char gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00;";
  CHECK_THROWS_WITH(gyolo::decode_image_memory(reinterpret_cast<const std::uint8_t*>(gif), sizeof(gif) - 1, "x.gif"),
                    Catch::Contains("GIF"));
  // every truncation of a JPEG either decodes (like cv2: partial image) or throws gyolo::error
  const auto jb = read_bytes(kDir + "progressive.jpg");
  for (std::size_t n = 0; n < jb.size(); n += 7) {
    try {
      const auto img = gyolo::decode_image_memory(jb.data(), n, "cut.jpg");
      CHECK(img.width == 37);
    } catch (const gyolo::error&) {
    }
  }
}

TEST_CASE("resize_linear matches cv2.resize INTER_LINEAR bit for bit", "[image]") {
  const auto cs = cases("linear");
  REQUIRE(cs.size() >= 20);
  for (const auto& c : cs) {
    const auto src = gyolo::decode_image(kDir + c[1]);
    const int w = std::stoi(c[2]), h = std::stoi(c[3]);
    require_same(gyolo::resize_linear(src, w, h), load_ref(c[4]),
                 "linear " + c[1] + " -> " + c[2] + "x" + c[3]);
  }
}

TEST_CASE("resize_area matches cv2.resize INTER_AREA bit for bit", "[image]") {
  const auto cs = cases("area");
  REQUIRE(cs.size() >= 15);
  for (const auto& c : cs) {
    const auto src = gyolo::decode_image(kDir + c[1]);
    const int w = std::stoi(c[2]), h = std::stoi(c[3]);
    require_same(gyolo::resize_area(src, w, h), load_ref(c[4]), "area " + c[1] + " -> " + c[2] + "x" + c[3]);
  }
}

TEST_CASE("letterbox matches upstream letterbox (cv2) including geometry", "[image]") {
  const auto cs = cases("letterbox");
  REQUIRE(cs.size() >= 10);
  for (const auto& c : cs) {
    const auto src = gyolo::decode_image(kDir + c[1]);
    const int imgsz = std::stoi(c[2]);
    const bool square = c[3] == "1", scaleup = c[4] == "1";
    gyolo::letterbox_info info;
    const auto got = gyolo::letterbox(src, imgsz, {.square = square, .scaleup = scaleup}, &info);
    const auto want = load_ref(c[5]);
    require_same(got, want, "letterbox " + c[5]);
    INFO(c[5]);
    CHECK(info.top == std::stoi(c[7]));
    CHECK(info.bottom == std::stoi(c[8]));
    CHECK(info.left == std::stoi(c[9]));
    CHECK(info.right == std::stoi(c[10]));
    CHECK(info.new_w == std::stoi(c[11]));
    CHECK(info.new_h == std::stoi(c[12]));
    CHECK(info.ratio == std::stod(c[13]));
    CHECK(info.dw == std::stod(c[14]));
    CHECK(info.dh == std::stod(c[15]));
    CHECK(info.orig_w == src.width);
    CHECK(info.orig_h == src.height);
    CHECK(info.input_w == want.width);
    CHECK(info.input_h == want.height);
    if (c[6] != "-") {
      const auto a = gyolo::npy::load(kDir + c[6]);
      const auto ref = a.as<float>();
      REQUIRE(a.shape == std::vector<std::int64_t>{3, got.height, got.width});
      std::vector<float> chw(ref.size());
      gyolo::to_input_chw_rgb(got, chw.data());
      CHECK(std::memcmp(chw.data(), ref.data(), ref.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("to_input_chw_rgb divides every byte value by 255 like torch on CPU", "[image]") {
  const auto ref = gyolo::npy::load(kDir + "div255.npy").as<float>();
  REQUIRE(ref.size() == 256);
  gyolo::image_u8 img(1, 256, 3);
  for (int v = 0; v < 256; ++v) {
    img.data[3 * v + 0] = static_cast<std::uint8_t>(v);          // B
    img.data[3 * v + 1] = static_cast<std::uint8_t>(255 - v);    // G
    img.data[3 * v + 2] = static_cast<std::uint8_t>(v ^ 0x5A);   // R
  }
  std::vector<float> out(3 * 256);
  gyolo::to_input_chw_rgb(img, out.data());
  for (int v = 0; v < 256; ++v) {
    INFO(v);
    CHECK(std::memcmp(&out[2 * 256 + v], &ref[v], 4) == 0);                  // channel 2 = B
    CHECK(std::memcmp(&out[256 + v], &ref[255 - v], 4) == 0);                // channel 1 = G
    CHECK(std::memcmp(&out[v], &ref[v ^ 0x5A], 4) == 0);                     // channel 0 = R
  }
}

TEST_CASE("horses.jpg: decode, predict letterbox, val resize match cv2 (sha256)", "[image]") {
  const auto img = gyolo::decode_image(kDir + "horses.jpg");
  auto check = [](const gyolo::image_u8& im, const std::string& key) {
    const auto c = cases(key);
    REQUIRE(c.size() == 1);
    INFO(key);
    CHECK(im.height == std::stoi(c[0][1]));
    CHECK(im.width == std::stoi(c[0][2]));
    CHECK(im.channels == std::stoi(c[0][3]));
    CHECK(sha256_hex(im.data.data(), im.data.size()) == c[0][4]);
  };
  check(img, "horses_decode");
  gyolo::letterbox_info info;
  const auto lb = gyolo::letterbox(img, 640, {.square = false, .scaleup = true}, &info);
  check(lb, "horses_letterbox");
  const auto pad = cases("horses_letterbox_pad");
  REQUIRE(pad.size() == 1);
  CHECK(info.top == std::stoi(pad[0][1]));
  CHECK(info.bottom == std::stoi(pad[0][2]));
  CHECK(info.left == std::stoi(pad[0][3]));
  CHECK(info.right == std::stoi(pad[0][4]));
  CHECK(info.new_w == std::stoi(pad[0][5]));
  CHECK(info.new_h == std::stoi(pad[0][6]));
  check(gyolo::letterbox(img, 640, {.square = true, .scaleup = true}), "horses_letterbox_sq");
  check(gyolo::val_load_resize(img, 640), "horses_val_resize");
  check(gyolo::resize_area(img, img.width / 3, img.height / 3), "horses_area_third");
  std::vector<float> chw(static_cast<std::size_t>(3) * lb.height * lb.width);
  gyolo::to_input_chw_rgb(lb, chw.data());
  const auto c = cases("horses_chw");
  REQUIRE(c.size() == 1);
  CHECK(sha256_hex(chw.data(), chw.size() * sizeof(float)) == c[0][1]);
}

}  // namespace test_image
