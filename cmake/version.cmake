# SPDX-License-Identifier: Apache-2.0
# The version's one source is project(VERSION) in CMakeLists.txt. This file checks that
# include/nsa.h's NSA_VERSION_* macros agree with it (configure fails otherwise) and reads the
# git commit of the source tree ("unknown" when the source tree is not a git checkout of its own),
# for src/core/version.c: NSA_VERSION_DEFINES.
file(READ ${PROJECT_SOURCE_DIR}/include/nsa.h _nsa_h)
foreach(part MAJOR MINOR PATCH)
  string(REGEX MATCH "#define NSA_VERSION_${part} ([0-9]+)" _m "${_nsa_h}")
  if(NOT CMAKE_MATCH_1 STREQUAL "${PROJECT_VERSION_${part}}")
    message(FATAL_ERROR "include/nsa.h has NSA_VERSION_${part} ${CMAKE_MATCH_1}, but "
                        "project(VERSION) is ${PROJECT_VERSION}: change both together")
  endif()
endforeach()
if(PROJECT_VERSION_MINOR GREATER 99 OR PROJECT_VERSION_PATCH GREATER 99)
  message(FATAL_ERROR "nsa_version() packs minor and patch in two digits each: ${PROJECT_VERSION}")
endif()

set(NSA_GIT_COMMIT unknown)
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --show-toplevel
                  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} OUTPUT_VARIABLE _top
                  RESULT_VARIABLE _r OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  # a source tarball unpacked inside another git repository must not take that one's commit
  if(_r EQUAL 0 AND EXISTS "${_top}" AND EXISTS "${PROJECT_SOURCE_DIR}")
    file(REAL_PATH "${_top}" _top)
    file(REAL_PATH "${PROJECT_SOURCE_DIR}" _src)
    if(_top STREQUAL _src)
      execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short=12 HEAD
                      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} OUTPUT_VARIABLE _c
                      RESULT_VARIABLE _r OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      if(_r EQUAL 0)
        set(NSA_GIT_COMMIT ${_c})
        execute_process(COMMAND ${GIT_EXECUTABLE} diff --quiet HEAD --
                        WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} RESULT_VARIABLE _dirty
                        ERROR_QUIET)
        if(_dirty EQUAL 1)
          string(APPEND NSA_GIT_COMMIT "-dirty")
        endif()
      endif()
    endif()
  endif()
endif()
math(EXPR _num
     "${PROJECT_VERSION_MAJOR} * 10000 + ${PROJECT_VERSION_MINOR} * 100 + ${PROJECT_VERSION_PATCH}")
set(NSA_VERSION_DEFINES NSA_VERSION_TEXT="${PROJECT_VERSION}" NSA_GIT_COMMIT="${NSA_GIT_COMMIT}"
                        NSA_VERSION_NUMBER=${_num})
message(STATUS "nsa: version ${PROJECT_VERSION}, commit ${NSA_GIT_COMMIT}")
