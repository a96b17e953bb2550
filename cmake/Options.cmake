# Compile options for project code (not for generated protobuf sources).
add_library(tapeloop_options INTERFACE)
target_compile_options(tapeloop_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-sign-compare>
  # GCC 12 reports false positives through absl::StatusOr and std::optional at -O2.
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-maybe-uninitialized>)
if(TAPELOOP_WERROR)
  target_compile_options(tapeloop_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
target_include_directories(tapeloop_options INTERFACE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
target_compile_definitions(tapeloop_options INTERFACE
  TAPELOOP_VERSION="${PROJECT_VERSION}"
  $<$<BOOL:${TAPELOOP_HAVE_CUDA}>:TAPELOOP_HAVE_CUDA=1>)

if(TAPELOOP_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "TAPELOOP_FUZZ needs clang (CXX=clang++)")
  endif()
  # UBSan reports abort (no recover) so libFuzzer records them as crashes with their input.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

if(TAPELOOP_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
  if(TAPELOOP_HAVE_CUDA)
    message(STATUS "tapeloop: sanitizer build; CUDA kernels are built but not sanitized")
  endif()
endif()

# tapeloop_add_test(NAME SOURCES... LIBS ... [LABELS ...]): one GoogleTest binary registered
# with CTest through gtest_discover_tests.
include(GoogleTest)
function(tapeloop_add_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} tapeloop_options GTest::gmock GTest::gtest_main)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  set(props ENVIRONMENT "TAPELOOP_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
  if(T_LABELS)
    list(APPEND props LABELS "${T_LABELS}")
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES ${props})
endfunction()

# tapeloop_add_module(NAME DEPS...): a library target tapeloop_NAME made of every .cc under the
# calling folder (recursively); an INTERFACE target while the folder has no sources yet.
function(tapeloop_add_module name)
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  if(srcs)
    add_library(tapeloop_${name} ${srcs})
    target_link_libraries(tapeloop_${name} PUBLIC tapeloop_options ${ARGN})
  else()
    add_library(tapeloop_${name} INTERFACE)
    target_link_libraries(tapeloop_${name} INTERFACE tapeloop_options ${ARGN})
  endif()
endfunction()

# tapeloop_add_module_tests(MODULE LIBS...): one GoogleTest binary, tapeloop_MODULE_tests, from
# every *_test.cc under tests/MODULE (recursively).
function(tapeloop_add_module_tests module)
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  if(srcs)
    tapeloop_add_test(tapeloop_${module}_tests SOURCES ${srcs} LIBS ${ARGN} LABELS ${module})
    target_compile_definitions(tapeloop_${module}_tests PRIVATE
      TAPELOOP_SOURCE_DIR="${PROJECT_SOURCE_DIR}" TAPELOOP_BINARY_DIR="${PROJECT_BINARY_DIR}")
    # Several suites drive the `tapeloop` binary as a process.
    if(TARGET tapeloop)
      add_dependencies(tapeloop_${module}_tests tapeloop)
    endif()
  endif()
endfunction()
