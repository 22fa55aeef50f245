// SPDX-License-Identifier: GPL-2.0
/*
 * Many threads in several processes issuing every live update
 * ioctl with random arguments, reproducible by seed, then a kexec that must
 * carry exactly what the survivors preserved.
 *
 * Every call's outcome is predicted from what the program knows (the
 * dispatcher's order of checks, the session's tokens, which memfds are
 * preserved) and an outcome other than the predicted one is a failure. Where
 * only the kernel can decide (two callers racing for one name or one file),
 * the rule is checked instead: never two live sessions with one name,
 * exactly one of two racing PRESERVE_FDs of a file wins and the other gets
 * EBUSY.
 *
 * Each stage is a test of its own, chosen with the harness's -t after "--";
 * the seed is given with -r (luo_stress -r 20261202 -- -t out):
 *
 *   out       stage 1: WORKERS processes of THREADS threads each share one
 *             open /dev/liveupdate. Each thread makes ROUNDS random calls:
 *             CREATE_SESSION (names from a pool, so creators collide; also
 *             empty and unterminated names), closing sessions,
 *             PRESERVE_FD (memfds, preserved ones, bad fds, files no
 *             handler takes, session fds; tokens from a small set, so they
 *             repeat), GET_NAME, RETRIEVE_SESSION, RETRIEVE_FD and FINISH
 *             on outgoing sessions, unknown ioctl numbers; each with a
 *             random size (short, long with a zero or a non-zero tail),
 *             pointer (NULL, straddling an unmapped page, read-only) and
 *             reserved field. Then the races: one memfd preserved into two
 *             sessions at once by two threads and by two processes; a
 *             session closed (its fd replaced with dup2) while another
 *             thread preserves into it, whose files must be free again
 *             afterwards. What survives is written to a manifest memfd,
 *             preserved in session "stress-manifest"; the workers hold
 *             their sessions until the kexec.
 *   in        stage 2: every name the stress could have used is looked up:
 *             survivors are retrieved, every other name is ENOENT; in each
 *             survivor every token the stress could have used is
 *             retrieved and checked byte for byte, or is ENOENT. Racing
 *             RETRIEVE_SESSIONs of one name (one wins, the other gets
 *             EINVAL) and RETRIEVE_FDs of one token (both get the same
 *             file) along the way; FINISH of every session.
 *
 * Prints "luo_stress: FAIL ..." for every wrong outcome and fails the test.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/liveupdate.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "luo_abi.h"

#define WORKERS 2
#define THREADS 3
#define ROUNDS 4000
/* Sessions a worker may have open at once, and the names all workers share. */
#define SLOTS 12
#define NAMES 40
#define MEMFDS 24
/* Tokens of the random calls: 0..SMALL_TOKENS-1 and UINT64_MAX. */
#define SMALL_TOKENS 48
/* The races' tokens, by kind, and how many of each. */
#define PAIR_TOKEN 1000
#define PAIR_ROUNDS 60
#define CLOSE_TOKEN 2000
#define CLOSE_ROUNDS 16
#define CLOSE_FILES 6
#define SHARED_TOKEN 3000
#define SHARED_MEMFDS 12
#define MANIFEST_NAME "stress-manifest"
#define MAX_RECORDS 4096

/* Outcomes by errno (0: success), of this process; the workers' are summed in `struct shared`. */
#define ERRNOS 140
static _Atomic unsigned long failures, calls, outcomes[ERRNOS];

static void fail(const char *fmt, ...)
{
	va_list ap;
	char buf[512];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("luo_stress: FAIL %s\n", buf);
	fflush(stdout);
	atomic_fetch_add(&failures, 1);
}

static void die(const char *what)
{
	printf("luo_stress: FAIL %s: %s\n", what, strerror(errno));
	exit(1);
}

/* xorshift64*: the random source of one thread, and the contents of memfds. */
static uint64_t next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static unsigned int below(uint64_t *s, unsigned int n)
{
	return next(s) % n;
}

static uint64_t seed_of(uint64_t a, uint64_t b)
{
	uint64_t s = a * 0x9e3779b97f4a7c15ULL + b + 1;

	next(&s);
	return s ? s : 1;
}

/* What a memfd holds: `size` bytes of the stream of `seed`, or holes every other page. */
struct content {
	uint64_t seed;
	uint64_t size;
	uint32_t sparse;
};

static uint8_t byte_at(const struct content *c, uint64_t off)
{
	uint64_t s;

	if (c->sparse && (off / 4096) % 2)
		return 0;
	s = seed_of(c->seed, off / 8);
	return (uint8_t)(s >> (8 * (off % 8)));
}

static int make_memfd(const struct content *c)
{
	int fd = memfd_create("stress", 0);
	uint8_t *buf;
	uint64_t off;

	if (fd < 0 || ftruncate(fd, c->size))
		die("memfd_create/ftruncate");
	buf = malloc(4096);
	if (!buf)
		die("malloc");
	for (off = 0; off < c->size; off += 4096) {
		uint64_t n = c->size - off < 4096 ? c->size - off : 4096, i;

		if (c->sparse && (off / 4096) % 2)
			continue;
		for (i = 0; i < n; i++)
			buf[i] = byte_at(c, off + i);
		if (pwrite(fd, buf, n, off) != (ssize_t)n)
			die("pwrite memfd");
	}
	free(buf);
	return fd;
}

