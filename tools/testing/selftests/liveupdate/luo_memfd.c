// SPDX-License-Identifier: GPL-2.0
/*
 * memfds across live updates, whichever handler (C or Rust) preserves and
 * whichever retrieves. Each test runs in two stages, like upstream's kexec
 * tests: "-s 1" before the kexec, "-s 2" (or later) after it; the harness
 * option after "--" picks the test:
 *
 *   luo_memfd -s 1|2 -m MIB -- -t set
 *                     in session "memfd-set": a MIB MiB memfd filled with a
 *                     pattern at position 12293 (token 1), a sparse 64 MiB
 *                     memfd with three written pages (token 2), a memfd
 *                     written through a shared mmap after it was preserved
 *                     (token 3), and one memfd per allowed seal (tokens
 *                     10..15); size changes are refused with EPERM while
 *                     preserved and allowed again once a session is
 *                     closed. Stage 2 checks every byte, the checksum,
 *                     size, position and seals, and finishes.
 *   luo_memfd -s G -m MIB [-l] -- -t cycle
 *                     generation G of a memfd carried through several
 *                     updates: G=1 creates it; later generations retrieve,
 *                     verify, finish, overwrite it with their own data set
 *                     and preserve the same file again (unless -l).
 *   luo_memfd -s 1|2 -m MIB -- -t discard
 *                     a memfd that is never retrieved: after FINISH,
 *                     MemFree must grow by at least 90% of its size.
 *   luo_memfd -s 1|2 -m GIB -- -t holes
 *                     a GIB GiB memfd with three written pages: its
 *                     preservation must not fill the holes (MemFree barely
 *                     moves, the file still has three pages), and after the
 *                     update the pages are back, the holes are still holes
 *                     and read as zeros.
 *   luo_memfd -s 1|2 -- -t thp
 *                     with shmem THP on, a memfd of 4 MiB + 3 pages held in
 *                     three 2 MiB folios, the last reaching past the end of
 *                     the file; after the update every byte is back, still
 *                     in 2 MiB folios.
 *   luo_memfd -s 1|2 -m MIB -- -t swap
 *                     a MIB MiB memfd whose first half is written and then
 *                     pushed out to swap (MADV_PAGEOUT; the caller set up a
 *                     swap device), the next quarter written and resident,
 *                     the last quarter a hole: PRESERVE_FD must read the
 *                     swapped half back in, and after the update every byte
 *                     is there.
 *   luo_memfd -s 1|2 [-e ERRNO] -- -t damaged
 *                     for a test build's luo_memfd_corrupt=: the memfd in
 *                     2 MiB folios of thp (token 1, the one the handler
 *                     damages), a 1 MiB memfd (token 2) and a 3-page one
 *                     (token 3) in one session; after the update
 *                     RETRIEVE_FD of token 1 must fail with ERRNO (an errno
 *                     name), twice, while the other two arrive intact and
 *                     FINISH works.
 *
 * Every check prints what it found; a test passes only if all held.
 */
#include <errno.h>
#include <stdbool.h>
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

#include "../kselftest_harness.h"
#include "luo_abi.h"
#include "luo_calls.h"

#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020	/* uapi/linux/fcntl.h; older C libraries lack it */
#endif

#define MIB (1UL << 20)
#define PAGE 4096UL
#define POS 12293
#define SPARSE_SIZE (64 * MIB)
#define SPARSE_MID (SPARSE_SIZE / 2 + 5 * PAGE)

static const unsigned int seal_list[] = {
	F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE, F_SEAL_EXEC,
};

#define NSEALS ARRAY_SIZE(seal_list)

/* F_SEAL_EXEC on an executable memfd implies the write and size seals. */
static int seals_of(unsigned int seal)
{
	if (seal == F_SEAL_EXEC)
		return seal | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
	return seal;
}

static int failures;

/* Ends the test (its child process) as failed. */
static void die(const char *what)
{
	printf("luo_memfd: %s failed: %s\n", what, strerror(errno));
	exit(KSFT_FAIL);
}

static void check(int ok, const char *what)
{
	printf("luo_memfd: %s: %s\n", what, ok ? "ok" : "FAILED");
	if (!ok)
		failures++;
}

