# Reference forward/backward tests (issue: libnsa foundation).
nsa_test(test_ref_forward SOURCES test_ref_forward.c
  CASES full_coverage_dense)
