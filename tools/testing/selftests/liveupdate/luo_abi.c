// SPDX-License-Identifier: GPL-2.0
/*
 * The errno contract of /dev/liveupdate and of outgoing session files.
 *
 * Every ioctl is called with a too-small size, a larger size with a
 * non-zero tail, a larger size with a zero tail, a bad pointer, the wrong
 * kind of file and unknown command numbers, and each call must fail (or
 * succeed) exactly as Linux 7.3's C core does, so that a program written
 * against one core behaves the same on the other. luo_abi_incoming covers
 * the commands of sessions handed over by a previous kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/liveupdate.h>

#include "../kselftest_harness.h"
#include "luo_abi.h"

/* A buffer larger than any LUO structure, for sizes beyond the structure. */
union big {
	struct liveupdate_ioctl_create_session s;
	unsigned char bytes[4096];
};

FIXTURE(device) {
	int luo;
	union big b;
};

FIXTURE_SETUP(device)
{
	LUO_ABI_OPEN(self->luo);
	memset(&self->b, 0, sizeof(self->b));
	self->b.s.size = sizeof(self->b.s);
}

FIXTURE_TEARDOWN(device)
{
	if (self->luo >= 0)
		close(self->luo);
}

TEST_F(device, exclusive_open)
{
	EXPECT_ERRNO(EBUSY, open(LUO_ABI_DEVICE, O_RDWR));
}

TEST_F(device, reopen_after_close)
{
	ASSERT_EQ(0, close(self->luo));
	self->luo = open(LUO_ABI_DEVICE, O_RDWR);
	EXPECT_LE(0, self->luo);
}

/* Command numbers outside the device's range are EINVAL, even with a bad pointer. */
TEST_F(device, unknown_nr_2)
{
	EXPECT_ERRNO(EINVAL, ioctl(self->luo, _IO(LIVEUPDATE_IOCTL_TYPE, 0x02), &self->b));
}

TEST_F(device, unknown_nr_0xff)
{
	EXPECT_ERRNO(EINVAL, ioctl(self->luo, _IO(LIVEUPDATE_IOCTL_TYPE, 0xff), NULL));
}

TEST_F(device, session_cmd_on_device)
{
	EXPECT_ERRNO(EINVAL, ioctl(self->luo, LIVEUPDATE_SESSION_GET_NAME, &self->b));
}

/* A known number with another type byte or size bits is not this ioctl. */
TEST_F(device, wrong_type_byte)
{
	EXPECT_ERRNO(ENOTTY, ioctl(self->luo, _IO(0xBB, 0x00), &self->b));
}

TEST_F(device, size_bits_in_cmd)
{
	EXPECT_ERRNO(ENOTTY, ioctl(self->luo,
				   _IOWR(LIVEUPDATE_IOCTL_TYPE, 0x00, self->b.s), &self->b));
}

/* The size prefix is read first. */
TEST_F(device, create_null_ptr)
{
	EXPECT_ERRNO(EFAULT, ioctl(self->luo, LIVEUPDATE_IOCTL_CREATE_SESSION, NULL));
}

TEST_F(device, create_bad_ptr)
{
	EXPECT_ERRNO(EFAULT, ioctl(self->luo, LIVEUPDATE_IOCTL_CREATE_SESSION, (void *)8));
}

TEST_F(device, retrieve_bad_ptr)
{
	EXPECT_ERRNO(EFAULT, ioctl(self->luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, (void *)8));
}

TEST_F(device, create_size_4)
{
	strcpy((char *)self->b.s.name, "abi-size");
	self->b.s.size = 4;
	EXPECT_ERRNO(EINVAL, ioctl(self->luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &self->b));
}

TEST_F(device, create_size_71)
{
	strcpy((char *)self->b.s.name, "abi-size");
	self->b.s.size = sizeof(self->b.s) - 1;
	EXPECT_ERRNO(EINVAL, ioctl(self->luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &self->b));
}

TEST_F(device, create_nonzero_tail)
{
	strcpy((char *)self->b.s.name, "abi-size");
	self->b.s.size = sizeof(self->b.s) + 8;
	self->b.bytes[sizeof(self->b.s) + 3] = 1;
	EXPECT_ERRNO(E2BIG, ioctl(self->luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &self->b));
}

