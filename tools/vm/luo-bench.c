// SPDX-License-Identifier: GPL-2.0
/*
 * luo-bench: what each live update operation costs, measured in the guest
 * the same way on any LUO kernel, so that `make bench` can put the C core
 * and luo-rs side by side.
 *
 *   luo-bench out SESSIONS MEMFD_MIB
 *       the outgoing kernel: creates SESSIONS sessions (timing the calls at
 *       several counts), preserves memfds from 4 KiB to MEMFD_MIB MiB (dense,
 *       with holes, in 2 MiB folios) and 500 small memfds in one session; a
 *       child holds them, and /tmp/kexec-with makes guest-init call
 *   luo-bench kexec KERNEL INITRD CMDLINE
 *       which loads KERNEL and reboots into it.
 *   luo-bench in SESSIONS MEMFD_MIB
 *       the next kernel: the first open (deserialization), the first
 *       RETRIEVE_FD (the end of the blackout), RETRIEVE_SESSION at several
 *       positions, RETRIEVE_FD of every memfd, FINISH with and without
 *       unretrieved files.
 *   luo-bench tsc-khz
 *       the TSC's frequency in kHz (run on the host, see tsc_khz()).
 *
 * Each result is one line "BENCH <operation> <nanoseconds>": the median of
 * several calls timed one by one (a hundred for sessions, up to five for
 * memfds that fit in memory that often), or of the one call there is. Every
 * kind of call is made once untimed first (see warm_up()). The stage scripts
 * keep kernel notices off the console meanwhile, so that they cannot break
 * these lines. Lines starting with
 * "BENCH-INFO" describe the clock. The blackout is measured with the TSC,
 * which keeps counting across the kexec: "BENCH-TSC reboot|retrieved <ticks>"
 * and the TSC frequency let the host compute it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/liveupdate.h>
#include <linux/reboot.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hold.h"
#include "../testing/selftests/liveupdate/luo_calls.h"

#define MIB (1UL << 20)
#define PAGE 4096UL
#define BATCH 100
#define FILES 500

static void die(const char *what)
{
	printf("luo-bench: %s failed: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t tsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/*
 * The TSC's frequency, measured against CLOCK_MONOTONIC_RAW. Under QEMU's
 * TCG the guest's TSC is the host's, so `make bench` measures it on the
 * host and hands it to every guest kernel (tsc_early_khz=): a kexec'd
 * kernel cannot calibrate the TSC against the PIT here and would otherwise
 * fall back to a jiffies clock of 4 ms steps.
 */
static int tsc_khz(void)
{
	struct timespec a, b;
	uint64_t t0, t1;

	clock_gettime(CLOCK_MONOTONIC_RAW, &a);
	t0 = tsc();
	do {
		clock_gettime(CLOCK_MONOTONIC_RAW, &b);
	} while ((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec) < 500000000LL);
	t1 = tsc();
	printf("%llu\n", (unsigned long long)((t1 - t0) * 1000000ULL /
		((b.tv_sec - a.tv_sec) * 1000000000ULL + (b.tv_nsec - a.tv_nsec))));
	return 0;
}

static void result(const char *op, uint64_t ns)
{
	printf("BENCH %s %llu\n", op, (unsigned long long)ns);
}

/*
 * The clock the measurements use: its source, and the smallest step seen
 * between two readings (clock_getres() only gives the timer tick here).
 */
static void clock_info(void)
{
	char cs[64] = "unknown";
	uint64_t step = UINT64_MAX;
	FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");

	if (f) {
		if (fscanf(f, "%63s", cs) != 1)
			strcpy(cs, "unknown");
		fclose(f);
	}
	for (int i = 0; i < 1000; i++) {
		uint64_t a = now_ns(), b;

		while ((b = now_ns()) == a)
			;
		if (b - a < step)
			step = b - a;
	}
	printf("BENCH-INFO clocksource %s resolution %llu ns\n", cs, (unsigned long long)step);
}

/* Room for one descriptor per session and file. */
static void more_files(long n)
{
	struct rlimit r = { n + 64, n + 64 };

	if (setrlimit(RLIMIT_NOFILE, &r))
		die("setrlimit(RLIMIT_NOFILE)");
}

