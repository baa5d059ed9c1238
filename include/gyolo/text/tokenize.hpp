// Caption text -> token ids as upstream's training data does it (spec §6.7; utils/caption/
// caption_utils.py custom_tokenizer, a Hugging Face slow BertTokenizer with do_lower_case, and
// get_encoded_caption_and_mask's encode_plus(max_length, truncation, padding to max_length)):
//
//   BasicTokenizer: drop NUL, U+FFFD and control characters, whitespace -> ' ', spaces around CJK
//   ideographs, split on whitespace; per word: lower case and strip accents (NFD, drop combining
//   marks), then split on every punctuation character (ASCII 33-47, 58-64, 91-96, 123-126 and
//   Unicode P*);
//   WordPiece: greedy longest match first with "##" continuations; a word of more than 100
//   characters, or one that cannot be covered, is [UNK] as a whole;
//   [CLS] tokens [SEP], tokens truncated to max_length - 2, padded with [PAD] to max_length; the
//   mask is true at padding.
//
// Unicode: exact for ASCII, Latin-1 and Latin Extended-A (lower case and accents by table); other
// scripts get their whitespace, punctuation (the General Punctuation, CJK Symbols and fullwidth
// blocks), CJK spacing and control characters right, and keep their letters unchanged — the
// vocabulary is lowercase ASCII, so such words are [UNK] either way. Bytes that are not valid
// UTF-8 are treated as U+FFFD and dropped.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/text/detokenize.hpp"

