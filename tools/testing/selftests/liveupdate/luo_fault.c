// SPDX-License-Identifier: GPL-2.0
/*
 * Every live update call made to fail at each of its allocations in turn.
 *
 * Writing n to /proc/thread-self/fail-nth makes the n-th slab or page
 * allocation of the calling thread fail (CONFIG_FAILSLAB,
 * CONFIG_FAIL_PAGE_ALLOC; the debugfs knobs below let them fail allocations
 * that may sleep, of any order). Each call is made with n = 1, 2, ... until
 * it succeeds with no fault injected. A call that meets its fault must
 * either get by (succeed all the same) or fail with an errno and change
 * nothing: the next attempt, the same call, must then succeed or meet its
 * own fault, never fail on what the previous attempt left (EEXIST, EBUSY, a
 * latched EIO). What the final attempts made is carried across the kexec
 * and checked there.
 *
 * Each stage is a test of its own, chosen with the harness's -t after "--"
 * (luo_fault -t out); "reboot" is a helper for the stage-1 script, not a
 * test:
 *
 *   out              stage 1: the first open of /dev/liveupdate,
 *                    CREATE_SESSION, PRESERVE_FD of a memfd and of a test
 *                    file, GET_NAME; plus the files stage 2 retrieves
 *                    under faults. A child holds it all until the kexec.
 *   reboot K I CMD   loads the image, then calls reboot(KEXEC) under
 *                    faults until it kexecs (use as /tmp/kexec-with)
 *   in               stage 2: the first open (reading the incoming
 *                    sessions), RETRIEVE_SESSION, RETRIEVE_FD of memfds
 *                    and test files, FINISH; then every byte carried
 *   in_no_open       the same without faults at the first open (the C
 *                    core loses every incoming session at one)
 *   open_latches     stage 2: one fault at the first open, then plain
 *                    opens: prints what they return (the C core: EIO for
 *                    the rest of the boot)
 *
 * Each call prints "luo_fault: CALL: N faults injected: R refused (errnos),
 * A got by; then it succeeded". Failures print "luo_fault: FAIL ..." and
 * fail the test.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kexec.h>
#include <linux/liveupdate.h>
#include <linux/reboot.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "luo_abi.h"
/* The test handler's control interface, in the luo-rs directory of the tree. */
#include "../../../../kernel/liveupdate/luo_rs/luo_test/uapi.h"

/* No call here makes anywhere near this many allocations. */
#define MAX_FAULTS 1000
/* The memfds and test files stage 2 retrieves one per fault. */
#define RETRIEVE_SET 48
#define MEMFD_BYTES (2u << 20)
#define SMALL_MEMFD_BYTES (64u << 10)
#define TEST_FILE_VALUE 77
#define MEMFD_TOKEN 1
#define SET_MEMFD_TOKEN 100
#define SET_FILE_TOKEN 300

static void fail(const char *fmt, ...)
{
	va_list ap;

	printf("luo_fault: FAIL ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(1);
}

/* The calling thread's fail-nth file. */
static int nth = -1;

static void arm(unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);

	if (pwrite(nth, buf, len, 0) != len)
		fail("write fail-nth: %s", strerror(errno));
}

/* Disarms; true if the armed fault was injected (the count reached 0). */
static int disarm(void)
{
	char buf[16] = "";

	if (pread(nth, buf, sizeof(buf) - 1, 0) <= 0)
		fail("read fail-nth: %s", strerror(errno));
	if (atoi(buf) == 0)
		return 1;
	if (pwrite(nth, "0", 1, 0) != 1)
		fail("clear fail-nth: %s", strerror(errno));
	return 0;
}

static void write_knob(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || write(fd, value, strlen(value)) != (ssize_t)strlen(value))
		fail("%s: %s", path, strerror(errno));
	close(fd);
}

/*
 * Lets fail-nth fail any allocation: by default failslab and
 * fail_page_alloc leave out allocations that may sleep, and order-0 pages.
 * No report per fault: a stack dump each time would flood the console.
 */
