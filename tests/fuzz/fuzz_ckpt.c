// SPDX-License-Identifier: Apache-2.0
/* placeholder */
#include "fuzz.h"
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { (void)data; (void)size; return 0; }
