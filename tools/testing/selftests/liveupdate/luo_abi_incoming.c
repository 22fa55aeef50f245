// SPDX-License-Identifier: GPL-2.0
/*
 * The errno contract of the commands that only sessions handed over by a
 * previous kernel accept, in two stages like the other kexec tests:
 *
 *   luo_abi_incoming -s 1   leaves one session per test for the next kernel
 *                           and a child holding them; then kexec
 *   luo_abi_incoming -s 2   runs the tests, each on its own session
 *
 * Each test retrieves the session named after it, so the tests do not
 * depend on each other's order or outcome.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <libliveupdate.h>
#include <linux/liveupdate.h>

#include "../kselftest_harness.h"
#include "luo_abi.h"

#define STATE_SESSION "luo_abi_incoming_state"
#define STATE_TOKEN 1
#define SESSION_PREFIX "abi-in."

/* Every test of this file: stage 1 leaves a session for each. */
static const char *const tests[] = {
	"retrieve_session_nonzero_tail",
	"retrieve_session_zero_tail",
	"retrieve_session_twice",
	"incoming_session_fd_cloexec",
	"retrieve_session_after_close",
	"retrieve_fd_size_8",
	"retrieve_fd_nonzero_tail",
	"retrieve_fd_zero_tail_unknown_token",
	"retrieve_fd_bad_ptr",
	"preserve_on_incoming",
	"get_name_on_incoming",
	"get_name_on_incoming_value",
	"finish_size_4",
	"finish_nonzero_tail",
	"finish_reserved",
	"finish_bad_ptr",
	"finish_zero_tail",
	"finish_again",
};

static void session_name(char *buf, size_t len, const char *test)
{
	snprintf(buf, len, SESSION_PREFIX "%s", test);
}

/* RETRIEVE_SESSION of the session named after @test, with @size. */
static long retrieve(int luo, const char *test, unsigned char *buf, __u32 size)
{
	struct liveupdate_ioctl_retrieve_session *r = (void *)buf;

	r->size = size;
	session_name((char *)r->name, sizeof(r->name), test);
	return ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, buf);
}

/* The device, and the test's session not retrieved yet. */
FIXTURE(handed_over) {
	int luo;
	unsigned char buf[256];
};

FIXTURE_SETUP(handed_over)
{
	LUO_ABI_OPEN(self->luo);
	memset(self->buf, 0, sizeof(self->buf));
}

FIXTURE_TEARDOWN(handed_over)
{
	if (self->luo >= 0)
		close(self->luo);
}

#define RETRIEVED_FD(self) (((struct liveupdate_ioctl_retrieve_session *)(self)->buf)->fd)

TEST_F(handed_over, retrieve_session_nonzero_tail)
{
	self->buf[sizeof(struct liveupdate_ioctl_retrieve_session) + 2] = 1;
	EXPECT_ERRNO(E2BIG, retrieve(self->luo, _metadata->name, self->buf,
				     sizeof(struct liveupdate_ioctl_retrieve_session) + 8));
}

TEST_F(handed_over, retrieve_session_zero_tail)
{
	EXPECT_EQ(0, retrieve(self->luo, _metadata->name, self->buf,
			      sizeof(struct liveupdate_ioctl_retrieve_session) + 8));
	EXPECT_LT(2, RETRIEVED_FD(self));
}

TEST_F(handed_over, retrieve_session_twice)
{
	const __u32 size = sizeof(struct liveupdate_ioctl_retrieve_session);

	ASSERT_EQ(0, retrieve(self->luo, _metadata->name, self->buf, size));
	EXPECT_ERRNO(EINVAL, retrieve(self->luo, _metadata->name, self->buf, size));
}

TEST_F(handed_over, incoming_session_fd_cloexec)
{
	ASSERT_EQ(0, retrieve(self->luo, _metadata->name, self->buf,
			      sizeof(struct liveupdate_ioctl_retrieve_session)));
	EXPECT_EQ(1, luo_abi_cloexec(RETRIEVED_FD(self)));
}

/* A finished and closed incoming session is gone. */
TEST_F(handed_over, retrieve_session_after_close)
{
	const __u32 size = sizeof(struct liveupdate_ioctl_retrieve_session);
	struct liveupdate_session_finish f = { .size = sizeof(f) };
	int sfd;

	ASSERT_EQ(0, retrieve(self->luo, _metadata->name, self->buf, size));
	sfd = RETRIEVED_FD(self);
	ASSERT_EQ(0, ioctl(sfd, LIVEUPDATE_SESSION_FINISH, &f));
	ASSERT_EQ(0, close(sfd));
	EXPECT_ERRNO(ENOENT, retrieve(self->luo, _metadata->name, self->buf, size));
}

/* The test's session, retrieved. */
FIXTURE(incoming) {
	int luo;
	int sfd;
	unsigned char buf[256];
};

FIXTURE_SETUP(incoming)
{
	self->sfd = -1;
	LUO_ABI_OPEN(self->luo);
	memset(self->buf, 0, sizeof(self->buf));
	ASSERT_EQ(0, retrieve(self->luo, _metadata->name, self->buf,
			      sizeof(struct liveupdate_ioctl_retrieve_session))) {
		TH_LOG("retrieve %s%s: %s", SESSION_PREFIX, _metadata->name, strerror(errno));
	}
	self->sfd = RETRIEVED_FD(self);
	memset(self->buf, 0, sizeof(self->buf));
}

