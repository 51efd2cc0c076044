// The test binary's main: GoogleTest's, plus one exit code for ctest.
//
// ctest runs one suite per process (cmake/EffarchGTestSuites.cmake). A suite whose every test
// skipped, such as a GPU suite on a machine without one, would count as passed; with
// EFFARCH_GTEST_SKIP_CODE set (ctest sets it), such a run exits with that code and ctest reports
// the suite as skipped. Any failure still exits non-zero as usual, and run by hand the binary
// behaves as gtest_main's.
#include <cstdlib>

#include <gtest/gtest.h>

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  const testing::UnitTest& run = *testing::UnitTest::GetInstance();
  const char* skip_code = std::getenv("EFFARCH_GTEST_SKIP_CODE");
  if (rc == 0 && skip_code != nullptr && run.test_to_run_count() > 0 &&
      run.skipped_test_count() == run.test_to_run_count()) {
    return std::atoi(skip_code);
  }
  return rc;
}
