/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Entry points of the Rust LUO core that only the boot-time C shim calls.
 * Included by rust/bindings/bindings_helper.h so that #[export] checks the
 * Rust definitions against these prototypes.
 */
#ifndef _LUO_RS_SHIM_H
#define _LUO_RS_SHIM_H

#include <linux/types.h>

int luo_rs_early_init(bool kho_enabled);
void luo_rs_request(bool enable);
int luo_rs_late_init(bool kho_enabled);

#endif /* _LUO_RS_SHIM_H */
