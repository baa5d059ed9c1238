// gyolo's version (CMakeLists.txt reads it from here).
#pragma once

#define GYOLO_VERSION_STRING "0.1.0"

namespace gyolo {
inline constexpr const char* version = GYOLO_VERSION_STRING;
}  // namespace gyolo
