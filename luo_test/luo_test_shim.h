/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Entry point of the luo-rs test file handler, called by its C shim.
 * Included by rust/bindings/bindings_helper.h so that #[export] checks the
 * Rust definition against this prototype.
 */
#ifndef _LUO_TEST_SHIM_H
#define _LUO_TEST_SHIM_H

#include <linux/types.h>

int luo_test_init(bool link_flb);

#endif /* _LUO_TEST_SHIM_H */
