// SPDX-License-Identifier: GPL-2.0
/*
 * Boot-time hooks of the Rust LUO core.
 *
 * Rust's module! can only place built-in code at the device initcall level,
 * while LUO needs an early boot parameter and a late initcall (after KHO is
 * up and before userspace starts). Only C can declare those, so this file
 * forwards them to Rust. It also gives Rust the few C entry points that are
 * static inlines or depend on the configuration: module references and the
 * in-kernel FLB test hook.
 */

#define pr_fmt(fmt) "luo: " fmt

#include <linux/init.h>
#include <linux/kexec_handover.h>
#include <linux/kstrtox.h>
#include <linux/liveupdate.h>
#include <linux/module.h>

#include "luo_internal.h"
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

#ifdef CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST
/* Test builds only: damage the handover data written at the next kexec. */
static int __init luo_rs_corrupt_param(char *buf)
{
	luo_rs_corrupt_request(buf);
	return 1;
}
__setup("luo_rs_corrupt=", luo_rs_corrupt_param);
#endif

static int __init luo_rs_early_startup(void)
{
	return luo_rs_early_init(kho_is_enabled());
}
early_initcall(luo_rs_early_startup);

static int __init luo_rs_late_startup(void)
{
	return luo_rs_late_init();
}
late_initcall(luo_rs_late_startup);

/*
 * The line the C core prints when it finds the previous kernel's data, with
 * its format: the first line the core prints in a boot, at the early
 * initcall, where Rust's formatter has not run yet.
 */
void luo_rs_log_incoming(u64 liveupdate_num)
{
	pr_info("Retrieved live update data, liveupdate number: %lld\n",
		liveupdate_num);
}

bool luo_rs_module_get(struct module *owner)
{
	return try_module_get(owner);
}

void luo_rs_module_put(struct module *owner)
{
	module_put(owner);
}

/* A no-op unless CONFIG_LIVEUPDATE_TEST is set (see luo_internal.h). */
void luo_rs_test_register(struct liveupdate_file_handler *fh)
{
	liveupdate_test_register(fh);
}
