# Shared build settings: warnings as errors, sanitizers, and helpers to declare layer libraries
# and tests with one line each.

# -Wmaybe-uninitialized is off: GCC 12 reports false positives on std::optional<Array> at -O2;
# -Wrestrict too: GCC 12 flags `"literal" + std::string` at -O3 (GCC bug 105329).
# INGOT_WERROR=OFF keeps warnings as warnings (other compilers, e.g. gcc 13 on the GPU machine).
option(INGOT_WERROR "Treat warnings as errors" ON)
set(INGOT_WARNINGS -Wall -Wextra $<$<BOOL:${INGOT_WERROR}>:-Werror> -Wno-unused-parameter
    -Wno-missing-field-initializers $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>
    $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)

set(INGOT_SAN_FLAGS "")
if(INGOT_SANITIZE)
  set(INGOT_SAN_FLAGS -fsanitize=${INGOT_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX,C>:${INGOT_SAN_FLAGS}>")
  add_link_options(${INGOT_SAN_FLAGS})
endif()

# ingot_layer(NAME DIR [DEPS ...] [PRIVATE_DEPS ...]): a static library of every .cpp under DIR
# (recursively), with include root src/.
function(ingot_layer name dir)
  cmake_parse_arguments(ARG "" "" "DEPS;PRIVATE_DEPS;EXCLUDE" ${ARGN})
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${dir}/*.cpp)
  foreach(ex ${ARG_EXCLUDE})
    list(FILTER srcs EXCLUDE REGEX ${ex})
  endforeach()
  add_library(${name} STATIC ${srcs})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${INGOT_WARNINGS}>)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# ingot_test(NAME SOURCES... LIBS ...): a GoogleTest executable registered with ctest.
function(ingot_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${INGOT_WARNINGS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  # Caches the library writes (the tokenizer load cache) go to the build tree, never the home.
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}"
                       ENVIRONMENT "INGOT_CACHE_DIR=${CMAKE_BINARY_DIR}/test_cache"
                       WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
endfunction()
