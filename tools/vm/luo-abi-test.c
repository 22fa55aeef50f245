// SPDX-License-Identifier: GPL-2.0
/*
 * luo-abi-test: the errno contract of /dev/liveupdate and session files.
 *
 * Every ioctl is called with a too-small size, a larger size with a
 * non-zero tail, a larger size with a zero tail, a bad pointer, the wrong
 * kind of fd and unknown command numbers, and each call must fail (or
 * succeed) exactly as Linux 7.3's C implementation does. The same binary
 * runs against the C and the Rust core; output is KTAP.
 *
 * usage: luo-abi-test              device and outgoing session tests
 *        luo-abi-test prepare      leave a session for the next kernel
 *        luo-abi-test incoming     all of the above plus incoming session tests
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/liveupdate.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hold.h"

#define INCOMING_NAME "abi-incoming"

static int tests, failed;

/* Record one result: expect == 0 means success expected. */
static void check(const char *name, long ret, int expect)
{
	int err = ret < 0 ? errno : 0;
	int ok = expect ? (ret < 0 && err == expect) : ret >= 0;

	tests++;
	if (!ok)
		failed++;
	printf("%sok %d %s", ok ? "" : "not ", tests, name);
	if (!ok)
		printf(" # expected %s, got %s", expect ? strerror(expect) : "success",
		       ret < 0 ? strerror(err) : "success");
	printf("\n");
	fflush(stdout);
}

static void check_true(const char *name, int cond)
{
	errno = 0;
	check(name, cond ? 0 : -1, 0);
}

/* A buffer bigger than any LUO structure, for sizes beyond the struct. */
struct big {
	union {
		struct liveupdate_ioctl_create_session s;
		unsigned char bytes[4096];
	};
};

static int create(int luo, const char *name)
{
	struct liveupdate_ioctl_create_session a = { .size = sizeof(a) };

	snprintf((char *)a.name, sizeof(a.name), "%s", name);
	if (ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &a) < 0)
		return -1;
	return a.fd;
}

