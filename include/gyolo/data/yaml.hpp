// A reader for the small YAML subset that upstream's data and hyperparameter files use:
//   key: value                 plain, 'single' ('' escapes a quote) or "double" (\" \\ \n \t) scalars
//   key: [a, 'b', 3]           flow lists (nested lists allowed), possibly spanning lines
//   key:                       a block mapping or a block list, indented deeper than its key
//     0: person
//   key:
//     - a
//   key: |                     block scalars (| literal, > folded, with - or +): kept as text
//   # comment, value  # comment (a '#' at the line start or after a space, outside quotes)
// Anything else (flow mappings {}, anchors, aliases, tags, documents ---, tabs
// in indentation, inconsistent indentation, duplicate keys) is an error that names the file and line.
#pragma once
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gyolo/core/error.hpp"

namespace gyolo::data {

struct yaml_entry;

/// One parsed node. Scalars keep their text (quotes removed); `quoted` tells "'3'" from "3".
struct yaml_node {
  enum class kind { null, scalar, list, map };
  kind k = kind::null;
  std::string text;                                        // scalar
  bool quoted = false;                                     // scalar was quoted
  std::vector<yaml_node> items;                            // list
  std::vector<yaml_entry> entries;                         // map, in file order
  int line = 0;                                            // 1-based line where the node starts

  bool is_null() const { return k == kind::null; }
  bool is_scalar() const { return k == kind::scalar; }
  bool is_list() const { return k == kind::list; }
  bool is_map() const { return k == kind::map; }
  /// The entry `key` of a map, or nullptr.
  const yaml_node* find(const std::string& key) const;
};

/// One entry of a map (a struct rather than std::pair: a pair of an incomplete type may not be a
/// vector's element).
struct yaml_entry {
  std::string first;  // key
  yaml_node second;   // value
};

inline const yaml_node* yaml_node::find(const std::string& key) const {
  for (const auto& e : entries)
    if (e.first == key) return &e.second;
  return nullptr;
}

namespace detail::yaml {

/// Bytes from a file as they may appear in a message (gyolo::printable), at most 80 of them.
inline std::string printable(const std::string& s, std::size_t max_len = 80) { return gyolo::printable(s, max_len); }

struct line_t {
  int no = 0;       // 1-based
  int indent = 0;   // leading spaces
  std::string s;    // content without indentation and comment, right-trimmed
  std::string block_text;     // "key: |" or "key: >": the block scalar's text
  bool block_scalar = false;
};

class parser {
 public:
  parser(const std::string& text, std::string name) : name_(std::move(name)) { split(text); }

  yaml_node parse() {
    yaml_node root;
    root.k = yaml_node::kind::map;
    root.line = 1;
    if (lines_.empty()) return root;
    if (lines_[0].indent != 0) fail(lines_[0].no, "the top level must start at column 1");
    return block(0);
  }

 private:
  std::string name_;
  std::vector<line_t> lines_;
  std::size_t pos_ = 0;

  [[noreturn]] void fail(int line, const std::string& what) const {
    throw error("yaml '" + name_ + "' line " + std::to_string(line) + ": " + what);
  }