/* Word i of data set `seed`: differs in every word and every set. */
static uint64_t pattern(uint64_t seed, uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ULL + seed * 0xbf58476d1ce4e5b9ULL;

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

static uint64_t pattern_checksum(uint64_t seed, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ pattern(seed, i)) * 0x100000001b3ULL;
	return h;
}

static uint64_t *map(int fd, size_t len, int prot)
{
	uint64_t *w = mmap(NULL, len, prot, MAP_SHARED, fd, 0);

	if (w == MAP_FAILED)
		die("mmap");
	return w;
}

/* A memfd of `len` bytes holding data set `seed`. */
/* Writes data set `seed` over the first `len` bytes of memfd `fd`. */
static void fill(int fd, size_t len, uint64_t seed)
{
	uint64_t *w = map(fd, len, PROT_READ | PROT_WRITE);

	for (size_t i = 0; i < len / 8; i++)
		w[i] = pattern(seed, i);
	munmap(w, len);
}

static int filled(const char *name, size_t len, uint64_t seed, unsigned int flags)
{
	int fd = memfd_create(name, flags);

	if (fd < 0 || ftruncate(fd, len))
		die("memfd_create/ftruncate");
	fill(fd, len, seed);
	return fd;
}

/* Checks that memfd `fd` holds exactly data set `seed` over `len` bytes. */
static void verify_filled(int fd, size_t len, uint64_t seed, const char *what)
{
	struct stat st;
	size_t bad = 0, n = len / 8;
	uint64_t *w;
	char msg[160];

	if (fstat(fd, &st))
		die("fstat");
	snprintf(msg, sizeof(msg), "%s size %lld (want %zu)", what, (long long)st.st_size, len);
	check(st.st_size == (off_t)len, msg);
	if (st.st_size != (off_t)len)
		return;
	w = map(fd, len, PROT_READ);
	for (size_t i = 0; i < n; i++)
		bad += w[i] != pattern(seed, i);
	snprintf(msg, sizeof(msg), "%s checksum %016llx, identical to the preserved %016llx, %zu bad words",
		 what, (unsigned long long)checksum(w, n),
		 (unsigned long long)pattern_checksum(seed, n), bad);
	check(!bad && checksum(w, n) == pattern_checksum(seed, n), msg);
	munmap(w, len);
}

/* Size changes must fail with EPERM while `fd` is preserved. */
static void size_frozen(int fd, const char *what)
{
	char msg[160];
	int r1, e1, r2, e2;

	r1 = ftruncate(fd, 3 * PAGE);
	e1 = errno;
	r2 = fallocate(fd, 0, 0, PAGE);
	e2 = errno;
	snprintf(msg, sizeof(msg), "%s while preserved: ftruncate %s, fallocate %s", what,
		 r1 ? strerror(e1) : "allowed", r2 ? strerror(e2) : "allowed");
	check(r1 == -1 && e1 == EPERM && r2 == -1 && e2 == EPERM, msg);
}

