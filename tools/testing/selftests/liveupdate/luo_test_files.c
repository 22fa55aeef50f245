// SPDX-License-Identifier: GPL-2.0
/*
 * The file lifecycle of live update, driven through the luo-rs test file
 * handler.
 *
 * Test files come from /dev/luo_test (the luo-rs test file handler); each
 * holds a value, which is also its token. Stage 1 modes leave a child
 * holding the sessions until the kexec. Each step below is a test of its
 * own, chosen with the harness's -t after "--" (dashes become
 * underscores: -t reuse_verify); S, N and K are given with -n, -f and -k:
 *
 *   luo_test_files -n 4 -f 25 -k 60 -- -t preserve
 *
 *   preserve S N [K]  S sessions "tf-<s>" of N test files each, values
 *                     1000*s+i; with K, the K-th file (counting from 0
 *                     over all sessions) fails freeze until the holder
 *                     gets SIGUSR1 (its pid is in /tmp/luo-test-files.pid)
 *   verify S N        retrieve every file, check its value, finish
 *   reuse             a memfd preserved in session "a" is refused (EBUSY)
 *                     in "b"; once "a" is closed, "b" preserves it
 *   reuse-verify      the memfd of "b" arrives with its contents
 *   memfd             a memfd in session "twice" (token 5), for twice
 *   twice             retrieving token 5 twice gives two fds to the same
 *                     open file
 *   partial N         retrieve only the first of N files of "tf-0", finish;
 *                     the rest are discarded, and the tokens are gone
 *   refuse            with 2 files in "tf-0": FINISH is refused (EBUSY)
 *                     while one refuses, and nothing is lost
 *   fail-retrieve     "tf-0" with files 0, 1, 2; file 1's retrieve will
 *                     fail in the next kernel
 *   fail-retrieve-verify
 *                     file 1 fails with EIO, twice (the error is kept);
 *                     files 0 and 2 arrive; FINISH succeeds
 *   flb-fail-preserve the test FLB's preserve fails: PRESERVE_FD of file 0
 *                     in "tf-0" fails with it and leaves nothing; once the
 *                     FLB works again the same call succeeds
 *   flb-fail-retrieve "tf-0" with files 0 and 1, whose FLB's retrieve will
 *                     fail in the next kernel (then: verify 1 2)
 *   half              after "preserve 2 2": retrieve "tf-0" and its file 0
 *                     but finish nothing, leave "tf-1" alone, and preserve
 *                     file 7 in a new session "next" for the next kernel
 *   after-half        the unfinished sessions are gone; "next" arrives
 *   unregister        "tf-0" with files 0 and 1; the test handler is then
 *                     unregistered (again: ENOENT), file 2 is refused
 *                     (ENOENT: no handler), the handler is registered again
 *                     (again: EEXIST) and file 2 preserved (then: verify 1 3)
 *   flb-held          the test FLB's outgoing object cannot be referenced
 *                     while nothing preserves it (ENOENT); "tf-0" with file
 *                     0 preserves it, a reference is taken through
 *                     /dev/luo_test (a second: EBUSY), and "tf-0" is
 *                     closed: the reference alone keeps the FLB preserved
 *   flb-put           puts that reference back (again: ENOENT)
 *
 * Every check prints one line; a failure prints "luo_test_files: FAIL ..."
 * and fails the test.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/liveupdate.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "luo_abi.h"
/* The test handler's control interface, in the luo-rs directory of the tree. */
#include "../../../../kernel/liveupdate/luo_rs/luo_test/uapi.h"

#define MAX_FILES 4096