  void split(const std::string& text) {
    std::vector<std::string> raw;
    for (std::size_t i = 0; i <= text.size();) {
      std::size_t j = text.find('\n', i);
      if (j == std::string::npos) j = text.size();
      std::string r = text.substr(i, j - i);
      if (!r.empty() && r.back() == '\r') r.pop_back();
      if (raw.empty() && r.size() >= 3 && r.compare(0, 3, "\xEF\xBB\xBF") == 0) r.erase(0, 3);  // BOM
      raw.push_back(std::move(r));
      i = j + 1;
    }
    auto indent_of = [](const std::string& r) {
      int n = 0;
      while (std::size_t(n) < r.size() && r[std::size_t(n)] == ' ') ++n;
      return n;
    };
    for (std::size_t k = 0; k < raw.size(); ++k) {
      const int no = int(k) + 1, indent = indent_of(raw[k]);
      std::string s = strip_comment(raw[k].substr(std::size_t(indent)), no);
      while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
      if (s.empty()) continue;
      if (s[0] == '\t') fail(no, "a tab in the indentation");
      if (s == "---" || s == "...") fail(no, "multiple documents ('" + s + "') are not supported");
      line_t L{no, indent, s, {}, false};
      // "key: |" / "key: >" (optionally - or +): the block scalar's raw lines (blank lines kept,
      // comments are text) are those indented deeper than the key
      const std::size_t c = find_key_colon(s);
      if (c != std::string::npos) {
        const std::string v = trim(s.substr(c + 1));
        if (!v.empty() && (v[0] == '|' || v[0] == '>') && (v.size() == 1 || (v.size() == 2 && (v[1] == '-' || v[1] == '+')))) {
          L.block_scalar = true;
          int bi = -1;
          std::string pending;
          while (k + 1 < raw.size()) {
            const std::string& r = raw[k + 1];
            const bool blank = r.find_first_not_of(" \t") == std::string::npos;
            if (!blank && indent_of(r) <= indent) break;
            ++k;
            if (blank) {
              pending += '\n';
              continue;
            }
            if (bi < 0) bi = indent_of(r);
            if (indent_of(r) < bi) fail(int(k) + 1, "block scalar line indented less than its first line");
            L.block_text += pending;
            pending.clear();
            L.block_text += r.substr(std::size_t(bi));
            L.block_text += '\n';
          }
          if (v[0] == '>') {  // folded: single newlines become spaces
            std::string f;
            for (std::size_t q = 0; q < L.block_text.size(); ++q) {
              const char ch = L.block_text[q];
              if (ch == '\n' && q + 1 < L.block_text.size() && L.block_text[q + 1] != '\n' && (f.empty() || f.back() != '\n'))
                f += ' ';
              else
                f += ch;
            }
            L.block_text = f;
          }
          if (v.size() == 2 && v[1] == '-')
            while (!L.block_text.empty() && L.block_text.back() == '\n') L.block_text.pop_back();
        }
      }
      lines_.push_back(std::move(L));
    }
  }

  std::string strip_comment(const std::string& s, int no) const {
    char q = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (q) {
        if (q == '"' && c == '\\') {
          ++i;
        } else if (c == q) {
          if (q == '\'' && i + 1 < s.size() && s[i + 1] == '\'') ++i;  // '' inside '...'
          else q = 0;
        }
      } else if (c == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) {
        return s.substr(0, i);
      } else if ((c == '\'' || c == '"') && (i == 0 || std::string(" [,:-").find(s[i - 1]) != std::string::npos)) {
        q = c;
      }
    }
    (void)no;  // an unterminated quote is reported where the scalar is parsed
    return s;
  }

  static bool is_list_item(const std::string& s) { return s == "-" || (s.size() >= 2 && s[0] == '-' && s[1] == ' '); }

  // A block at lines_[pos_].indent: a list when its first line starts with "- ", else a mapping.
  yaml_node block(int indent, bool list_ends_at_key = false) {
    yaml_node n;
    n.line = lines_[pos_].no;
    const bool list = is_list_item(lines_[pos_].s);
    n.k = list ? yaml_node::kind::list : yaml_node::kind::map;
    while (pos_ < lines_.size()) {
      const line_t& L = lines_[pos_];
      if (L.indent < indent) break;
      if (L.indent > indent) fail(L.no, "unexpected indentation");
      if (list && list_ends_at_key && !is_list_item(L.s)) break;
      if (list != is_list_item(L.s))
        fail(L.no, list ? "expected a list item '- ...' (a mapping and a list at the same level)"
                        : "a list item where a 'key: value' line was expected");
      if (list) {
        const std::string rest = L.s.size() > 2 ? trim(L.s.substr(2)) : std::string();
        const int no = L.no;
        ++pos_;
        if (rest.empty()) {
          n.items.push_back(child(indent, no, false));
        } else {
          if (is_list_item(rest) || find_key_colon(rest) != std::string::npos)
            fail(no, "nested mappings or lists inside a block list item are not supported");
          n.items.push_back(inline_value(rest, no));
        }
      } else {
        const std::size_t c = find_key_colon(L.s);
        if (c == std::string::npos) fail(L.no, "expected 'key: value', got '" + printable(L.s) + "'");
        const int no = L.no;
        yaml_node keyn = scalar(trim(L.s.substr(0, c)), no);
        if (keyn.text.empty() && !keyn.quoted) fail(no, "empty key");
        for (const auto& e : n.entries)
          if (e.first == keyn.text) fail(no, "duplicate key '" + printable(keyn.text) + "'");
        const std::string rest = trim(L.s.substr(c + 1));
        const bool bs = L.block_scalar;
        std::string btext = L.block_text;
        ++pos_;
        if (bs) {
          yaml_node v;
          v.k = yaml_node::kind::scalar;
          v.text = std::move(btext);
          v.quoted = true;
          v.line = no;
          n.entries.push_back(yaml_entry{keyn.text, std::move(v)});
          continue;
        }
        n.entries.push_back(yaml_entry{keyn.text, rest.empty() ? child(indent, no, true) : inline_value(rest, no)});
      }
    }
    return n;
  }

