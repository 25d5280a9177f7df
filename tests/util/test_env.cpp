// env::flag (the switches' one reading rule: "1" on, "0" off, anything else the default) and
// env::get / env::get_int, against values set in this process.
#include <gtest/gtest.h>

#include <cstdlib>

#include "util/env.h"

namespace ingot {
namespace {

constexpr const char* kName = "INGOT_TEST_ENV_SWITCH";

TEST(Env, FlagIsOnAtOneOffAtZeroAndTheDefaultOtherwise) {
  unsetenv(kName);
  EXPECT_TRUE(env::flag(kName, true));
  EXPECT_FALSE(env::flag(kName, false));
  setenv(kName, "1", 1);
  EXPECT_TRUE(env::flag(kName, true));
  EXPECT_TRUE(env::flag(kName, false));
  setenv(kName, "0", 1);
  EXPECT_FALSE(env::flag(kName, true));
  EXPECT_FALSE(env::flag(kName, false));
  for (const char* other : {"", "yes", "2", "10", " 1", "off"}) {
    setenv(kName, other, 1);
    EXPECT_TRUE(env::flag(kName, true)) << "'" << other << "'";
    EXPECT_FALSE(env::flag(kName, false)) << "'" << other << "'";
  }
  unsetenv(kName);
}

TEST(Env, GetSkipsEmptyValuesAndGetIntFallsBackOnJunk) {
  setenv(kName, "", 1);
  EXPECT_FALSE(env::get(kName).has_value());
  setenv(kName, "42", 1);
  EXPECT_EQ(env::get(kName).value_or(""), "42");
  EXPECT_EQ(env::get_int(kName, 7), 42);
  setenv(kName, "4x", 1);
  EXPECT_EQ(env::get_int(kName, 7), 7);
  unsetenv(kName);
  EXPECT_EQ(env::get_int(kName, -3), -3);
}

}  // namespace
}  // namespace ingot
