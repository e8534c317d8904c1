# libFuzzer targets, one per fuzz/fuzz_<parser>.c. Needs clang; ci/test builds
# them in their own build directory with AddressSanitizer.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "MB_FUZZ needs clang (configure with CC=clang)")
endif()
# The library is instrumented for coverage too, so the fuzzer sees its branches.
# (MbFuzz sets -fsanitize=fuzzer-no-link on everything before this file is read.)
file(GLOB MB_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/fuzz_*.c)
foreach(src ${MB_FUZZ_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE mechbench_core)
endforeach()
# The CLI's option parser is private to src/cli: its target compiles it in.
if(TARGET fuzz_options)
  target_sources(fuzz_options PRIVATE ${CMAKE_SOURCE_DIR}/src/cli/options.c)
endif()