static int set1(int luo, size_t mib)
{
	size_t len = mib * MIB;
	int big, sparse, mm, sfd, cfd, tmp;
	uint64_t *w;
	char msg[160];

	sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "memfd-set");

	big = filled("big", len, 1, 0);
	if (lseek(big, POS, SEEK_SET) != POS)
		die("lseek");
	preserve(sfd, big, 1);
	printf("luo_memfd: preserved %zu MiB, checksum %016llx\n", mib,
	       (unsigned long long)pattern_checksum(1, len / 8));
	size_frozen(big, "big memfd");

	/* Sparse: three written pages in 256 MiB; the rest must read back as zeros. */
	sparse = memfd_create("sparse", 0);
	if (sparse < 0 || ftruncate(sparse, SPARSE_SIZE))
		die("sparse memfd");
	w = map(sparse, SPARSE_SIZE, PROT_READ | PROT_WRITE);
	w[0] = pattern(2, 0);
	w[SPARSE_MID / 8] = pattern(2, 1);
	w[SPARSE_SIZE / 8 - 1] = pattern(2, 2);
	munmap(w, SPARSE_SIZE);
	preserve(sfd, sparse, 2);

	/* Written through a mapping that exists when it is preserved. */
	mm = memfd_create("mmap", 0);
	if (mm < 0 || ftruncate(mm, 8 * MIB))
		die("mmap memfd");
	w = map(mm, 8 * MIB, PROT_READ | PROT_WRITE);
	preserve(sfd, mm, 3);
	for (size_t i = 0; i < 8 * MIB / 8; i++)
		w[i] = pattern(3, i);
	printf("luo_memfd: wrote 8 MiB through an mmap after preserving\n");

	for (unsigned int i = 0; i < NSEALS; i++) {
		int fd = filled("sealed", 2 * PAGE, 10 + i, MFD_ALLOW_SEALING);

		if (fcntl(fd, F_ADD_SEALS, seal_list[i]))
			die("F_ADD_SEALS");
		if (fcntl(fd, F_GET_SEALS) != seals_of(seal_list[i])) {
			printf("luo_memfd: seal %#x gave seals %#x\n", seal_list[i],
			       fcntl(fd, F_GET_SEALS));
			failures++;
		}
		preserve(sfd, fd, 10 + i);
	}
	printf("luo_memfd: preserved %zu sealed memfds\n", NSEALS);
	/*
	 * No other seal can reach the handler: 7.3 refuses unknown seals
	 * before they are set (the handlers' EOPNOTSUPP for them is covered
	 * by the KUnit suite luo_rs_memfd_abi).
	 */
	tmp = memfd_create("seal-0x40", MFD_ALLOW_SEALING);
	snprintf(msg, sizeof(msg), "seal 0x40 refused by F_ADD_SEALS");
	check(tmp >= 0 && fcntl(tmp, F_ADD_SEALS, 0x40) == -1 && errno == EINVAL, msg);
	close(tmp);

	/* The freeze of the size ends with the session. */
	cfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "memfd-closed");
	if (cfd < 0)
		die("LIVEUPDATE_IOCTL_CREATE_SESSION");
	tmp = filled("closed", 2 * PAGE, 4, 0);
	preserve(cfd, tmp, 4);
	size_frozen(tmp, "memfd");
	close(cfd);
	snprintf(msg, sizeof(msg), "after its session was closed: ftruncate and fallocate allowed");
	check(!ftruncate(tmp, 3 * PAGE) && !fallocate(tmp, 0, 0, 4 * PAGE), msg);
	close(tmp);

	if (failures)
		return 1;
	printf("luo_memfd: set preserved\n");
	luo_abi_hold_until_kexec(luo);
	return 0;
}

static int set2(int luo, size_t mib)
{
	int sfd, fd, seals;
	size_t bad = 0;
	uint64_t *w;
	struct stat st;
	char msg[160];
	off_t pos;

	sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "memfd-set");

	fd = retrieve(sfd, 1);
	verify_filled(fd, mib * MIB, 1, "big memfd");
	pos = lseek(fd, 0, SEEK_CUR);
	snprintf(msg, sizeof(msg), "big memfd position %lld (want %d)", (long long)pos, POS);
	check(pos == POS, msg);

	fd = retrieve(sfd, 2);
	if (fstat(fd, &st))
		die("fstat");
	w = map(fd, SPARSE_SIZE, PROT_READ);
	for (size_t i = 0; i < SPARSE_SIZE / 8; i++) {
		uint64_t want = 0;

		if (i == 0)
			want = pattern(2, 0);
		else if (i == SPARSE_MID / 8)
			want = pattern(2, 1);
		else if (i == SPARSE_SIZE / 8 - 1)
			want = pattern(2, 2);
		bad += w[i] != want;
	}
	snprintf(msg, sizeof(msg), "sparse memfd: size %lld, 3 written pages and zeros, %zu bad words",
		 (long long)st.st_size, bad);
	check(st.st_size == (off_t)SPARSE_SIZE && !bad, msg);

	fd = retrieve(sfd, 3);
	verify_filled(fd, 8 * MIB, 3, "memfd written through mmap after preserve");

	for (unsigned int i = 0; i < NSEALS; i++) {
		fd = retrieve(sfd, 10 + i);
		seals = fcntl(fd, F_GET_SEALS);
		snprintf(msg, sizeof(msg), "seal %#x: seals after kexec %#x (want %#x)",
			 seal_list[i], seals, seals_of(seal_list[i]));
		check(seals == seals_of(seal_list[i]), msg);
		verify_filled(fd, 2 * PAGE, 10 + i, "sealed memfd");
	}
	finish(sfd);
	if (failures) {
		printf("luo_memfd: %d checks FAILED\n", failures);
		return 1;
	}
	printf("luo_memfd: set verified\n");
	return 0;
}