/* A zero tail is accepted; bytes beyond the size given are never read or written. */
static int create_with_zero_tail(struct __test_metadata *_metadata, int luo, union big *b)
{
	strcpy((char *)b->s.name, "abi-size");
	b->s.size = sizeof(b->s) + 8;
	b->bytes[sizeof(b->s) + 8] = 0xaa;
	ASSERT_LE(0, ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, b));
	return b->s.fd;
}

TEST_F(device, create_zero_tail)
{
	strcpy((char *)self->b.s.name, "abi-size");
	self->b.s.size = sizeof(self->b.s) + 8;
	EXPECT_LE(0, ioctl(self->luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &self->b));
}

TEST_F(device, create_zero_tail_fd_out)
{
	EXPECT_LT(2, create_with_zero_tail(_metadata, self->luo, &self->b));
}

TEST_F(device, create_zero_tail_untouched_beyond)
{
	create_with_zero_tail(_metadata, self->luo, &self->b);
	EXPECT_EQ(0xaa, self->b.bytes[sizeof(self->b.s) + 8]);
}

TEST_F(device, create_size_4096_zero_tail)
{
	strcpy((char *)self->b.s.name, "abi-page");
	self->b.s.size = sizeof(self->b);
	EXPECT_LE(0, ioctl(self->luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &self->b));
}

/* The tail must be readable too. */
TEST_F(device, create_tail_unmapped)
{
	long pg = getpagesize();
	unsigned char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct liveupdate_ioctl_create_session *e;

	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, munmap(m + pg, pg));
	e = (void *)(m + pg - sizeof(*e));
	memset(e, 0, sizeof(*e));
	e->size = sizeof(*e) + 64;
	strcpy((char *)e->name, "abi-fault");
	EXPECT_ERRNO(EFAULT, ioctl(self->luo, LIVEUPDATE_IOCTL_CREATE_SESSION, e));
	munmap(m, pg);
}

TEST_F(device, create_empty_name)
{
	EXPECT_ERRNO(EINVAL, ioctl(self->luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &self->b));
}

TEST_F(device, create_unterminated_name)
{
	memset(self->b.s.name, 'x', sizeof(self->b.s.name));
	EXPECT_ERRNO(EINVAL, ioctl(self->luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &self->b));
}

TEST_F(device, create_first)
{
	EXPECT_LE(0, luo_abi_create(self->luo, "abi-dup"));
}

TEST_F(device, create_duplicate)
{
	ASSERT_LE(0, luo_abi_create(self->luo, "abi-dup"));
	EXPECT_ERRNO(EEXIST, luo_abi_create(self->luo, "abi-dup"));
}

TEST_F(device, create_again_after_close)
{
	int fd = luo_abi_create(self->luo, "abi-dup");

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, close(fd));
	EXPECT_LE(0, luo_abi_create(self->luo, "abi-dup"));
}

TEST_F(device, session_fd_cloexec)
{
	int fd = luo_abi_create(self->luo, "abi-dup");

	ASSERT_LE(0, fd);
	EXPECT_EQ(1, luo_abi_cloexec(fd));
}

/* systemd and others recognise session files by this link name. */
TEST_F(device, session_fd_anon_inode_name)
{
	int fd = luo_abi_create(self->luo, "abi-dup");
	char link[64], path[128];
	ssize_t n;

	ASSERT_LE(0, fd);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	ASSERT_LT(0, n);
	path[n] = 0;
	EXPECT_STREQ("anon_inode:[luo_session] abi-dup", path);
}

/* Retrieve looks only at incoming sessions. */
TEST_F(device, retrieve_unknown)
{
	struct liveupdate_ioctl_retrieve_session r = { .size = sizeof(r) };

	strcpy((char *)r.name, "abi-nosuch");
	EXPECT_ERRNO(ENOENT, ioctl(self->luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &r));
}

TEST_F(device, retrieve_outgoing_name)
{
	struct liveupdate_ioctl_retrieve_session r = { .size = sizeof(r) };

	ASSERT_LE(0, luo_abi_create(self->luo, "abi-outgoing"));
	strcpy((char *)r.name, "abi-outgoing");
	EXPECT_ERRNO(ENOENT, ioctl(self->luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &r));
}

TEST_F(device, retrieve_size_8)
{
	struct liveupdate_ioctl_retrieve_session r = { .size = 8 };

	ASSERT_LE(0, luo_abi_create(self->luo, "abi-outgoing"));
	strcpy((char *)r.name, "abi-outgoing");
	EXPECT_ERRNO(EINVAL, ioctl(self->luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &r));
}

