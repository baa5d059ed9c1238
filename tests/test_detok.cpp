// Caption detokenization against strings produced in Python by weights_tools/make_caption_fixtures.py
// (hf_decode: HF BertTokenizer slow decode(skip_special_tokens=True) + clean-up + str.capitalize(),
// spec §6.7): a synthetic vocabulary built to hit every rule, the tiny model's vocabulary, and (when
// weights_tools/data/vocab.txt, or $GYOLO_VOCAB) upstream's full vocabulary.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "gyolo/io/gguf.hpp"
#include "gyolo/text/detokenize.hpp"

using namespace gyolo;

namespace {
const std::string cdir = std::string(GYOLO_FIXTURES_DIR) + "/caption/";

nlohmann::json cases() {
  std::ifstream f(cdir + "detok_cases.json");
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

void run_cases(const vocabulary& v, const nlohmann::json& cs) {
  REQUIRE(cs.size() > 10);
  for (const auto& c : cs) {
    const auto ids = c.at(0).get<std::vector<std::int64_t>>();
    const auto want = c.at(1).get<std::string>();
    INFO("ids " << c.at(0).dump());
    REQUIRE(v.decode(ids) == want);
  }
}
}  // namespace

TEST_CASE("detokenization: synthetic vocabulary (holes, specials, punctuation, case, whitespace)", "[caption][detok]") {
  const auto j = cases().at("synthetic");
  const vocabulary v(j.at("vocab").get<std::vector<std::string>>());
  run_cases(v, j.at("cases"));
  // a few rules spelled out
  REQUIRE(v.decode(std::vector<std::int64_t>{5, 6, 11, 10}) == "A man's horse");
  REQUIRE(v.decode(std::vector<std::int64_t>{7, 5, 9, 6}) == "A man");        // earlier duplicates are [UNK] holes
  REQUIRE(v.decode(std::vector<std::int64_t>{26, 5, 27, 6}) == "A \\n man");  // ... their last copies are words ("" too)
  REQUIRE(v.decode(std::vector<std::int64_t>{29, 28, 37}) == "Big dog abc");  // capitalize lowers the rest
  REQUIRE(v.decode(std::vector<std::int64_t>{4, 30, 2, 3, 0, 1}) == "");     // [MASK] moved to id 30: 4 is a hole
  REQUIRE(v.token(4) == "[UNK]");
  REQUIRE(v.token(99) == "[UNK]");
}

TEST_CASE("detokenization: tiny model vocabulary (from tiny.gguf)", "[caption][detok]") {
  gguf::file f(std::string(GYOLO_FIXTURES_DIR) + "/tiny/tiny.gguf");
  const vocabulary v(f.get_strings("gyolo.vocab"));
  const auto j = cases().at("tiny");
  REQUIRE(std::int64_t(v.size()) == j.at("vocab_size").get<std::int64_t>());
  run_cases(v, j.at("cases"));
}

TEST_CASE("detokenization: upstream's full vocabulary", "[caption][detok]") {
  const char* env = std::getenv("GYOLO_VOCAB");
  const std::string path = env ? env : std::string(GYOLO_FIXTURES_DIR) + "/../../weights_tools/data/vocab.txt";
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    FAIL("vocab.txt not found at " << path);
    return;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string s = ss.str();
  std::vector<std::string> lines;
  std::size_t i = 0;
  while (true) {  // split on '\n' only, like convert.py and HF load_vocab
    const auto j = s.find('\n', i);
    lines.push_back(s.substr(i, j == std::string::npos ? std::string::npos : j - i));
    if (j == std::string::npos) break;
    i = j + 1;
  }
  const auto j = cases().at("full");
  REQUIRE(std::int64_t(lines.size()) == j.at("vocab_size").get<std::int64_t>());
  const vocabulary v(std::move(lines));
  for (std::int64_t hole : {87, 2110, 5209, 3088}) REQUIRE(v.token(hole) == "[UNK]");
  REQUIRE(v.token(8709) == "");
  REQUIRE(v.token(5338) == "\\n");
  run_cases(v, j.at("cases"));
}