static void setup(void)
{
	write_knob("/sys/kernel/debug/failslab/ignore-gfp-wait", "N");
	write_knob("/sys/kernel/debug/failslab/verbose", "0");
	write_knob("/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait", "N");
	write_knob("/sys/kernel/debug/fail_page_alloc/min-order", "0");
	write_knob("/sys/kernel/debug/fail_page_alloc/verbose", "0");
	nth = open("/proc/thread-self/fail-nth", O_RDWR);
	if (nth < 0)
		fail("open /proc/thread-self/fail-nth: %s", strerror(errno));
}

/* One call under faults: what it makes, and how to undo what it made. */
struct call {
	const char *name;
	/* Makes the call: a result >= 0, or -errno. */
	int (*run)(struct call *c);
	/*
	 * Undoes a result obtained although a fault was injected, so that the
	 * next attempt starts from the same state; NULL if it cannot be undone,
	 * in which case that result is kept and the loop ends.
	 */
	void (*undo)(struct call *c, int result);
	int fd;
	int session;
	uint64_t token;
	const char *session_name;
};

/* Runs `c` with n = 1, 2, ... until it succeeds; returns its result. */
static int under_faults(struct call *c)
{
	int refused = 0, got_by = 0, r, injected;
	char errnos[256] = "";
	unsigned int n;

	for (n = 1; n <= MAX_FAULTS; n++) {
		arm(n);
		r = c->run(c);
		injected = disarm();
		if (r < 0 && !injected)
			fail("%s failed with no fault injected, after %u faults: %s", c->name, n - 1,
			     strerror(-r));
		if (!injected || (r >= 0 && !c->undo)) {
			got_by += injected;
			printf("luo_fault: %s: %u faults injected: %d refused (%s), %d got by; "
			       "then it succeeded\n", c->name, n - !injected, refused,
			       refused ? errnos + 1 : "none", got_by);
			fflush(stdout);
			return r;
		}
		if (r >= 0) {
			got_by++;
			c->undo(c, r);
			continue;
		}
		refused++;
		if (!strstr(errnos, strerrorname_np(-r)) &&
		    strlen(errnos) + strlen(strerrorname_np(-r)) + 2 < sizeof(errnos)) {
			strcat(errnos, " ");
			strcat(errnos, strerrorname_np(-r));
		}
	}
	fail("%s: still failing after %d faults", c->name, MAX_FAULTS);
	return -1;
}

static int open_luo(void)
{
	int fd = open("/dev/liveupdate", O_RDWR);

	return fd < 0 ? -errno : fd;
}

static int preserve(int s, int fd, uint64_t token)
{
	struct liveupdate_session_preserve_fd a = { .size = sizeof(a), .fd = fd, .token = token };

	return ioctl(s, LIVEUPDATE_SESSION_PRESERVE_FD, &a) < 0 ? -errno : 0;
}

static int retrieve(int s, uint64_t token)
{
	struct liveupdate_session_retrieve_fd a = { .size = sizeof(a), .token = token };

	return ioctl(s, LIVEUPDATE_SESSION_RETRIEVE_FD, &a) < 0 ? -errno : a.fd;
}

static int finish(int s)
{
	struct liveupdate_session_finish a = { .size = sizeof(a) };

	return ioctl(s, LIVEUPDATE_SESSION_FINISH, &a) < 0 ? -errno : 0;
}

static int must(int r, const char *what)
{
	if (r < 0)
		fail("%s: %s", what, strerror(-r));
	return r;
}

/* The pattern of memfd `seed`: one 64-bit word after another. */
static uint64_t word(uint64_t seed, size_t i)
{
	return (i + 1) * 0x9E3779B97F4A7C15ull ^ (seed << 32 | seed);
}

static int new_memfd(uint64_t seed, size_t bytes)
{
	int fd = memfd_create("luo-fault", 0);
	uint64_t *p;
	size_t i;

	if (fd < 0 || ftruncate(fd, bytes))
		fail("memfd: %s", strerror(errno));
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap memfd: %s", strerror(errno));
	for (i = 0; i < bytes / 8; i++)
		p[i] = word(seed, i);
	munmap(p, bytes);
	return fd;
}

static void check_memfd(int fd, uint64_t seed, size_t bytes)
{
	uint64_t *p;
	size_t i;

	if (lseek(fd, 0, SEEK_END) != (off_t)bytes)
		fail("memfd %llu: size changed", (unsigned long long)seed);
	p = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap retrieved memfd: %s", strerror(errno));
	for (i = 0; i < bytes / 8; i++)
		if (p[i] != word(seed, i))
			fail("memfd %llu: word %zu differs", (unsigned long long)seed, i);
	munmap(p, bytes);
}

