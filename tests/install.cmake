# SPDX-License-Identifier: Apache-2.0
# The install test (issue 2): install this build into a temporary prefix, then build and run a
# consumer through find_package(nsa) and through pkg-config (tests/install/run.sh).
set(NSA_INSTALL_TEST_CFLAGS "")
if(NSA_SANITIZE)
  set(NSA_INSTALL_TEST_CFLAGS "-fsanitize=address,undefined")
endif()
add_test(NAME install.find_package_and_pkg_config
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/install/run.sh ${PROJECT_BINARY_DIR}
                 ${PROJECT_SOURCE_DIR} ${CMAKE_C_COMPILER} "${NSA_INSTALL_TEST_CFLAGS}")
set_tests_properties(install.find_package_and_pkg_config PROPERTIES LABELS install TIMEOUT 600)
# libnsa.so exports exactly the functions of include/nsa.h (hidden visibility + NSA_API).
add_test(NAME install.exported_symbols
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/install/symbols.sh $<TARGET_FILE:nsa_shared>
                 ${PROJECT_SOURCE_DIR}/include/nsa.h)
set_tests_properties(install.exported_symbols PROPERTIES LABELS install)