  // The value of "key:" with nothing after the colon: a deeper block, or null.
  yaml_node child(int indent, int no, bool in_map) {
    if (pos_ < lines_.size() && lines_[pos_].indent > indent && lines_[pos_].s[0] == '[') {  // key:\n  [a, b]
      const line_t& L = lines_[pos_++];
      return inline_value(L.s, L.no);
    }
    if (pos_ < lines_.size() && lines_[pos_].indent > indent) return block(lines_[pos_].indent);
    // "key:\n- a" (a list at the key's own indentation) is valid YAML inside a mapping
    if (in_map && pos_ < lines_.size() && lines_[pos_].indent == indent && is_list_item(lines_[pos_].s))
      return list_at(indent);
    yaml_node n;
    n.line = no;
    return n;
  }

  // A block list whose items sit at the indentation of the key that owns it.
  yaml_node list_at(int indent) { return block(indent, true); }

  // The colon that ends a mapping key: outside quotes and brackets, followed by a space or the end.
  static std::size_t find_key_colon(const std::string& s) {
    char q = 0;
    int depth = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (q) {
        if (q == '"' && c == '\\') ++i;
        else if (c == q) q = 0;
      } else if (c == '\'' || c == '"') {
        if (i == 0) q = c;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if (c == ']' || c == '}') {
        --depth;
      } else if (c == ':' && depth == 0 && (i + 1 == s.size() || s[i + 1] == ' ')) {
        return i;
      }
    }
    return std::string::npos;
  }

  static std::string trim(const std::string& s) {
    std::size_t a = 0, b = s.size();
    while (a < b && (s[a] == ' ' || s[a] == '\t')) ++a;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t')) --b;
    return s.substr(a, b - a);
  }

  // A value on the key's line: a flow list (possibly continued on the following lines) or a scalar.
  yaml_node inline_value(const std::string& rest, int no) {
    if (rest[0] == '[') {
      std::string text = rest;
      // continue over following lines until the brackets balance
      while (!balanced(text, no)) {
        if (pos_ >= lines_.size()) fail(no, "unterminated flow list '['");
        text += ' ';
        text += lines_[pos_].s;
        ++pos_;
      }
      std::size_t i = 0;
      yaml_node n = flow(text, i, no);
      skip_ws(text, i);
      if (i != text.size()) fail(no, "unexpected text after the flow list: '" + printable(text.substr(i)) + "'");
      return n;
    }
    const char c = rest[0];
    if (c == '{') fail(no, "flow mappings '{...}' are not supported");
    if (c == '&' || c == '*' || c == '!') fail(no, "anchors, aliases and tags are not supported");
    if (c == '|' || c == '>') fail(no, "this block scalar form ('|', '>') is not supported (only 'key: |' or 'key: >', optionally with - or +)");
    return scalar(rest, no);
  }

  bool balanced(const std::string& s, int no) const {
    char q = 0;
    int depth = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (q) {
        if (q == '"' && c == '\\') ++i;
        else if (c == q) {
          if (q == '\'' && i + 1 < s.size() && s[i + 1] == '\'') ++i;
          else q = 0;
        }
      } else if (c == '\'' || c == '"') {
        q = c;
      } else if (c == '[') {
        ++depth;
      } else if (c == ']') {
        if (--depth < 0) fail(no, "unbalanced ']'");
      }
    }
    return depth == 0 && !q;
  }

