# One Criterion executable per tests/<layer>/test_<module>.c, registered here so
# that adding a test file is all it takes to add a test.
pkg_check_modules(CRITERION REQUIRED IMPORTED_TARGET criterion)

file(GLOB MB_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/*/test_*.c)
file(GLOB MB_TEST_HELPERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/support/*.c)
foreach(src ${MB_TEST_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  get_filename_component(dir ${src} DIRECTORY)
  get_filename_component(layer ${dir} NAME)
  set(target "${layer}_${name}")
  add_executable(${target} ${src} ${MB_TEST_HELPERS})
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/tests)
  target_compile_definitions(${target} PRIVATE
    MB_SOURCE_DIR="${CMAKE_SOURCE_DIR}" MB_BINARY_DIR="${CMAKE_BINARY_DIR}"
    MB_CLI_PATH="$<TARGET_FILE:mechbench>")
  target_link_libraries(${target} PRIVATE mechbench_core PkgConfig::CRITERION)
  add_dependencies(${target} mechbench)
  # Criterion forks a worker per test; two jobs match the 2-core CI machine.
  add_test(NAME ${target} COMMAND ${target} --jobs 2 --short-filename)
  set_tests_properties(${target} PROPERTIES
    WORKING_DIRECTORY ${CMAKE_BINARY_DIR} TIMEOUT 900)
  # test_<module>_zoo.c trains zoo models (minutes in a release build, far
  # more under sanitizers): label `zoo`, which ci/test skips under ASan.
  if(name MATCHES "^test_.+_zoo$")
    set_tests_properties(${target} PROPERTIES LABELS zoo)
  endif()
  # test_profiles runs every entry of the profile suites on 12-layer
  # 50k-vocabulary checkpoints (about 35 s in a release build on 2 busy
  # cores); the code it reaches (loaders, the tasks, the runner) is sanitized
  # by the smaller tests, so it is labelled `heavy` and runs in the release
  # pass only.
  if(name STREQUAL "test_profiles")
    set_tests_properties(${target} PROPERTIES LABELS heavy)
  endif()
  # The engine's tests (golden values, determinism) run once per GEMM backend:
  # portable is the default; MB_GEMM selects the others (gemm.h).
  if(layer STREQUAL "engine")
    set(_mb_backends openblas)
    if(DNNL_INCLUDE_DIR AND DNNL_LIBRARY)
      list(APPEND _mb_backends onednn)
    endif()
    foreach(backend ${_mb_backends})
      add_test(NAME ${target}_${backend} COMMAND ${target} --jobs 2 --short-filename)
      # label `backend`: the sanitizer pass runs each engine test once (the
      # default backend; test_gemm sanitizes every backend's calls itself).
      set_tests_properties(${target}_${backend} PROPERTIES
        WORKING_DIRECTORY ${CMAKE_BINARY_DIR} TIMEOUT 900 ENVIRONMENT MB_GEMM=${backend}
        LABELS backend)
    endforeach()
  endif()
endforeach()

# tests/headertest: every public header compiles alone.
file(GLOB MB_PUBLIC_HEADERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/include/mechbench/*.h)
set(_ht_sources "")
foreach(h ${MB_PUBLIC_HEADERS})
  get_filename_component(hn ${h} NAME_WE)
  set(_ht ${CMAKE_BINARY_DIR}/headertest/ht_${hn}.c)
  file(WRITE ${_ht}.tmp "#include <mechbench/${hn}.h>\nint mb_headertest_${hn}(void);\nint mb_headertest_${hn}(void) { return 0; }\n")
  configure_file(${_ht}.tmp ${_ht} COPYONLY)
  list(APPEND _ht_sources ${_ht})
endforeach()
if(_ht_sources)
  add_library(mb_headertest OBJECT ${_ht_sources})
  target_include_directories(mb_headertest PRIVATE ${CMAKE_SOURCE_DIR}/include)
  target_link_libraries(mb_headertest PRIVATE mechbench_core)
endif()

# The HTML report's browser test decodes Chromium's PNG screenshots (zlib).
if(TARGET report_test_html_chromium)
  find_package(ZLIB REQUIRED)
  target_link_libraries(report_test_html_chromium PRIVATE ZLIB::ZLIB)
endif()

# tests/faultsim: the CLI with a counting allocator and I/O hook wrapped in at
# link time (the production binary is unchanged); ci/faultsim sweeps it.
add_executable(mechbench_faultsim ${MB_CLI_SOURCES} ${CMAKE_SOURCE_DIR}/tests/faultsim/faultsim.c)
target_include_directories(mechbench_faultsim PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(mechbench_faultsim PRIVATE mechbench_core)
target_link_options(mechbench_faultsim PRIVATE
  "-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=write,--wrap=fsync,--wrap=rename")

# The CLI's option parser is private to src/cli: its unit test compiles it in.
if(TARGET cli_test_options)
  target_sources(cli_test_options PRIVATE ${CMAKE_SOURCE_DIR}/src/cli/options.c)
endif()
