// Datasets in upstream's COCO layout for caption/train.py (see docs in loader.hpp for the layout):
//   read_data_yaml        data.yaml -> root, image lists of the splits, names, stuff names, captions json
//   label_path_for / stuff_paths_for   upstream's img2label_paths / img2stuff_paths
//   parse_labels          YOLO label text: "cls xc yc w h" boxes or "cls x1 y1 x2 y2 ..." polygons
//   parse_stuff           semantic polygons "ch x1 y1 ..." (upstream's stuff/*.txt)
//   read_captions         COCO captions json (nlohmann::json)
//   fill_polygon / rasterize_polygon   upstream's polygon2mask (cv2.fillPoly, then cv2.resize 1/ratio)
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gyolo/core/error.hpp"
#include "gyolo/data/yaml.hpp"

namespace gyolo::data {

namespace fs = std::filesystem;

/// One split (train or val) of a data.yaml.
struct split_config {
  std::string entry;              // the yaml's value (first entry when a list)
  std::vector<fs::path> images;   // resolved image files
  fs::path captions_json;         // <root>/annotations/captions_<dir_name>.json (may not exist)
};

struct data_config {
  fs::path yaml_path, root;
  int nc = 0;
  std::vector<std::string> names, stuff_names;
  split_config train, val;
  /// Semantic channels: things then stuff (nc + stuff_names.size()).
  int semantic_channels() const { return nc + int(stuff_names.size()); }
};

namespace detail::ds {

inline std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline bool is_image_ext(const fs::path& p) {
  static const char* exts[] = {".bmp", ".jpg", ".jpeg", ".png", ".ppm", ".pgm"};
  const std::string e = lower(p.extension().string());
  for (const char* x : exts)
    if (e == x) return true;
  return false;
}

inline std::string read_text(const fs::path& p, const char* what) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw error(std::string(what) + " '" + p.string() + "': cannot open the file for reading");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw error(std::string(what) + " '" + p.string() + "': read failed");
  return ss.str();
}

inline std::vector<std::string> split_ws(const std::string& line) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    std::size_t j = i;
    while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t j = text.find('\n', i);
    if (j == std::string::npos) j = text.size();
    out.push_back(text.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

/// Each non-empty line of a label file `file` as f(line number, tokens, "label 'file' line n: ").
template <class F>
void for_each_row(const std::string& text, const std::string& file, F&& f) {
  const auto lines = lines_of(text);
  for (std::size_t li = 0; li < lines.size(); ++li) {
    const auto tok = split_ws(lines[li]);
    if (tok.empty()) continue;
    const int ln = int(li) + 1;
    f(ln, tok, "label '" + file + "' line " + std::to_string(ln) + ": ");
  }
}

/// A number token as float, or an error naming the file, line and token.
inline double parse_number(const std::string& tok, const std::string& file, int line) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(tok, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != tok.size())
    throw error("label '" + file + "' line " + std::to_string(line) + ": '" + detail::yaml::printable(tok) +
                "' is not a number");
  if (!std::isfinite(v))
    throw error("label '" + file + "' line " + std::to_string(line) + ": '" + detail::yaml::printable(tok) +
                "' is not finite");
  return v;
}

inline int parse_class(const std::string& tok, const std::string& file, int line, int count, const char* what) {
  const double v = parse_number(tok, file, line);
  if (v != std::floor(v))
    throw error("label '" + file + "' line " + std::to_string(line) + ": " + what + " '" +
                detail::yaml::printable(tok) + "' is not an integer");
  if (v < 0 || v >= count)
    throw error("label '" + file + "' line " + std::to_string(line) + ": " + what + " " + detail::yaml::printable(tok) +
                " is out of range [0, " + std::to_string(count) + ")");
  return int(v);
}

/// The images a split entry names: a folder (its images sorted by name), a .txt list (paths
/// relative to root), or one image file.
inline std::vector<fs::path> resolve_entry(const fs::path& root, const std::string& entry, const std::string& yaml) {
  fs::path p(entry);
  if (p.is_relative()) p = root / p;
  std::error_code ec;
  std::vector<fs::path> out;
  if (fs::is_directory(p, ec)) {
    for (const auto& e : fs::directory_iterator(p, ec))
      if (e.is_regular_file(ec) && is_image_ext(e.path())) out.push_back(e.path());
    std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) {
      return a.filename().string() < b.filename().string();
    });
    return out;
  }
  if (fs::is_regular_file(p, ec) && lower(p.extension().string()) == ".txt") {
    for (auto line : lines_of(read_text(p, "image list"))) {
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
      std::size_t a = 0;
      while (a < line.size() && std::isspace(static_cast<unsigned char>(line[a]))) ++a;
      line = line.substr(a);
      if (line.empty()) continue;
      fs::path q(line);
      if (q.is_relative()) q = root / q;
      out.push_back(q.lexically_normal());
    }
    return out;
  }
  if (fs::is_regular_file(p, ec) && is_image_ext(p)) return {p};
  throw error("data yaml '" + yaml + "': split '" + detail::yaml::printable(entry) + "' (" + p.string() +
              ") is neither a folder, a .txt image list nor an image");
}

}  // namespace detail::ds