namespace gyolo {

namespace tokenize_detail {
/// Decodes UTF-8; each byte of an invalid sequence becomes U+FFFD.
inline std::vector<char32_t> utf8_decode(std::string_view s) {
  std::vector<char32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(c);
      ++i;
      continue;
    }
    const int n = (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    bool ok = n > 0 && i + std::size_t(n) < s.size();
    char32_t cp = n == 1 ? (c & 0x1F) : n == 2 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; ok && k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + std::size_t(k)]);
      ok = (d >> 6) == 2;
      cp = (cp << 6) | (d & 0x3F);
    }
    ok = ok && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF) && !(n == 1 && cp < 0x80) && !(n == 2 && cp < 0x800) &&
         !(n == 3 && cp < 0x10000);
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += std::size_t(n) + 1;
  }
  return out;
}
inline void utf8_append(std::string& o, char32_t c) {
  if (c < 0x80) {
    o.push_back(char(c));
  } else if (c < 0x800) {
    o.push_back(char(0xC0 | (c >> 6)));
    o.push_back(char(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    o.push_back(char(0xE0 | (c >> 12)));
    o.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    o.push_back(char(0x80 | (c & 0x3F)));
  } else {
    o.push_back(char(0xF0 | (c >> 18)));
    o.push_back(char(0x80 | ((c >> 12) & 0x3F)));
    o.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    o.push_back(char(0x80 | (c & 0x3F)));
  }
}
/// Python str.isspace() for the characters BasicTokenizer's _is_whitespace accepts.
inline bool is_whitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}
/// _is_control: Unicode category C* other than `\t \n \r`.
inline bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  return c < 0x20 || (c >= 0x7F && c < 0xA0) || c == 0xAD || (c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) ||
         (c >= 0x2060 && c <= 0x206F) || c == 0xFEFF || (c >= 0xE000 && c <= 0xF8FF);
}
/// _is_punctuation: the ASCII non-alphanumeric ranges, and Unicode P* in the blocks listed above.
inline bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  switch (c) {
    case 0xA1: case 0xA7: case 0xAB: case 0xB6: case 0xB7: case 0xBB: case 0xBF: case 0x37E: case 0x387:
      return true;
    default:
      break;
  }
  return (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x2043) || (c >= 0x2045 && c <= 0x2051) || (c >= 0x2053 && c <= 0x205E) ||
         (c >= 0x3001 && c <= 0x3003) || (c >= 0x3008 && c <= 0x3011) || (c >= 0x3014 && c <= 0x301F) ||
         (c >= 0xFF01 && c <= 0xFF03) || (c >= 0xFF05 && c <= 0xFF0A) || (c >= 0xFF0C && c <= 0xFF0F) || c == 0xFF1A || c == 0xFF1B ||
         c == 0xFF1F || c == 0xFF20 || (c >= 0xFF3B && c <= 0xFF3D) || c == 0xFF3F || c == 0xFF5B || c == 0xFF5D;
}
/// _is_chinese_char: the CJK ideograph blocks.
inline bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}
/// lower(), then NFD with combining marks dropped, for ASCII, Latin-1 and Latin Extended-A; a
/// combining mark (U+0300-036F) on its own is dropped too. Other characters are returned as they are.
inline void lower_strip(char32_t c, std::u32string& out) {
  if (c >= 'A' && c <= 'Z') {
    out.push_back(c + 32);
    return;
  }
  if (c >= 0x300 && c <= 0x36F) return;  // Mn
  if (c >= 0xC0 && c <= 0xFF && c != 0xD7 && c != 0xF7) {
    // Latin-1 letters: base letter after lower-casing and NFD (0 = no decomposition: keep, lowered)
    static const char base[64] = {'a', 'a', 'a', 'a', 'a', 'a', 0, 'c', 'e', 'e', 'e', 'e', 'i', 'i', 'i', 'i',
                                  0,   'n', 'o', 'o', 'o', 'o', 'o', 0, 0,   'u', 'u', 'u', 'u', 'y', 0,   0,
                                  'a', 'a', 'a', 'a', 'a', 'a', 0, 'c', 'e', 'e', 'e', 'e', 'i', 'i', 'i', 'i',
                                  0,   'n', 'o', 'o', 'o', 'o', 'o', 0, 0,   'u', 'u', 'u', 'u', 'y', 0,   'y'};
    const char b = base[c - 0xC0];
    if (b) out.push_back(char32_t(b));
    else out.push_back(c <= 0xDE && c != 0xDF ? c + 0x20 : c);  // Æ Ð Ø Þ lower; æ ð ø þ ß as they are
    return;
  }
  if (c >= 0x100 && c <= 0x17F) {
    // Latin Extended-A: pairs (upper, lower) mostly; decomposable ones map to their base letter
    static const char base[128] = {
        'a', 'a', 'a', 'a', 'a', 'a', 'c', 'c', 'c', 'c', 'c', 'c', 'c', 'c', 'd', 'd', 0,   0,   'e', 'e', 'e', 'e', 'e', 'e', 'e', 'e',
        'e', 'e', 'g', 'g', 'g', 'g', 'g', 'g', 'g', 'g', 'h', 'h', 0,   0,   'i', 'i', 'i', 'i', 'i', 'i', 'i', 'i', 'i', 0,   0,   0,
        'j', 'j', 'k', 'k', 0,   'l', 'l', 'l', 'l', 'l', 'l', 0,   0,   0,   0,   'n', 'n', 'n', 'n', 'n', 'n', 0,   0,   0,   'o', 'o',
        'o', 'o', 'o', 'o', 0,   0,   'r', 'r', 'r', 'r', 'r', 'r', 's', 's', 's', 's', 's', 's', 's', 's', 't', 't', 't', 't', 0,   0,
        'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'w', 'w', 'y', 'y', 'y', 'z', 'z', 'z', 'z', 'z', 'z', 0};
    const char b = base[c - 0x100];
    if (b) {
      out.push_back(char32_t(b));
    } else {
      // no decomposition (Đ đ Ħ ħ Ĳ ĳ ı ĸ Ŀ ŀ Ł ł ŉ Ŋ ŋ Œ œ Ŧ ŧ ſ): lower-case the even (upper) member of a pair
      const bool upper_even = !(c >= 0x139 && c <= 0x148) && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17F;
      if (upper_even && c % 2 == 0) out.push_back(c + 1);
      else if (!upper_even && c >= 0x139 && c <= 0x148 && c % 2 == 1) out.push_back(c + 1);
      else out.push_back(c);
    }
    return;
  }
  out.push_back(c);
}
}  // namespace tokenize_detail

