// SPDX-License-Identifier: GPL-2.0
/*
 * Many named sessions carried across one kexec or a chain of them.
 *
 *   luo_sessions -s 1 -n N [-d]   create N sessions (and with -d check that
 *                                 a duplicate name is refused with EEXIST),
 *                                 leave them for the next kernel
 *   luo_sessions -s S -n N [-k]   in the kernel of stage S: retrieve each
 *                                 session exactly once, check its name,
 *                                 finish and close it; with -k create the N
 *                                 sessions again for stage S + 1
 *
 * Options after "--" go to the kselftest harness. The stage is taken from
 * -s, as upstream's init.c passes it; unlike upstream's two-stage tests
 * this one keeps no state session, so that the handover holds exactly N
 * sessions (the block boundaries at 51 and 52 are what some runs test). A
 * run in the wrong kernel still fails: the sessions it must verify are not
 * there. Names are "s<i>-" followed by a run of letters whose length
 * varies with i, from 3 to 63 bytes in all, so that names of every length
 * cross.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <linux/liveupdate.h>

#include "../kselftest_harness.h"
#include "luo_abi.h"

static int stage = 1;
static int count = 1;
static bool dup_check;
static bool again;

static void name_of(int i, char *buf)
{
	int n = snprintf(buf, LIVEUPDATE_SESSION_NAME_LENGTH, "s%d-", i);
	int extra = (i * 7) % (LIVEUPDATE_SESSION_NAME_LENGTH - n);

	memset(buf + n, 'a' + i % 26, extra);
	buf[n + extra] = 0;
}

FIXTURE(sessions) {
	int luo;
};

FIXTURE_SETUP(sessions)
{
	struct rlimit r = { count + 64, count + 64 };

	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &r));
	LUO_ABI_OPEN(self->luo);
}

FIXTURE_TEARDOWN(sessions)
{
}

/* Every session of the previous kernel, each exactly once; none other. */
static void verify(struct __test_metadata *_metadata, int luo)
{
	struct liveupdate_session_get_name g = { .size = sizeof(g) };
	struct liveupdate_session_finish f = { .size = sizeof(f) };
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	int fd, i;

	for (i = 0; i < count; i++) {
		name_of(i, name);
		fd = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
		ASSERT_LE(0, fd) TH_LOG("retrieve session %d: %s", i, strerror(-fd));
		ASSERT_EQ(-EINVAL, luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name))
			TH_LOG("second retrieve of session %d", i);
		ASSERT_EQ(0, ioctl(fd, LIVEUPDATE_SESSION_GET_NAME, &g));
		ASSERT_STREQ(name, (char *)g.name);
		ASSERT_EQ(0, ioctl(fd, LIVEUPDATE_SESSION_FINISH, &f));
		ASSERT_EQ(0, ioctl(fd, LIVEUPDATE_SESSION_FINISH, &f))
			TH_LOG("second finish of session %d", i);
		ASSERT_EQ(0, close(fd));
		ASSERT_EQ(-ENOENT, luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name))
			TH_LOG("retrieve of session %d after close", i);
	}
	ASSERT_EQ(-ENOENT, luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION,
					 "no-such-session"));
	ksft_print_msg("luo_sessions: verified %d sessions (each retrieved once, named, finished, closed)\n",
		       count);
}

/* N sessions, held by a child until the kexec. */
static void create(struct __test_metadata *_metadata, int luo)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	int i, fd;

	for (i = 0; i < count; i++) {
		name_of(i, name);
		fd = luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
		ASSERT_LE(0, fd) TH_LOG("create session %d: %s", i, strerror(-fd));
	}
	ksft_print_msg("luo_sessions: created %d sessions\n", count);
	if (dup_check) {
		name_of(count / 2, name);
		ASSERT_EQ(-EEXIST, luo_abi_session_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, name));
		ksft_print_msg("luo_sessions: duplicate create refused with EEXIST at %d sessions\n",
			       count);
	}
	luo_abi_hold_until_kexec(luo);
}

/* The harness's default of 30 s is too short for 510,000 sessions under emulation. */
TEST_F_TIMEOUT(sessions, carried, 3600)
{
	if (stage > 1)
		verify(_metadata, self->luo);
	if (stage == 1 || again)
		create(_metadata, self->luo);
}

int main(int argc, char *argv[])
{
	int opt;

	while ((opt = getopt(argc, argv, "s:n:dk")) != -1) {
		switch (opt) {
		case 's':
			stage = atoi(optarg);
			break;
		case 'n':
			count = atoi(optarg);
			break;
		case 'd':
			dup_check = true;
			break;
		case 'k':
			again = true;
			break;
		default:
			ksft_exit_fail_msg("usage: %s -s STAGE -n SESSIONS [-d] [-k] [-- harness options]\n",
					   argv[0]);
		}
	}
	if (stage < 1 || count < 1)
		ksft_exit_fail_msg("the stage and the number of sessions start at 1\n");
	if (stage == 1)
		return luo_abi_run_harness(argc, argv);
	luo_abi_harness_args(&argc, &argv);
	return luo_abi_run_harness_after_kexec("SESSIONS", argc, argv);
}
