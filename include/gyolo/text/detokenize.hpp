// Caption detokenization as upstream decodes (spec §6.7): Hugging Face's slow BertTokenizer
// decode(ids, skip_special_tokens=True) with clean_up_tokenization_spaces, then Python
// str.capitalize(). The vocabulary is the weights file's `gyolo.vocab` (one entry per line of
// vocab.txt, in order).
//
//  - token -> id is built like HF load_vocab: for a string that occurs on several lines the LAST
//    index wins, so the earlier indices have no id -> token entry and decode as "[UNK]";
//  - ids of the special tokens ([PAD] [UNK] [CLS] [SEP] [MASK]) are skipped, and so is every token
//    that decodes to a special string (the "[UNK]" of the duplicate holes and of out-of-range ids);
//  - the rest are joined with single spaces, " ##" removed, the ends stripped (Python whitespace),
//    then the clean-up replacements in order: " ." -> ".", " ?" -> "?", " !" -> "!", " ," -> ",",
//    " ' " -> "'", " n't" -> "n't", " 'm" -> "'m", " 's" -> "'s", " 've" -> "'ve", " 're" -> "'re";
//  - capitalize: first character upper case, all others lower case. Upstream's vocabulary is
//    lowercase ASCII; case mapping here is ASCII-only (non-ASCII bytes are left unchanged).
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gyolo {

class vocabulary {
 public:
  vocabulary() = default;
  explicit vocabulary(std::vector<std::string> lines) : lines_(std::move(lines)) {
    std::unordered_map<std::string, std::int64_t> tok2id;
    for (std::size_t i = 0; i < lines_.size(); ++i) tok2id[lines_[i]] = std::int64_t(i);  // last index wins
    has_token_.assign(lines_.size(), 0);
    for (auto& [tok, id] : tok2id) has_token_[std::size_t(id)] = 1;
    for (const char* s : special_strings()) {
      auto it = tok2id.find(s);
      if (it != tok2id.end()) special_ids_.push_back(it->second);
    }
  }

  std::size_t size() const { return lines_.size(); }
  bool empty() const { return lines_.empty(); }

  /// The string id decodes to ("[UNK]" for duplicate holes and ids outside the vocabulary).
  std::string_view token(std::int64_t id) const {
    if (id < 0 || id >= std::int64_t(lines_.size()) || !has_token_[std::size_t(id)]) return "[UNK]";
    return lines_[std::size_t(id)];
  }

  /// Upstream's decode: HF decode(skip_special_tokens=True) + clean-up + str.capitalize().
  std::string decode(std::span<const std::int64_t> ids) const {
    std::string text;
    bool first = true;
    for (auto id : ids) {
      if (is_special_id(id)) continue;
      const auto tok = token(id);
      if (is_special_string(tok) && tok != "[PAD]") continue;
      if (!first) text += ' ';
      text += tok;
      first = false;
    }
    text = replace_all(text, " ##", "");
    text = strip(text);
    static const std::pair<const char*, const char*> cleanup[] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (auto& [a, b] : cleanup) text = replace_all(text, a, b);
    return capitalize(text);
  }
  std::string decode(const std::vector<std::int64_t>& ids) const { return decode(std::span<const std::int64_t>(ids)); }

  /// Python str.replace (non-overlapping, left to right).
  static std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    std::string r;
    std::size_t i = 0;
    while (true) {
      const auto j = s.find(from, i);
      if (j == std::string_view::npos) break;
      r.append(s.substr(i, j - i));
      r.append(to);
      i = j + from.size();
    }
    r.append(s.substr(i));
    return r;
  }
  /// Python str.strip() for ASCII whitespace (space, `\t \n \v \f \r` and `\x1c`-`\x1f`).
  static std::string strip(std::string_view s) {
    auto ws = [](unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f); };
    std::size_t a = 0, b = s.size();
    while (a < b && ws(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && ws(static_cast<unsigned char>(s[b - 1]))) --b;
    return std::string(s.substr(a, b - a));
  }
  /// Python str.capitalize() for ASCII.
  static std::string capitalize(std::string s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      if (i == 0 && c >= 'a' && c <= 'z') s[i] = char(c - 'a' + 'A');
      if (i > 0 && c >= 'A' && c <= 'Z') s[i] = char(c - 'A' + 'a');
    }
    return s;
  }

 private:
  static constexpr std::array<const char*, 5> special_strings() { return {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"}; }
  bool is_special_id(std::int64_t id) const {
    for (auto s : special_ids_)
      if (s == id) return true;
    return false;
  }
  static bool is_special_string(std::string_view t) {
    for (const char* s : special_strings())
      if (t == s) return true;
    return false;
  }

  std::vector<std::string> lines_;
  std::vector<unsigned char> has_token_;
  std::vector<std::int64_t> special_ids_;
};

}  // namespace gyolo