#define CYCLE_SEED 100

static int memfd_cycle(int luo, int gen, size_t mib, int last)
{
	size_t len = mib * MIB;
	int sfd, fd;
	char msg[80];

	/*
	 * Each generation writes its own data set (seed CYCLE_SEED + gen), so a kernel that
	 * handed over the data of an earlier update fails the check.
	 */
	if (gen == 1) {
		fd = filled("cycle", len, CYCLE_SEED + gen, 0);
	} else {
		sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "memfd-cycle");
		fd = retrieve(sfd, 7);
		snprintf(msg, sizeof(msg), "generation %d", gen);
		verify_filled(fd, len, CYCLE_SEED + gen - 1, msg);
		finish(sfd);
		close(sfd);
		if (failures)
			return 1;
		printf("luo_memfd: generation %d verified\n", gen);
		if (last)
			return 0;
		fill(fd, len, CYCLE_SEED + gen);
	}
	sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "memfd-cycle");
	preserve(sfd, fd, 7);
	printf("luo_memfd: generation %d preserved\n", gen);
	luo_abi_hold_until_kexec(luo);
	return 0;
}

/*
 * Free memory: MemFree plus the pages freed into the per-CPU lists, which
 * MemFree leaves out (with THP these hold tens of MiB right after a large
 * free).
 */
static long mem_free_kib(void)
{
	char line[128];
	long pcp = 0, n;
	FILE *f = fopen("/proc/zoneinfo", "r");

	if (!f)
		die("open /proc/zoneinfo");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " count: %ld", &n) == 1)
			pcp += n;
	fclose(f);
	return meminfo_kib("MemFree") + pcp * (long)(PAGE / 1024);
}

static int memfd_discard(int luo, int stage, size_t mib)
{
	long before, after;
	char msg[160];
	int sfd, fd;

	if (stage == 1) {
		sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "memfd-discard");
		fd = filled("discard", mib * MIB, 5, 0);
		preserve(sfd, fd, 5);
		close(fd);
		printf("luo_memfd: preserved %zu MiB that will not be retrieved\n", mib);
		luo_abi_hold_until_kexec(luo);
		return 0;
	}
	sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "memfd-discard");
	before = mem_free_kib();
	finish(sfd);
	after = mem_free_kib();
	snprintf(msg, sizeof(msg), "MemFree (with per-CPU lists) %ld kB before FINISH, %ld kB after: %ld MiB returned of %zu",
		 before, after, (after - before) / 1024, mib);
	check(after - before >= (long)(mib * 1024 * 9 / 10), msg);
	return failures ? 1 : 0;
}

/* The written pages of a memfd with holes: first, middle and last page. */
static off_t hole_page(size_t len, int i)
{
	return i == 0 ? 0 : i == 1 ? (off_t)(len / 2 + 5 * PAGE) : (off_t)(len - PAGE);
}

static void fill_page(uint64_t *w, int i)
{
	for (size_t j = 0; j < PAGE / 8; j++)
		w[j] = pattern(20 + i, j);
}

