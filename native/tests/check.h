// The native tests' one assertion: prints "ok" or "FAIL" and the claim; the
// test's exit status is check_status() (0 when every check held).
#pragma once

#include <cstdio>

namespace tournament::testing {

inline int& check_failures() {
  static int failures = 0;
  return failures;
}

inline void check(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++check_failures();
}

inline int check_status() { return check_failures() == 0 ? 0 : 1; }

}  // namespace tournament::testing
