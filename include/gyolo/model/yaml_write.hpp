// A model yaml (upstream's gyolo.yaml layout, as JSON) for a variant_config: what a weights file
// written by gyolo itself (`gyolo train`) carries as gyolo.yaml, so that variant_from_yaml reads the
// variant back. The layer list (modules, 'from' fields, repeats) is gyolo.yaml's; every channel
// argument is written from the variant through variant_config::fields, with width_multiple 1.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gyolo/core/error.hpp"
#include "gyolo/model/config.hpp"

namespace gyolo {

namespace detail {
/// gyolo.yaml's 58 layers (from, repeats, module, args); the arguments are overwritten.
inline const char* gyolo_yaml_layout() {
  return
    "{\"nc\":80,\"depth_multiple\":1.0,\"width_multiple\":1.0,\"anchors\":3,\"backbone\":[[-1,1,\"Silence\",[]],[-1,1,\"Conv\",[8"
    ",3,2]],[-1,1,\"Conv\",[16,3,2]],[-1,1,\"RepNCSPELAN4\",[32,16,8,1]],[-1,1,\"ADown\",[32]],[-1,1,\"RepNCSPELAN4\",[64,3"
    "2,16,1]],[-1,1,\"ADown\",[64]],[-1,1,\"RepNCSPELAN4\",[64,64,32,1]],[-1,1,\"ADown\",[64]],[-1,1,\"RepNCSPELAN4\",[64,6"
    "4,32,1]]],\"head\":[[-1,1,\"SPPELAN\",[256,128]],[-1,1,\"PSA\",[256]],[-1,1,\"nn.Upsample\",[\"None\",2,\"nearest\"]],[[-1"
    ",7],1,\"Concat\",[1]],[-1,1,\"RepNCSPELAN4\",[64,64,32,1]],[-1,1,\"nn.Upsample\",[\"None\",2,\"nearest\"]],[[-1,5],1,\"Co"
    "ncat\",[1]],[-1,1,\"RepNCSPELAN4B\",[32,32,16,1]],[-1,1,\"ADown\",[32]],[[-1,14],1,\"Concat\",[1]],[-1,1,\"RepNCSPELAN"
    "4B\",[64,64,32,1]],[-1,1,\"ADown\",[64]],[[-1,11],1,\"Concat\",[1]],[-1,1,\"RepNCSPELAN4B\",[64,64,32,1]],[5,1,\"CBLin"
    "ear\",[[32]]],[7,1,\"CBLinear\",[[32,64]]],[9,1,\"CBLinear\",[[32,64,64]]],[0,1,\"Conv\",[8,3,2]],[-1,1,\"Conv\",[16,3,"
    "2]],[-1,1,\"RepNCSPELAN4\",[32,16,8,1]],[-1,1,\"ADown\",[32]],[[24,25,26,-1],1,\"CBFuse\",[[0,0,0]]],[-1,1,\"RepNCSPE"
    "LAN4\",[64,32,16,1]],[-1,1,\"ADown\",[64]],[[25,26,-1],1,\"CBFuse\",[[1,1]]],[-1,1,\"RepNCSPELAN4\",[64,64,32,1]],[-1"
    ",1,\"ADown\",[64]],[[26,-1],1,\"CBFuse\",[[2]]],[-1,1,\"RepNCSPELAN4\",[64,64,32,1]],[32,1,\"RepNCSPELAN4\",[64,32,16,"
    "2]],[-1,1,\"nn.Upsample\",[\"None\",2,\"nearest\"]],[-1,1,\"DWConv\",[32,3,1]],[-1,1,\"Conv\",[32,1,1]],[17,1,\"RepNCSPEL"
    "AN4\",[32,32,16,2]],[-1,1,\"nn.Upsample\",[\"None\",2,\"nearest\"]],[-1,1,\"DWConv\",[32,3,1]],[-1,1,\"Conv\",[32,1,1]],["
    "32,1,\"RepNCSPELAN4\",[64,32,16,2]],[-1,1,\"nn.Upsample\",[\"None\",2,\"nearest\"]],[-1,1,\"DWConv\",[32,3,1]],[-1,1,\"Co"
    "nv\",[32,1,1]],[17,1,\"RepNCSPELAN4\",[32,32,16,2]],[-1,1,\"nn.Upsample\",[\"None\",2,\"nearest\"]],[-1,1,\"DWConv\",[32,"
    "3,1]],[-1,1,\"Conv\",[32,1,1]],[[32,35,38,17,20,23,17,20,23,42,46,50,54],1,\"DualDPanoptic\",[\"nc\",93,32,256]],[[1"
    "7,20,23,11,44,55],1,\"Grit\",[]],[[55,56],1,\"OutputLayer\",[]]],\"ch\":3}";
}
}  // namespace detail

/// gyolo.yaml with the channel arguments of variant v (width_multiple 1, so that upstream's
/// parse_model and variant_from_yaml read back exactly v). v.nm must be a multiple of 8.
inline nlohmann::json variant_yaml(const variant_config& v) {
  GYOLO_CHECK(v.nm > 0 && v.nm % 8 == 0, "variant_yaml: nm must be a positive multiple of 8");
  GYOLO_CHECK(v.nc > 0 && v.sem_nc >= 0, "variant_yaml: nc must be positive and sem_nc non-negative");
  auto y = nlohmann::json::parse(detail::gyolo_yaml_layout());
  std::vector<nlohmann::json*> layers;
  for (auto& l : y["backbone"]) layers.push_back(&l);
  for (auto& l : y["head"]) layers.push_back(&l);
  struct writer {
    std::vector<nlohmann::json*>& l;
    nlohmann::json& args(int i) { return (*l[std::size_t(i)])[3]; }
    void c2(int i, const char*, const int& c) { args(i)[0] = c; }
    void arg(int i, int pos, const int& c) { args(i)[std::size_t(pos)] = c; }
    void elan(int i, const char*, const elan_args& e) { args(i) = {e.c2, e.c3, e.c4, e.c5}; }
    void cbl(int i, const cbl_args& c) {
      nlohmann::json a = nlohmann::json::array();
      for (int k = 0; k < c.n; ++k) a.push_back(c.c[std::size_t(k)]);
      args(i)[0] = a;
    }
  } w{layers};
  variant_config c = v;
  variant_config::fields(w, c);
  y["nc"] = v.nc;
  y["width_multiple"] = 1.0;
  y["depth_multiple"] = 1.0;
  auto& head = (*layers[55])[3];
  head[1] = v.sem_nc;
  head[2] = v.nm;
  return y;
}

}  // namespace gyolo