/// Reads a data.yaml: `path` (relative to the yaml's folder, or absolute; default the folder),
/// `train`, `val` (folder, .txt list or a list of these), `nc`, `names` (flow/block list or a block
/// mapping "0: name"), optional `stuff_names`. The captions json of a split is
/// `<root>/annotations/captions_<dir_name>.json`, dir_name = the entry's last path component
/// without extension (upstream LoadCaptions).
inline data_config read_data_yaml(const fs::path& yaml_path) {
  const std::string file = yaml_path.string();
  const yaml_node y = read_yaml_file(yaml_path);
  if (!y.is_map()) throw error("data yaml '" + file + "': the top level must be a mapping");
  data_config c;
  c.yaml_path = yaml_path;
  const fs::path dir = fs::absolute(yaml_path).parent_path();
  c.root = dir;
  if (const auto* p = y.find("path"); p && !p->is_null()) {
    if (!p->is_scalar()) throw error("data yaml '" + file + "' line " + std::to_string(p->line) + ": path must be a string");
    fs::path r(p->text);
    c.root = r.is_absolute() ? r : (dir / r);
  }
  c.root = c.root.lexically_normal();
  auto strings = [&](const yaml_node& n, const char* key) {
    std::vector<std::string> out;
    if (n.is_list()) {
      for (const auto& it : n.items) {
        if (!it.is_scalar())
          throw error("data yaml '" + file + "' line " + std::to_string(it.line) + ": " + key + " items must be strings");
        out.push_back(it.text);
      }
    } else if (n.is_map()) {  // 0: person, 1: bicycle ...
      for (std::size_t i = 0; i < n.entries.size(); ++i) {
        const auto& e = n.entries[i];
        yaml_node k;
        k.k = yaml_node::kind::scalar;
        k.text = e.first;
        k.line = e.second.line;
        const long long idx = yaml_to_int(k, file, std::string(key) + " key");
        if (idx != (long long)i)
          throw error("data yaml '" + file + "' line " + std::to_string(e.second.line) + ": " + key + " keys must be 0, 1, ... in order, got " +
                      detail::yaml::printable(e.first));
        if (!e.second.is_scalar())
          throw error("data yaml '" + file + "' line " + std::to_string(e.second.line) + ": " + key + " values must be strings");
        out.push_back(e.second.text);
      }
    } else {
      throw error("data yaml '" + file + "' line " + std::to_string(n.line) + ": " + key + " must be a list or a mapping");
    }
    return out;
  };
  if (const auto* n = y.find("names")) c.names = strings(*n, "names");
  if (const auto* n = y.find("stuff_names"); n && !n->is_null()) c.stuff_names = strings(*n, "stuff_names");
  if (const auto* n = y.find("nc")) {
    const long long v = yaml_to_int(*n, file, "nc");
    if (v < 0 || v > 1000000) throw error("data yaml '" + file + "' line " + std::to_string(n->line) + ": nc out of range");
    c.nc = int(v);
    if (!c.names.empty() && c.names.size() != std::size_t(c.nc))
      throw error("data yaml '" + file + "': nc is " + std::to_string(c.nc) + " but names has " +
                  std::to_string(c.names.size()) + " entries");
  } else {
    if (c.names.empty()) throw error("data yaml '" + file + "': neither nc nor names is given");
    c.nc = int(c.names.size());
  }
  if (c.names.empty())
    for (int i = 0; i < c.nc; ++i) c.names.push_back("class" + std::to_string(i));
  auto split = [&](const char* key, split_config& s) {
    const auto* n = y.find(key);
    if (!n || n->is_null()) return;
    std::vector<std::string> entries;
    if (n->is_scalar()) entries.push_back(n->text);
    else if (n->is_list())
      for (const auto& it : n->items) {
        if (!it.is_scalar()) throw error("data yaml '" + file + "' line " + std::to_string(it.line) + ": " + key + " items must be strings");
        entries.push_back(it.text);
      }
    else throw error("data yaml '" + file + "' line " + std::to_string(n->line) + ": " + key + " must be a path or a list of paths");
    if (entries.empty()) return;
    s.entry = entries[0];
    for (const auto& e : entries) {
      auto v = detail::ds::resolve_entry(c.root, e, file);
      s.images.insert(s.images.end(), v.begin(), v.end());
    }
    std::string last = entries[0];
    while (!last.empty() && last.back() == '/') last.pop_back();
    last = last.substr(last.find_last_of('/') == std::string::npos ? 0 : last.find_last_of('/') + 1);
    const std::string dir_name = last.substr(0, last.find('.'));  // upstream: split('.')[0]
    s.captions_json = c.root / "annotations" / ("captions_" + dir_name + ".json");
  };
  split("train", c.train);
  split("val", c.val);
  return c;
}