static void fail(const char *fmt, ...)
{
	va_list ap;
	int err = errno;

	printf("luo_test_files: FAIL ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(": %s\n", strerror(err));
	exit(KSFT_FAIL);
}

static int open_luo(void)
{
	int fd = open("/dev/liveupdate", O_RDWR);

	if (fd < 0)
		fail("open /dev/liveupdate");
	return fd;
}

static int preserve_fd(int s, int fd, unsigned long long token)
{
	struct liveupdate_session_preserve_fd a = { .size = sizeof(a), .fd = fd, .token = token };

	return ioctl(s, LIVEUPDATE_SESSION_PRESERVE_FD, &a) < 0 ? -errno : 0;
}

static int retrieve_fd(int s, unsigned long long token)
{
	struct liveupdate_session_retrieve_fd a = { .size = sizeof(a), .token = token };

	if (ioctl(s, LIVEUPDATE_SESSION_RETRIEVE_FD, &a) < 0)
		return -errno;
	return a.fd;
}

static int finish_session(int s)
{
	struct liveupdate_session_finish a = { .size = sizeof(a) };

	return ioctl(s, LIVEUPDATE_SESSION_FINISH, &a) < 0 ? -errno : 0;
}

static int new_test_file(int dev, unsigned long value)
{
	int fd = ioctl(dev, LUO_TEST_NEW_FILE, value);

	if (fd < 0)
		fail("new test file %lu", value);
	return fd;
}

static void raise_nofile(void)
{
	struct rlimit r = { MAX_FILES + 64, MAX_FILES + 64 };

	if (setrlimit(RLIMIT_NOFILE, &r))
		fail("setrlimit");
}

static int failing_fd = -1;

static void clear_flags(int sig)
{
	(void)sig;
	if (ioctl(failing_fd, LUO_TEST_SET_FLAGS, 0UL) == 0)
		write(1, "luo_test_files: freeze failure cleared\n", 39);
}

static void do_preserve(int ns, int n, int fail_at)
{
	int luo = open_luo(), dev = open("/dev/luo_test", O_RDWR), k = 0;
	char name[32];

	if (dev < 0)
		fail("open /dev/luo_test");
	raise_nofile();
	for (int s = 0; s < ns; s++) {
		int sfd;

		snprintf(name, sizeof(name), "tf-%d", s);
		sfd = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
		if (sfd < 0)
			errno = -sfd, fail("create %s", name);
		for (int i = 0; i < n; i++, k++) {
			unsigned long v = 1000UL * s + i;
			int fd = new_test_file(dev, v);

			if (k == fail_at) {
				if (ioctl(fd, LUO_TEST_SET_FLAGS, (unsigned long)LUO_TEST_FAIL_FREEZE))
					fail("set FAIL_FREEZE");
				failing_fd = fd;
				printf("luo_test_files: file %lu will fail freeze\n", v);
			}
			errno = -preserve_fd(sfd, fd, v);
			if (errno)
				fail("preserve %lu", v);
			if (fd != failing_fd)
				close(fd);
		}
	}
	printf("luo_test_files: preserved %d x %d test files\n", ns, n);
	if (failing_fd >= 0) {
		signal(SIGUSR1, clear_flags);
		fflush(stdout);
		if (fork() == 0) {
			FILE *f = fopen("/tmp/luo_test_files.pid", "w");

			setsid();
			fprintf(f, "%d\n", getpid());
			fclose(f);
			for (;;)
				pause();
		}
		/* Wait until the holder wrote its pid. */
		for (int i = 0; i < 100 && access("/tmp/luo_test_files.pid", F_OK); i++)
			usleep(10000);
		return;
	}
	luo_abi_hold_until_kexec(luo);
}

static int retrieve_session(int luo, const char *name)
{
	int sfd = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);

	if (sfd < 0)
		errno = -sfd, fail("retrieve session %s", name);
	return sfd;
}

static void check_value(int fd, unsigned long v)
{
	long got = ioctl(fd, LUO_TEST_GET_VALUE);

	if (got < 0 || (unsigned long)got != v) {
		errno = got < 0 ? errno : EINVAL;
		fail("file %lu holds %ld", v, got);
	}
}

static void do_verify(int ns, int n)
{
	int luo = open_luo();
	char name[32];

	raise_nofile();
	for (int s = 0; s < ns; s++) {
		int sfd;

		snprintf(name, sizeof(name), "tf-%d", s);
		sfd = retrieve_session(luo, name);
		for (int i = 0; i < n; i++) {
			unsigned long v = 1000UL * s + i;
			int fd = retrieve_fd(sfd, v);

			if (fd < 0)
				errno = -fd, fail("retrieve %lu", v);
			check_value(fd, v);
			close(fd);
		}
		errno = -finish_session(sfd);
		if (errno)
			fail("finish %s", name);
		close(sfd);
	}
	printf("luo_test_files: verified %d x %d test files\n", ns, n);
}

static int new_memfd(const char *text)
{
	int fd = memfd_create("luo-test", 0);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		fail("memfd");
	return fd;
}