  static void skip_ws(const std::string& s, std::size_t& i) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  }

  yaml_node flow(const std::string& s, std::size_t& i, int no) {
    yaml_node n;
    n.k = yaml_node::kind::list;
    n.line = no;
    ++i;  // '['
    skip_ws(s, i);
    if (i < s.size() && s[i] == ']') {
      ++i;
      return n;
    }
    while (true) {
      skip_ws(s, i);
      if (i >= s.size()) fail(no, "unterminated flow list");
      if (s[i] == '[') {
        n.items.push_back(flow(s, i, no));
      } else if (s[i] == '{') {
        fail(no, "flow mappings '{...}' are not supported");
      } else {
        std::size_t j = i;
        if (s[i] == '\'' || s[i] == '"') {
          const char q = s[i];
          for (j = i + 1; j < s.size(); ++j) {
            if (q == '"' && s[j] == '\\') ++j;
            else if (s[j] == q) {
              if (q == '\'' && j + 1 < s.size() && s[j + 1] == '\'') ++j;
              else break;
            }
          }
          if (j >= s.size()) fail(no, "unterminated quoted string");
          ++j;
        } else {
          while (j < s.size() && s[j] != ',' && s[j] != ']') ++j;
        }
        const std::string item = trim(s.substr(i, j - i));
        if (item.empty()) fail(no, "empty item in a flow list");
        n.items.push_back(scalar(item, no));
        i = j;
      }
      skip_ws(s, i);
      if (i >= s.size()) fail(no, "unterminated flow list");
      if (s[i] == ',') {
        ++i;
        skip_ws(s, i);
        if (i < s.size() && s[i] == ']') {  // trailing comma
          ++i;
          return n;
        }
        continue;
      }
      if (s[i] == ']') {
        ++i;
        return n;
      }
      fail(no, "expected ',' or ']' in a flow list, got '" + printable(s.substr(i, 1)) + "'");
    }
  }

  yaml_node scalar(const std::string& s, int no) const {
    yaml_node n;
    n.line = no;
    n.k = yaml_node::kind::scalar;
    if (!s.empty() && (s[0] == '\'' || s[0] == '"')) {
      const char q = s[0];
      std::string out;
      std::size_t i = 1;
      bool closed = false;
      for (; i < s.size(); ++i) {
        const char c = s[i];
        if (q == '\'' && c == '\'') {
          if (i + 1 < s.size() && s[i + 1] == '\'') {
            out.push_back('\'');
            ++i;
            continue;
          }
          closed = true;
          break;
        }
        if (q == '"' && c == '"') {
          closed = true;
          break;
        }
        if (q == '"' && c == '\\') {
          if (++i >= s.size()) break;
          const char e = s[i];
          if (e == 'n') out.push_back('\n');
          else if (e == 't') out.push_back('\t');
          else if (e == '\\' || e == '"' || e == '/') out.push_back(e);
          else fail(no, std::string("unsupported escape '\\") + printable(std::string(1, e)) + "'");
          continue;
        }
        out.push_back(c);
      }
      if (!closed) fail(no, "unterminated quoted string " + printable(s));
      if (trim(s.substr(i + 1)).size()) fail(no, "unexpected text after a quoted string: '" + printable(s) + "'");
      n.text = out;
      n.quoted = true;
      return n;
    }
    const char c = s.empty() ? ' ' : s[0];
    if (c == '&' || c == '*' || c == '!') fail(no, "anchors, aliases and tags are not supported");
    if (c == '{') fail(no, "flow mappings '{...}' are not supported");
    if (c == '|' || c == '>') fail(no, "this block scalar form ('|', '>') is not supported (only 'key: |' or 'key: >', optionally with - or +)");
    if (s == "~" || s == "null" || s == "Null" || s == "NULL") {
      n.k = yaml_node::kind::null;
      return n;
    }
    n.text = s;
    return n;
  }
};

}  // namespace detail::yaml

/// Parses `text`; `name` (a file name) is used in error messages.
inline yaml_node parse_yaml(const std::string& text, const std::string& name) {
  return detail::yaml::parser(text, name).parse();
}

/// Reads and parses a YAML file.
inline yaml_node read_yaml_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw error("yaml '" + path.string() + "': cannot open the file for reading");
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_yaml(ss.str(), path.string());
}

/// A scalar as an integer (base 10), or an error naming `file`, the line and `what`.
inline long long yaml_to_int(const yaml_node& n, const std::string& file, const std::string& what) {
  if (!n.is_scalar()) throw error("yaml '" + file + "' line " + std::to_string(n.line) + ": " + what + " must be an integer");
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(n.text, &used, 10);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != n.text.size())
    throw error("yaml '" + file + "' line " + std::to_string(n.line) + ": " + what + " must be an integer, got '" +
                detail::yaml::printable(n.text) + "'");
  return v;
}

}  // namespace gyolo::data