static int new_test_file(int dev, unsigned long value)
{
	int fd = ioctl(dev, LUO_TEST_NEW_FILE, value);

	if (fd < 0)
		fail("new test file %lu: %s", value, strerror(errno));
	return fd;
}

static void check_test_file(int fd, unsigned long value)
{
	long v = ioctl(fd, LUO_TEST_GET_VALUE);

	if (v != (long)value)
		fail("test file: value %ld, want %lu", v, value);
}

/* Stage 1 calls. */

static int run_open(struct call *c)
{
	(void)c;
	return open_luo();
}

static void undo_close(struct call *c, int fd)
{
	(void)c;
	close(fd);
}

static int run_create(struct call *c)
{
	return luo_abi_session_ioctl(c->fd, LIVEUPDATE_IOCTL_CREATE_SESSION, c->session_name);
}

static int run_preserve(struct call *c)
{
	return preserve(c->session, c->fd, c->token);
}

/* The open /dev/liveupdate of stage 1. */
static int luo_fd = -1;

/* A preserve cannot be taken back alone: the session goes, and comes back empty. */
static void undo_preserve(struct call *c, int r)
{
	(void)r;
	close(c->session);
	c->session = must(luo_abi_session_ioctl(luo_fd, LIVEUPDATE_IOCTL_CREATE_SESSION,
					c->session_name), "CREATE_SESSION again");
}

static int run_get_name(struct call *c)
{
	struct liveupdate_session_get_name a = { .size = sizeof(a) };

	if (ioctl(c->session, LIVEUPDATE_SESSION_GET_NAME, &a) < 0)
		return -errno;
	if (strcmp((char *)a.name, c->session_name))
		fail("GET_NAME: got \"%s\"", (char *)a.name);
	return 0;
}

static void stage_out(void)
{
	struct call open_call = { .name = "open (first)", .run = run_open, .undo = undo_close };
	struct call create = { .name = "CREATE_SESSION", .run = run_create, .undo = undo_close,
			       .session_name = "fault-create" };
	struct call memfd = { .name = "PRESERVE_FD memfd", .run = run_preserve,
			      .undo = undo_preserve, .token = MEMFD_TOKEN,
			      .session_name = "fault-memfd" };
	struct call test_file = { .name = "PRESERVE_FD test file", .run = run_preserve,
				  .undo = undo_preserve, .token = TEST_FILE_VALUE,
				  .session_name = "fault-testfile" };
	struct call get_name = { .name = "GET_NAME", .run = run_get_name,
				 .session_name = "fault-memfd" };
	int dev, set, i;

	setup();
	luo_fd = under_faults(&open_call);
	create.fd = luo_fd;
	under_faults(&create);

	memfd.fd = new_memfd(MEMFD_TOKEN, MEMFD_BYTES);
	memfd.session = must(luo_abi_session_ioctl(luo_fd, LIVEUPDATE_IOCTL_CREATE_SESSION,
					   memfd.session_name), "CREATE_SESSION fault-memfd");
	under_faults(&memfd);

	dev = open("/dev/luo_test", O_RDWR);
	if (dev < 0)
		fail("open /dev/luo_test: %s", strerror(errno));
	test_file.fd = new_test_file(dev, TEST_FILE_VALUE);
	test_file.session = must(luo_abi_session_ioctl(luo_fd, LIVEUPDATE_IOCTL_CREATE_SESSION,
					       test_file.session_name),
				 "CREATE_SESSION fault-testfile");
	under_faults(&test_file);

	get_name.session = memfd.session;
	under_faults(&get_name);

	/* For stage 2's retrieves, one file per fault, made without faults. */
	set = must(luo_abi_session_ioctl(luo_fd, LIVEUPDATE_IOCTL_CREATE_SESSION, "fault-retrieve"),
		   "CREATE_SESSION fault-retrieve");
	for (i = 0; i < RETRIEVE_SET; i++) {
		int m = new_memfd(SET_MEMFD_TOKEN + i, SMALL_MEMFD_BYTES);
		int t = new_test_file(dev, SET_FILE_TOKEN + i);

		must(preserve(set, m, SET_MEMFD_TOKEN + i), "PRESERVE_FD set memfd");
		must(preserve(set, t, SET_FILE_TOKEN + i), "PRESERVE_FD set test file");
		close(m);
		close(t);
	}
	printf("luo_fault: stage 1 done: 4 sessions for the next kernel\n");
	luo_abi_hold_until_kexec(luo_fd);
}

