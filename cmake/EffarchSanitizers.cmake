# EFFARCH_SANITIZE=address,undefined builds everything with those sanitizers; a UBSan finding aborts.
if(EFFARCH_SANITIZE)
  string(REPLACE "," ";" _effarch_san_list "${EFFARCH_SANITIZE}")
  foreach(_san IN LISTS _effarch_san_list)
    if(NOT _san MATCHES "^(address|undefined|leak)$")
      message(FATAL_ERROR "EFFARCH_SANITIZE: unknown sanitizer '${_san}' (use address, undefined, leak)")
    endif()
  endforeach()
  set(_effarch_san_flags "-fsanitize=${EFFARCH_SANITIZE}" -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  # libtorch is not built with -fsanitize=vptr's RTTI expectations; skip that check.
  list(APPEND _effarch_san_flags -fno-sanitize=vptr)
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX,C>:${_effarch_san_flags}>")
  add_link_options(${_effarch_san_flags})
endif()
