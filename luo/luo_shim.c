// SPDX-License-Identifier: GPL-2.0
/*
 * Boot-time hooks of the Rust LUO core.
 *
 * Rust's module! can only place built-in code at the device initcall level,
 * while LUO needs an early boot parameter and a late initcall (after KHO is
 * up and before userspace starts). Only C can declare those, so this file
 * does nothing but forward them to Rust.
 */

#include <linux/init.h>
#include <linux/kexec_handover.h>
#include <linux/kstrtox.h>

#include "luo_shim.h"

static int __init luo_rs_early_param(char *buf)
{
	bool enable;
	int err;

	err = kstrtobool(buf, &enable);
	if (err)
		return err;
	luo_rs_request(enable);
	return 0;
}
early_param("liveupdate", luo_rs_early_param);

static int __init luo_rs_early_startup(void)
{
	return luo_rs_early_init(kho_is_enabled());
}
early_initcall(luo_rs_early_startup);

static int __init luo_rs_late_startup(void)
{
	return luo_rs_late_init(kho_is_enabled());
}
late_initcall(luo_rs_late_startup);