static void do_reuse(void)
{
	int luo = open_luo(), mfd = new_memfd("reused after close");
	int a = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "a");
	int b = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "b");

	if (a < 0 || b < 0)
		fail("create sessions");
	errno = -preserve_fd(a, mfd, 7);
	if (errno)
		fail("preserve in a");
	errno = -preserve_fd(b, mfd, 7);
	if (errno != EBUSY)
		fail("preserve in b while in a: want EBUSY");
	printf("luo_test_files: preserved in another session: EBUSY\n");
	close(a);
	errno = -preserve_fd(b, mfd, 7);
	if (errno)
		fail("preserve in b after a was closed");
	printf("luo_test_files: preserved again after its session was closed\n");
	luo_abi_hold_until_kexec(luo);
}

static void read_back(int fd, const char *want)
{
	char buf[64] = "";

	if (pread(fd, buf, sizeof(buf) - 1, 0) != (ssize_t)strlen(want) || strcmp(buf, want))
		fail("contents '%s', want '%s'", buf, want);
}

static void do_reuse_verify(void)
{
	int luo = open_luo(), b = retrieve_session(luo, "b"), fd = retrieve_fd(b, 7);

	if (fd < 0)
		errno = -fd, fail("retrieve 7");
	read_back(fd, "reused after close");
	if (luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, "a") != -ENOENT)
		fail("session a arrived");
	errno = -finish_session(b);
	if (errno)
		fail("finish b");
	printf("luo_test_files: re-preserved memfd arrived intact\n");
}

static void do_memfd(void)
{
	int luo = open_luo(), mfd = new_memfd("one open file");
	int s = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "twice");

	if (s < 0)
		fail("create twice");
	errno = -preserve_fd(s, mfd, 5);
	if (errno)
		fail("preserve 5");
	printf("luo_test_files: memfd preserved\n");
	luo_abi_hold_until_kexec(luo);
}

static void do_twice(void)
{
	int luo = open_luo(), s = retrieve_session(luo, "twice");
	int fd1 = retrieve_fd(s, 5), fd2 = retrieve_fd(s, 5);

	if (fd1 < 0 || fd2 < 0 || fd1 == fd2)
		errno = fd1 < 0 ? -fd1 : fd2 < 0 ? -fd2 : EINVAL, fail("retrieve twice");
	/* One open file: a position set through one fd is seen through the other. */
	if (lseek(fd1, 9, SEEK_SET) != 9 || lseek(fd2, 0, SEEK_CUR) != 9)
		fail("the two fds do not share one open file");
	close(fd1);
	read_back(fd2, "one open file");
	errno = -finish_session(s);
	if (errno)
		fail("finish twice");
	printf("luo_test_files: two fds, one open file\n");
}

static void do_partial(int n)
{
	int luo = open_luo(), s = retrieve_session(luo, "tf-0"), fd = retrieve_fd(s, 0);

	if (fd < 0)
		errno = -fd, fail("retrieve 0");
	check_value(fd, 0);
	errno = -finish_session(s);
	if (errno)
		fail("finish with unretrieved files");
	for (int i = 0; i < n; i++) {
		if (retrieve_fd(s, i) != -ENOENT)
			fail("token %d still there after finish", i);
	}
	check_value(fd, 0);
	printf("luo_test_files: finished with %d unretrieved files\n", n - 1);
}

static void do_refuse(void)
{
	int luo = open_luo(), s = retrieve_session(luo, "tf-0");
	int f0 = retrieve_fd(s, 0), f1 = retrieve_fd(s, 1);

	if (f0 < 0 || f1 < 0)
		fail("retrieve");
	if (ioctl(f1, LUO_TEST_SET_FLAGS, (unsigned long)LUO_TEST_REFUSE_FINISH))
		fail("set REFUSE_FINISH");
	errno = -finish_session(s);
	if (errno != EBUSY)
		fail("finish while a handler refuses: want EBUSY");
	printf("luo_test_files: FINISH refused with EBUSY\n");
	/* Nothing was finished: both tokens still work. */
	close(f0);
	f0 = retrieve_fd(s, 0);
	if (f0 < 0)
		errno = -f0, fail("retrieve 0 after the refusal");
	check_value(f0, 0);
	if (ioctl(f1, LUO_TEST_SET_FLAGS, 0UL))
		fail("clear REFUSE_FINISH");
	errno = -finish_session(s);
	if (errno)
		fail("finish once the handler agrees");
	printf("luo_test_files: FINISH accepted once the handler agreed\n");
}

