# The c10d backends of multi-process runs (docs/parallel.md).
#
# Gloo (CPU): compiled into the torch wheel's libtorch_cpu, but the wheel lacks gloo's own headers,
# which c10d's ProcessGroupGloo.hpp includes; Debian's libgloo-dev has them. EFFARCH_GLOO=ON (the
# default) requires them in a CPU build (a CUDA build warns and runs multi-process on NCCL only);
# OFF builds without (a multi-process CPU run is then refused).
# NCCL (CUDA builds): compiled into libtorch_cuda; nccl.h comes from the nvidia-nccl wheel beside
# torch. Without it, CUDA builds run single-process only (a message says so).
option(EFFARCH_GLOO "Multi-process CPU runs over Gloo (needs libgloo-dev's headers)" ON)

set(EFFARCH_HAVE_GLOO OFF)
if(EFFARCH_GLOO)
  find_path(EFFARCH_GLOO_INCLUDE_DIR gloo/config.h)
  if(NOT EFFARCH_GLOO_INCLUDE_DIR AND EFFARCH_HAVE_CUDA)
    # A CUDA build runs multi-process on NCCL; Gloo (CPU runs) comes when the headers are there
    # (the GPU machines get them from the kit: tools/gpu/fetch-kit.sh lists libgloo-dev).
    message(WARNING "effarch: gloo's headers (gloo/config.h) are missing: multi-process CPU runs disabled "
                    "(apt-get install libgloo-dev, or add it to the GPU kit)")
  elseif(NOT EFFARCH_GLOO_INCLUDE_DIR)
    message(FATAL_ERROR "effarch: gloo's headers (gloo/config.h) are missing; c10d's Gloo process group needs them "
                        "for multi-process CPU runs. Install them: apt-get install libgloo-dev "
                        "(or configure with -DEFFARCH_GLOO=OFF to build without multi-process CPU runs)")
  endif()
  if(EFFARCH_GLOO_INCLUDE_DIR)
    set(EFFARCH_HAVE_GLOO ON)
    message(STATUS "effarch: Gloo headers at ${EFFARCH_GLOO_INCLUDE_DIR}: multi-process CPU runs enabled")
  endif()
endif()

set(EFFARCH_HAVE_NCCL OFF)
if(EFFARCH_HAVE_CUDA)
  find_path(EFFARCH_NCCL_INCLUDE_DIR nccl.h HINTS "${EFFARCH_TORCH_LIB_DIR}/../../nvidia/nccl/include"
            "${EFFARCH_TORCH_LIB_DIR}/../../nvidia/nccl/include" /usr/include /usr/local/cuda/include)
  if(EFFARCH_NCCL_INCLUDE_DIR)
    set(EFFARCH_HAVE_NCCL ON)
    message(STATUS "effarch: nccl.h at ${EFFARCH_NCCL_INCLUDE_DIR}: multi-process CUDA runs enabled")
  else()
    message(WARNING "effarch: nccl.h not found (the nvidia-nccl wheel beside torch has it): multi-process CUDA "
                    "runs disabled")
  endif()
endif()

# The definitions c10d's headers need, on the file that includes them only. The headers' folders
# go in as -isystem after the target's own: searched after torch's include folder, so a folder that
# also holds Debian's fmt 9 (/usr/include, the GPU kit's /opt/effarch-deps/usr/include) cannot
# shadow the fmt 12 that torch ships and every other file uses.
function(effarch_parallel_sources target source)
  set(_defs "")
  set(_opts "")
  foreach(_backend GLOO NCCL)  # the same for each c10d backend found
    if(EFFARCH_HAVE_${_backend})
      list(APPEND _defs USE_C10D_${_backend} EFFARCH_HAVE_${_backend}=1)
      if(NOT EFFARCH_${_backend}_INCLUDE_DIR STREQUAL "/usr/include")
        list(APPEND _opts "-isystem" "${EFFARCH_${_backend}_INCLUDE_DIR}")
      endif()
    endif()
  endforeach()
  set_source_files_properties(${source} TARGET_DIRECTORY ${target} PROPERTIES
    COMPILE_DEFINITIONS "${_defs}" COMPILE_OPTIONS "${_opts}" SKIP_PRECOMPILE_HEADERS ON)
endfunction()
