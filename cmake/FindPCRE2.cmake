# Finds PCRE2's 8-bit library (Debian: libpcre2-dev) through pkg-config; the tokenizers run their
# pre-tokenizer regexes with it. Defines PkgConfig::PCRE2. Install: apt-get install libpcre2-dev
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PCRE2 QUIET IMPORTED_TARGET libpcre2-8)
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(PCRE2 REQUIRED_VARS PCRE2_LINK_LIBRARIES VERSION_VAR PCRE2_VERSION)
