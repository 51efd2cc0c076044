# Every dependency is found with find_package; a missing one stops configure with the command
# that installs it (Debian 12 package names; tools/setup.sh installs them all).
macro(effarch_require package debian_package)
  find_package(${package} ${ARGN} QUIET)
  if(NOT ${package}_FOUND)
    message(FATAL_ERROR "effarch: ${package} not found. Install it with "
      "`apt-get install ${debian_package}` (or run `bash tools/setup.sh`).")
  endif()
endmacro()

effarch_require(nlohmann_json nlohmann-json3-dev CONFIG)
effarch_require(CLI11 libcli11-dev CONFIG)
effarch_require(SentencePiece libsentencepiece-dev)
effarch_require(PCRE2 libpcre2-dev)
effarch_require(ICU libicu-dev COMPONENTS uc)
if(EFFARCH_BUILD_TESTS)
  effarch_require(GTest libgtest-dev CONFIG)
endif()

# fmt is not looked for: libtorch's wheel ships fmt headers of its own (fmt 12), which come first
# on the include path, and src/common/fmt_impl.cpp compiles their formatting core once. A Debian
# libfmt (fmt 9) would not match those headers, so none is used.