static int dev_with_flb_flags(unsigned long flags)
{
	int dev = open("/dev/luo_test", O_RDWR);

	if (dev < 0)
		fail("open /dev/luo_test");
	if (ioctl(dev, LUO_TEST_SET_FLB_FLAGS, flags))
		fail("set FLB flags %#lx", flags);
	return dev;
}

static int create_tf0(int luo)
{
	int sfd = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "tf-0");

	if (sfd < 0)
		errno = -sfd, fail("create tf-0");
	return sfd;
}

static void do_fail_retrieve(void)
{
	int luo = open_luo(), dev = dev_with_flb_flags(0), sfd = create_tf0(luo);

	for (unsigned long v = 0; v < 3; v++) {
		int fd = new_test_file(dev, v);

		if (v == 1 && ioctl(fd, LUO_TEST_SET_FLAGS, (unsigned long)LUO_TEST_FAIL_RETRIEVE))
			fail("set FAIL_RETRIEVE");
		errno = -preserve_fd(sfd, fd, v);
		if (errno)
			fail("preserve %lu", v);
		close(fd);
	}
	printf("luo_test_files: preserved 3 files, file 1 to fail its retrieve\n");
	luo_abi_hold_until_kexec(luo);
}

static void do_fail_retrieve_verify(void)
{
	int luo = open_luo(), s = retrieve_session(luo, "tf-0");

	for (unsigned long v = 0; v < 3; v += 2) {
		int fd = retrieve_fd(s, v);

		if (fd < 0)
			errno = -fd, fail("retrieve %lu", v);
		check_value(fd, v);
		close(fd);
	}
	for (int i = 1; i <= 2; i++) {
		int fd = retrieve_fd(s, 1);

		if (fd != -EIO)
			errno = fd < 0 ? -fd : 0, fail("retrieve 1 (attempt %d): want EIO", i);
		printf("luo_test_files: retrieve of file 1, attempt %d: EIO\n", i);
	}
	errno = -finish_session(s);
	if (errno)
		fail("finish after a failed retrieve");
	printf("luo_test_files: FINISH after a failed retrieve succeeded\n");
}

static void do_flb_fail_preserve(void)
{
	int luo = open_luo(), dev = dev_with_flb_flags(LUO_TEST_FLB_FAIL_PRESERVE);
	int sfd = create_tf0(luo), fd = new_test_file(dev, 0);

	errno = -preserve_fd(sfd, fd, 0);
	if (errno != ENOSPC)
		fail("preserve while the FLB fails: want ENOSPC");
	printf("luo_test_files: PRESERVE_FD failed with the FLB's ENOSPC\n");
	/* The retry below would fail with EEXIST or EBUSY had the failure left anything. */
	if (ioctl(dev, LUO_TEST_SET_FLB_FLAGS, 0UL))
		fail("clear FLB flags");
	errno = -preserve_fd(sfd, fd, 0);
	if (errno)
		fail("preserve once the FLB works");
	printf("luo_test_files: the same PRESERVE_FD succeeded once the FLB worked\n");
	close(fd);
	luo_abi_hold_until_kexec(luo);
}

static void do_flb_fail_retrieve(void)
{
	int luo = open_luo(), dev = dev_with_flb_flags(LUO_TEST_FLB_FAIL_RETRIEVE);
	int sfd = create_tf0(luo);

	for (unsigned long v = 0; v < 2; v++) {
		int fd = new_test_file(dev, v);

		errno = -preserve_fd(sfd, fd, v);
		if (errno)
			fail("preserve %lu", v);
		close(fd);
	}
	printf("luo_test_files: preserved 2 files on an FLB whose retrieve will fail\n");
	luo_abi_hold_until_kexec(luo);
}

static void do_half(void)
{
	int luo = open_luo(), dev = dev_with_flb_flags(0);
	int s = retrieve_session(luo, "tf-0"), fd = retrieve_fd(s, 0), next;

	if (fd < 0)
		errno = -fd, fail("retrieve 0");
	check_value(fd, 0);
	next = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "next");
	if (next < 0)
		errno = -next, fail("create next");
	errno = -preserve_fd(next, new_test_file(dev, 7), 7);
	if (errno)
		fail("preserve 7");
	printf("luo_test_files: tf-0 retrieved, not finished; tf-1 untouched; next preserved\n");
	luo_abi_hold_until_kexec(luo);
}