/* Empty if `fd` holds exactly `c`; else what differs. */
static const char *differs(int fd, const struct content *c)
{
	static __thread char why[128];
	uint8_t buf[4096];
	struct stat st;
	uint64_t off;

	if (fstat(fd, &st))
		return "fstat failed";
	if ((uint64_t)st.st_size != c->size) {
		snprintf(why, sizeof(why), "size %lld, expected %llu", (long long)st.st_size,
			 (unsigned long long)c->size);
		return why;
	}
	for (off = 0; off < c->size; off += sizeof(buf)) {
		uint64_t n = c->size - off < sizeof(buf) ? c->size - off : sizeof(buf), i;

		if (pread(fd, buf, n, off) != (ssize_t)n)
			return "short read";
		for (i = 0; i < n; i++)
			if (buf[i] != byte_at(c, off + i)) {
				snprintf(why, sizeof(why), "byte %llu differs",
					 (unsigned long long)(off + i));
				return why;
			}
	}
	return "";
}

/* ---- How an argument is handed to the kernel, and what that alone decides ---- */

enum arg_mode {
	ARG_OK,		/* size = sizeof, ordinary memory */
	ARG_LONG,	/* size > sizeof, zero tail: as ARG_OK */
	ARG_TAIL,	/* size > sizeof, a non-zero byte in the tail: E2BIG */
	ARG_SHORT,	/* size < sizeof: EINVAL */
	ARG_NULL,	/* NULL: EFAULT at the size */
	ARG_STRADDLE,	/* the structure runs into an unmapped page: EFAULT */
	ARG_STRADDLE_SIZE, /* the size field itself runs into it: EFAULT */
	ARG_READONLY,	/* read-only page: the call is made, the reply faults: EFAULT */
	ARG_MODES
};

/* A page followed by an unmapped one, and a read-only page; per thread. */
struct arena {
	uint8_t *edge;		/* the mapped page before the hole */
	uint8_t *readonly;
	uint8_t big[8192];
};

static void arena_init(struct arena *a)
{
	uint8_t *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);

	if (p == MAP_FAILED || munmap(p + 4096, 4096))
		die("mmap arena");
	a->edge = p;
	a->readonly = p + 2 * 4096;
}

static enum arg_mode pick_mode(uint64_t *rs, int readonly_ok)
{
	/* Mostly well-formed calls, so that the stress gets somewhere. */
	unsigned int r = below(rs, 100);

	if (r < 70)
		return r < 60 ? ARG_OK : ARG_LONG;
	r = ARG_TAIL + below(rs, ARG_MODES - ARG_TAIL);
	if (r == ARG_READONLY && !readonly_ok)
		return ARG_OK;
	return r;
}

/*
 * Lays out `len` bytes of `in` for `mode`; returns the pointer to pass. For
 * ARG_READONLY the page is made writable, filled, and protected again.
 */
static void *place(struct arena *a, enum arg_mode mode, const void *in, uint32_t len,
		   uint64_t *rs)
{
	uint32_t size = len, extra;
	uint8_t *p;

	switch (mode) {
	case ARG_NULL:
		return NULL;
	case ARG_STRADDLE:
		p = a->edge + 4096 - 4 - below(rs, len - 4);
		memcpy(p, in, 4096 - (p - a->edge));
		return p;
	case ARG_STRADDLE_SIZE:
		return a->edge + 4096 - 1 - below(rs, 3);
	case ARG_READONLY:
		if (mprotect(a->readonly, 4096, PROT_READ | PROT_WRITE))
			die("mprotect");
		memcpy(a->readonly, in, len);
		if (mprotect(a->readonly, 4096, PROT_READ))
			die("mprotect");
		return a->readonly;
	case ARG_SHORT:
		size = below(rs, len);
		break;
	case ARG_LONG:
	case ARG_TAIL:
		extra = 1 + below(rs, sizeof(a->big) - len - 1);
		size = len + extra;
		memset(a->big + len, 0, extra);
		if (mode == ARG_TAIL)
			a->big[len + below(rs, extra)] = 1 + below(rs, 255);
		break;
	default:
		break;
	}
	memcpy(a->big, in, len);
	memcpy(a->big, &size, sizeof(size));
	return a->big;
}

/*
 * What the dispatcher itself answers, in its order (SPEC 2.2): the size is
 * read, the session's direction is checked (`gate_fails`), the size is
 * compared and the structure copied. 0 if the call reaches the command.
 */
static int dispatch_errno(enum arg_mode mode, int gate_fails)
{
	if (mode == ARG_NULL || mode == ARG_STRADDLE_SIZE)
		return EFAULT;
	if (gate_fails)
		return EINVAL;
	switch (mode) {
	case ARG_SHORT:
		return EINVAL;
	case ARG_TAIL:
		return E2BIG;
	case ARG_STRADDLE:
		return EFAULT;
	default:
		return 0;
	}
}

/* ioctl(); 0 or the errno. */
static int call(int fd, unsigned long cmd, void *arg)
{
	int err = ioctl(fd, cmd, arg) ? errno : 0;

	atomic_fetch_add(&calls, 1);
	atomic_fetch_add(&outcomes[err < ERRNOS ? err : 0], 1);
	return err;
}

/*
 * Prints stage `stage`'s outcomes by errno and its `summary`, then that it
 * is done if every outcome was the predicted one; returns the exit status.
 */
static int conclude(int stage, const char *summary)
{
	printf("luo_stress: stage %d outcomes:", stage);
	for (int e = 0; e < ERRNOS; e++)
		if (outcomes[e])
			printf(" %s %lu", e ? strerrorname_np(e) : "success", outcomes[e]);
	printf("\nluo_stress: stage %d: %s; %lu calls, %lu wrong outcomes\n", stage, summary,
	       calls, failures);
	if (failures)
		return 1;
	printf("luo_stress: stage %d done\n", stage);
	fflush(stdout);
	return 0;
}