/// upstream img2label_paths: the last "/images/" -> "/labels/", the extension -> ".txt".
inline fs::path label_path_for(const fs::path& image, const char* folder = "labels") {
  std::string s = image.string();
  const std::size_t k = s.rfind("/images/");
  if (k != std::string::npos) s = s.substr(0, k) + "/" + folder + "/" + s.substr(k + 8);
  fs::path p(s);
  p.replace_extension(".txt");
  return p;
}

/// upstream img2stuff_paths (+ the label-map form): `<..>/stuff/<..>/<stem>.txt`, and the .png one.
inline std::array<fs::path, 2> stuff_paths_for(const fs::path& image) {
  fs::path t = label_path_for(image, "stuff");
  fs::path p = t;
  p.replace_extension(".png");
  return {t, p};
}

/// One thing instance of a label file, normalised to [0, 1].
struct instance_label {
  int cls = 0;
  std::array<float, 4> xywh{};  // box centre and size (for polygons: the polygon's bounding box)
  std::vector<float> polygon;   // x1 y1 x2 y2 ... ; empty for a box row
};

/// One semantic polygon of a stuff file: channel and normalised points.
struct semantic_polygon {
  int channel = 0;
  std::vector<float> polygon;
};

/// YOLO label text. A row of 5 numbers is a box "cls xc yc w h"; a row of 2k+1 numbers (k >= 3) is
/// a polygon "cls x1 y1 ... xk yk" whose box is its bounding box (upstream segments2boxes).
/// Errors (gyolo::error naming `file` and the line): a token that is not a finite number, a class
/// that is not an integer in [0, nc), another column count, coordinates outside [0, 1].
inline std::vector<instance_label> parse_labels(const std::string& text, const std::string& file, int nc) {
  using namespace detail::ds;
  std::vector<instance_label> out;
  for_each_row(text, file, [&](int ln, const std::vector<std::string>& tok, const std::string& where) {
    instance_label L;
    L.cls = parse_class(tok[0], file, ln, nc, "class");
    std::vector<double> v;
    for (std::size_t i = 1; i < tok.size(); ++i) v.push_back(parse_number(tok[i], file, ln));
    for (double x : v)
      if (x < 0 || x > 1) throw error(where + "coordinate " + std::to_string(x) + " outside [0, 1]");
    if (v.size() == 4) {
      for (int k = 0; k < 4; ++k) L.xywh[std::size_t(k)] = float(v[std::size_t(k)]);
    } else if (v.size() >= 6 && v.size() % 2 == 0) {
      double x0 = 1e30, y0 = 1e30, x1 = -1e30, y1 = -1e30;
      for (std::size_t i = 0; i < v.size(); i += 2) {
        x0 = std::min(x0, v[i]);
        x1 = std::max(x1, v[i]);
        y0 = std::min(y0, v[i + 1]);
        y1 = std::max(y1, v[i + 1]);
        L.polygon.push_back(float(v[i]));
        L.polygon.push_back(float(v[i + 1]));
      }
      L.xywh = {float((x0 + x1) / 2), float((y0 + y1) / 2), float(x1 - x0), float(y1 - y0)};
    } else if (v.size() % 2 == 0) {
      throw error(where + (v.empty() ? std::string("no coordinates") : std::string("a polygon needs at least 3 points")));
    } else {
      throw error(where + std::to_string(tok.size()) +
                  " columns: expected 5 (cls xc yc w h) or an odd count >= 7 (cls and >= 3 points)");
    }
    out.push_back(std::move(L));
  });
  return out;
}

