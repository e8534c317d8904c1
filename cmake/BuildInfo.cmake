# Run at build time (cmake -P): writes mb_build_info.h with the source tree's
# current git commit and dirty flag, touching the file only when it changes.
# Inputs: SRC, OUT, VERSION, COMPILER.
set(commit "unknown")
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --verify -q HEAD WORKING_DIRECTORY ${SRC}
    OUTPUT_VARIABLE c RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc EQUAL 0 AND c)
    set(commit "${c}")
    execute_process(COMMAND ${GIT_EXECUTABLE} status --porcelain --untracked-files=no
      WORKING_DIRECTORY ${SRC} OUTPUT_VARIABLE dirty ERROR_QUIET)
    if(dirty)
      set(commit "${commit}-dirty")
    endif()
  endif()
endif()
set(text "/* Generated at build time by cmake/BuildInfo.cmake. */
#define MB_VERSION_STRING \"${VERSION}\"
#define MB_GIT_COMMIT \"${commit}\"
#define MB_C_COMPILER \"${COMPILER}\"
")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