/* An outgoing session, and a file of a kind no handler takes. */
FIXTURE(session) {
	int luo;
	int sfd;
	int null;
	unsigned char buf[256];
};

FIXTURE_SETUP(session)
{
	self->sfd = -1;
	self->null = -1;
	LUO_ABI_OPEN(self->luo);
	memset(self->buf, 0, sizeof(self->buf));
	self->sfd = luo_abi_create(self->luo, "abi-session");
	ASSERT_LE(0, self->sfd);
	self->null = open("/dev/null", O_RDWR);
	ASSERT_LE(0, self->null);
}

FIXTURE_TEARDOWN(session)
{
	if (self->null >= 0)
		close(self->null);
	if (self->sfd >= 0)
		close(self->sfd);
	if (self->luo >= 0)
		close(self->luo);
}

#define GET_NAME(self) ((struct liveupdate_session_get_name *)(self)->buf)
#define FINISH(self) ((struct liveupdate_session_finish *)(self)->buf)
#define PRESERVE(self) ((struct liveupdate_session_preserve_fd *)(self)->buf)
#define RETRIEVE_FD(self) ((struct liveupdate_session_retrieve_fd *)(self)->buf)

TEST_F(session, create)
{
	EXPECT_LT(2, self->sfd);
}

TEST_F(session, unknown_nr_0x44)
{
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, _IO(LIVEUPDATE_IOCTL_TYPE, 0x44), self->buf));
}

TEST_F(session, unknown_nr_0x3f)
{
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, _IO(LIVEUPDATE_IOCTL_TYPE, 0x3f), self->buf));
}

TEST_F(session, wrong_type_byte)
{
	EXPECT_ERRNO(ENOTTY, ioctl(self->sfd, _IO(0xBB, 0x43), self->buf));
}

TEST_F(session, get_name_null_ptr)
{
	EXPECT_ERRNO(EFAULT, ioctl(self->sfd, LIVEUPDATE_SESSION_GET_NAME, NULL));
}

TEST_F(session, get_name_size_71)
{
	GET_NAME(self)->size = sizeof(*GET_NAME(self)) - 1;
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_SESSION_GET_NAME, self->buf));
}

TEST_F(session, get_name_nonzero_tail)
{
	GET_NAME(self)->size = sizeof(*GET_NAME(self)) + 16;
	self->buf[sizeof(*GET_NAME(self)) + 15] = 7;
	EXPECT_ERRNO(E2BIG, ioctl(self->sfd, LIVEUPDATE_SESSION_GET_NAME, self->buf));
}

TEST_F(session, get_name_zero_tail)
{
	GET_NAME(self)->size = sizeof(*GET_NAME(self)) + 16;
	EXPECT_EQ(0, ioctl(self->sfd, LIVEUPDATE_SESSION_GET_NAME, self->buf));
}

TEST_F(session, get_name_value)
{
	GET_NAME(self)->size = sizeof(*GET_NAME(self));
	ASSERT_EQ(0, ioctl(self->sfd, LIVEUPDATE_SESSION_GET_NAME, self->buf));
	EXPECT_STREQ("abi-session", (char *)GET_NAME(self)->name);
}

TEST_F(session, get_name_reserved)
{
	GET_NAME(self)->size = sizeof(*GET_NAME(self));
	GET_NAME(self)->reserved = 1;
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_SESSION_GET_NAME, self->buf));
}

/* Incoming-only commands on an outgoing session. */
TEST_F(session, finish_on_outgoing)
{
	FINISH(self)->size = sizeof(*FINISH(self));
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_SESSION_FINISH, self->buf));
}

TEST_F(session, finish_on_outgoing_size_2)
{
	FINISH(self)->size = 2;
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_SESSION_FINISH, self->buf));
}

TEST_F(session, retrieve_fd_on_outgoing)
{
	RETRIEVE_FD(self)->size = sizeof(*RETRIEVE_FD(self));
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, self->buf));
}

/* PRESERVE_FD framing. */
TEST_F(session, preserve_size_8)
{
	PRESERVE(self)->size = sizeof(*PRESERVE(self)) - 8;
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_SESSION_PRESERVE_FD, self->buf));
}

TEST_F(session, preserve_nonzero_tail)
{
	PRESERVE(self)->size = sizeof(*PRESERVE(self)) + 8;
	self->buf[sizeof(*PRESERVE(self)) + 1] = 1;
	EXPECT_ERRNO(E2BIG, ioctl(self->sfd, LIVEUPDATE_SESSION_PRESERVE_FD, self->buf));
}