/// Semantic polygons "ch x1 y1 x2 y2 ..." (>= 3 points, ch in [0, channels), coordinates in [0, 1]).
inline std::vector<semantic_polygon> parse_stuff(const std::string& text, const std::string& file, int channels) {
  using namespace detail::ds;
  std::vector<semantic_polygon> out;
  for_each_row(text, file, [&](int ln, const std::vector<std::string>& tok, const std::string& where) {
    semantic_polygon s;
    s.channel = parse_class(tok[0], file, ln, channels, "semantic channel");
    if (tok.size() % 2 == 0) throw error(where + "odd number of coordinates");
    if (tok.size() < 7) throw error(where + "a polygon needs at least 3 points");
    for (std::size_t i = 1; i < tok.size(); ++i) {
      const double x = parse_number(tok[i], file, ln);
      if (x < 0 || x > 1) throw error(where + "coordinate " + std::to_string(x) + " outside [0, 1]");
      s.polygon.push_back(float(x));
    }
    out.push_back(std::move(s));
  });
  return out;
}

/// COCO captions json: per annotation, in file order, the image id and the caption.
struct caption_annotation {
  std::int64_t image_id = 0;
  std::string caption;
};

/// Reads a COCO captions json ({"annotations": [{"image_id", "caption"}, ...]}); a malformed file
/// is a gyolo::error naming it.
inline std::vector<caption_annotation> read_captions(const fs::path& path) {
  const std::string text = detail::ds::read_text(path, "captions json");
  const std::string where = "captions json '" + path.string() + "': ";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw error(where + "malformed json: " + detail::yaml::printable(e.what(), 200));
  }
  if (!j.is_object() || !j.contains("annotations") || !j["annotations"].is_array())
    throw error(where + "no 'annotations' array");
  std::vector<caption_annotation> out;
  std::size_t i = 0;
  for (const auto& a : j["annotations"]) {
    const std::string at = where + "annotation " + std::to_string(i++) + ": ";
    if (!a.is_object() || !a.contains("image_id") || !a.contains("caption")) throw error(at + "needs image_id and caption");
    caption_annotation c;
    const auto& id = a["image_id"];
    if (id.is_number_integer()) c.image_id = id.get<std::int64_t>();
    else if (id.is_string()) {
      const std::string s = id.get<std::string>();
      std::size_t used = 0;
      try {
        c.image_id = std::stoll(s, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != s.size()) throw error(at + "image_id '" + detail::yaml::printable(s) + "' is not an integer");
    } else {
      throw error(at + "image_id is not an integer");
    }
    if (!a["caption"].is_string()) throw error(at + "caption is not a string");
    c.caption = a["caption"].get<std::string>();
    out.push_back(std::move(c));
  }
  return out;
}