static int memfd_holes(int luo, int stage, size_t gib)
{
	size_t len = gib << 30, bad = 0;
	uint64_t w[PAGE / 8], r[PAGE / 8];
	long before, after;
	struct stat st;
	char msg[200];
	off_t at;
	int sfd, fd;

	if (stage == 1) {
		sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "memfd-holes");
		fd = memfd_create("holes", 0);
		if (fd < 0 || ftruncate(fd, len))
			die("memfd_create/ftruncate");
		for (int i = 0; i < 3; i++) {
			fill_page(w, i);
			if (pwrite(fd, w, PAGE, hole_page(len, i)) != (ssize_t)PAGE)
				die("pwrite");
		}
		before = meminfo_kib("MemFree");
		preserve(sfd, fd, 1);
		after = meminfo_kib("MemFree");
		snprintf(msg, sizeof(msg), "MemFree %ld kB before PRESERVE_FD, %ld kB after: %ld kB "
			 "for a %zu GiB memfd with 3 written pages",
			 before, after, before - after, gib);
		check(before - after < 8 * 1024, msg);
		if (fstat(fd, &st))
			die("fstat");
		snprintf(msg, sizeof(msg), "preserved memfd holds %lld pages",
			 (long long)st.st_blocks / 8);
		check(st.st_blocks == 3 * 8, msg);
		if (failures)
			return 1;
		printf("luo_memfd: preserved a %zu GiB memfd with 3 written pages\n", gib);
		luo_abi_hold_until_kexec(luo);
		return 0;
	}
	sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "memfd-holes");
	fd = retrieve(sfd, 1);
	if (fstat(fd, &st))
		die("fstat");
	snprintf(msg, sizeof(msg), "retrieved memfd: size %lld (want %zu), %lld pages (want 3)",
		 (long long)st.st_size, len, (long long)st.st_blocks / 8);
	check(st.st_size == (off_t)len && st.st_blocks == 3 * 8, msg);
	/* The data, as SEEK_DATA/SEEK_HOLE see it: exactly the three pages. */
	at = 0;
	for (int i = 0; i < 3; i++) {
		off_t data = lseek(fd, at, SEEK_DATA), hole = lseek(fd, data, SEEK_HOLE);

		snprintf(msg, sizeof(msg), "data %d at %lld..%lld (want %lld..%lld)", i,
			 (long long)data, (long long)hole, (long long)hole_page(len, i),
			 (long long)hole_page(len, i) + (long long)PAGE);
		check(data == hole_page(len, i) && hole == data + (off_t)PAGE, msg);
		if (pread(fd, r, PAGE, hole_page(len, i)) != (ssize_t)PAGE)
			die("pread");
		fill_page(w, i);
		bad += memcmp(r, w, PAGE) != 0;
		at = hole == -1 ? (off_t)len : hole;
	}
	snprintf(msg, sizeof(msg), "no data after the last page");
	check(lseek(fd, at, SEEK_DATA) == -1 && errno == ENXIO, msg);
	/* Holes read as zeros: the pages next to each written one and a spread of others. */
	for (int i = 0; i < 64; i++) {
		off_t o = (off_t)((len / 64) * i + PAGE) & ~(off_t)(PAGE - 1);

		if (o == hole_page(len, 1) || o >= (off_t)len - (off_t)PAGE)
			continue;
		if (pread(fd, r, PAGE, o) != (ssize_t)PAGE)
			die("pread");
		for (size_t j = 0; j < PAGE / 8; j++)
			bad += r[j] != 0;
	}
	snprintf(msg, sizeof(msg), "3 written pages back, sampled holes read zeros, %zu bad", bad);
	check(!bad, msg);
	finish(sfd);
	if (failures)
		return 1;
	printf("luo_memfd: %zu GiB memfd with holes verified\n", gib);
	return 0;
}

#define THP_CONTROL "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
#define THP_LEN (4 * MIB + 3 * PAGE)

static void thp_mode(const char *mode)
{
	FILE *f = fopen(THP_CONTROL, "w");

	if (!f || fputs(mode, f) < 0 || fclose(f))
		die("write " THP_CONTROL);
}

/* A memfd of THP_LEN bytes of data set 30, in three 2 MiB folios (checked). */
static int thp_memfd(void)
{
	uint64_t w[PAGE / 8];
	char msg[160];
	long huge;
	int fd;

	thp_mode("always");
	fd = memfd_create("thp", 0);
	if (fd < 0 || ftruncate(fd, THP_LEN))
		die("memfd_create/ftruncate");
	for (size_t p = 0; p < THP_LEN / PAGE; p++) {
		for (size_t j = 0; j < PAGE / 8; j++)
			w[j] = pattern(30, p * (PAGE / 8) + j);
		if (pwrite(fd, w, PAGE, p * PAGE) != (ssize_t)PAGE)
			die("pwrite");
	}
	thp_mode("never");
	huge = meminfo_kib("ShmemHugePages");
	snprintf(msg, sizeof(msg), "ShmemHugePages %ld kB: three 2 MiB folios for %lu bytes, "
		 "the last past the end", huge, THP_LEN);
	check(huge == 6144, msg);
	return fd;
}

