# Use ccache when it is installed: rebuilds of the ATen-heavy sources are the slow part of CI.
find_program(EFFARCH_CCACHE ccache)
if(EFFARCH_CCACHE)
  set(CMAKE_C_COMPILER_LAUNCHER "${EFFARCH_CCACHE}")
  set(CMAKE_CXX_COMPILER_LAUNCHER "${EFFARCH_CCACHE}")
  set(CMAKE_CUDA_COMPILER_LAUNCHER "${EFFARCH_CCACHE}")
endif()