static int load(const char *kernel, const char *initrd, const char *cmdline)
{
	int kfd = open(kernel, O_RDONLY | O_CLOEXEC);
	int ifd = open(initrd, O_RDONLY | O_CLOEXEC);

	if (kfd < 0 || ifd < 0)
		fail("open the next kernel: %s", strerror(errno));
	if (syscall(__NR_kexec_file_load, kfd, ifd, strlen(cmdline) + 1, cmdline, 0UL))
		fail("kexec_file_load: %s", strerror(errno));
	close(kfd);
	close(ifd);
	return 0;
}

/*
 * reboot(KEXEC) under faults: each attempt that meets its fault must fail
 * and leave everything as it was (the handlers' freeze undone), and the
 * next attempt goes on; the attempt that meets none kexecs.
 */
static void stage_reboot(const char *kernel, const char *initrd, const char *cmdline)
{
	unsigned int n;
	long r;
	int injected;

	setup();
	load(kernel, initrd, cmdline);
	sync();
	for (n = 1; n <= MAX_FAULTS; n++) {
		printf("luo_fault: reboot: attempt %u\n", n);
		fflush(stdout);
		arm(n);
		r = syscall(__NR_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
			    LINUX_REBOOT_CMD_KEXEC, NULL);
		injected = disarm();
		if (!injected)
			fail("reboot(KEXEC) returned %ld (%s) with no fault injected", r,
			     strerror(errno));
		printf("luo_fault: reboot: fault %u refused with %s\n", n, strerrorname_np(errno));
	}
	fail("reboot: still failing after %d faults", MAX_FAULTS);
}

/* Stage 2 calls. */

static int run_retrieve_session(struct call *c)
{
	return luo_abi_session_ioctl(c->fd, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, c->session_name);
}

static int run_finish(struct call *c)
{
	return finish(c->session);
}

/* Checks and closes a file of the retrieve set. */
static void check(int fd, uint64_t token, int memfd)
{
	if (memfd)
		check_memfd(fd, token, SMALL_MEMFD_BYTES);
	else
		check_test_file(fd, token);
	close(fd);
}

/*
 * RETRIEVE_FD under faults: a retrieve the handler failed is final for its
 * file (the handler cleaned up; the error is kept and returned again), so
 * each attempt takes the next file of the set: attempt n, with its n-th
 * allocation failing, retrieves file `first + n - 1`.
 */
static void retrieve_set(int set, const char *what, uint64_t first, int memfd)
{
	int refused = 0, retried = 0, got_by = 0, n, fd, injected, again;

	for (n = 1; n <= RETRIEVE_SET; n++) {
		uint64_t token = first + n - 1;

		arm(n);
		fd = retrieve(set, token);
		injected = disarm();
		if (fd < 0 && !injected)
			fail("RETRIEVE_FD %s %llu failed with no fault injected: %s", what,
			     (unsigned long long)token, strerror(-fd));
		if (fd >= 0) {
			check(fd, token, memfd);
			if (!injected)
				break;
			got_by++;
			continue;
		}
		refused++;
		/*
		 * Refused before the handler was asked (luo-rs makes its room
		 * first): the same call gets the file. Refused by the handler:
		 * its error is kept.
		 */
		again = retrieve(set, token);
		if (again >= 0) {
			check(again, token, memfd);
			retried++;
			continue;
		}
		if (again != fd)
			fail("RETRIEVE_FD %s %llu: failed with %s, then with %s: the error must be "
			     "kept", what, (unsigned long long)token, strerror(-fd), strerror(-again));
	}
	if (n > RETRIEVE_SET)
		fail("RETRIEVE_FD %s: still failing after %d faults", what, RETRIEVE_SET);
	printf("luo_fault: RETRIEVE_FD %s: %d faults injected: %d refused (%d before the handler "
	       "was asked, the file then retrieved intact; %d by the handler, the error kept and "
	       "the file given up), %d got by; then it succeeded\n", what, n - 1, refused, retried,
	       refused - retried, got_by);
	/* The files after it are untouched by the failures before them. */
	for (n = n + 1; n <= RETRIEVE_SET; n++) {
		fd = must(retrieve(set, first + n - 1), "RETRIEVE_FD after the faults");
		check(fd, first + n - 1, memfd);
	}
}

