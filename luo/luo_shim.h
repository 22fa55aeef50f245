/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Entry points of the Rust LUO core that only the boot-time C shim calls.
 * Included by rust/bindings/bindings_helper.h so that #[export] checks the
 * Rust definitions against these prototypes.
 */
#ifndef _LUO_RS_SHIM_H
#define _LUO_RS_SHIM_H

#include <linux/types.h>

struct liveupdate_file_handler;
struct module;

int luo_rs_early_init(bool kho_enabled);
void luo_rs_request(bool enable);
int luo_rs_late_init(void);
void luo_rs_corrupt_request(const char *name);

/* C helpers the Rust core calls (inline or config-dependent in C). */
bool luo_rs_module_get(struct module *owner);
void luo_rs_module_put(struct module *owner);
void luo_rs_test_register(struct liveupdate_file_handler *fh);
void luo_rs_log_incoming(u64 liveupdate_num);

#endif /* _LUO_RS_SHIM_H */
