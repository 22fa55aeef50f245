// SPDX-License-Identifier: GPL-2.0
/*
 * The luo-rs test file handler registers at late_initcall, like the memfd
 * handler: live update is settled by then (with either core). Rust's module!
 * only offers the device initcall level for built-in code, so this shim
 * provides the initcall.
 */

#include <linux/init.h>

#include "luo_test_shim.h"

static int __init luo_test_late_init(void)
{
	return luo_test_init();
}
late_initcall(luo_test_late_init);