FIXTURE_TEARDOWN(incoming)
{
	if (self->sfd >= 0)
		close(self->sfd);
	if (self->luo >= 0)
		close(self->luo);
}

#define RETRIEVE_FD(self) ((struct liveupdate_session_retrieve_fd *)(self)->buf)
#define FINISH(self) ((struct liveupdate_session_finish *)(self)->buf)
#define GET_NAME(self) ((struct liveupdate_session_get_name *)(self)->buf)

TEST_F(incoming, retrieve_fd_size_8)
{
	RETRIEVE_FD(self)->size = 8;
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, self->buf));
}

TEST_F(incoming, retrieve_fd_nonzero_tail)
{
	RETRIEVE_FD(self)->size = sizeof(*RETRIEVE_FD(self)) + 8;
	self->buf[sizeof(*RETRIEVE_FD(self)) + 7] = 9;
	EXPECT_ERRNO(E2BIG, ioctl(self->sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, self->buf));
}

TEST_F(incoming, retrieve_fd_zero_tail_unknown_token)
{
	RETRIEVE_FD(self)->size = sizeof(*RETRIEVE_FD(self)) + 8;
	RETRIEVE_FD(self)->token = 0x5151;
	EXPECT_ERRNO(ENOENT, ioctl(self->sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, self->buf));
}

TEST_F(incoming, retrieve_fd_bad_ptr)
{
	EXPECT_ERRNO(EFAULT, ioctl(self->sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, (void *)8));
}

TEST_F(incoming, preserve_on_incoming)
{
	struct liveupdate_session_preserve_fd p = { .size = sizeof(p) };
	int null = open("/dev/null", O_RDWR);

	ASSERT_LE(0, null);
	p.fd = null;
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_SESSION_PRESERVE_FD, &p));
	close(null);
}

TEST_F(incoming, get_name_on_incoming)
{
	GET_NAME(self)->size = sizeof(*GET_NAME(self));
	EXPECT_EQ(0, ioctl(self->sfd, LIVEUPDATE_SESSION_GET_NAME, self->buf));
}

TEST_F(incoming, get_name_on_incoming_value)
{
	char want[LIVEUPDATE_SESSION_NAME_LENGTH];

	session_name(want, sizeof(want), _metadata->name);
	GET_NAME(self)->size = sizeof(*GET_NAME(self));
	ASSERT_EQ(0, ioctl(self->sfd, LIVEUPDATE_SESSION_GET_NAME, self->buf));
	EXPECT_STREQ(want, (char *)GET_NAME(self)->name);
}

TEST_F(incoming, finish_size_4)
{
	FINISH(self)->size = 4;
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_SESSION_FINISH, self->buf));
}

TEST_F(incoming, finish_nonzero_tail)
{
	FINISH(self)->size = sizeof(*FINISH(self)) + 8;
	self->buf[sizeof(*FINISH(self)) + 1] = 1;
	EXPECT_ERRNO(E2BIG, ioctl(self->sfd, LIVEUPDATE_SESSION_FINISH, self->buf));
}

TEST_F(incoming, finish_reserved)
{
	FINISH(self)->size = sizeof(*FINISH(self)) + 8;
	FINISH(self)->reserved = 1;
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_SESSION_FINISH, self->buf));
}

TEST_F(incoming, finish_bad_ptr)
{
	EXPECT_ERRNO(EFAULT, ioctl(self->sfd, LIVEUPDATE_SESSION_FINISH, (void *)8));
}

TEST_F(incoming, finish_zero_tail)
{
	FINISH(self)->size = sizeof(*FINISH(self)) + 8;
	EXPECT_EQ(0, ioctl(self->sfd, LIVEUPDATE_SESSION_FINISH, self->buf));
}

TEST_F(incoming, finish_again)
{
	FINISH(self)->size = sizeof(*FINISH(self));
	ASSERT_EQ(0, ioctl(self->sfd, LIVEUPDATE_SESSION_FINISH, self->buf));
	EXPECT_EQ(0, ioctl(self->sfd, LIVEUPDATE_SESSION_FINISH, self->buf));
}

static char *self_path;

/* Before the kexec: the state session, one session per test, a child holding them. */
static void stage_1(int luo)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	unsigned int i;

	create_state_file(luo, STATE_SESSION, STATE_TOKEN, 2);
	for (i = 0; i < ARRAY_SIZE(tests); i++) {
		session_name(name, sizeof(name), tests[i]);
		if (luo_create_session(luo, name) < 0)
			fail_exit("luo_create_session for '%s'", name);
	}
	ksft_print_msg("[STAGE 1] %zu sessions left for the next kernel\n",
		       ARRAY_SIZE(tests));
	close(luo);
	daemonize_and_wait();
}

/* After the kexec: the tests, each in a child that opens the device itself. */
static void stage_2(int luo, int state)
{
	char *argv[] = { self_path, NULL };
	int stage;

	restore_and_read_stage(state, STATE_TOKEN, &stage);
	if (stage != 2)
		fail_exit("Expected stage 2, but state file contains %d", stage);
	if (luo_session_finish(state) < 0)
		fail_exit("luo_session_finish for the state session");
	close(state);
	close(luo);
	/* luo_test() parsed "-s 2" with getopt(); the harness parses anew. */
	optind = 1;
	exit(luo_abi_run_harness_after_kexec("ABI INCOMING", 1, argv));
}

int main(int argc, char *argv[])
{
	self_path = argv[0];
	return luo_test(argc, argv, STATE_SESSION, stage_1, stage_2);
}