static void device_tests(int luo)
{
	struct big b;
	struct liveupdate_ioctl_create_session *s = &b.s;
	struct liveupdate_ioctl_retrieve_session r = { .size = sizeof(r) };
	int fd;

	/* Command numbers outside the device range are EINVAL, even with a bad pointer. */
	check("device_unknown_nr_2", ioctl(luo, _IO(LIVEUPDATE_IOCTL_TYPE, 0x02), &b), EINVAL);
	check("device_unknown_nr_0xff", ioctl(luo, _IO(LIVEUPDATE_IOCTL_TYPE, 0xff), NULL), EINVAL);
	check("device_session_cmd_on_device", ioctl(luo, LIVEUPDATE_SESSION_GET_NAME, &b), EINVAL);
	/* A known number with another type byte or size bits is not this ioctl. */
	memset(&b, 0, sizeof(b));
	s->size = sizeof(*s);
	check("device_wrong_type_byte", ioctl(luo, _IO(0xBB, 0x00), &b), ENOTTY);
	check("device_size_bits_in_cmd", ioctl(luo, _IOWR(LIVEUPDATE_IOCTL_TYPE, 0x00, *s), &b), ENOTTY);
	/* The size prefix is read first. */
	check("device_create_null_ptr", ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, NULL), EFAULT);
	check("device_create_bad_ptr", ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, (void *)8), EFAULT);
	check("device_retrieve_bad_ptr", ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, (void *)8), EFAULT);
	/* Sizes. */
	memset(&b, 0, sizeof(b));
	strcpy((char *)s->name, "abi-size");
	s->size = 4;
	check("create_size_4", ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &b), EINVAL);
	s->size = sizeof(*s) - 1;
	check("create_size_71", ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &b), EINVAL);
	s->size = sizeof(*s) + 8;
	b.bytes[sizeof(*s) + 3] = 1;
	check("create_nonzero_tail", ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &b), E2BIG);
	b.bytes[sizeof(*s) + 3] = 0;
	b.bytes[sizeof(*s) + 8] = 0xaa; /* beyond size: never read */
	fd = ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &b);
	check("create_zero_tail", fd, 0);
	if (fd >= 0) {
		check_true("create_zero_tail_fd_out", s->fd > 2);
		check_true("create_zero_tail_untouched_beyond", b.bytes[sizeof(*s) + 8] == 0xaa);
		close(s->fd);
	}
	memset(&b, 0, sizeof(b));
	strcpy((char *)s->name, "abi-page");
	s->size = sizeof(b);
	fd = ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &b);
	check("create_size_4096_zero_tail", fd, 0);
	if (fd >= 0)
		close(s->fd);
	/* The tail must be readable too. */
	{
		long pg = sysconf(_SC_PAGESIZE);
		unsigned char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct liveupdate_ioctl_create_session *e;

		munmap(m + pg, pg);
		e = (void *)(m + pg - sizeof(*e));
		memset(e, 0, sizeof(*e));
		e->size = sizeof(*e) + 64;
		strcpy((char *)e->name, "abi-fault");
		check("create_tail_unmapped", ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, e), EFAULT);
		munmap(m, pg);
	}
	/* Names. */
	memset(&b, 0, sizeof(b));
	s->size = sizeof(*s);
	check("create_empty_name", ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &b), EINVAL);
	memset(s->name, 'x', sizeof(s->name));
	check("create_unterminated_name", ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &b), EINVAL);
	fd = create(luo, "abi-dup");
	check("create_first", fd, 0);
	check("create_duplicate", create(luo, "abi-dup"), EEXIST);
	if (fd >= 0) {
		int fl = fcntl(fd, F_GETFD);
		char link[64], path[128];
		ssize_t n;

		check_true("session_fd_cloexec", fl >= 0 && (fl & FD_CLOEXEC));
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, path, sizeof(path) - 1);
		path[n > 0 ? n : 0] = 0;
		check_true("session_fd_anon_inode_name", !strcmp(path, "anon_inode:[luo_session] abi-dup"));
		close(fd);
		fd = create(luo, "abi-dup");
		check("create_again_after_close", fd, 0);
		if (fd >= 0)
			close(fd);
	}
	/* Retrieve looks only at incoming sessions. */
	strcpy((char *)r.name, "abi-nosuch");
	check("retrieve_unknown", ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &r), ENOENT);
	fd = create(luo, "abi-outgoing");
	strcpy((char *)r.name, "abi-outgoing");
	check("retrieve_outgoing_name", ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &r), ENOENT);
	r.size = 8;
	check("retrieve_size_8", ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &r), EINVAL);
	if (fd >= 0)
		close(fd);
}