/// upstream's caption encoder over a vocabulary (the weights file's gyolo.vocab).
class caption_tokenizer {
 public:
  explicit caption_tokenizer(const std::vector<std::string>& vocab) {
    for (std::size_t i = 0; i < vocab.size(); ++i) ids_[vocab[i]] = std::int64_t(i);  // HF load_vocab: last index wins
    for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]"})
      if (!ids_.count(s)) throw error(std::string("caption tokenizer: the vocabulary has no ") + s);
    pad_ = ids_.at("[PAD]");
    unk_ = ids_.at("[UNK]");
    cls_ = ids_.at("[CLS]");
    sep_ = ids_.at("[SEP]");
  }

  /// BasicTokenizer: the words and punctuation marks of `text` (UTF-8), lower case, accents removed.
  std::vector<std::string> basic_tokens(std::string_view text) const {
    using namespace tokenize_detail;
    std::vector<std::string> words;
    std::u32string cur;
    auto flush = [&] {
      if (cur.empty()) return;
      // per word: lower + strip accents, then split on punctuation
      std::u32string low;
      for (char32_t c : cur) lower_strip(c, low);
      std::string piece;
      for (char32_t c : low) {
        if (is_punctuation(c)) {
          if (!piece.empty()) words.push_back(piece);
          piece.clear();
          std::string p;
          utf8_append(p, c);
          words.push_back(p);
        } else {
          utf8_append(piece, c);
        }
      }
      if (!piece.empty()) words.push_back(piece);
      cur.clear();
    };
    for (char32_t c : utf8_decode(text)) {
      if (c == 0 || c == 0xFFFD || is_control(c)) continue;
      if (is_whitespace(c)) {
        flush();
      } else if (is_cjk(c)) {
        flush();
        cur.push_back(c);
        flush();
      } else {
        cur.push_back(c);
      }
    }
    flush();
    return words;
  }

  /// WordPiece over one basic token.
  void wordpiece(const std::string& word, std::vector<std::int64_t>& out) const {
    const auto chars = tokenize_detail::utf8_decode(word);
    if (chars.size() > 100) {
      out.push_back(unk_);
      return;
    }
    std::vector<std::int64_t> pieces;
    std::size_t start = 0;
    while (start < chars.size()) {
      std::size_t end = chars.size();
      std::int64_t found = -1;
      while (start < end) {
        std::string sub = start > 0 ? "##" : "";
        for (std::size_t k = start; k < end; ++k) tokenize_detail::utf8_append(sub, chars[k]);
        auto it = ids_.find(sub);
        if (it != ids_.end()) {
          found = it->second;
          break;
        }
        --end;
      }
      if (found < 0) {
        out.push_back(unk_);
        return;
      }
      pieces.push_back(found);
      start = end;
    }
    out.insert(out.end(), pieces.begin(), pieces.end());
  }

  /// Token ids of `text` without special tokens.
  std::vector<std::int64_t> tokens(std::string_view text) const {
    std::vector<std::int64_t> ids;
    for (const auto& w : basic_tokens(text)) wordpiece(w, ids);
    return ids;
  }

  /// encode_plus(text, max_length, truncation, padding to max_length): [CLS] tokens [SEP] [PAD]...,
  /// and the mask (true at padding), as get_encoded_caption_and_mask returns them.
  struct encoded {
    std::vector<std::int64_t> ids;
    std::vector<unsigned char> pad_mask;
  };
  encoded encode(std::string_view text, int max_length = 129) const {
    GYOLO_CHECK(max_length >= 2, "caption tokenizer: max_length must be at least 2, got " + std::to_string(max_length));
    auto t = tokens(text);
    if (t.size() > std::size_t(max_length - 2)) t.resize(std::size_t(max_length - 2));
    encoded e;
    e.ids.push_back(cls_);
    e.ids.insert(e.ids.end(), t.begin(), t.end());
    e.ids.push_back(sep_);
    e.pad_mask.assign(e.ids.size(), 0);
    while (e.ids.size() < std::size_t(max_length)) {
      e.ids.push_back(pad_);
      e.pad_mask.push_back(1);
    }
    return e;
  }

 private:
  std::unordered_map<std::string, std::int64_t> ids_;
  std::int64_t pad_ = 0, unk_ = 1, cls_ = 2, sep_ = 3;
};

}  // namespace gyolo
