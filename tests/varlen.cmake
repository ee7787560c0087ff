# SPDX-License-Identifier: Apache-2.0
# Packed documents (issue 20: cu_seqlens): the reference's packed forward and backward against
# one plain call per document, bad offsets, and KV-cache prefill of several rows then decode.
nsa_test(test_varlen SOURCES test_varlen.c LIBS nsa_ref_util
  CASES fwd_docs_bitwise fwd_docs_compressed fwd_docs_shared_kv one_doc_is_plain
        bwd_docs_bitwise bwd_docs_compressed bwd_docs_shared_kv bad_cu_seqlens
        given_blocks_docs)
nsa_test(test_varlen_kv SOURCES test_varlen_kv.c test_decode_util.c
  CASES prefill_docs_then_decode prefill_docs_refused prefill_docs_state)
nsa_test(test_varlen_route SOURCES test_varlen_route.c
  CASES cuda_varlen_is_reference cutoffs_use_longest strict_per_document)
if(TARGET nsa_lm)
  nsa_test(test_lm_docs SOURCES test_lm_docs.c LIBS nsa_lm
    CASES packed_row_equals_docs kjv_books separator_documents)
endif()