static void expect(const char *what, int got, int want)
{
	if (got != want)
		fail("%s: got %s, expected %s", what, got ? strerrorname_np(got) : "success",
		     want ? strerrorname_np(want) : "success");
}

/* ---- Stage 1 state: a worker's sessions and memfds ---- */

struct file_rec {
	uint64_t token;
	struct content c;
};

struct slot {
	pthread_mutex_t lock;
	int fd;			/* -1 when closed */
	char name[64];
	int nfiles;
	struct file_rec files[SMALL_TOKENS + 1 + PAIR_ROUNDS + CLOSE_ROUNDS * CLOSE_FILES +
			      SHARED_MEMFDS];
};

struct memfd {
	pthread_mutex_t lock;
	int fd;
	int slot;		/* preserved in this slot, or -1 */
	struct content c;
};

/* Shared by the workers and the parent (MAP_SHARED, made before the fork). */
struct shared {
	/* Which worker + 1 holds each pool name live; 0 if none. */
	_Atomic int owner[NAMES];
	pthread_barrier_t race;
	/* Results of the cross-process race, per shared memfd and worker. */
	int shared_result[SHARED_MEMFDS][WORKERS];
	int nrecords[WORKERS];
	struct record {
		char name[64];
		uint64_t token;	/* UINT64_MAX with kind 0: a session without files */
		uint32_t kind;	/* 0 session, 1 file */
		struct content c;
	} records[WORKERS][MAX_RECORDS / WORKERS];
	_Atomic unsigned long failures, calls, outcomes[ERRNOS];
};

static struct shared *sh;
static int luo, worker, devnull, pipe_fd;
static struct slot slots[SLOTS];
static struct memfd memfds[MEMFDS];
static int shared_memfd[SHARED_MEMFDS];

static struct content shared_content(int k, uint64_t seed)
{
	return (struct content){ .seed = seed_of(seed, 7000 + k), .size = 4096 * (1 + k % 3) };
}

static const char *name_of(unsigned int k, char buf[64])
{
	snprintf(buf, 64, "stress-%02u", k);
	return buf;
}

static uint64_t random_token(uint64_t *rs)
{
	return below(rs, SMALL_TOKENS + 1) == SMALL_TOKENS ? UINT64_MAX : below(rs, SMALL_TOKENS);
}

static struct content random_content(uint64_t *rs)
{
	static const uint64_t sizes[] = { 1, 4096, 3 * 4096 + 17, 16384, 65536, 200000 };

	return (struct content){ .seed = next(rs) | 1, .size = sizes[below(rs, 6)],
				 .sparse = below(rs, 3) == 0 };
}

static int slot_has_token(struct slot *s, uint64_t token)
{
	for (int i = 0; i < s->nfiles; i++)
		if (s->files[i].token == token)
			return 1;
	return 0;
}

static void add_file(struct slot *s, uint64_t token, const struct content *c)
{
	s->files[s->nfiles].token = token;
	s->files[s->nfiles].c = *c;
	s->nfiles++;
}

static void op_create(struct arena *a, uint64_t *rs)
{
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg) };
	int idx = below(rs, SLOTS), name_kind = below(rs, 20), err, want;
	enum arg_mode mode = pick_mode(rs, 1);
	struct slot *s = &slots[idx];
	unsigned int k = below(rs, NAMES);
	void *p;

	pthread_mutex_lock(&s->lock);
	if (s->fd >= 0) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	if (name_kind == 0)
		memset(arg.name, 0, sizeof(arg.name));		/* empty */
	else if (name_kind == 1)
		memset(arg.name, 'x', sizeof(arg.name));	/* unterminated */
	else
		name_of(k, (char *)arg.name);
	p = place(a, mode, &arg, sizeof(arg), rs);
	err = call(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, p);
	want = dispatch_errno(mode, 0);
	if (!want && name_kind < 2)
		want = EINVAL;
	if (!want && err == EEXIST)
		want = EEXIST;	/* the name is live, here or in the other worker */
	if (!want && mode == ARG_READONLY)
		want = EFAULT;
	expect("CREATE_SESSION", err, want);
	if (!err) {
		int expected = 0;

		s->fd = ((struct liveupdate_ioctl_create_session *)p)->fd;
		strcpy(s->name, (char *)arg.name);
		s->nfiles = 0;
		if (!atomic_compare_exchange_strong(&sh->owner[k], &expected, worker + 1))
			fail("CREATE_SESSION made a second live session named %s (worker %d holds it)",
			     s->name, expected - 1);
	}
	pthread_mutex_unlock(&s->lock);
}

/*
 * Forgets and closes the session in slot `s` (locked): its files are free
 * again. Every memfd stays locked across the close, so that no PRESERVE_FD
 * is predicted while the kernel still holds a file we call free.
 */
static void close_slot(struct slot *s)
{
	unsigned int k;

	for (int m = 0; m < MEMFDS; m++)
		pthread_mutex_lock(&memfds[m].lock);
	/* Free the name before the kernel does: a racing creator may then see EEXIST only. */
	if (sscanf(s->name, "stress-%u", &k) == 1 && k < NAMES)
		atomic_store(&sh->owner[k], 0);
	close(s->fd);
	for (int m = 0; m < MEMFDS; m++) {
		if (memfds[m].slot == s - slots)
			memfds[m].slot = -1;
		pthread_mutex_unlock(&memfds[m].lock);
	}
	s->fd = -1;
	s->nfiles = 0;
}

