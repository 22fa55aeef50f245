// SPDX-License-Identifier: GPL-2.0
/*
 * The luo-rs test file handler registers at device_initcall, before the
 * cores' late initcalls, as the in-flight IOMMU, VFIO and guest_memfd
 * handlers do: the C core settles liveupdate_enabled() at early boot, so a
 * core that settles it later would refuse this handler, and every test that
 * uses it would fail. (The memfd handlers register at late_initcall.)
 *
 * "luo_test=off" on the command line keeps the handler from registering, so
 * a test can boot a kernel that lacks the handler its predecessor used.
 * "luo_test_flb=off" registers it without its test FLB: on the C core, whose
 * FLB count underflows when files finish before anyone asked for the FLB
 * (SPEC 10.4 item 2), the other paths can then be tested without that
 * known warning.
 */

#include <linux/init.h>
#include <linux/kstrtox.h>

#include "luo_test_shim.h"

static bool luo_test_enabled = true;
static bool luo_test_flb = true;

static int __init luo_test_param(char *buf)
{
	return kstrtobool(buf, &luo_test_enabled);
}
early_param("luo_test", luo_test_param);

static int __init luo_test_flb_param(char *buf)
{
	return kstrtobool(buf, &luo_test_flb);
}
early_param("luo_test_flb", luo_test_flb_param);

static int __init luo_test_device_init(void)
{
	return luo_test_enabled ? luo_test_init(luo_test_flb) : 0;
}
device_initcall(luo_test_device_init);
