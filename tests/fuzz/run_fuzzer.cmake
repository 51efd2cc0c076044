# Runs a libFuzzer binary on a fresh copy of a seed corpus (cmake -P; see CMakeLists.txt).
#   -DFUZZER=binary -DSEEDS=seed folder -DDICT=dictionary -DWORK=scratch folder -DARGS="-flag=1 -flag=2"
foreach(var FUZZER SEEDS WORK)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzzer.cmake: -D${var}= is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK}/corpus")
file(MAKE_DIRECTORY "${WORK}/corpus" "${WORK}/artifacts")
file(GLOB _seeds "${SEEDS}/*")
file(COPY ${_seeds} DESTINATION "${WORK}/corpus")
separate_arguments(_args UNIX_COMMAND "${ARGS}")
set(_dict "")
if(DICT)
  set(_dict "-dict=${DICT}")
endif()
execute_process(
  COMMAND "${FUZZER}" ${_args} ${_dict} "-artifact_prefix=${WORK}/artifacts/" "${WORK}/corpus"
  WORKING_DIRECTORY "${WORK}"
  RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  file(GLOB _found "${WORK}/artifacts/*")
  message(FATAL_ERROR "fuzzer failed (exit ${_rc}); reproducers: ${_found}\n"
                      "replay one with: ${FUZZER} <reproducer>")
endif()