static void stage_in(int open_faults)
{
	struct call open_call = { .name = "open (first, reading the incoming sessions)",
				  .run = run_open, .undo = undo_close };
	struct call get = { .name = "RETRIEVE_SESSION", .run = run_retrieve_session,
			    .session_name = "fault-memfd" };
	struct call fin = { .name = "FINISH", .run = run_finish };
	struct call fin_set = { .name = "FINISH with files given up and left", .run = run_finish };
	int luo, memfd_session, tf_session, create_session, set, fd;

	setup();
	luo = open_faults ? under_faults(&open_call) : must(open_luo(), "open /dev/liveupdate");
	get.fd = luo;
	memfd_session = under_faults(&get);

	fd = must(retrieve(memfd_session, MEMFD_TOKEN), "RETRIEVE_FD memfd");
	check_memfd(fd, MEMFD_TOKEN, MEMFD_BYTES);
	printf("luo_fault: the memfd preserved under faults arrived intact (%u bytes)\n",
	       MEMFD_BYTES);
	close(fd);
	must(finish(memfd_session), "FINISH fault-memfd");

	tf_session = must(luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "fault-testfile"),
			  "RETRIEVE_SESSION fault-testfile");
	fd = must(retrieve(tf_session, TEST_FILE_VALUE), "RETRIEVE_FD test file");
	check_test_file(fd, TEST_FILE_VALUE);
	printf("luo_fault: the test file preserved under faults arrived\n");
	close(fd);
	must(finish(tf_session), "FINISH fault-testfile");

	create_session = must(luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "fault-create"),
			      "RETRIEVE_SESSION fault-create");
	fin.session = create_session;
	under_faults(&fin);

	set = must(luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "fault-retrieve"),
		   "RETRIEVE_SESSION fault-retrieve");
	retrieve_set(set, "memfd", SET_MEMFD_TOKEN, 1);
	retrieve_set(set, "test file", SET_FILE_TOKEN, 0);
	fin_set.session = set;
	under_faults(&fin_set);
	printf("luo_fault: stage 2 done\n");
}

/*
 * The first open under faults until one of them fails it with something
 * other than ENOMEM (a fault inside the reading of the incoming sessions),
 * then plain opens: what do they return? (The C core: EIO for the rest of
 * the boot; every incoming session is lost.)
 */
static void open_latches(void)
{
	unsigned int n;
	int fd, injected, i;

	setup();
	for (n = 1; n <= MAX_FAULTS; n++) {
		arm(n);
		fd = open_luo();
		injected = disarm();
		if (fd >= 0)
			fail("the first open succeeded after %u faults, none of them fatal", n - 1);
		if (!injected)
			fail("the first open failed with no fault injected: %s", strerror(-fd));
		if (fd != -ENOMEM)
			break;
	}
	printf("luo_fault: first open, allocation %u failing: %s\n", n, strerrorname_np(-fd));
	for (i = 0; i < 3; i++) {
		fd = open_luo();
		printf("luo_fault: open %d without faults: %s\n", i + 1,
		       fd >= 0 ? "ok" : strerrorname_np(-fd));
		if (fd >= 0)
			close(fd);
	}
}

/*
 * A fixture only for the timeout: the harness's default of 30 s is short for
 * a thousand faults per call under emulation.
 */
FIXTURE(fault) {};
FIXTURE_SETUP(fault) {}
FIXTURE_TEARDOWN(fault) {}

TEST_F_TIMEOUT(fault, out, 900) { stage_out(); }
TEST_F_TIMEOUT(fault, in, 900) { stage_in(1); }
TEST_F_TIMEOUT(fault, in_no_open, 900) { stage_in(0); }
TEST_F_TIMEOUT(fault, open_latches, 900) { open_latches(); }

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* The helper the stage-1 script kexecs with: no test, no harness. */
	if (argc == 5 && !strcmp(argv[1], "reboot"))
		stage_reboot(argv[2], argv[3], argv[4]);
	return test_harness_run(argc, argv);
}