static void do_after_half(void)
{
	int luo = open_luo(), s, fd;

	for (int i = 0; i < 2; i++) {
		char name[8];

		snprintf(name, sizeof(name), "tf-%d", i);
		s = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
		if (s != -ENOENT)
			errno = s < 0 ? -s : 0, fail("retrieve %s: want ENOENT", name);
	}
	printf("luo_test_files: the unfinished sessions did not cross a second kexec\n");
	s = retrieve_session(luo, "next");
	fd = retrieve_fd(s, 7);
	if (fd < 0)
		errno = -fd, fail("retrieve 7");
	check_value(fd, 7);
	errno = -finish_session(s);
	if (errno)
		fail("finish next");
	printf("luo_test_files: the session made beside them arrived\n");
}

static void do_unregister(void)
{
	int luo = open_luo(), dev = open("/dev/luo_test", O_RDWR), s, fd;

	if (dev < 0)
		fail("open /dev/luo_test");
	s = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, "tf-0");
	if (s < 0)
		errno = -s, fail("create tf-0");
	for (int i = 0; i < 2; i++) {
		fd = new_test_file(dev, i);
		errno = -preserve_fd(s, fd, i);
		if (errno)
			fail("preserve %d", i);
		close(fd);
	}
	if (ioctl(dev, LUO_TEST_UNREGISTER))
		fail("unregister");
	if (ioctl(dev, LUO_TEST_UNREGISTER) == 0 || errno != ENOENT)
		fail("second unregister: want ENOENT");
	printf("luo_test_files: handler unregistered with 2 files preserved\n");
	fd = new_test_file(dev, 2);
	errno = -preserve_fd(s, fd, 2);
	if (errno != ENOENT)
		fail("preserve 2 without a handler: want ENOENT");
	printf("luo_test_files: without its handler, a new file is refused with ENOENT\n");
	if (ioctl(dev, LUO_TEST_REGISTER))
		fail("register again");
	if (ioctl(dev, LUO_TEST_REGISTER) == 0 || errno != EEXIST)
		fail("second register: want EEXIST");
	errno = -preserve_fd(s, fd, 2);
	if (errno)
		fail("preserve 2");
	close(fd);
	printf("luo_test_files: registered again, file 2 preserved\n");
	luo_abi_hold_until_kexec(luo);
}

static void do_flb_held(void)
{
	int luo = open_luo(), dev = dev_with_flb_flags(0), sfd, fd;

	if (ioctl(dev, LUO_TEST_HOLD_FLB) == 0 || errno != ENOENT)
		fail("reference to an FLB nothing preserves: want ENOENT");
	sfd = create_tf0(luo);
	fd = new_test_file(dev, 0);
	errno = -preserve_fd(sfd, fd, 0);
	if (errno)
		fail("preserve 0");
	if (ioctl(dev, LUO_TEST_HOLD_FLB))
		fail("reference to the preserved FLB");
	if (ioctl(dev, LUO_TEST_HOLD_FLB) == 0 || errno != EBUSY)
		fail("second reference kept: want EBUSY");
	close(fd);
	close(sfd);
	printf("luo_test_files: FLB referenced, its only file's session closed\n");
}

static void do_flb_put(void)
{
	int dev = dev_with_flb_flags(0);

	if (ioctl(dev, LUO_TEST_PUT_FLB))
		fail("put the FLB reference");
	if (ioctl(dev, LUO_TEST_PUT_FLB) == 0 || errno != ENOENT)
		fail("second put: want ENOENT");
	printf("luo_test_files: FLB reference put\n");
}

static int sessions = 1;
static int files = 1;
static int fail_at = -1;

/* A kernel without LUO or without the test handler skips every step. */
static bool devices_present(struct __test_metadata *_metadata)
{
	if (access("/dev/liveupdate", F_OK))
		SKIP(return false, "/dev/liveupdate does not exist");
	if (access("/dev/luo_test", F_OK))
		SKIP(return false, "/dev/luo_test does not exist (CONFIG_LIVEUPDATE_RUST_TEST_HANDLER)");
	return true;
}

/*
 * Each step runs in the harness's child and ends it through fail() at the
 * first check that does not hold. The fixture is there for the timeout: the
 * harness's default of 30 s is short for 200,000 files under emulation.
 */
FIXTURE(step) {};
FIXTURE_SETUP(step) {}
FIXTURE_TEARDOWN(step) {}