static void thp(const char *mode)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "w");

	if (!f || fputs(mode, f) < 0 || fclose(f))
		die("shmem_enabled");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Reports the median of `n` timings of one call each (sorts them). */
static void median(const char *op, uint64_t *ns, int n)
{
	qsort(ns, n, sizeof(*ns), cmp_u64);
	result(op, n % 2 ? ns[n / 2] : (ns[n / 2 - 1] + ns[n / 2]) / 2);
}

/*
 * The memfds preserved, each in a session of its own: name, size, how it is
 * written, and how many of them (the result is the median of their calls;
 * the largest fit in memory only once).
 */
struct memfd_case {
	const char *name;
	size_t bytes;
	enum { DENSE, HOLES, LARGE } kind;
	int reps;
};

#define MAX_REPS 5

static int memfd_cases(size_t max_mib, struct memfd_case *c)
{
	int n = 0;

	/* Large folios first: their cost depends on what memory holds before. */
	c[n++] = (struct memfd_case){ "4k", PAGE, DENSE, MAX_REPS };
	c[n++] = (struct memfd_case){ "1m", MIB, DENSE, MAX_REPS };
	c[n++] = (struct memfd_case){ "thp-64m", 64 * MIB, LARGE, 3 };
	if (max_mib >= 64)
		c[n++] = (struct memfd_case){ "64m", 64 * MIB, DENSE, 3 };
	if (max_mib >= 1024)
		c[n++] = (struct memfd_case){ "1g", 1024 * MIB, DENSE, 1 };
	c[n++] = (struct memfd_case){ "holes-1g", 1024 * MIB, HOLES, 1 };
	return n;
}

static void case_session(char *name, size_t len, const struct memfd_case *c, int rep)
{
	snprintf(name, len, "mem-%s-%d", c->name, rep);
}

static int make_memfd(const struct memfd_case *c)
{
	int fd = memfd_create(c->name, 0);
	long huge = 0;
	char *p;

	if (fd < 0 || ftruncate(fd, c->bytes))
		die("memfd");
	if (c->kind == HOLES) {
		char page[PAGE];

		memset(page, 0x5a, sizeof(page));
		for (int i = 0; i < 3; i++)
			if (pwrite(fd, page, PAGE, (c->bytes - PAGE) / 2 * i) != (ssize_t)PAGE)
				die("pwrite");
		return fd;
	}
	if (c->kind == LARGE) {
		huge = meminfo_kib("ShmemHugePages");
		thp("always");
	}
	p = mmap(NULL, c->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	for (size_t i = 0; i < c->bytes; i += PAGE)
		p[i] = (char)(i / PAGE + 1);
	munmap(p, c->bytes);
	if (c->kind == LARGE) {
		thp("never");
		/* How much of it shmem could put in huge folios: the row means that much. */
		printf("BENCH-THP %ld kB\n", meminfo_kib("ShmemHugePages") - huge);
	}
	return fd;
}

static uint64_t create(int luo, long i)
{
	char name[64];
	uint64_t t;

	snprintf(name, sizeof(name), "bench-%06ld", i);
	t = now_ns();
	session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
	return now_ns() - t;
}

/*
 * Every kind of call once, untimed, before anything is measured. Under
 * QEMU's TCG the first run of any kernel code costs its translation
 * (milliseconds for a new path), which would measure the size of the code
 * rather than the cost of the operation; real CPUs pay microseconds for a
 * cold instruction cache. The session is closed again, which unpreserves.
 */
static void warm_up(int luo)
{
	const struct memfd_case c = { "warm", PAGE, DENSE, 1 };
	int sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "warm-up");
	int fd = make_memfd(&c);

	preserve(sfd, fd, 1);
	close(fd);
	close(sfd);
}

