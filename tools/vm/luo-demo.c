// SPDX-License-Identifier: GPL-2.0
/*
 * luo-demo: carry a memfd full of data across one live update.
 *
 * Stage 1 fills a memfd with a pattern, preserves it in session "luo-demo"
 * and leaves a child holding the session until the kexec. Stage 2 retrieves
 * the session and the memfd, checks every byte against the checksum and the
 * pattern, and finishes the session. Exit status 0 only if the data is intact.
 *
 * usage: luo-demo 1 [MiB] | luo-demo 2
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/liveupdate.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hold.h"

#define SESSION "luo-demo"
#define TOKEN 0x10ad
#define SEED 0x9e3779b97f4a7c15ULL

static void die(const char *what)
{
	printf("luo-demo: %s failed: %s\n", what, strerror(errno));
	exit(1);
}

/* Word i of the data set: a cheap pattern that differs in every word. */
static uint64_t pattern(uint64_t i)
{
	uint64_t x = (i + 1) * SEED;

	return x ^ (x >> 29);
}

/* FNV-1a over 64-bit words. */
static uint64_t checksum(const uint64_t *w, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ w[i]) * 0x100000001b3ULL;
	return h;
}

static int session(int luo, unsigned long cmd)
{
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg) };

	/* create and retrieve share one layout */
	strcpy((char *)arg.name, SESSION);
	if (ioctl(luo, cmd, &arg))
		return -1;
	return arg.fd;
}

static int stage1(int luo, size_t mib)
{
	size_t len = mib << 20, n = len / 8;
	struct liveupdate_session_preserve_fd pres = { .size = sizeof(pres), .token = TOKEN };
	uint64_t *w;
	int mfd, sfd;

	mfd = memfd_create("luo-demo-data", 0);
	if (mfd < 0 || ftruncate(mfd, len))
		die("memfd_create/ftruncate");
	w = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (w == MAP_FAILED)
		die("mmap");
	for (size_t i = 0; i < n; i++)
		w[i] = pattern(i);
	sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION);
	if (sfd < 0)
		die("LIVEUPDATE_IOCTL_CREATE_SESSION");
	pres.fd = mfd;
	if (ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, &pres))
		die("LIVEUPDATE_SESSION_PRESERVE_FD");
	printf("luo-demo: preserved a %zu MiB memfd (token %#x) in session '%s', checksum %016llx\n",
	       mib, TOKEN, SESSION, (unsigned long long)checksum(w, n));
	hold_until_kexec();
	return 0;
}

static int stage2(int luo)
{
	struct liveupdate_session_retrieve_fd ret = { .size = sizeof(ret), .token = TOKEN };
	struct liveupdate_session_finish fin = { .size = sizeof(fin) };
	struct stat st;
	size_t n, bad = 0;
	uint64_t *w;
	int sfd;

	sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION);
	if (sfd < 0)
		die("LIVEUPDATE_IOCTL_RETRIEVE_SESSION");
	if (ioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, &ret))
		die("LIVEUPDATE_SESSION_RETRIEVE_FD");
	if (fstat(ret.fd, &st))
		die("fstat");
	n = st.st_size / 8;
	w = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, ret.fd, 0);
	if (w == MAP_FAILED)
		die("mmap");
	for (size_t i = 0; i < n; i++)
		bad += w[i] != pattern(i);
	printf("luo-demo: retrieved the memfd from session '%s': %lld MiB, checksum %016llx\n",
	       SESSION, (long long)st.st_size >> 20, (unsigned long long)checksum(w, n));
	if (ioctl(sfd, LIVEUPDATE_SESSION_FINISH, &fin))
		die("LIVEUPDATE_SESSION_FINISH");
	if (bad) {
		printf("luo-demo: DATA DAMAGED: %zu of %zu words differ\n", bad, n);
		return 1;
	}
	printf("luo-demo: all %zu bytes came back intact; session finished\n", n * 8);
	return 0;
}

int main(int argc, char **argv)
{
	int luo, stage = argc > 1 ? atoi(argv[1]) : 0;

	if (stage != 1 && stage != 2) {
		fprintf(stderr, "usage: luo-demo 1 [MiB] | luo-demo 2\n");
		return 2;
	}
	luo = open("/dev/liveupdate", O_RDWR);
	if (luo < 0)
		die("open /dev/liveupdate");
	if (stage == 1)
		return stage1(luo, argc > 2 ? strtoul(argv[2], NULL, 0) : 64);
	return stage2(luo);
}