enum step_case {
	PRESERVE,
	VERIFY,
	REUSE,
	REUSE_VERIFY,
	MEMFD,
	TWICE,
	PARTIAL,
	REFUSE,
	FAIL_RETRIEVE,
	FAIL_RETRIEVE_VERIFY,
	FLB_FAIL_PRESERVE,
	FLB_FAIL_RETRIEVE,
	HALF,
	AFTER_HALF,
	UNREGISTER,
	FLB_HELD,
	FLB_PUT,
};

/* Runs one step in the harness's child, unless the kernel lacks a device. */
static void run_step(struct __test_metadata *_metadata, enum step_case c)
{
	if (!devices_present(_metadata))
		return;
	switch (c) {
	case PRESERVE:
		do_preserve(sessions, files, fail_at);
		break;
	case VERIFY:
		do_verify(sessions, files);
		break;
	case REUSE:
		do_reuse();
		break;
	case REUSE_VERIFY:
		do_reuse_verify();
		break;
	case MEMFD:
		do_memfd();
		break;
	case TWICE:
		do_twice();
		break;
	case PARTIAL:
		do_partial(files);
		break;
	case REFUSE:
		do_refuse();
		break;
	case FAIL_RETRIEVE:
		do_fail_retrieve();
		break;
	case FAIL_RETRIEVE_VERIFY:
		do_fail_retrieve_verify();
		break;
	case FLB_FAIL_PRESERVE:
		do_flb_fail_preserve();
		break;
	case FLB_FAIL_RETRIEVE:
		do_flb_fail_retrieve();
		break;
	case HALF:
		do_half();
		break;
	case AFTER_HALF:
		do_after_half();
		break;
	case UNREGISTER:
		do_unregister();
		break;
	case FLB_HELD:
		do_flb_held();
		break;
	case FLB_PUT:
		do_flb_put();
		break;
	}
}

TEST_F_TIMEOUT(step, preserve, 1800) { run_step(_metadata, PRESERVE); }
TEST_F_TIMEOUT(step, verify, 1800) { run_step(_metadata, VERIFY); }
TEST_F_TIMEOUT(step, reuse, 1800) { run_step(_metadata, REUSE); }
TEST_F_TIMEOUT(step, reuse_verify, 1800) { run_step(_metadata, REUSE_VERIFY); }
TEST_F_TIMEOUT(step, memfd, 1800) { run_step(_metadata, MEMFD); }
TEST_F_TIMEOUT(step, twice, 1800) { run_step(_metadata, TWICE); }
TEST_F_TIMEOUT(step, partial, 1800) { run_step(_metadata, PARTIAL); }
TEST_F_TIMEOUT(step, refuse, 1800) { run_step(_metadata, REFUSE); }
TEST_F_TIMEOUT(step, fail_retrieve, 1800) { run_step(_metadata, FAIL_RETRIEVE); }
TEST_F_TIMEOUT(step, fail_retrieve_verify, 1800) { run_step(_metadata, FAIL_RETRIEVE_VERIFY); }
TEST_F_TIMEOUT(step, flb_fail_preserve, 1800) { run_step(_metadata, FLB_FAIL_PRESERVE); }
TEST_F_TIMEOUT(step, flb_fail_retrieve, 1800) { run_step(_metadata, FLB_FAIL_RETRIEVE); }
TEST_F_TIMEOUT(step, half, 1800) { run_step(_metadata, HALF); }
TEST_F_TIMEOUT(step, after_half, 1800) { run_step(_metadata, AFTER_HALF); }
TEST_F_TIMEOUT(step, unregister, 1800) { run_step(_metadata, UNREGISTER); }
TEST_F_TIMEOUT(step, flb_held, 1800) { run_step(_metadata, FLB_HELD); }
TEST_F_TIMEOUT(step, flb_put, 1800) { run_step(_metadata, FLB_PUT); }

int main(int argc, char **argv)
{
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "n:f:k:")) != -1) {
		switch (opt) {
		case 'n':
			sessions = atoi(optarg);
			break;
		case 'f':
			files = atoi(optarg);
			break;
		case 'k':
			fail_at = atoi(optarg);
			break;
		default:
			ksft_exit_fail_msg("usage: %s [-n SESSIONS] [-f FILES] [-k FAILING] -- -t STEP\n",
					   argv[0]);
		}
	}
	return luo_abi_run_harness(argc, argv);
}