static int out(long sessions, size_t max_mib)
{
	static const long points[] = { 1, 100, 1000, 2000, 5000, 10000 };
	static uint64_t ns[FILES];
	struct memfd_case cases[8];
	int luo, ncases, sfd;
	uint64_t t0;
	char name[64], op[96];
	long created = 0;

	more_files(sessions + BATCH + FILES + 64);
	clock_info();
	luo = open("/dev/liveupdate", O_RDWR);
	if (luo < 0)
		die("open /dev/liveupdate");
	warm_up(luo);

	/* CREATE_SESSION, per call, at several numbers of existing sessions. */
	t0 = now_ns();
	for (unsigned int p = 0; p < sizeof(points) / sizeof(points[0]) && points[p] <= sessions; p++) {
		while (created < points[p])
			create(luo, created++);
		for (int j = 0; j < BATCH; j++)
			ns[j] = create(luo, created++);
		snprintf(op, sizeof(op), "create_session@%ld", points[p]);
		median(op, ns, BATCH);
	}
	while (created < sessions)
		create(luo, created++);
	snprintf(op, sizeof(op), "create_%ld_sessions", sessions);
	result(op, now_ns() - t0);

	/* PRESERVE_FD of memfds of every kind, one session each. */
	ncases = memfd_cases(max_mib, cases);
	for (int i = 0; i < ncases; i++) {
		long before = 0, after = 0;

		for (int r = 0; r < cases[i].reps; r++) {
			int fd = make_memfd(&cases[i]);
			uint64_t t;

			case_session(name, sizeof(name), &cases[i], r);
			sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
			before = meminfo_kib("VmallocUsed");
			t = now_ns();
			preserve(sfd, fd, 1);
			ns[r] = now_ns() - t;
			after = meminfo_kib("VmallocUsed");
			close(fd);
		}
		snprintf(op, sizeof(op), "preserve_fd:%s", cases[i].name);
		median(op, ns, cases[i].reps);
		/* The folio array (vmalloc) is the handover metadata that grows with the file. */
		printf("BENCH-MEM %s %ld kB\n", cases[i].name, after - before);
	}
	/* Memfds nobody retrieves: FINISH must discard them. */
	for (int r = 0; r < MAX_REPS; r++) {
		snprintf(name, sizeof(name), "discard-1m-%d", r);
		sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
		preserve(sfd, make_memfd(&cases[1]), 1);
	}

	/* 500 files in one session. */
	sfd = session(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "files-500");
	for (int i = 0; i < FILES; i++) {
		int fd = make_memfd(&cases[0]);
		uint64_t t = now_ns();

		preserve(sfd, fd, 1000 + i);
		ns[i] = now_ns() - t;
		close(fd);
	}
	median("preserve_fd_in_500_file_session", ns, FILES);

	/* The kexec is this program's too (guest-init runs /tmp/kexec-with), timed from reboot(). */
	{
		FILE *f = fopen("/tmp/kexec-with", "w");

		if (!f || fputs("#!/bin/sh\nexec luo-bench kexec \"$1\" \"$2\" \"$3\"\n", f) < 0 ||
		    fclose(f) || chmod("/tmp/kexec-with", 0755))
			die("write /tmp/kexec-with");
	}
	printf("luo-bench: outgoing side measured\n");
	hold_until_kexec();
	return 0;
}

/* Loads the next kernel and reboots into it, marking the moment in the kernel log. */
static int kexec(char **next)
{
	int kfd = open(next[0], O_RDONLY | O_CLOEXEC), ifd = open(next[1], O_RDONLY | O_CLOEXEC);
	int kmsg = open("/dev/kmsg", O_WRONLY);

	if (kfd < 0 || ifd < 0 || kmsg < 0)
		die("open the next kernel");
	if (syscall(__NR_kexec_file_load, kfd, ifd, strlen(next[2]) + 1, next[2], 0UL))
		die("kexec_file_load");
	sync();
	/*
	 * Show notices again ("Starting new kernel" ends the reboot path), but
	 * not informational lines, which each core prints its own of.
	 */
	klogctl(8, NULL, 6);
	printf("BENCH-TSC reboot %llu\n", (unsigned long long)tsc());
	fflush(stdout);
	if (write(kmsg, "luo-bench: reboot\n", 18) < 0)
		die("write /dev/kmsg");
	syscall(__NR_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_KEXEC, NULL);
	die("reboot(LINUX_REBOOT_CMD_KEXEC)");
	return 1;
}

