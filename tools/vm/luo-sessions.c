// SPDX-License-Identifier: GPL-2.0
/*
 * luo-sessions: carry many named sessions across kexec and check them.
 *
 *   luo-sessions create N [DUP]   create N sessions with varied names and
 *                                 hold them until the kexec; with DUP, then
 *                                 try to create a duplicate (must be EEXIST)
 *   luo-sessions verify N         retrieve each session exactly once,
 *                                 check its name, finish and close it
 *   luo-sessions cycle N          verify N, then create N again and hold them
 *
 * Names are "s<i>-" followed by a run of letters whose length varies with
 * i, from 3 to 63 bytes in all. Output is one line per step; any failure
 * prints "luo-sessions: FAIL ..." and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/liveupdate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "hold.h"

static void fail(const char *what, int i)
{
	printf("luo-sessions: FAIL %s (session %d): %s\n", what, i, strerror(errno));
	exit(1);
}

static void name_of(int i, char *buf)
{
	int n = snprintf(buf, LIVEUPDATE_SESSION_NAME_LENGTH, "s%d-", i);
	int extra = (i * 7) % (LIVEUPDATE_SESSION_NAME_LENGTH - n);

	memset(buf + n, 'a' + i % 26, extra);
	buf[n + extra] = 0;
}

static int session_ioctl(int luo, unsigned long cmd, const char *name)
{
	struct liveupdate_ioctl_create_session a = { .size = sizeof(a) };

	memcpy(a.name, name, strlen(name) + 1);
	if (ioctl(luo, cmd, &a) < 0)
		return -errno;
	return a.fd;
}

static void raise_nofile(int n)
{
	struct rlimit r = { n + 64, n + 64 };

	if (setrlimit(RLIMIT_NOFILE, &r))
		fail("setrlimit", n);
}

static void create(int luo, int n, int dup)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];

	for (int i = 0; i < n; i++) {
		name_of(i, name);
		if (session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, name) < 0)
			fail("create", i);
	}
	printf("luo-sessions: created %d sessions\n", n);
	if (dup) {
		name_of(n / 2, name);
		errno = -session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
		if (errno != EEXIST)
			fail("duplicate create not refused with EEXIST", n / 2);
		printf("luo-sessions: duplicate create refused with EEXIST at %d sessions\n", n);
	}
}

static void verify(int luo, int n)
{
	struct liveupdate_session_get_name g = { .size = sizeof(g) };
	struct liveupdate_session_finish f = { .size = sizeof(f) };
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	int fd, r;

	for (int i = 0; i < n; i++) {
		name_of(i, name);
		fd = session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
		if (fd < 0) {
			errno = -fd;
			fail("retrieve", i);
		}
		r = session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
		if (r != -EINVAL) {
			errno = r < 0 ? -r : 0;
			fail("second retrieve not refused with EINVAL", i);
		}
		if (ioctl(fd, LIVEUPDATE_SESSION_GET_NAME, &g) || strcmp((char *)g.name, name))
			fail("GET_NAME", i);
		if (ioctl(fd, LIVEUPDATE_SESSION_FINISH, &f) || ioctl(fd, LIVEUPDATE_SESSION_FINISH, &f))
			fail("FINISH twice", i);
		close(fd);
		r = session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
		if (r != -ENOENT) {
			errno = r < 0 ? -r : 0;
			fail("retrieve after close not ENOENT", i);
		}
	}
	r = session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "no-such-session");
	if (r != -ENOENT) {
		errno = r < 0 ? -r : 0;
		fail("unknown name not ENOENT", n);
	}
	printf("luo-sessions: verified %d sessions (each retrieved once, named, finished, closed)\n", n);
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[2]) : 0;
	int luo;

	if (argc < 3) {
		fprintf(stderr, "usage: luo-sessions create|verify|cycle N [dup]\n");
		return 2;
	}
	raise_nofile(n);
	luo = open("/dev/liveupdate", O_RDWR);
	if (luo < 0)
		fail("open /dev/liveupdate", 0);
	if (!strcmp(argv[1], "create")) {
		create(luo, n, argc > 3);
		hold_until_kexec();
	} else if (!strcmp(argv[1], "verify")) {
		verify(luo, n);
	} else if (!strcmp(argv[1], "cycle")) {
		verify(luo, n);
		create(luo, n, 0);
		hold_until_kexec();
	} else {
		return 2;
	}
	return 0;
}