static int memfd_thp(int luo, int stage)
{
	char msg[160];
	long huge;
	int sfd, fd;

	if (stage == 1) {
		sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "memfd-thp");
		fd = thp_memfd();
		preserve(sfd, fd, 1);
		if (failures)
			return 1;
		printf("luo_memfd: preserved a memfd in 2 MiB folios\n");
		luo_abi_hold_until_kexec(luo);
		return 0;
	}
	sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "memfd-thp");
	fd = retrieve(sfd, 1);
	verify_filled(fd, THP_LEN, 30, "memfd in 2 MiB folios");
	huge = meminfo_kib("ShmemHugePages");
	snprintf(msg, sizeof(msg), "ShmemHugePages after retrieve %ld kB (want 6144)", huge);
	check(huge == 6144, msg);
	finish(sfd);
	if (failures)
		return 1;
	printf("luo_memfd: memfd in 2 MiB folios verified\n");
	return 0;
}

#define DAMAGED_SMALL (3 * PAGE)

/*
 * Three memfds of which the test build's handler damages the first it
 * freezes (token 1); the next kernel must refuse that one alone.
 */
static int memfd_damaged(int luo, int stage, const char *want)
{
	struct liveupdate_session_retrieve_fd r = { .size = sizeof(r), .token = 1 };
	int sfd, fd, e1, e2;
	char msg[200];

	if (stage == 1) {
		sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "memfd-damaged");
		preserve(sfd, thp_memfd(), 1);
		preserve(sfd, filled("mib", MIB, 31, 0), 2);
		preserve(sfd, filled("small", DAMAGED_SMALL, 32, 0), 3);
		if (failures)
			return 1;
		printf("luo_memfd: preserved three memfds, the first to be damaged\n");
		luo_abi_hold_until_kexec(luo);
		return 0;
	}
	sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "memfd-damaged");
	e1 = ioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, &r) ? errno : 0;
	e2 = ioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, &r) ? errno : 0;
	snprintf(msg, sizeof(msg), "damaged memfd: RETRIEVE_FD %s, again %s (want %s twice)",
		 e1 ? strerrorname_np(e1) : "succeeded", e2 ? strerrorname_np(e2) : "succeeded",
		 want);
	check(e1 && e2 == e1 && !strcmp(strerrorname_np(e1), want), msg);
	fd = retrieve(sfd, 2);
	verify_filled(fd, MIB, 31, "1 MiB memfd beside it");
	fd = retrieve(sfd, 3);
	verify_filled(fd, DAMAGED_SMALL, 32, "3-page memfd beside it");
	finish(sfd);
	if (failures)
		return 1;
	printf("luo_memfd: the damaged memfd refused, the two beside it intact\n");
	return 0;
}

#define SWAP_SEED 40

/* Swap in use, in kB. */
static long swap_used_kib(void)
{
	return meminfo_kib("SwapTotal") - meminfo_kib("SwapFree");
}

static int memfd_swap(int luo, int stage, size_t mib)
{
	size_t len = mib * MIB, written = len / 4 * 3, out = len / 2, bad = 0;
	long pushed, left;
	char msg[200];
	uint64_t *w;
	int sfd, fd;

	if (stage == 1) {
		sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "memfd-swap");
		fd = memfd_create("swap", 0);
		if (fd < 0 || ftruncate(fd, len))
			die("memfd_create/ftruncate");
		w = map(fd, len, PROT_READ | PROT_WRITE);
		for (size_t i = 0; i < written / 8; i++)
			w[i] = pattern(SWAP_SEED, i);
		if (madvise(w, out, MADV_PAGEOUT))
			die("madvise(MADV_PAGEOUT)");
		munmap(w, len);
		pushed = swap_used_kib();
		snprintf(msg, sizeof(msg), "swap holds %ld kB of the memfd's %zu kB pushed out",
			 pushed, out / 1024);
		check(pushed >= (long)(out / 1024) * 9 / 10, msg);
		preserve(sfd, fd, 1);
		left = swap_used_kib();
		snprintf(msg, sizeof(msg), "after PRESERVE_FD swap holds %ld kB: read back in",
			 left);
		check(left < 1024, msg);
		if (failures)
			return 1;
		printf("luo_memfd: preserved a memfd that was half in swap\n");
		luo_abi_hold_until_kexec(luo);
		return 0;
	}
	sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "memfd-swap");
	fd = retrieve(sfd, 1);
	w = map(fd, len, PROT_READ);
	for (size_t i = 0; i < len / 8; i++)
		bad += w[i] != (i < written / 8 ? pattern(SWAP_SEED, i) : 0);
	munmap(w, len);
	snprintf(msg, sizeof(msg), "memfd once in swap: %zu MiB written, %zu MiB of hole, "
		 "%zu bad words", written / MIB, (len - written) / MIB, bad);
	check(!bad, msg);
	finish(sfd);
	if (failures)
		return 1;
	printf("luo_memfd: memfd once in swap verified\n");
	return 0;
}