static int in(long sessions, size_t max_mib)
{
	static const long points[] = { 1, 1000, 10000 };
	static uint64_t ns[FILES];
	struct memfd_case cases[8];
	uint64_t t, ticks;
	char name[64], op[96];
	int luo, sfd, ncases;

	more_files(sessions + BATCH + FILES + 64);
	clock_info();
	t = now_ns();
	luo = open("/dev/liveupdate", O_RDWR);
	if (luo < 0)
		die("open /dev/liveupdate");
	result("first_open_deserialize", now_ns() - t);

	/* The end of the blackout: the first memfd back. It also warms the paths up. */
	ncases = memfd_cases(max_mib, cases);
	case_session(name, sizeof(name), &cases[0], 0);
	sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
	close(retrieve(sfd, 1));
	ticks = tsc();
	printf("BENCH-TSC retrieved %llu\n", (unsigned long long)ticks);
	finish(sfd);
	close(sfd);

	/* RETRIEVE_SESSION at several positions among the incoming sessions. */
	for (unsigned int p = 0; p < sizeof(points) / sizeof(points[0]); p++) {
		if (points[p] > sessions)
			break;
		for (long i = points[p]; i < points[p] + BATCH; i++) {
			snprintf(name, sizeof(name), "bench-%06ld", i);
			t = now_ns();
			session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
			ns[i - points[p]] = now_ns() - t;
		}
		snprintf(op, sizeof(op), "retrieve_session@%ld", points[p]);
		median(op, ns, BATCH);
	}

	/* RETRIEVE_FD of each memfd, then FINISH of its session (nothing left to discard). */
	for (int i = 0; i < ncases; i++) {
		uint64_t fin[MAX_REPS];
		int n = 0;

		for (int r = i == 0; r < cases[i].reps; r++) {
			case_session(name, sizeof(name), &cases[i], r);
			sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
			t = now_ns();
			close(retrieve(sfd, 1));
			ns[n] = now_ns() - t;
			if (i == 1) {
				t = now_ns();
				finish(sfd);
				fin[n] = now_ns() - t;
			}
			n++;
			close(sfd);
		}
		snprintf(op, sizeof(op), "retrieve_fd:%s", cases[i].name);
		median(op, ns, n);
		if (i == 1)
			median("finish_all_retrieved", fin, n);
	}
	for (int r = 0; r < MAX_REPS; r++) {
		snprintf(name, sizeof(name), "discard-1m-%d", r);
		sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
		t = now_ns();
		finish(sfd);
		ns[r] = now_ns() - t;
	}
	median("finish_discarding_1m_memfd", ns, MAX_REPS);

	/* 500 files: half retrieved, all finished. */
	sfd = session(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "files-500");
	for (int i = 0; i < FILES / 2; i++) {
		int fd;

		t = now_ns();
		fd = retrieve(sfd, 1000 + i);
		ns[i] = now_ns() - t;
		close(fd);
	}
	median("retrieve_fd_of_500", ns, FILES / 2);
	t = now_ns();
	finish(sfd);
	result("finish_500_files_250_unretrieved", now_ns() - t);
	printf("luo-bench: done\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "out"))
		return out(atol(argv[2]), strtoul(argv[3], NULL, 0));
	if (argc == 5 && !strcmp(argv[1], "kexec"))
		return kexec(argv + 2);
	if (argc == 2 && !strcmp(argv[1], "tsc-khz"))
		return tsc_khz();
	if (argc == 4 && !strcmp(argv[1], "in"))
		return in(atol(argv[2]), strtoul(argv[3], NULL, 0));
	fprintf(stderr, "usage: luo-bench out SESSIONS MEMFD_MIB\n"
		"       luo-bench kexec KERNEL INITRD CMDLINE\n"
		"       luo-bench in SESSIONS MEMFD_MIB\n"
		"       luo-bench tsc-khz\n");
	return 2;
}
