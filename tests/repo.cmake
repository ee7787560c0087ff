# SPDX-License-Identifier: Apache-2.0
# Repository hygiene: no tracked file cites a document outside the repository (issue 12).
add_test(NAME repo.no_outside_references
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/repo/outside_refs.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(repo.no_outside_references PROPERTIES LABELS repo)
