// COCO category tables used by GYOLO's outputs (spec Appendix B and C; the ids and names are the
// COCO 2017 / COCO-Stuff / COCO panoptic category lists, as upstream's utils/coco_utils.py uses them).
//
//   semantic channel c (0..172)  -> COCO id: semantic_ids[c]
//       0..79    the 80 thing classes (coco80 -> coco91 ids 1..90), also the detection class ids
//       80..170  the 91 stuff classes (ids 92..182)
//       171      "other" (183),  172 "unlabeled" (0)
//   semantic stuff channel c (80..172) -> COCO panoptic category: stuff_to_panoptic[c - 80]
//       (merged classes -> 184..200; removed classes, "other" and "unlabeled" -> 0 = dropped)
//   panoptic stuff order (the order in which stuff segments are fused): panoptic_stuff_ids
#pragma once
#include <array>
#include <string_view>

namespace gyolo::coco {

inline constexpr int num_things = 80;
inline constexpr int num_semantic = 173;

/// COCO category id of each semantic channel (the first 80 are the detection classes).
inline constexpr std::array<int, num_semantic> semantic_ids{
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
    92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130, 131,
    132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151,
    152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171,
    172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 0};

/// COCO-Stuff name of each semantic channel.
inline constexpr std::array<std::string_view, num_semantic> semantic_names{
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop",
    "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter",
    "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other",
    "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other",
    "grass", "gravel", "ground-other", "hill", "house", "leaves", "light", "mat",
    "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad",
    "river", "road", "rock", "roof", "rug", "salad", "sand", "sea",
    "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops",
    "window-blind", "window-other", "wood", "other", "unlabeled"};

/// Panoptic category of semantic stuff channels 80..172 (index c - 80); 0 = not a panoptic class.
inline constexpr std::array<int, num_semantic - num_things> stuff_to_panoptic{
    92, 93, 184, 95, 197, 184, 188, 185, 100, 200, 186, 186, 0, 0, 187, 107, 188, 109, 189, 194,
    112, 185, 190, 190, 191, 190, 118, 119, 187, 196, 122, 0, 193, 125, 0, 192, 128, 184, 130, 200,
    0, 133, 193, 192, 194, 195, 138, 195, 191, 141, 0, 0, 144, 145, 185, 147, 148, 149, 198, 151,
    200, 196, 154, 155, 156, 187, 197, 159, 0, 161, 198, 193, 0, 189, 166, 0, 168, 184, 196, 171,
    199, 199, 199, 175, 176, 177, 178, 0, 180, 181, 0, 0, 0
};

/// The 53 panoptic stuff categories, in upstream's fusion order (COCO panoptic ids).
inline constexpr std::array<int, 53> panoptic_stuff_ids{
    92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133, 138, 141, 144, 145, 147, 148,
    149, 151, 154, 155, 156, 159, 161, 166, 168, 171, 175, 176, 177, 178, 180, 181, 184, 185, 186, 187,
    188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200};

inline constexpr std::array<std::string_view, 53> panoptic_stuff_names{
    "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door-stuff", "floor-wood",
    "flower", "fruit", "gravel", "house", "light", "mirror-stuff", "net", "plant-other",
    "platform", "playingfield", "railroad", "river", "road", "roof", "sand", "sea",
    "shelf", "snow", "stairs", "tent", "towel", "wall-brick", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "window-blind", "window-other", "tree-merged", "fence-merged", "ceiling-merged", "sky-other-merged",
    "cabinet-merged", "table-merged", "floor-other-merged", "pavement-merged", "mountain-merged", "grass-merged", "dirt-merged", "paper-merged",
    "food-other-merged", "building-other-merged", "rock-merged", "wall-other-merged", "rug-merged"};

/// COCO category id of detection class c (0..79): coco80 -> coco91.
constexpr int thing_category_id(int c) { return (c >= 0 && c < num_things) ? semantic_ids[std::size_t(c)] : -1; }

/// Name of a COCO category id (things, stuff, "other", merged panoptic stuff); "" if unknown.
constexpr std::string_view category_name(int id) {
  for (std::size_t i = 0; i < semantic_ids.size(); ++i)
    if (semantic_ids[i] == id) return semantic_names[i];
  for (std::size_t i = 0; i < panoptic_stuff_ids.size(); ++i)
    if (panoptic_stuff_ids[i] == id) return panoptic_stuff_names[i];
  return {};
}

/// Position of a panoptic stuff id in panoptic_stuff_ids, or -1.
constexpr int panoptic_stuff_index(int id) {
  for (std::size_t i = 0; i < panoptic_stuff_ids.size(); ++i)
    if (panoptic_stuff_ids[i] == id) return int(i);
  return -1;
}

}  // namespace gyolo::coco