static void op_close(uint64_t *rs)
{
	struct slot *s = &slots[below(rs, SLOTS)];

	pthread_mutex_lock(&s->lock);
	if (s->fd >= 0)
		close_slot(s);
	pthread_mutex_unlock(&s->lock);
}

static void op_preserve(struct arena *a, uint64_t *rs)
{
	struct liveupdate_session_preserve_fd arg = { .size = sizeof(arg) };
	struct slot *s = &slots[below(rs, SLOTS)];
	enum arg_mode mode = pick_mode(rs, 1);
	struct memfd *m = NULL;
	int kind = below(rs, 10), err, want;
	void *p;

	pthread_mutex_lock(&s->lock);
	if (s->fd < 0) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	arg.token = random_token(rs);
	switch (kind) {
	case 0:
		arg.fd = below(rs, 2) ? -1 : 100000;	/* EBADF */
		break;
	case 1:
		arg.fd = below(rs, 2) ? devnull : pipe_fd;	/* no handler */
		break;
	case 2:
		arg.fd = below(rs, 2) ? s->fd : luo;		/* no handler either */
		break;
	default:
		m = &memfds[below(rs, MEMFDS)];
		pthread_mutex_lock(&m->lock);
		arg.fd = m->fd;
	}
	p = place(a, mode, &arg, sizeof(arg), rs);
	err = call(s->fd, LIVEUPDATE_SESSION_PRESERVE_FD, p);
	want = dispatch_errno(mode, 0);
	if (!want && slot_has_token(s, arg.token))
		want = EEXIST;
	else if (!want && kind == 0)
		want = EBADF;
	else if (!want && kind < 3)
		want = ENOENT;
	else if (!want && m->slot >= 0)
		want = EBUSY;
	else if (!want && mode == ARG_READONLY)
		want = EFAULT;	/* the reply: the file stays preserved (SPEC 2.4) */
	expect("PRESERVE_FD", err, want);
	if (m && (!err || (err == EFAULT && mode == ARG_READONLY))) {
		add_file(s, arg.token, &m->c);
		m->slot = s - slots;
	}
	if (m)
		pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&s->lock);
}

static void op_get_name(struct arena *a, uint64_t *rs)
{
	struct liveupdate_session_get_name arg = { .size = sizeof(arg) };
	struct slot *s = &slots[below(rs, SLOTS)];
	enum arg_mode mode = pick_mode(rs, 1);
	int err, want;
	void *p;

	pthread_mutex_lock(&s->lock);
	if (s->fd < 0) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	arg.reserved = below(rs, 8) == 0 ? 1 + below(rs, 1000) : 0;
	p = place(a, mode, &arg, sizeof(arg), rs);
	err = call(s->fd, LIVEUPDATE_SESSION_GET_NAME, p);
	want = dispatch_errno(mode, 0);
	if (!want && arg.reserved)
		want = EINVAL;
	if (!want && mode == ARG_READONLY)
		want = EFAULT;
	expect("GET_NAME", err, want);
	if (!err && strcmp((char *)((struct liveupdate_session_get_name *)p)->name, s->name))
		fail("GET_NAME: %s, expected %s",
		     (char *)((struct liveupdate_session_get_name *)p)->name, s->name);
	pthread_mutex_unlock(&s->lock);
}

