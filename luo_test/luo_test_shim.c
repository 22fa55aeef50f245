// SPDX-License-Identifier: GPL-2.0
/*
 * The luo-rs test file handler registers at late_initcall, like the memfd
 * handler: live update is settled by then (with either core). Rust's module!
 * only offers the device initcall level for built-in code, so this shim
 * provides the initcall.
 *
 * "luo_test=off" on the command line keeps the handler from registering, so
 * a test can boot a kernel that lacks the handler its predecessor used.
 */

#include <linux/init.h>
#include <linux/kstrtox.h>

#include "luo_test_shim.h"

static bool luo_test_enabled = true;

static int __init luo_test_param(char *buf)
{
	return kstrtobool(buf, &luo_test_enabled);
}
early_param("luo_test", luo_test_param);

static int __init luo_test_late_init(void)
{
	return luo_test_enabled ? luo_test_init() : 0;
}
late_initcall(luo_test_late_init);
