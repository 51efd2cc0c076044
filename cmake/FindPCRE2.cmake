# Finds PCRE2's 8-bit library (Debian: libpcre2-dev); the tokenizers run their pre-tokenizer
# regexes with it. Defines PkgConfig::PCRE2. Install: apt-get install libpcre2-dev
# pkg-config first; without it (or when its .pc points elsewhere, e.g. packages unpacked under a
# prefix on an offline machine) the header and library are searched along CMAKE_PREFIX_PATH.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PCRE2 QUIET IMPORTED_TARGET libpcre2-8)
endif()
if(NOT TARGET PkgConfig::PCRE2)
  find_path(PCRE2_INCLUDE_DIR pcre2.h)
  find_library(PCRE2_LIBRARY NAMES pcre2-8)
  if(PCRE2_INCLUDE_DIR AND PCRE2_LIBRARY)
    set(PCRE2_LINK_LIBRARIES "${PCRE2_LIBRARY}")
    add_library(PkgConfig::PCRE2 UNKNOWN IMPORTED)
    set_target_properties(PkgConfig::PCRE2 PROPERTIES IMPORTED_LOCATION "${PCRE2_LIBRARY}"
                          INTERFACE_INCLUDE_DIRECTORIES "${PCRE2_INCLUDE_DIR}")
  endif()
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(PCRE2 REQUIRED_VARS PCRE2_LINK_LIBRARIES)