/* RETRIEVE_FD and FINISH on an outgoing session, RETRIEVE_SESSION with nothing incoming. */
static void op_wrong_direction(struct arena *a, uint64_t *rs)
{
	struct slot *s = &slots[below(rs, SLOTS)];
	enum arg_mode mode = pick_mode(rs, 0);
	int which = below(rs, 3), err;
	union {
		struct liveupdate_ioctl_retrieve_session rs;
		struct liveupdate_session_retrieve_fd rf;
		struct liveupdate_session_finish f;
	} arg;
	void *p;

	memset(&arg, 0, sizeof(arg));
	if (which == 0) {
		char name[64];

		arg.rs.size = sizeof(arg.rs);
		strcpy((char *)arg.rs.name, name_of(below(rs, NAMES), name));
		p = place(a, mode, &arg, sizeof(arg.rs), rs);
		err = call(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, p);
		expect("RETRIEVE_SESSION with nothing incoming", err,
		       dispatch_errno(mode, 0) ?: ENOENT);
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (s->fd >= 0) {
		uint32_t len = which == 1 ? sizeof(arg.rf) : sizeof(arg.f);

		arg.rf.size = len;
		arg.rf.token = random_token(rs);
		p = place(a, mode, &arg, len, rs);
		err = call(s->fd, which == 1 ? LIVEUPDATE_SESSION_RETRIEVE_FD :
			   LIVEUPDATE_SESSION_FINISH, p);
		expect(which == 1 ? "RETRIEVE_FD on an outgoing session" :
		       "FINISH on an outgoing session", err, dispatch_errno(mode, 1));
	}
	pthread_mutex_unlock(&s->lock);
}

/* Commands the device or a session does not have. */
static void op_unknown(struct arena *a, uint64_t *rs)
{
	struct slot *s = &slots[below(rs, SLOTS)];
	struct liveupdate_session_finish arg = { .size = sizeof(arg) };
	enum arg_mode mode = pick_mode(rs, 0);
	int on_session = below(rs, 2), err, fd = luo;
	unsigned int nr;
	void *p;

	pthread_mutex_lock(&s->lock);
	if (on_session && s->fd >= 0)
		fd = s->fd;
	p = place(a, mode, &arg, sizeof(arg), rs);
	if (below(rs, 2)) {
		/* A number outside the table: EINVAL before anything is read. */
		nr = fd == luo ? 2 + below(rs, 254) : below(rs, 2) ? below(rs, 0x40) : 0x44 + below(rs, 188);
		err = call(fd, _IO(LIVEUPDATE_IOCTL_TYPE, nr), p);
		expect("unknown command number", err, EINVAL);
	} else {
		/* A known number in the wrong type byte or with size bits: ENOTTY after the size. */
		nr = fd == luo ? below(rs, 2) : 0x40 + below(rs, 4);
		err = call(fd, below(rs, 2) ? _IO(LIVEUPDATE_IOCTL_TYPE + 1, nr) :
			   _IOW(LIVEUPDATE_IOCTL_TYPE, nr, uint32_t), p);
		expect("known number, wrong command", err,
		       mode == ARG_NULL || mode == ARG_STRADDLE_SIZE ? EFAULT : ENOTTY);
	}
	pthread_mutex_unlock(&s->lock);
}

struct thread_arg {
	int id;
	uint64_t seed;
};

static void *random_calls(void *v)
{
	struct thread_arg *t = v;
	uint64_t rs = t->seed;
	struct arena *a = malloc(sizeof(*a));

	if (!a)
		die("malloc");
	arena_init(a);
	for (int i = 0; i < ROUNDS; i++) {
		unsigned int op = below(&rs, 100);

		if (op < 20)
			op_create(a, &rs);
		else if (op < 27)
			op_close(&rs);
		else if (op < 65)
			op_preserve(a, &rs);
		else if (op < 77)
			op_get_name(a, &rs);
		else if (op < 90)
			op_wrong_direction(a, &rs);
		else
			op_unknown(a, &rs);
	}
	return NULL;
}

/* ---- The races ---- */

static pthread_barrier_t pair;
static int pair_session[2];
static struct {
	int fd;
	int result[2];
} pair_round;

static int preserve_raw(int sfd, int fd, uint64_t token)
{
	struct liveupdate_session_preserve_fd p = { .size = sizeof(p), .fd = fd, .token = token };

	return call(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, &p);
}

static void *pair_thread(void *v)
{
	int me = (long)v;

	for (int r = 0; r < PAIR_ROUNDS; r++) {
		pthread_barrier_wait(&pair);
		pair_round.result[me] = preserve_raw(pair_session[me], pair_round.fd, PAIR_TOKEN + r);
		pthread_barrier_wait(&pair);
		pthread_barrier_wait(&pair);	/* the main thread looked at the round */
	}
	return NULL;
}

static int open_slot(int idx, const char *name)
{
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg) };
	struct slot *s = &slots[idx];

	pthread_mutex_lock(&s->lock);
	if (s->fd >= 0)
		close_slot(s);
	snprintf((char *)arg.name, sizeof(arg.name), "%s", name);
	expect(name, call(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &arg), 0);
	s->fd = arg.fd;
	strcpy(s->name, name);
	s->nfiles = 0;
	pthread_mutex_unlock(&s->lock);
	return s->fd;
}

/* One memfd, two threads, two sessions: exactly one PRESERVE_FD wins. */
static void race_pairs(uint64_t *rs)
{
	char a[64], b[64];
	pthread_t th[2];

	snprintf(a, sizeof(a), "stress-race-%d-a", worker);
	snprintf(b, sizeof(b), "stress-race-%d-b", worker);
	pair_session[0] = open_slot(0, a);
	pair_session[1] = open_slot(1, b);
	pthread_barrier_init(&pair, NULL, 3);
	for (long i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, pair_thread, (void *)i);
	for (int r = 0; r < PAIR_ROUNDS; r++) {
		struct content c = random_content(rs);
		int winner;

		pair_round.fd = make_memfd(&c);
		pthread_barrier_wait(&pair);
		pthread_barrier_wait(&pair);
		winner = pair_round.result[0] == 0 ? 0 : 1;
		if (pair_round.result[winner] != 0 || pair_round.result[!winner] != EBUSY)
			fail("one memfd into two sessions at once: %s and %s, expected one success "
			     "and one EBUSY", strerrorname_np(pair_round.result[0]) ?: "success",
			     strerrorname_np(pair_round.result[1]) ?: "success");
		else
			add_file(&slots[winner], PAIR_TOKEN + r, &c);
		close(pair_round.fd);
		pthread_barrier_wait(&pair);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&pair);
}

static struct {
	int session;
	int fds[CLOSE_FILES];
	int result[CLOSE_FILES];
	unsigned int delay_us;
} victim;

static void *victim_preserver(void *v)
{
	(void)v;
	for (int j = 0; j < CLOSE_FILES; j++)
		victim.result[j] = preserve_raw(victim.session, victim.fds[j], j);
	return NULL;
}

static void *victim_closer(void *v)
{
	(void)v;
	usleep(victim.delay_us);
	/* The number stays taken, so the preserver can never reach another session. */
	if (dup2(devnull, victim.session) < 0)
		die("dup2");
	return NULL;
}

/*
 * A session closed while another thread preserves into it: each PRESERVE_FD
 * either made it in before (0) or met /dev/null (ENOTTY), and every file is
 * free again once the session is gone.
 */
