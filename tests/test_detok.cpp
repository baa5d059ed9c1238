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
#include "gyolo/text/tokenize.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_detok {

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

namespace {
std::vector<std::string> vocab_lines() {
  std::ifstream f(std::string(GYOLO_FIXTURES_DIR) + "/../../weights_tools/data/vocab.txt");
  REQUIRE(f.good());
  std::vector<std::string> v;
  std::string line;
  while (std::getline(f, line)) v.push_back(line);
  return v;
}
}  // namespace

TEST_CASE("caption tokenizer: BasicTokenizer + WordPiece + encode_plus as upstream's training data", "[caption][tokenize]") {
  const auto lines = vocab_lines();
  REQUIRE(lines.size() == 10202);
  const caption_tokenizer tok(lines);
  auto id = [&](const std::string& w) {
    std::int64_t r = -1;
    for (std::size_t i = 0; i < lines.size(); ++i)
      if (lines[i] == w) r = std::int64_t(i);  // last index wins
    REQUIRE(r >= 0);
    return r;
  };
  // lower case, "." is not in the vocabulary ([UNK], as upstream trains it), [CLS] ... [SEP] [PAD]...
  const auto e = tok.encode("A man riding a wave on top of a surfboard.", 16);
  const std::vector<std::int64_t> want{2, id("a"), id("man"), id("riding"), id("a"), id("wave"), id("on"), id("top"), id("of"), id("a"),
                                       id("surfboard"), 1, 3, 0, 0, 0};
  CHECK(e.ids == want);
  CHECK(e.pad_mask == std::vector<unsigned char>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1});
  // punctuation splits words ("don't" -> don ' t; vocab entries such as "n't" are never produced),
  // whitespace of any kind, accents stripped, control characters dropped
  CHECK(tok.basic_tokens("Don't\tstop!\u00a0Caf\u00e9 na\u00efve\u0007 \u201cquoted\u201d") ==
        std::vector<std::string>{"don", "'", "t", "stop", "!", "cafe", "naive", "\u201c", "quoted", "\u201d"});
  // CJK ideographs become words of their own; invalid UTF-8 is dropped
  CHECK(tok.basic_tokens("dog\u72d7cat") == std::vector<std::string>{"dog", "\u72d7", "cat"});
  CHECK(tok.basic_tokens(std::string("a\xff\xfe b")) == std::vector<std::string>{"a", "b"});
  // out-of-vocabulary words are [UNK] as a whole (no ## pieces in this vocabulary); over 100 characters too
  CHECK(tok.tokens("zzqqx dog") == std::vector<std::int64_t>{1, id("dog")});
  CHECK(tok.tokens(std::string(101, 'a')) == std::vector<std::int64_t>{1});
  // truncation keeps [CLS] and [SEP]
  const auto t = tok.encode("a a a a a a", 5);
  CHECK(t.ids == std::vector<std::int64_t>{2, id("a"), id("a"), id("a"), 3});
  REQUIRE_THROWS_WITH(tok.encode("a", 1), Catch::Contains("max_length"));
}

TEST_CASE("caption tokenizer: encoding upstream's decoded captions gives back their ids", "[caption][tokenize]") {
  // detok_cases.json "full": id sequences and the text upstream's tokenizer decodes them to, over
  // the full vocabulary. Where every kept token is a plain lowercase word, encoding the text must
  // give back exactly those ids (decode joins with spaces and capitalises; encode lowers and splits).
  const auto lines = vocab_lines();
  const caption_tokenizer tok(lines);
  const vocabulary voc(lines);
  std::ifstream f(std::string(GYOLO_FIXTURES_DIR) + "/caption/detok_cases.json");
  const auto j = nlohmann::json::parse(f);
  int checked = 0;
  for (const auto& c : j["full"]["cases"]) {
    const auto ids = c[0].get<std::vector<std::int64_t>>();
    const auto text = c[1].get<std::string>();
    std::vector<std::int64_t> words;
    bool plain = true;
    for (auto i : ids) {
      if (i >= 0 && i <= 4) continue;
      const auto t = voc.token(i);
      if (t == "[UNK]" || t.empty()) continue;  // dropped by decode
      for (char ch : t) plain = plain && ch >= 'a' && ch <= 'z';
      words.push_back(i);
    }
    if (!plain) continue;
    INFO("'" << text << "'");
    CHECK(voc.decode(ids) == text);
    CHECK(tok.tokens(text) == words);
    ++checked;
  }
  CHECK(checked >= 20);
}

}  // namespace test_detok