static void session_tests(int luo)
{
	unsigned char buf[256];
	struct liveupdate_session_get_name *g = (void *)buf;
	struct liveupdate_session_finish *f = (void *)buf;
	struct liveupdate_session_preserve_fd *p = (void *)buf;
	struct liveupdate_session_retrieve_fd *rf = (void *)buf;
	int sfd = create(luo, "abi-session");
	int null;

	check("session_create", sfd, 0);
	if (sfd < 0)
		return;
	check("session_unknown_nr_0x44", ioctl(sfd, _IO(LIVEUPDATE_IOCTL_TYPE, 0x44), buf), EINVAL);
	check("session_unknown_nr_0x3f", ioctl(sfd, _IO(LIVEUPDATE_IOCTL_TYPE, 0x3f), buf), EINVAL);
	check("session_wrong_type_byte", ioctl(sfd, _IO(0xBB, 0x43), buf), ENOTTY);
	check("session_get_name_null_ptr", ioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, NULL), EFAULT);
	/* GET_NAME works on any session. */
	memset(buf, 0, sizeof(buf));
	g->size = sizeof(*g) - 1;
	check("get_name_size_71", ioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, buf), EINVAL);
	g->size = sizeof(*g) + 16;
	buf[sizeof(*g) + 15] = 7;
	check("get_name_nonzero_tail", ioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, buf), E2BIG);
	buf[sizeof(*g) + 15] = 0;
	check("get_name_zero_tail", ioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, buf), 0);
	check_true("get_name_value", !strcmp((char *)g->name, "abi-session"));
	memset(buf, 0, sizeof(buf));
	g->size = sizeof(*g);
	g->reserved = 1;
	check("get_name_reserved", ioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, buf), EINVAL);
	/* Incoming-only commands on an outgoing session. */
	memset(buf, 0, sizeof(buf));
	f->size = sizeof(*f);
	check("finish_on_outgoing", ioctl(sfd, LIVEUPDATE_SESSION_FINISH, buf), EINVAL);
	f->size = 2;
	check("finish_on_outgoing_size_2", ioctl(sfd, LIVEUPDATE_SESSION_FINISH, buf), EINVAL);
	memset(buf, 0, sizeof(buf));
	rf->size = sizeof(*rf);
	check("retrieve_fd_on_outgoing", ioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, buf), EINVAL);
	/* PRESERVE_FD framing. */
	memset(buf, 0, sizeof(buf));
	p->size = sizeof(*p) - 8;
	check("preserve_size_8", ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, buf), EINVAL);
	p->size = sizeof(*p) + 8;
	buf[sizeof(*p) + 1] = 1;
	check("preserve_nonzero_tail", ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, buf), E2BIG);
	memset(buf, 0, sizeof(buf));
	p->size = sizeof(*p);
	p->fd = 1000;
	p->token = 1;
	check("preserve_bad_fd", ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, buf), EBADF);
	null = open("/dev/null", O_RDWR);
	p->fd = null;
	check("preserve_unsupported_file", ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, buf), ENOENT);
	p->size = sizeof(*p) + 8;
	check("preserve_zero_tail", ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, buf), ENOENT);
	p->size = sizeof(*p);
	p->fd = sfd;
	check("preserve_session_fd", ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, buf), ENOENT);
	check("preserve_bad_ptr", ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, (void *)8), EFAULT);
	/* Every command on the wrong kind of file: numbers out of range, or not LUO's. */
	memset(buf, 0, sizeof(buf));
	g->size = sizeof(*g);
	{
		static const struct { const char *name; unsigned long cmd; } cmds[] = {
			{ "preserve_fd", LIVEUPDATE_SESSION_PRESERVE_FD },
			{ "retrieve_fd", LIVEUPDATE_SESSION_RETRIEVE_FD },
			{ "finish", LIVEUPDATE_SESSION_FINISH },
			{ "get_name", LIVEUPDATE_SESSION_GET_NAME },
		};
		char name[64];

		for (unsigned int i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
			snprintf(name, sizeof(name), "%s_on_device_fd", cmds[i].name);
			check(name, ioctl(luo, cmds[i].cmd, buf), EINVAL);
			snprintf(name, sizeof(name), "%s_on_dev_null", cmds[i].name);
			check(name, ioctl(null, cmds[i].cmd, buf), ENOTTY);
		}
	}
	check("create_session_on_session_fd", ioctl(sfd, LIVEUPDATE_IOCTL_CREATE_SESSION, buf), EINVAL);
	check("retrieve_session_on_session_fd", ioctl(sfd, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, buf), EINVAL);
	check("create_session_on_dev_null", ioctl(null, LIVEUPDATE_IOCTL_CREATE_SESSION, buf), ENOTTY);
	check("retrieve_session_on_dev_null", ioctl(null, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, buf), ENOTTY);
	close(null);
	close(sfd);
}