static void race_close(uint64_t *rs)
{
	char name[64];

	snprintf(name, sizeof(name), "stress-victim-%d", worker);
	for (int r = 0; r < CLOSE_ROUNDS; r++) {
		struct content c[CLOSE_FILES];
		struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg) };
		pthread_t p, q;

		strcpy((char *)arg.name, name);
		expect("CREATE_SESSION of the victim", call(luo, LIVEUPDATE_IOCTL_CREATE_SESSION,
							     &arg), 0);
		victim.session = arg.fd;
		for (int j = 0; j < CLOSE_FILES; j++) {
			c[j] = random_content(rs);
			victim.fds[j] = make_memfd(&c[j]);
		}
		victim.delay_us = below(rs, 400);
		pthread_create(&p, NULL, victim_preserver, NULL);
		pthread_create(&q, NULL, victim_closer, NULL);
		pthread_join(p, NULL);
		pthread_join(q, NULL);
		close(victim.session);
		for (int j = 0; j < CLOSE_FILES; j++) {
			uint64_t token = CLOSE_TOKEN + r * CLOSE_FILES + j;

			if (victim.result[j] != 0 && victim.result[j] != ENOTTY)
				fail("PRESERVE_FD into a session being closed: %s",
				     strerrorname_np(victim.result[j]));
			pthread_mutex_lock(&slots[0].lock);
			expect("PRESERVE_FD of a file whose session was closed",
			       preserve_raw(slots[0].fd, victim.fds[j], token), 0);
			add_file(&slots[0], token, &c[j]);
			pthread_mutex_unlock(&slots[0].lock);
			close(victim.fds[j]);
		}
	}
}

/* The parent's memfds, raced for by every worker at once: one wins each. */
static void race_processes(uint64_t seed)
{
	for (int k = 0; k < SHARED_MEMFDS; k++) {
		int err;

		pthread_barrier_wait(&sh->race);
		err = preserve_raw(slots[1].fd, shared_memfd[k], SHARED_TOKEN + k);
		sh->shared_result[k][worker] = err;
		if (!err) {
			struct content c = shared_content(k, seed);

			add_file(&slots[1], SHARED_TOKEN + k, &c);
		}
	}
}

static void report_survivors(void)
{
	int n = 0;

	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &slots[i];

		if (s->fd < 0)
			continue;
		sh->records[worker][n] = (struct record){ .token = UINT64_MAX, .kind = 0 };
		strcpy(sh->records[worker][n++].name, s->name);
		for (int f = 0; f < s->nfiles; f++) {
			sh->records[worker][n] = (struct record){
				.token = s->files[f].token, .kind = 1, .c = s->files[f].c };
			strcpy(sh->records[worker][n++].name, s->name);
		}
	}
	sh->nrecords[worker] = n;
}

