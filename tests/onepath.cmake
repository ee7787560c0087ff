# SPDX-License-Identifier: Apache-2.0
# One path from the API to every kernel (issue 14): supports() sees the real call, the router
# decides every pass, and what it explains is what runs. CPU only; fake backends.
nsa_test(test_route_onepath SOURCES test_route_onepath.c
  CASES empty_cmp_never_routed unaligned_view_never_routed)
nsa_test(test_route_passes SOURCES test_route_passes.c test_decode_util.c
  CASES explain_is_what_runs decode_route_names_the_reference)
# The layers stay one way (docs/routing.md): core and ref reach no higher layer.
add_test(NAME nsa_layers COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR}/src
  -P ${PROJECT_SOURCE_DIR}/cmake/check_layers.cmake)
if(NSA_HAVE_CUDA)
  nsa_test(test_gpu_route SOURCES gpu/test_gpu_route.c LABELS gpu
    CASES explain_is_what_runs_gpu compressed_short_no_error)
endif()
