// SPDX-License-Identifier: GPL-2.0
/*
 * run-as: run a command as another user (uid and gid, no supplementary
 * groups). busybox's setpriv cannot change ids, and the guest initramfs has
 * no user database for su; the agent scenarios use this to be an
 * unprivileged client.
 *
 * usage: run-as UID CMD [ARG...]
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char *end;
	unsigned long id;

	if (argc < 3) {
		fprintf(stderr, "usage: run-as UID CMD [ARG...]\n");
		return 2;
	}
	errno = 0;
	id = strtoul(argv[1], &end, 10);
	if (errno || *end || end == argv[1] || id > 0xfffffffeUL) {
		fprintf(stderr, "run-as: bad uid %s\n", argv[1]);
		return 2;
	}
	if (setgroups(0, NULL) || setgid(id) || setuid(id)) {
		fprintf(stderr, "run-as: becoming uid %lu: %s\n", id, strerror(errno));
		return 1;
	}
	execvp(argv[2], argv + 2);
	fprintf(stderr, "run-as: %s: %s\n", argv[2], strerror(errno));
	return 127;
}