/* Framing of the commands that only incoming (retrieved) sessions accept. */
static void incoming_tests(int luo)
{
	unsigned char buf[256];
	struct liveupdate_ioctl_retrieve_session *r = (void *)buf;
	struct liveupdate_session_finish *f = (void *)buf;
	struct liveupdate_session_retrieve_fd *rf = (void *)buf;
	struct liveupdate_session_preserve_fd *p = (void *)buf;
	struct liveupdate_session_get_name *g = (void *)buf;
	int sfd, null;

	memset(buf, 0, sizeof(buf));
	strcpy((char *)r->name, INCOMING_NAME);
	r->size = sizeof(*r) + 8;
	buf[sizeof(*r) + 2] = 1;
	check("retrieve_session_nonzero_tail", ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, buf), E2BIG);
	buf[sizeof(*r) + 2] = 0;
	sfd = ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, buf);
	check("retrieve_session_zero_tail", sfd, 0);
	if (sfd < 0)
		return;
	sfd = r->fd;
	check("retrieve_session_twice", ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, buf), EINVAL);
	check_true("incoming_session_fd_cloexec", fcntl(sfd, F_GETFD) & FD_CLOEXEC);

	memset(buf, 0, sizeof(buf));
	rf->size = 8;
	check("retrieve_fd_size_8", ioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, buf), EINVAL);
	rf->size = sizeof(*rf) + 8;
	buf[sizeof(*rf) + 7] = 9;
	check("retrieve_fd_nonzero_tail", ioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, buf), E2BIG);
	buf[sizeof(*rf) + 7] = 0;
	rf->token = 0x5151;
	check("retrieve_fd_zero_tail_unknown_token", ioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, buf), ENOENT);
	check("retrieve_fd_bad_ptr", ioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, (void *)8), EFAULT);

	memset(buf, 0, sizeof(buf));
	p->size = sizeof(*p);
	null = open("/dev/null", O_RDWR);
	p->fd = null;
	check("preserve_on_incoming", ioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, buf), EINVAL);
	close(null);

	memset(buf, 0, sizeof(buf));
	g->size = sizeof(*g);
	check("get_name_on_incoming", ioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, buf), 0);
	check_true("get_name_on_incoming_value", !strcmp((char *)g->name, INCOMING_NAME));

	memset(buf, 0, sizeof(buf));
	f->size = 4;
	check("finish_size_4", ioctl(sfd, LIVEUPDATE_SESSION_FINISH, buf), EINVAL);
	f->size = sizeof(*f) + 8;
	buf[sizeof(*f) + 1] = 1;
	check("finish_nonzero_tail", ioctl(sfd, LIVEUPDATE_SESSION_FINISH, buf), E2BIG);
	buf[sizeof(*f) + 1] = 0;
	f->reserved = 1;
	check("finish_reserved", ioctl(sfd, LIVEUPDATE_SESSION_FINISH, buf), EINVAL);
	f->reserved = 0;
	check("finish_bad_ptr", ioctl(sfd, LIVEUPDATE_SESSION_FINISH, (void *)8), EFAULT);
	check("finish_zero_tail", ioctl(sfd, LIVEUPDATE_SESSION_FINISH, buf), 0);
	check("finish_again", ioctl(sfd, LIVEUPDATE_SESSION_FINISH, buf), 0);
	close(sfd);
	strcpy((char *)r->name, INCOMING_NAME);
	r->size = sizeof(*r);
	check("retrieve_session_after_close", ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, buf), ENOENT);
}

int main(int argc, char **argv)
{
	int luo = open("/dev/liveupdate", O_RDWR);

	printf("TAP version 13\n");
	if (luo < 0) {
		printf("1..0 # SKIP cannot open /dev/liveupdate: %s\n", strerror(errno));
		return 1;
	}
	if (argc > 1 && !strcmp(argv[1], "prepare")) {
		/* Stage 1 of the incoming tests: leave a session for the next kernel. */
		if (create(luo, INCOMING_NAME) < 0) {
			printf("1..0 # cannot create %s: %s\n", INCOMING_NAME, strerror(errno));
			return 1;
		}
		printf("1..0 # prepared session %s\n", INCOMING_NAME);
		hold_until_kexec();
		return 0;
	}
	check("device_exclusive_open", open("/dev/liveupdate", O_RDWR), EBUSY);
	device_tests(luo);
	session_tests(luo);
	if (argc > 1 && !strcmp(argv[1], "incoming"))
		incoming_tests(luo);
	close(luo);
	luo = open("/dev/liveupdate", O_RDWR);
	check("device_reopen_after_close", luo, 0);
	printf("1..%d\n", tests);
	printf("# luo-abi-test: %d of %d failed\n", failed, tests);
	return failed ? 1 : 0;
}
