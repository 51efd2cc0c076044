# Use ccache when it is installed: rebuilds of the ATen-heavy sources are the slow part of CI.
# Every C++ file is compiled against a precompiled header, which ccache refuses to cache ("could
# not use precompiled header") unless it may ignore the PCH's defines and timestamps
# (sloppiness) and GCC writes the PCH's name into the preprocessed output (-fpch-preprocess).
# include_file_mtime/ctime: a fresh clone's headers are all new, which would otherwise make every
# file uncacheable for a while after checkout.
find_program(EFFARCH_CCACHE ccache)
if(EFFARCH_CCACHE)
  set(_effarch_ccache ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime" ${EFFARCH_CCACHE})
  set(CMAKE_C_COMPILER_LAUNCHER ${_effarch_ccache})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_effarch_ccache})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${_effarch_ccache})
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fpch-preprocess>)
  elseif(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:SHELL:-Xclang -fno-pch-timestamp>")
  endif()
endif()
