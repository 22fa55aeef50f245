/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the project's liveupdate selftests: opening the device,
 * creating a session, and checking that a call failed with one errno.
 */
#ifndef LUO_ABI_H
#define LUO_ABI_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/liveupdate.h>

#define LUO_ABI_DEVICE "/dev/liveupdate"

/*
 * Opens the device into @fd in a fixture's setup; a kernel without LUO
 * skips the test, as upstream's liveupdate tests do.
 */
#define LUO_ABI_OPEN(fd) do {						\
	(fd) = open(LUO_ABI_DEVICE, O_RDWR);				\
	if ((fd) < 0 && errno == ENOENT)				\
		SKIP(return, "%s does not exist", LUO_ABI_DEVICE);	\
	ASSERT_LE(0, (fd)) {						\
		TH_LOG("open %s: %s", LUO_ABI_DEVICE, strerror(errno));	\
	}								\
} while (0)

/* @call must fail with errno @err; the log says what happened instead. */
#define EXPECT_ERRNO(err, call) do {					\
	long __ret = (call);						\
	int __err = __ret < 0 ? errno : 0;				\
	EXPECT_EQ((err), __err) {					\
		TH_LOG("expected %s, got %s", strerror(err),		\
		       __ret < 0 ? strerror(__err) : "success");	\
	}								\
} while (0)

/*
 * Whether @fd is close-on-exec, from /proc/self/fdinfo (which nolibc, that
 * upstream's vmtest.sh builds the kexec tests with, can read; it has no
 * fcntl()): 1 or 0, or -1 if it cannot be read.
 */
static inline int luo_abi_cloexec(int fd)
{
	char path[64], buf[256], *p;
	unsigned long flags = 0;
	ssize_t n;
	int f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = open(path, O_RDONLY);
	if (f < 0)
		return -1;
	n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strstr(buf, "flags:");
	if (!p)
		return -1;
	for (p += strlen("flags:"); *p == ' ' || *p == '\t'; p++)
		;
	for (; *p >= '0' && *p <= '7'; p++)
		flags = flags * 8 + (*p - '0');
	return !!(flags & O_CLOEXEC);
}

/*
 * Leaves a child holding every open session file until the kexec takes
 * the machine away, as upstream's daemonize_and_wait() does; it lets go of
 * the device @luo, which the next test opens.
 */
static inline void luo_abi_hold_until_kexec(int luo)
{
	fflush(stdout);
	if (fork() == 0) {
		close(luo);
		setsid();
		for (;;)
			sleep(60);
	}
}

/*
 * Leaves in @argc/@argv what follows "--" after a test's own options, which
 * getopt() parsed up to optind, for the harness to parse.
 */
static inline void luo_abi_harness_args(int *argc, char ***argv)
{
	(*argv)[optind - 1] = (*argv)[0];
	*argc -= optind - 1;
	*argv += optind - 1;
	optind = 1;
}

/* Runs the harness on what follows "--" after a test's own options. */
static inline int luo_abi_run_harness(int argc, char **argv)
{
	luo_abi_harness_args(&argc, &argv);
	return test_harness_run(argc, argv);
}

/*
 * Runs the harness on @argc/@argv in the kernel after a kexec. Upstream's
 * vmtest.sh decides a two-stage test passed when the serial log holds
 * "TEST PASSED", as its own tests print; the harness exits when it is done,
 * so it runs in a child and the parent says so for @test.
 */
static inline int luo_abi_run_harness_after_kexec(const char *test, int argc, char **argv)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(errno));
	if (pid == 0)
		exit(test_harness_run(argc, argv));
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return KSFT_FAIL;
	if (WEXITSTATUS(status) == KSFT_PASS)
		ksft_print_msg("--- %s KEXEC TEST PASSED ---\n", test);
	return WEXITSTATUS(status);
}

/*
 * CREATE_SESSION or RETRIEVE_SESSION (@cmd, whose argument has one layout)
 * of session @name: its fd, or -errno.
 */
static inline int luo_abi_session_ioctl(int luo, unsigned long cmd, const char *name)
{
	struct liveupdate_ioctl_create_session a = { .size = sizeof(a) };

	snprintf((char *)a.name, sizeof(a.name), "%s", name);
	if (ioctl(luo, cmd, &a) < 0)
		return -errno;
	return a.fd;
}

/* Creates an outgoing session; returns its fd, or -1 with errno set. */
static inline int luo_abi_create(int luo, const char *name)
{
	int fd = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, name);

	if (fd < 0) {
		errno = -fd;
		return -1;
	}
	return fd;
}

#endif /* LUO_ABI_H */
