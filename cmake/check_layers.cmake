# SPDX-License-Identifier: Apache-2.0
# check_layers.cmake — fails when a source file reaches up the layers of docs/routing.md:
# include → core → ref → route (dispatch, router) → backends (cuda) → lm, tools.
# core includes no ref, route or cuda header; ref includes no route or cuda header and calls
# neither the router nor a device hook. Run by ctest (nsa_layers): cmake -DSRC=<src> -P this.
if(NOT SRC)
  message(FATAL_ERROR "check_layers: pass -DSRC=<the src folder>")
endif()
set(bad "")
# rule: folder @ forbidden regex @ what it means
set(rules
  "core@#include \"\\.\\./(ref|route|cuda)/@includes a ref, route or cuda header"
  "ref@#include \"\\.\\./(route|cuda)/@includes a route or cuda header"
  "ref@#include <cuda@includes a CUDA header"
  "ref@nsa_route_[a-z_]+\\(@calls the router"
  "ref@nsa_device_cuda_[a-z_]+\\(@calls a device hook")
foreach(rule ${rules})
  string(REPLACE "@" ";" r "${rule}")
  list(GET r 0 dir)
  list(GET r 1 regex)
  list(GET r 2 what)
  set(pattern ${SRC}/${dir}/*.[ch])
  file(GLOB files ${pattern})
  foreach(f ${files})
    file(STRINGS ${f} hits REGEX "${regex}")
    foreach(h ${hits})
      string(APPEND bad "  ${f}: ${what}: ${h}\n")
    endforeach()
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "layers point upward:\n${bad}")
endif()
message(STATUS "layers: core and ref reach no higher layer")