TEST_F(session, preserve_bad_fd)
{
	PRESERVE(self)->size = sizeof(*PRESERVE(self));
	PRESERVE(self)->fd = 1000;
	PRESERVE(self)->token = 1;
	EXPECT_ERRNO(EBADF, ioctl(self->sfd, LIVEUPDATE_SESSION_PRESERVE_FD, self->buf));
}

TEST_F(session, preserve_unsupported_file)
{
	PRESERVE(self)->size = sizeof(*PRESERVE(self));
	PRESERVE(self)->fd = self->null;
	PRESERVE(self)->token = 1;
	EXPECT_ERRNO(ENOENT, ioctl(self->sfd, LIVEUPDATE_SESSION_PRESERVE_FD, self->buf));
}

TEST_F(session, preserve_zero_tail)
{
	PRESERVE(self)->size = sizeof(*PRESERVE(self)) + 8;
	PRESERVE(self)->fd = self->null;
	PRESERVE(self)->token = 1;
	EXPECT_ERRNO(ENOENT, ioctl(self->sfd, LIVEUPDATE_SESSION_PRESERVE_FD, self->buf));
}

TEST_F(session, preserve_session_fd)
{
	PRESERVE(self)->size = sizeof(*PRESERVE(self));
	PRESERVE(self)->fd = self->sfd;
	PRESERVE(self)->token = 1;
	EXPECT_ERRNO(ENOENT, ioctl(self->sfd, LIVEUPDATE_SESSION_PRESERVE_FD, self->buf));
}

TEST_F(session, preserve_bad_ptr)
{
	EXPECT_ERRNO(EFAULT, ioctl(self->sfd, LIVEUPDATE_SESSION_PRESERVE_FD, (void *)8));
}

/* Device commands on the wrong kind of file. */
TEST_F(session, create_session_on_session_fd)
{
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_IOCTL_CREATE_SESSION, self->buf));
}

TEST_F(session, retrieve_session_on_session_fd)
{
	EXPECT_ERRNO(EINVAL, ioctl(self->sfd, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, self->buf));
}

TEST_F(session, create_session_on_dev_null)
{
	EXPECT_ERRNO(ENOTTY, ioctl(self->null, LIVEUPDATE_IOCTL_CREATE_SESSION, self->buf));
}

TEST_F(session, retrieve_session_on_dev_null)
{
	EXPECT_ERRNO(ENOTTY, ioctl(self->null, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, self->buf));
}

/*
 * Session commands on the wrong kind of file: on the device their numbers
 * are out of its range, and on another file they are not LUO's.
 */
FIXTURE(wrong_file) {
	int luo;
	int null;
	struct liveupdate_session_get_name arg;
};

FIXTURE_VARIANT(wrong_file) {
	unsigned long cmd;
};

FIXTURE_VARIANT_ADD(wrong_file, preserve_fd) {
	.cmd = LIVEUPDATE_SESSION_PRESERVE_FD,
};

FIXTURE_VARIANT_ADD(wrong_file, retrieve_fd) {
	.cmd = LIVEUPDATE_SESSION_RETRIEVE_FD,
};

FIXTURE_VARIANT_ADD(wrong_file, finish) {
	.cmd = LIVEUPDATE_SESSION_FINISH,
};

FIXTURE_VARIANT_ADD(wrong_file, get_name) {
	.cmd = LIVEUPDATE_SESSION_GET_NAME,
};

FIXTURE_SETUP(wrong_file)
{
	self->null = -1;
	LUO_ABI_OPEN(self->luo);
	self->null = open("/dev/null", O_RDWR);
	ASSERT_LE(0, self->null);
	memset(&self->arg, 0, sizeof(self->arg));
	self->arg.size = sizeof(self->arg);
}

FIXTURE_TEARDOWN(wrong_file)
{
	if (self->null >= 0)
		close(self->null);
	if (self->luo >= 0)
		close(self->luo);
}

TEST_F(wrong_file, on_device_fd)
{
	EXPECT_ERRNO(EINVAL, ioctl(self->luo, variant->cmd, &self->arg));
}

TEST_F(wrong_file, on_dev_null)
{
	EXPECT_ERRNO(ENOTTY, ioctl(self->null, variant->cmd, &self->arg));
}

TEST_HARNESS_MAIN
