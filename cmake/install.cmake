# Install rules, the CMake package (find_package(gyolo CONFIG)), the pkg-config file and the Debian
# packages (cpack -G DEB: libgyolo-dev with the library, gyolo with the CLI). Included by the top-level
# CMakeLists.txt when GYOLO_INSTALL is ON (the default when gyolo is the top-level project).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(GYOLO_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/gyolo)

# Library: headers, the compiled parts, the exported targets gyolo::gyolo, gyolo::train and gyolo::video.
install(DIRECTORY include/gyolo DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev FILES_MATCHING PATTERN "*.hpp" PATTERN "*.inc")
install(TARGETS gyolo gyolo_train gyolo_video EXPORT gyoloTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(EXPORT gyoloTargets NAMESPACE gyolo:: DESTINATION ${GYOLO_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(cmake/gyoloConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/gyoloConfig.cmake
                              INSTALL_DESTINATION ${GYOLO_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/gyoloConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/gyoloConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/gyoloConfigVersion.cmake
        DESTINATION ${GYOLO_CMAKE_DIR} COMPONENT dev)
set(GYOLO_STB_DIR_FOR_PC ${STB_INCLUDE_DIR})
configure_file(cmake/gyolo.pc.in ${CMAKE_CURRENT_BINARY_DIR}/gyolo.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/gyolo.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# The CUDA backend (built with GYOLO_ENABLE_CUDA=ON): its headers, gyolo::cuda and its export, in the
# install component `cuda` (not in the Debian packages, which are for machines without CUDA too).
if(TARGET gyolo_cuda)
  install(DIRECTORY cuda/include/gyolo DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT cuda FILES_MATCHING PATTERN "*.hpp" PATTERN "*.cuh")
  install(TARGETS gyolo_cuda EXPORT gyoloCudaTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT cuda)
  install(EXPORT gyoloCudaTargets NAMESPACE gyolo:: DESTINATION ${GYOLO_CMAKE_DIR} COMPONENT cuda)
endif()

# The CLI as `gyolo`, with the caption vocabulary and the shipped model in share/gyolo.
if(TARGET gyolo_cli)
  install(TARGETS gyolo_cli EXPORT gyoloCliTargets RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT cli)
  install(EXPORT gyoloCliTargets NAMESPACE gyolo:: DESTINATION ${GYOLO_CMAKE_DIR} COMPONENT cli)
  install(FILES weights_tools/data/vocab.txt DESTINATION ${CMAKE_INSTALL_DATADIR}/gyolo COMPONENT cli)
  install(FILES models/gyolo-shapes.gguf examples/data/shapes.png DESTINATION ${CMAKE_INSTALL_DATADIR}/gyolo/models COMPONENT cli)
endif()

# Debian packages: cpack -G DEB in the build folder.
set(CPACK_PACKAGE_NAME gyolo)
set(CPACK_PACKAGE_VENDOR "gyolo developers")
set(CPACK_PACKAGE_CONTACT "gyolo developers <gyolo@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Generalist YOLO in C++20: detection, segmentation, panoptic, captions")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL dev cli)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libgyolo-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libeigen3-dev (>= 3.4), xtensor-dev (>= 0.24), libstb-dev, libjpeg-dev | libjpeg62-turbo-dev, nlohmann-json3-dev (>= 3), g++ (>= 4:12)")
if(GYOLO_VIDEO_FOUND)  # gyolo::video links FFmpeg's libraries
  string(APPEND CPACK_DEBIAN_DEV_PACKAGE_DEPENDS ", pkg-config, libavformat-dev, libavcodec-dev, libswscale-dev, libavutil-dev")
endif()
set(CPACK_DEBIAN_CLI_PACKAGE_NAME gyolo)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION science)
set(CPACK_DEBIAN_CLI_PACKAGE_SHLIBDEPS ON)  # libjpeg62-turbo, libgomp1, libstdc++6, libc6 from dpkg-shlibdeps
set(CPACK_COMPONENT_DEV_DESCRIPTION "gyolo's headers, compiled kernels and CMake / pkg-config files")
set(CPACK_COMPONENT_CLI_DESCRIPTION "the gyolo command (predict, val, train, datagen, convert...) with a small demo model")
include(CPack)
