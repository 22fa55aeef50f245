// SPDX-License-Identifier: GPL-2.0
/*
 * The service of the systemd guest's scenarios: keeps data in systemd's fd
 * store and asks systemd to carry the store across a live update
 * (FileDescriptorStorePreserve=yes), the way a real service would, with
 * libsystemd's own calls.
 *
 *   luo-fdstore memfd 1     fill a memfd with a data set and push it into
 *                           the fd store as "dataset"
 *   luo-fdstore session 1   create a LUO session of its own, preserve such
 *                           a memfd in it (token 1) and push the session fd
 *                           into the fd store as "own-session"
 *   luo-fdstore WHAT 2      after the update: find the fd by its name in
 *                           LISTEN_FDNAMES, check it is what was stored
 *                           (for the session: by its link name, then
 *                           retrieve the memfd and finish the session), and
 *                           check every byte
 *
 * The data set is DATASET_MIB MiB from a generator seeded by the kind of
 * fd; both stages print its FNV-1a checksum, which the test harness
 * compares between the two kernels. Every line it prints starts with
 * "luo-fdstore:"; a failure prints "luo-fdstore: FAIL ..." and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/liveupdate.h>
#include <systemd/sd-daemon.h>

#define DATASET_MIB 24
#define SESSION_NAME "luo-fdstore-own"
#define SESSION_TOKEN 1

static void fail(const char *fmt, ...)
{
	va_list ap;

	printf("luo-fdstore: FAIL ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(1);
}

/* xorshift64*: the same bytes from the same seed on either side of the update. */
static uint64_t next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static uint64_t seed_of(const char *what)
{
	return strcmp(what, "memfd") ? 0x5e5510f0dULL : 0xda7a5e7ULL;
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	while (n--) {
		h ^= *p++;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static int dataset_memfd(const char *what)
{
	size_t size = (size_t)DATASET_MIB << 20;
	uint64_t s = seed_of(what), *p;
	int fd;

	fd = memfd_create(what, MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, size))
		fail("memfd_create/ftruncate: %s", strerror(errno));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	for (size_t i = 0; i < size / 8; i++)
		p[i] = next(&s);
	printf("luo-fdstore: %s: %d MiB stored, checksum %016" PRIx64 "\n", what, DATASET_MIB,
	       fnv1a((unsigned char *)p, size));
	munmap(p, size);
	return fd;
}

/* Every byte of `fd` against the data set of `what`. */
static void check_dataset(int fd, const char *what)
{
	size_t size = (size_t)DATASET_MIB << 20;
	uint64_t s = seed_of(what), *p;
	off_t got = lseek(fd, 0, SEEK_END);

	if (got != (off_t)size)
		fail("%s: size %lld, stored %zu", what, (long long)got, size);
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	for (size_t i = 0; i < size / 8; i++)
		if (p[i] != next(&s))
			fail("%s: byte %zu differs from what was stored", what, i * 8);
	printf("luo-fdstore: %s: every byte of %d MiB checked, checksum %016" PRIx64 "\n", what,
	       DATASET_MIB, fnv1a((unsigned char *)p, size));
	munmap(p, size);
}

static void push(int fd, const char *name)
{
	char msg[64];
	int r;

	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	if (r <= 0)
		fail("sd_pid_notify_with_fds(%s): %s", name, r ? strerror(-r) : "no $NOTIFY_SOCKET");
	/* systemd must have taken the fd before this process exits. */
	r = sd_notify_barrier(0, 10 * 1000000ULL);
	if (r < 0)
		fail("sd_notify_barrier: %s", strerror(-r));
	printf("luo-fdstore: pushed '%s' into the fd store\n", name);
}

/* The fd systemd passed under `name`, or fails. */
static int received(const char *name)
{
	char **names = NULL;
	int n, fd = -1;

	n = sd_listen_fds_with_names(0, &names);
	if (n < 0)
		fail("sd_listen_fds_with_names: %s", strerror(-n));
	for (int i = 0; i < n; i++) {
		if (!strcmp(names[i], name))
			fd = SD_LISTEN_FDS_START + i;
		printf("luo-fdstore: received fd %d named '%s'\n", SD_LISTEN_FDS_START + i, names[i]);
	}
	if (fd < 0)
		fail("no fd named '%s' among the %d systemd passed", name, n);
	return fd;
}

static int luo_session(unsigned long cmd, int luo, const char *name)
{
	struct liveupdate_ioctl_create_session a = { .size = sizeof(a) };

	snprintf((char *)a.name, sizeof(a.name), "%s", name);
	if (ioctl(luo, cmd, &a))
		fail("%s '%s': %s", cmd == LIVEUPDATE_IOCTL_CREATE_SESSION ? "CREATE_SESSION" :
		     "RETRIEVE_SESSION", name, strerror(errno));
	return a.fd;
}

static void store_session(void)
{
	struct liveupdate_session_preserve_fd p = { .size = sizeof(p), .token = SESSION_TOKEN };
	int luo, sfd;

	luo = open("/dev/liveupdate", O_RDWR | O_CLOEXEC);
	if (luo < 0)
		fail("open /dev/liveupdate: %s", strerror(errno));
	sfd = luo_session(LIVEUPDATE_IOCTL_CREATE_SESSION, luo, SESSION_NAME);
	/* Others (systemd itself, at shutdown) open the device after us. */
	close(luo);
	p.fd = dataset_memfd("session");
	if (ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, &p))
		fail("PRESERVE_FD: %s", strerror(errno));
	close(p.fd);
	push(sfd, "own-session");
}

static void check_session(void)
{
	struct liveupdate_session_retrieve_fd r = { .size = sizeof(r), .token = SESSION_TOKEN };
	struct liveupdate_session_finish f = { .size = sizeof(f) };
	char link[64], path[128] = "";
	int sfd = received("own-session");
	ssize_t n;

	/* systemd tells session fds apart by this link name; it must be the session's. */
	snprintf(link, sizeof(link), "/proc/self/fd/%d", sfd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		fail("readlink %s: %s", link, strerror(errno));
	path[n] = 0;
	if (strcmp(path, "anon_inode:[luo_session] " SESSION_NAME))
		fail("the session fd links to '%s'", path);
	printf("luo-fdstore: the session fd is '%s'\n", path);
	if (ioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, &r))
		fail("RETRIEVE_FD: %s", strerror(errno));
	check_dataset(r.fd, "session");
	if (ioctl(sfd, LIVEUPDATE_SESSION_FINISH, &f))
		fail("FINISH: %s", strerror(errno));
	printf("luo-fdstore: session '%s' finished\n", SESSION_NAME);
}

int main(int argc, char **argv)
{
	bool memfd;
	int stage;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 3 || (strcmp(argv[1], "memfd") && strcmp(argv[1], "session")))
		fail("usage: luo-fdstore memfd|session STAGE");
	memfd = !strcmp(argv[1], "memfd");
	stage = atoi(argv[2]);
	if (stage == 1 && memfd)
		push(dataset_memfd("memfd"), "dataset");
	else if (stage == 1)
		store_session();
	else if (stage == 2 && memfd)
		check_dataset(received("dataset"), "memfd");
	else if (stage == 2)
		check_session();
	else
		fail("stage %s: 1 or 2", argv[2]);
	printf("luo-fdstore: %s stage %d ok\n", argv[1], stage);
	return 0;
}
