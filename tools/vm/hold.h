/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the guest test programs: sessions live exactly as long as their
 * file descriptors, so stage 1 of a live update leaves a child holding them
 * until the kexec takes the machine away.
 */
#ifndef LUO_VM_HOLD_H
#define LUO_VM_HOLD_H

#include <stdio.h>
#include <unistd.h>

/* Fork a child that keeps every open fd until the kexec; the caller returns. */
static inline void hold_until_kexec(void)
{
	fflush(stdout);
	if (fork() == 0) {
		setsid();
		for (;;)
			pause();
	}
}

#endif /* LUO_VM_HOLD_H */
