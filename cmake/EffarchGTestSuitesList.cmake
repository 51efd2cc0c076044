# Run by effarch_gtest_suites (cmake/EffarchGTestSuites.cmake) after each build of a GoogleTest
# binary: lists its suites and writes one ctest test per suite into OUTPUT.
# Inputs: EXECUTABLE, OUTPUT, EXCLUDE (suites left out, ;-list), LABELS and ENVIRONMENT (;-lists),
# COSTS (suite=seconds, ;-list: ctest's COST, so that a fresh build starts the long suites first),
# TIMEOUT.
cmake_minimum_required(VERSION 3.25)
execute_process(COMMAND "${EXECUTABLE}" --gtest_list_tests
  OUTPUT_VARIABLE _listing ERROR_VARIABLE _errors RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "${EXECUTABLE} --gtest_list_tests failed (${_rc}):\n${_listing}\n${_errors}")
endif()

# Suite lines start in column 0 and end with '.', perhaps followed by "  # TypeParam = ...";
# test lines are indented. Any other line a main might print does not end that way.
string(REPLACE ";" "\\;" _listing "${_listing}")
string(REPLACE "\n" ";" _lines "${_listing}")
set(_suites "")
foreach(_line IN LISTS _lines)
  if(_line MATCHES "^([A-Za-z_][A-Za-z0-9_/]*)\\.( .*)?$")
    list(APPEND _suites "${CMAKE_MATCH_1}")
  endif()
endforeach()
list(REMOVE_DUPLICATES _suites)
if(NOT _suites)
  message(FATAL_ERROR "${EXECUTABLE} --gtest_list_tests listed no suites:\n${_listing}")
endif()

list(APPEND ENVIRONMENT EFFARCH_GTEST_SKIP_CODE=77)
set(_text "# Written by cmake/EffarchGTestSuitesList.cmake after each build of ${EXECUTABLE}.\n")
foreach(_suite IN LISTS _suites)
  if(_suite IN_LIST EXCLUDE)
    continue()
  endif()
  set(_cost 0)
  foreach(_pair IN LISTS COSTS)
    if(_pair MATCHES "^${_suite}=(.*)$")
      set(_cost "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  string(APPEND _text
    "add_test([=[${_suite}]=] [=[${EXECUTABLE}]=] [=[--gtest_filter=${_suite}.*]=])\n"
    "set_tests_properties([=[${_suite}]=] PROPERTIES LABELS [=[${LABELS}]=] TIMEOUT ${TIMEOUT}"
    " COST ${_cost} SKIP_RETURN_CODE 77 ENVIRONMENT [=[${ENVIRONMENT}]=])\n")
endforeach()
# Written only when it changes, so ctest's cost data and timestamps stay put across rebuilds.
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" _old)
else()
  set(_old "")
endif()
if(NOT _old STREQUAL _text)
  file(WRITE "${OUTPUT}" "${_text}")
endif()