/// cv2.fillPoly(mask, [pts.astype(int32)], color) equivalent for one polygon on a W x H 8-bit
/// mask. Rule (ours; close to cv2, not bit-exact): vertices are truncated toward zero to integers
/// (numpy astype(int32)); a pixel (x, y) is set when the integer point (x, y) is inside the
/// polygon (even-odd rule on the scanline y, edges owning [ymin, ymax), span [ceil(xl), floor(xr)])
/// or on its outline (each edge covers, on each row y it crosses, the pixels from round(x) at
/// y - 0.5 to round(x) at y + 0.5 clipped to the edge: cv2 draws the outline too, so a w x h
/// axis-aligned rectangle covers (w + 1) x (h + 1) pixels as in cv2). Pixels outside are clipped.
/// Only rows [row0, row1) are written (the caller's band).
inline void fill_polygon(std::uint8_t* mask, int W, int H, const std::vector<double>& xy, std::uint8_t color,
                         int row0 = 0, int row1 = -1) {
  if (row1 < 0) row1 = H;
  row0 = std::max(row0, 0);
  row1 = std::min(row1, H);
  const std::size_t n = xy.size() / 2;
  if (n == 0 || W <= 0) return;
  std::vector<double> px(n), py(n);
  for (std::size_t i = 0; i < n; ++i) {
    // astype(int32): truncation toward zero; the clamp keeps absurd values finite
    px[i] = std::trunc(std::clamp(xy[2 * i], -1e8, 1e8));
    py[i] = std::trunc(std::clamp(xy[2 * i + 1], -1e8, 1e8));
  }
  std::vector<double> xs;
  auto set_span = [&](int y, double a, double b) {
    long long x0 = (long long)std::ceil(std::min(a, b)), x1 = (long long)std::floor(std::max(a, b));
    x0 = std::max<long long>(x0, 0);
    x1 = std::min<long long>(x1, W - 1);
    if (x0 > x1) return;
    std::uint8_t* r = mask + std::size_t(y) * std::size_t(W);
    std::fill(r + x0, r + x1 + 1, color);
  };
  for (int y = row0; y < row1; ++y) {
    xs.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t j = (i + 1) % n;
      const double ya = py[i], yb = py[j];
      if (ya == yb) continue;
      const double lo = std::min(ya, yb), hi = std::max(ya, yb);
      if (y < lo || y >= hi) continue;
      xs.push_back(px[i] + (y - ya) * (px[j] - px[i]) / (yb - ya));
    }
    std::sort(xs.begin(), xs.end());
    for (std::size_t k = 0; k + 1 < xs.size(); k += 2) set_span(y, xs[k], xs[k + 1]);
  }
  // outline
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t j = (i + 1) % n;
    const double xa = px[i], ya = py[i], xb = px[j], yb = py[j];
    if (ya == yb) {
      if (ya >= row0 && ya < row1) set_span(int(ya), xa, xb);
      continue;
    }
    const double lo = std::min(ya, yb), hi = std::max(ya, yb);
    const int y0 = int(std::max<double>(lo, row0)), y1 = int(std::min<double>(hi, row1 - 1));
    for (int y = y0; y <= y1; ++y) {
      const double t0 = std::clamp((y - 0.5 - ya) / (yb - ya), 0.0, 1.0), t1 = std::clamp((y + 0.5 - ya) / (yb - ya), 0.0, 1.0);
      const double u0 = std::nearbyint(xa + t0 * (xb - xa)), u1 = std::nearbyint(xa + t1 * (xb - xa));
      set_span(y, u0, u1);
    }
  }
}

/// upstream polygon2mask(img_size=(H, W), [xy], color=1, downsample_ratio=r): fill_polygon at
/// H x W, then cv2.resize to (W / r, H / r) with INTER_LINEAR, OR-ed into `out`
/// ([H/r, W/r], values 0/1). For r = 1 the filled mask itself; for an even r (H, W multiples of
/// r) cv2's bilinear 1/r resize of a 0/1 mask is exact in closed form: output (x, y) samples the
/// 2 x 2 block at rows/columns r*y + r/2 - 1, r*y + r/2 with weights 1/4 and rounds half up, so
/// it is 1 iff at least 2 of those 4 pixels are set. Only the polygon's bounding rows are filled.
inline void rasterize_polygon(const std::vector<double>& xy, int H, int W, int ratio, std::uint8_t* out) {
  GYOLO_CHECK(ratio == 1 || (ratio % 2 == 0 && H % ratio == 0 && W % ratio == 0),
              "rasterize_polygon: the downsample ratio must be 1 or even and divide the image size");
  if (xy.size() < 6) return;
  double ylo = 1e30, yhi = -1e30;
  for (std::size_t i = 1; i < xy.size(); i += 2) {
    ylo = std::min(ylo, std::trunc(std::clamp(xy[i], -1e8, 1e8)));
    yhi = std::max(yhi, std::trunc(std::clamp(xy[i], -1e8, 1e8)));
  }
  const int r0 = int(std::clamp(ylo, 0.0, double(H))), r1 = int(std::clamp(yhi + 1, 0.0, double(H)));
  if (r0 >= r1) return;
  std::vector<std::uint8_t> full(std::size_t(H) * std::size_t(W), 0);
  fill_polygon(full.data(), W, H, xy, 1, r0, r1);
  if (ratio == 1) {
    for (std::size_t i = std::size_t(r0) * W; i < std::size_t(r1) * W; ++i) out[i] |= full[i];
    return;
  }
  const int h = H / ratio, w = W / ratio, o = ratio / 2 - 1;
  for (int y = std::max(0, r0 / ratio - 1); y < std::min(h, r1 / ratio + 1); ++y) {
    const std::uint8_t* a = full.data() + std::size_t(ratio * y + o) * W;
    const std::uint8_t* b = a + W;
    std::uint8_t* d = out + std::size_t(y) * w;
    for (int x = 0; x < w; ++x) {
      const int k = ratio * x + o;
      if (a[k] + a[k + 1] + b[k] + b[k + 1] >= 2) d[x] = 1;
    }
  }
}

}  // namespace gyolo::data