static int stage = 1;
static size_t size_arg = 64;
static bool last_generation;
static const char *want_errno = "";

/* shmem THP can be switched on: the kernel has it. */
static bool thp_available(void)
{
	return access(THP_CONTROL, W_OK) == 0;
}

/* Stage 1 of the swap test needs swap space (the caller sets it up). */
static bool swap_available(void)
{
	return stage > 1 || meminfo_kib("SwapTotal") > 0;
}

enum memfd_case { SET, CYCLE, DISCARD, HOLES, THP, SWAP, DAMAGED };

/*
 * Runs one test in the harness's child, where it opens the device (it can
 * be open once); a kernel or machine without what the test needs skips it.
 */
static void memfd_test(struct __test_metadata *_metadata, enum memfd_case c)
{
	int luo, ret = -1;

	if ((c == THP || c == DAMAGED) && !thp_available())
		SKIP(return, "the kernel has no shmem THP to switch on");
	if (c == SWAP && !swap_available())
		SKIP(return, "no swap space to push the memfd out to");
	LUO_ABI_OPEN(luo);
	switch (c) {
	case SET:
		ret = stage == 1 ? set1(luo, size_arg) : set2(luo, size_arg);
		break;
	case CYCLE:
		ret = memfd_cycle(luo, stage, size_arg, last_generation);
		break;
	case DISCARD:
		ret = memfd_discard(luo, stage, size_arg);
		break;
	case HOLES:
		ret = memfd_holes(luo, stage, size_arg);
		break;
	case THP:
		ret = memfd_thp(luo, stage);
		break;
	case SWAP:
		ret = memfd_swap(luo, stage, size_arg);
		break;
	case DAMAGED:
		ret = memfd_damaged(luo, stage, want_errno);
		break;
	}
	EXPECT_EQ(0, ret);
}

/* A fixture only for the timeout: the harness's default of 30 s is short for a GiB. */
FIXTURE(shape) {};
FIXTURE_SETUP(shape) {}
FIXTURE_TEARDOWN(shape) {}

TEST_F_TIMEOUT(shape, set, 900) { memfd_test(_metadata, SET); }
TEST_F_TIMEOUT(shape, cycle, 900) { memfd_test(_metadata, CYCLE); }
TEST_F_TIMEOUT(shape, discard, 900) { memfd_test(_metadata, DISCARD); }
TEST_F_TIMEOUT(shape, holes, 900) { memfd_test(_metadata, HOLES); }
TEST_F_TIMEOUT(shape, thp, 900) { memfd_test(_metadata, THP); }
TEST_F_TIMEOUT(shape, swap, 900) { memfd_test(_metadata, SWAP); }
TEST_F_TIMEOUT(shape, damaged, 900) { memfd_test(_metadata, DAMAGED); }

int main(int argc, char **argv)
{
	int opt;

	while ((opt = getopt(argc, argv, "s:m:le:")) != -1) {
		switch (opt) {
		case 's':
			stage = atoi(optarg);
			break;
		case 'm':
			size_arg = strtoul(optarg, NULL, 0);
			break;
		case 'l':
			last_generation = true;
			break;
		case 'e':
			want_errno = optarg;
			break;
		default:
			ksft_exit_fail_msg("usage: %s -s STAGE [-m SIZE] [-l] [-e ERRNO] -- -t TEST\n",
					   argv[0]);
		}
	}
	if (stage < 1)
		ksft_exit_fail_msg("stages start at 1\n");
	return luo_abi_run_harness(argc, argv);
}
