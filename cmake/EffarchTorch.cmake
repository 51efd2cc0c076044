# libtorch from PyPI's torch wheel. Its location is asked of the python in the virtual environment
# that tools/setup.sh creates (EFFARCH_PYTHON overrides), so a plain configure finds it.
#
# With a CUDA toolkit we use the wheel's own TorchConfig.cmake (find_package(Torch)). Without one,
# that config refuses to load (the wheel was built with CUDA), so we import the CPU libraries of
# the same wheel directly. Either way the rest of the build links effarch::torch.

set(EFFARCH_PYTHON "" CACHE FILEPATH "python of the environment that has the torch wheel")
if(NOT EFFARCH_PYTHON)
  foreach(_candidate "$ENV{EFFARCH_VENV}/bin/python" "$ENV{HOME}/.cache/effarch/venv/bin/python")
    if(EXISTS "${_candidate}")
      set(EFFARCH_PYTHON "${_candidate}" CACHE FILEPATH "" FORCE)
      break()
    endif()
  endforeach()
endif()
if(NOT EFFARCH_PYTHON)
  find_program(EFFARCH_PYTHON_FOUND NAMES python3)
  set(EFFARCH_PYTHON "${EFFARCH_PYTHON_FOUND}" CACHE FILEPATH "" FORCE)
endif()

set(_torch_dir "")
if(EFFARCH_PYTHON)
  execute_process(
    COMMAND "${EFFARCH_PYTHON}" -c "import os,torch;print(os.path.dirname(torch.__file__));print(torch.__version__)"
    OUTPUT_VARIABLE _torch_out RESULT_VARIABLE _torch_rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(_torch_rc EQUAL 0)
    string(REPLACE "\n" ";" _torch_out "${_torch_out}")
    list(GET _torch_out 0 _torch_dir)
    list(GET _torch_out 1 EFFARCH_TORCH_VERSION)
  endif()
endif()
if(NOT _torch_dir)
  message(FATAL_ERROR
    "effarch: libtorch not found. Install it with `bash tools/setup.sh` (a virtual environment in "
    "~/.cache/effarch/venv with PyPI's torch), or point -DEFFARCH_PYTHON=/path/to/python at an "
    "environment that has torch.")
endif()
message(STATUS "effarch: torch ${EFFARCH_TORCH_VERSION} at ${_torch_dir}")

add_library(effarch_torch INTERFACE)
add_library(effarch::torch ALIAS effarch_torch)

if(EFFARCH_HAVE_CUDA)
  # Torch's config appends its own -gencode list to CMAKE_CUDA_FLAGS; keep ours.
  set(_saved_cuda_flags "${CMAKE_CUDA_FLAGS}")
  set(_arch_list "")
  foreach(_arch IN LISTS CMAKE_CUDA_ARCHITECTURES)
    string(REGEX REPLACE "-(real|virtual)$" "" _arch "${_arch}")
    string(REGEX REPLACE "^([0-9]+)([0-9])([a-z]?)$" "\\1.\\2\\3" _dotted "${_arch}")
    list(APPEND _arch_list "${_dotted}")
  endforeach()
  set(TORCH_CUDA_ARCH_LIST "${_arch_list}")
  list(APPEND CMAKE_PREFIX_PATH "${_torch_dir}/share/cmake")
  # It also sets CMAKE_CUDA_ARCHITECTURES to OFF, which would leave nvcc on its default target.
  set(_saved_cuda_archs "${CMAKE_CUDA_ARCHITECTURES}")
  find_package(Torch REQUIRED CONFIG)
  set(CMAKE_CUDA_FLAGS "${_saved_cuda_flags}")
  set(CMAKE_CUDA_ARCHITECTURES "${_saved_cuda_archs}")
  target_link_libraries(effarch_torch INTERFACE ${TORCH_LIBRARIES} CUDA::cudart CUDA::cublas)
  target_compile_definitions(effarch_torch INTERFACE EFFARCH_WITH_CUDA=1)
else()
  set(_torch_libs "")
  foreach(_lib torch torch_cpu c10)
    find_library(EFFARCH_TORCH_${_lib} NAMES ${_lib} PATHS "${_torch_dir}/lib" NO_DEFAULT_PATH REQUIRED)
    list(APPEND _torch_libs "${EFFARCH_TORCH_${_lib}}")
  endforeach()
  execute_process(COMMAND "${EFFARCH_PYTHON}" -c "import torch;print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
    OUTPUT_VARIABLE _abi OUTPUT_STRIP_TRAILING_WHITESPACE)
  target_include_directories(effarch_torch SYSTEM INTERFACE
    "${_torch_dir}/include" "${_torch_dir}/include/torch/csrc/api/include")
  target_compile_definitions(effarch_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${_abi})
  # --no-as-needed keeps libtorch_cpu's operator registrations linked in.
  target_link_libraries(effarch_torch INTERFACE "-Wl,--no-as-needed" ${_torch_libs} "-Wl,--as-needed")
  set_property(TARGET effarch_torch PROPERTY INTERFACE_LINK_DIRECTORIES "${_torch_dir}/lib")
endif()
set(EFFARCH_TORCH_LIB_DIR "${_torch_dir}/lib")

# The torch wheels link libstdc++ statically and export its symbols (std::filesystem among them).
# Loaded before the system libstdc++, they interpose on our calls and crash (remove_all jumps to
# null). Naming libstdc++ ahead of every other library makes the system copy win the lookup.
target_link_options(effarch_torch INTERFACE "LINKER:--push-state,--no-as-needed" "-lstdc++" "LINKER:--pop-state")
# Ubuntu's toolchain (the GPU machines) links --as-needed by default and the option above did not
# reach the binaries' NEEDED list there (libtorch came first; the std::filesystem tests crashed).
# Naming libstdc++ first among the link libraries too puts it after the objects, which reference
# it, and ahead of torch, so it is recorded and searched first wherever the option is dropped.
get_target_property(_effarch_torch_libs effarch_torch INTERFACE_LINK_LIBRARIES)
if(NOT _effarch_torch_libs)
  set(_effarch_torch_libs "")
endif()
set_property(TARGET effarch_torch PROPERTY INTERFACE_LINK_LIBRARIES
             "-Wl,--push-state,--no-as-needed;-lstdc++;-Wl,--pop-state;${_effarch_torch_libs}")
