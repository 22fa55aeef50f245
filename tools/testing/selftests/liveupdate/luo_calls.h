/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by luo_memfd and the guest bench program: the /dev/liveupdate and
 * session ioctls they make, and /proc/meminfo readings. Every failure ends
 * the program (or the kselftest's child) through die(), which each program
 * defines (printing its own name).
 */
#ifndef LUO_CALLS_H
#define LUO_CALLS_H

#include <linux/liveupdate.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

static void die(const char *what);

/* CREATE_SESSION or RETRIEVE_SESSION (`cmd`) of session `name`; its fd. */
static inline int session(int luo, unsigned long cmd, const char *name)
{
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg) };

	snprintf((char *)arg.name, sizeof(arg.name), "%s", name);
	if (ioctl(luo, cmd, &arg))
		die(cmd == LIVEUPDATE_IOCTL_CREATE_SESSION ? "LIVEUPDATE_IOCTL_CREATE_SESSION" :
		    "LIVEUPDATE_IOCTL_RETRIEVE_SESSION");
	return arg.fd;
}

static inline void preserve(int sfd, int fd, uint64_t token)
{
	struct liveupdate_session_preserve_fd p = { .size = sizeof(p), .fd = fd, .token = token };

	if (ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, &p))
		die("LIVEUPDATE_SESSION_PRESERVE_FD");
}

static inline int retrieve(int sfd, uint64_t token)
{
	struct liveupdate_session_retrieve_fd r = { .size = sizeof(r), .token = token };

	if (ioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, &r))
		die("LIVEUPDATE_SESSION_RETRIEVE_FD");
	return r.fd;
}

static inline void finish(int sfd)
{
	struct liveupdate_session_finish f = { .size = sizeof(f) };

	if (ioctl(sfd, LIVEUPDATE_SESSION_FINISH, &f))
		die("LIVEUPDATE_SESSION_FINISH");
}

/* The /proc/meminfo value `key` in kB. */
static inline long meminfo_kib(const char *key)
{
	char line[128], name[64];
	long kib = -1, v;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		die("open /proc/meminfo");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63[^:]: %ld kB", name, &v) == 2 && !strcmp(name, key))
			kib = v;
	fclose(f);
	return kib;
}

#endif /* LUO_CALLS_H */
