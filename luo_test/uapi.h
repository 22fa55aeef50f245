/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * Control interface of the luo-rs test file handler (/dev/luo_test), shared
 * by the kernel side (luo_test.rs mirrors these numbers) and the guest tools.
 */
#ifndef _LUO_TEST_UAPI_H
#define _LUO_TEST_UAPI_H

#include <linux/ioctl.h>

#define LUO_TEST_IOC 0xB7

/* On /dev/luo_test: new test file holding the value in arg (< 2^31); returns its fd. */
#define LUO_TEST_NEW_FILE	_IO(LUO_TEST_IOC, 0)
/* On a test file: set its behaviour flags (arg) for the handler's callbacks. */
#define LUO_TEST_SET_FLAGS	_IO(LUO_TEST_IOC, 1)
/* On a test file: returns its value. */
#define LUO_TEST_GET_VALUE	_IO(LUO_TEST_IOC, 2)
/* On /dev/luo_test: set the test FLB's behaviour flags (arg). */
#define LUO_TEST_SET_FLB_FLAGS	_IO(LUO_TEST_IOC, 3)
/* On /dev/luo_test: register the test handler again (EEXIST if it is registered). */
#define LUO_TEST_REGISTER	_IO(LUO_TEST_IOC, 4)
/* On /dev/luo_test: unregister the test handler (ENOENT if it is not registered). */
#define LUO_TEST_UNREGISTER	_IO(LUO_TEST_IOC, 5)

/*
 * On /dev/luo_test: take a reference to the test FLB's outgoing object and
 * keep it (ENOENT if the FLB is not preserved, EBUSY if one is kept already).
 */
#define LUO_TEST_HOLD_FLB	_IO(LUO_TEST_IOC, 6)
/* On /dev/luo_test: put the kept reference back (ENOENT if none is kept). */
#define LUO_TEST_PUT_FLB	_IO(LUO_TEST_IOC, 7)

/* freeze() fails with EAGAIN, which calls the kexec off. */
#define LUO_TEST_FAIL_FREEZE	(1U << 0)
/* can_finish() says no while the retrieved file has this flag. */
#define LUO_TEST_REFUSE_FINISH	(1U << 1)
/* freeze() marks the data so that retrieve() fails with EIO in the next kernel. */
#define LUO_TEST_FAIL_RETRIEVE	(1U << 2)

/* The test FLB's preserve() fails with ENOSPC. */
#define LUO_TEST_FLB_FAIL_PRESERVE	(1U << 0)
/* The test FLB's data is marked so that its retrieve() fails with EIO in the next kernel. */
#define LUO_TEST_FLB_FAIL_RETRIEVE	(1U << 1)

#endif /* _LUO_TEST_UAPI_H */
