# Writes OUTPUT, a C++ file defining effarch::git_commit(): the source tree's commit, with
# "+changes" where tracked files outside docs/ differ from it (tools/gpu/prebuild.sh's convention). Run at
# every build (the effarch_git_commit target), not at configure time, so a binary names the
# commit it was built from; the file is rewritten only when the text changes, so an unchanged
# commit recompiles nothing.
#   cmake -DSOURCE_DIR=... -DOUTPUT=... -P EffarchGitCommit.cmake
execute_process(COMMAND git rev-parse --short=12 HEAD
  WORKING_DIRECTORY "${SOURCE_DIR}" OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0 OR NOT commit)
  set(commit "unknown")
else()
  execute_process(COMMAND git diff --quiet HEAD -- . :!docs
    WORKING_DIRECTORY "${SOURCE_DIR}" RESULT_VARIABLE dirty ERROR_QUIET)
  if(NOT dirty EQUAL 0)
    string(APPEND commit "+changes")
  endif()
endif()
set(text "// Generated at build time by cmake/EffarchGitCommit.cmake.\n#include \"effarch/version.h\"\n\nnamespace effarch {\nconst char* git_commit() { return \"${commit}\"; }\n}  // namespace effarch\n")
set(old "")
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUTPUT}" "${text}")
endif()
