/* The C tests' checks (C99): CHECK prints the failed condition and the API's last error and
 * counts it in g_failures; each test program returns nonzero when g_failures > 0. */
#ifndef INGOT_TESTS_CAPI_CHECK_H
#define INGOT_TESTS_CAPI_CHECK_H

#include <stdio.h>

#include "ingot/ingot.h"

static int g_failures = 0;

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              ingot_last_error());                                                             \
      ++g_failures;                                                                            \
    }                                                                                          \
  } while (0)
#define OK(call) CHECK((call) == INGOT_OK)

#endif
