# effarch_gtest_suites(TARGET target [EXCLUDE suite...] [LABELS label...] [ENVIRONMENT VAR=value...]
#                      [COSTS suite=seconds...] [TIMEOUT seconds]):
# one ctest test per GoogleTest suite of `target`, each running `target --gtest_filter=Suite.*`.
#
# gtest_discover_tests makes one ctest test, so one process, per test. Every process of ours
# starts libtorch first (its operator registry: 0.45 s in a release build, 1.4 s under the
# sanitizers, measured on the CI machine), and with 500-odd tests that start-up was most of the
# test stages' time. A suite per process keeps ctest's names useful (`ctest -R MoeKernel`) at a
# fifth of the processes. A single test runs with `build/tests/effarch_tests --gtest_filter=...`.
#
# The suites are listed after each build of the target (POST_BUILD), as gtest_discover_tests
# does, so a new suite needs no CMake edit. A suite whose every test skipped (a GPU suite on a CPU
# machine) is reported as skipped: the test's main (tests/gtest_main.cpp) exits with the code
# EFFARCH_GTEST_SKIP_CODE names.
set(_effarch_gtest_suites_script "${CMAKE_CURRENT_LIST_DIR}/EffarchGTestSuitesList.cmake")

function(effarch_gtest_suites)
  cmake_parse_arguments(ARG "" "TARGET;TIMEOUT" "EXCLUDE;LABELS;ENVIRONMENT;COSTS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 900)
  endif()
  set(_list "${CMAKE_CURRENT_BINARY_DIR}/${ARG_TARGET}_suites.cmake")
  set(_include "${CMAKE_CURRENT_BINARY_DIR}/${ARG_TARGET}_suites_include.cmake")
  add_custom_command(TARGET ${ARG_TARGET} POST_BUILD
    COMMAND "${CMAKE_COMMAND}"
            "-DEXECUTABLE=$<TARGET_FILE:${ARG_TARGET}>"
            "-DOUTPUT=${_list}"
            "-DEXCLUDE=${ARG_EXCLUDE}"
            "-DLABELS=${ARG_LABELS}"
            "-DENVIRONMENT=${ARG_ENVIRONMENT}"
            "-DTIMEOUT=${ARG_TIMEOUT}"
            "-DCOSTS=${ARG_COSTS}"
            -P "${_effarch_gtest_suites_script}"
    BYPRODUCTS "${_list}"
    VERBATIM)
  # ctest reads the list when it runs; before the first build there is none to read.
  file(WRITE "${_include}"
    "if(EXISTS \"${_list}\")\n"
    "  include(\"${_list}\")\n"
    "else()\n"
    "  add_test(${ARG_TARGET}_NOT_BUILT ${ARG_TARGET}_NOT_BUILT)\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${_include}")
endfunction()