static void run_worker(uint64_t seed, int done_fd)
{
	struct thread_arg ta[THREADS];
	pthread_t th[THREADS];
	uint64_t rs = seed_of(seed, 100 + worker);

	for (int i = 0; i < SLOTS; i++) {
		pthread_mutex_init(&slots[i].lock, NULL);
		slots[i].fd = -1;
	}
	for (int m = 0; m < MEMFDS; m++) {
		pthread_mutex_init(&memfds[m].lock, NULL);
		memfds[m].c = random_content(&rs);
		memfds[m].fd = make_memfd(&memfds[m].c);
		memfds[m].slot = -1;
	}
	for (int i = 0; i < THREADS; i++) {
		ta[i] = (struct thread_arg){ .id = i, .seed = seed_of(seed, worker * THREADS + i) };
		pthread_create(&th[i], NULL, random_calls, &ta[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	race_pairs(&rs);
	race_close(&rs);
	race_processes(seed);
	report_survivors();
	atomic_fetch_add(&sh->failures, failures);
	atomic_fetch_add(&sh->calls, calls);
	for (int e = 0; e < ERRNOS; e++)
		atomic_fetch_add(&sh->outcomes[e], outcomes[e]);
	if (write(done_fd, "x", 1) != 1)
		die("write done");
	/* Hold every session until the kexec. */
	for (;;)
		pause();
}

#define FNV_START 0xcbf29ce484222325ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n--)
		h = (h ^ *b++) * 0x100000001b3ULL;
	return h;
}

struct manifest_head {
	uint64_t magic;
	uint64_t seed;
	uint64_t count;
	uint64_t checksum;
};

#define MANIFEST_MAGIC 0x6c756f2d73747273ULL

static int stage_out(uint64_t seed)
{
	int done[2], mfd, sfd, nsessions = 0, nfiles = 0;
	struct manifest_head head = { .magic = MANIFEST_MAGIC, .seed = seed };
	char summary[128];
	pthread_barrierattr_t attr;
	size_t bytes;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap shared");
	pthread_barrierattr_init(&attr);
	pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_barrier_init(&sh->race, &attr, WORKERS);
	luo = open("/dev/liveupdate", O_RDWR);
	devnull = open("/dev/null", O_RDWR);
	if (luo < 0 || devnull < 0 || pipe(done))
		die("open /dev/liveupdate");
	pipe_fd = done[0];
	for (int k = 0; k < SHARED_MEMFDS; k++) {
		struct content c = shared_content(k, seed);

		shared_memfd[k] = make_memfd(&c);
	}
	printf("luo_stress: seed %llu: %d processes x %d threads x %d calls, then the races\n",
	       (unsigned long long)seed, WORKERS, THREADS, ROUNDS);
	fflush(stdout);
	for (worker = 0; worker < WORKERS; worker++)
		if (fork() == 0)
			run_worker(seed, done[1]);
	for (int w = 0; w < WORKERS; w++) {
		char x;

		if (read(done[0], &x, 1) != 1)
			die("a worker died");
	}
	for (int k = 0; k < SHARED_MEMFDS; k++) {
		int wins = 0, busy = 0;

		for (int w = 0; w < WORKERS; w++) {
			wins += sh->shared_result[k][w] == 0;
			busy += sh->shared_result[k][w] == EBUSY;
		}
		if (wins != 1 || busy != WORKERS - 1)
			fail("one memfd into %d processes' sessions at once: %d won, %d got EBUSY",
			     WORKERS, wins, busy);
	}
	for (int w = 0; w < WORKERS; w++)
		for (int i = 0; i < sh->nrecords[w]; i++)
			sh->records[w][i].kind ? nfiles++ : nsessions++;
	/* The manifest: the records of every worker, one after the other. */
	mfd = memfd_create("stress-manifest", 0);
	if (mfd < 0)
		die("memfd_create manifest");
	bytes = sizeof(struct record);
	head.count = nsessions + nfiles;
	head.checksum = FNV_START;
	for (int w = 0; w < WORKERS; w++)
		head.checksum = fnv(head.checksum, sh->records[w], sh->nrecords[w] * bytes);
	if (write(mfd, &head, sizeof(head)) != sizeof(head))
		die("write manifest");
	for (int w = 0; w < WORKERS; w++)
		if (write(mfd, sh->records[w], sh->nrecords[w] * bytes) !=
		    (ssize_t)(sh->nrecords[w] * bytes))
			die("write manifest");
	{
		struct liveupdate_ioctl_create_session a = { .size = sizeof(a) };

		strcpy((char *)a.name, MANIFEST_NAME);
		expect("CREATE_SESSION of the manifest", call(luo, LIVEUPDATE_IOCTL_CREATE_SESSION,
							       &a), 0);
		sfd = a.fd;
		expect("PRESERVE_FD of the manifest", preserve_raw(sfd, mfd, 1), 0);
	}
	failures += sh->failures;
	calls += sh->calls;
	for (int e = 0; e < ERRNOS; e++)
		outcomes[e] += sh->outcomes[e];
	snprintf(summary, sizeof(summary), "%d sessions with %d files survive", nsessions, nfiles);
	if (conclude(1, summary))
		return 1;
	/* Hold the manifest's session; the workers hold theirs. */
	if (fork() == 0) {
		for (;;)
			pause();
	}
	return 0;
}

/* ---- Stage 2 ---- */

static struct record *records;
static uint64_t nrecords;

static int retrieve_session(const char *name, int *fd)
{
	struct liveupdate_ioctl_retrieve_session a = { .size = sizeof(a) };

	snprintf((char *)a.name, sizeof(a.name), "%s", name);
	if (call(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &a))
		return errno;
	*fd = a.fd;
	return 0;
}

static int retrieve_fd(int sfd, uint64_t token, int *fd)
{
	struct liveupdate_session_retrieve_fd r = { .size = sizeof(r), .token = token };

	if (call(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, &r))
		return errno;
	*fd = r.fd;
	return 0;
}

static const struct record *find(const char *name, uint64_t token, uint32_t kind)
{
	for (uint64_t i = 0; i < nrecords; i++)
		if (records[i].kind == kind && !strcmp(records[i].name, name) &&
		    (kind == 0 || records[i].token == token))
			return &records[i];
	return NULL;
}

static struct {
	const char *name;
	int fd[2];
	int result[2];
	int sfd;
	uint64_t token;
} twin;
static pthread_barrier_t twins;

static void *twin_session(void *v)
{
	int me = (long)v;

	pthread_barrier_wait(&twins);
	twin.result[me] = retrieve_session(twin.name, &twin.fd[me]);
	return NULL;
}

static void *twin_file(void *v)
{
	int me = (long)v;

	pthread_barrier_wait(&twins);
	twin.result[me] = retrieve_fd(twin.sfd, twin.token, &twin.fd[me]);
	return NULL;
}

static void race(void *(*fn)(void *))
{
	pthread_t th[2];

	pthread_barrier_init(&twins, NULL, 2);
	for (long i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, fn, (void *)i);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&twins);
}

/* Every token the stress could have preserved under. */
static int token_at(int i, uint64_t *token)
{
	if (i < SMALL_TOKENS) {
		*token = i;
		return 1;
	}
	if (i == SMALL_TOKENS) {
		*token = UINT64_MAX;
		return 1;
	}
	i -= SMALL_TOKENS + 1;
	if (i < PAIR_ROUNDS) {
		*token = PAIR_TOKEN + i;
		return 1;
	}
	i -= PAIR_ROUNDS;
	if (i < CLOSE_ROUNDS * CLOSE_FILES) {
		*token = CLOSE_TOKEN + i;
		return 1;
	}
	i -= CLOSE_ROUNDS * CLOSE_FILES;
	if (i < SHARED_MEMFDS) {
		*token = SHARED_TOKEN + i;
		return 1;
	}
	return 0;
}

static void check_session(const char *name, int sfd, int *nfiles, int *raced)
{
	struct liveupdate_session_finish f = { .size = sizeof(f) };
	uint64_t token;

	for (int i = 0; token_at(i, &token); i++) {
		const struct record *r = find(name, token, 1);
		int fd = -1, err;

		if (r && !*raced) {
			/* Two threads retrieve the same token: both get the one file. */
			struct stat a, b;

			twin.sfd = sfd;
			twin.token = token;
			race(twin_file);
			if (twin.result[0] || twin.result[1] || fstat(twin.fd[0], &a) ||
			    fstat(twin.fd[1], &b) || a.st_ino != b.st_ino)
				fail("two RETRIEVE_FDs of one token at once: %s, %s, or two files",
				     strerrorname_np(twin.result[0]) ?: "success",
				     strerrorname_np(twin.result[1]) ?: "success");
			else
				close(twin.fd[1]);
			fd = twin.fd[0];
			err = twin.result[0];
			*raced = 1;
		} else {
			err = retrieve_fd(sfd, token, &fd);
		}
		if (!r) {
			expect("RETRIEVE_FD of a token nobody preserved", err, ENOENT);
			continue;
		}
		if (err) {
			fail("%s token %llu: RETRIEVE_FD: %s", name, (unsigned long long)token,
			     strerrorname_np(err));
			continue;
		}
		if (*differs(fd, &r->c))
			fail("%s token %llu: %s", name, (unsigned long long)token, differs(fd, &r->c));
		(*nfiles)++;
		close(fd);
	}
	expect("FINISH", call(sfd, LIVEUPDATE_SESSION_FINISH, &f), 0);
}

/* The names the races of stage 1 used, by worker. */
static const char * const race_names[] = {
	"stress-race-%d-a", "stress-race-%d-b", "stress-victim-%d",
};

static int stage_in(void)
{
	struct manifest_head head;
	int msfd = -1, mfd = -1, nsessions = 0, nfiles = 0, raced_files = 0, raced_session = 0;
	int expected_sessions = 0;
	char name[64], summary[128];

	luo = open("/dev/liveupdate", O_RDWR);
	if (luo < 0)
		die("open /dev/liveupdate");
	if (retrieve_session(MANIFEST_NAME, &msfd) || retrieve_fd(msfd, 1, &mfd))
		die("retrieve the manifest");
	if (pread(mfd, &head, sizeof(head), 0) != sizeof(head) || head.magic != MANIFEST_MAGIC ||
	    head.count > MAX_RECORDS)
		die("read the manifest");
	nrecords = head.count;
	records = calloc(nrecords + 1, sizeof(*records));
	if (!records || pread(mfd, records, nrecords * sizeof(*records), sizeof(head)) !=
	    (ssize_t)(nrecords * sizeof(*records)))
		die("read the manifest");
	if (fnv(FNV_START, records, nrecords * sizeof(*records)) != head.checksum) {
		errno = EBADMSG;
		die("the manifest's checksum");
	}
	for (uint64_t i = 0; i < nrecords; i++)
		expected_sessions += records[i].kind == 0;
	printf("luo_stress: seed %llu: %llu records in the manifest\n",
	       (unsigned long long)head.seed, (unsigned long long)nrecords);
	/* Every name the stress could have created. */
	for (int k = 0; k < NAMES + 3 * WORKERS; k++) {
		const struct record *r;
		int sfd, err;

		if (k < NAMES)
			name_of(k, name);
		else
			snprintf(name, sizeof(name), race_names[(k - NAMES) % 3], (k - NAMES) / 3);
		r = find(name, 0, 0);
		if (r && !raced_session) {
			twin.name = name;
			race(twin_session);
			if (!!twin.result[0] + !!twin.result[1] != 1 ||
			    (twin.result[0] ?: twin.result[1]) != EINVAL)
				fail("two RETRIEVE_SESSIONs of %s at once: %s and %s, expected one "
				     "success and one EINVAL", name,
				     strerrorname_np(twin.result[0]) ?: "success",
				     strerrorname_np(twin.result[1]) ?: "success");
			err = twin.result[0] && twin.result[1];
			sfd = twin.result[0] ? twin.fd[1] : twin.fd[0];
			raced_session = 1;
		} else {
			err = retrieve_session(name, &sfd);
		}
		if (!r) {
			expect("RETRIEVE_SESSION of a session that did not survive", err, ENOENT);
			continue;
		}
		if (err) {
			fail("RETRIEVE_SESSION %s: %s", name, strerrorname_np(err));
			continue;
		}
		nsessions++;
		check_session(name, sfd, &nfiles, &raced_files);
		close(sfd);
	}
	if (nsessions != expected_sessions)
		fail("%d sessions retrieved, the manifest lists %d", nsessions, expected_sessions);
	{
		struct liveupdate_session_finish f = { .size = sizeof(f) };

		expect("FINISH of the manifest's session", call(msfd, LIVEUPDATE_SESSION_FINISH, &f),
		       0);
	}
	snprintf(summary, sizeof(summary), "%d sessions and %d files arrived as the manifest says",
		 nsessions, nfiles);
	return conclude(2, summary);
}

static unsigned long long seed = 1;

/*
 * A fixture only for the timeout: the harness's default of 30 s is short for
 * thousands of racing calls under emulation.
 */
FIXTURE(stress) {};
FIXTURE_SETUP(stress) {}
FIXTURE_TEARDOWN(stress) {}

TEST_F_TIMEOUT(stress, out, 900) { EXPECT_EQ(0, stage_out(seed)); }
TEST_F_TIMEOUT(stress, in, 900) { EXPECT_EQ(0, stage_in()); }

int main(int argc, char **argv)
{
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "r:")) != -1) {
		if (opt != 'r')
			ksft_exit_fail_msg("usage: %s [-r SEED] -- -t out|in\n", argv[0]);
		seed = strtoull(optarg, NULL, 0);
	}
	return luo_abi_run_harness(argc, argv);
}
