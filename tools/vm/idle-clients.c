// SPDX-License-Identifier: GPL-2.0
/*
 * idle-clients: connect to a SOCK_SEQPACKET socket N times, send nothing and
 * hold the connections until killed, reporting how many the server has hung
 * up on when told to (SIGUSR1). The agent scenarios use it to show that a
 * flood of idle connections keeps nobody else out.
 *
 * usage: idle-clients SOCKET N
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t report;

static void on_usr1(int sig)
{
	(void)sig;
	report = 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct rlimit lim;
	int n, i, *fds;

	if (argc != 3 || strlen(argv[1]) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "usage: idle-clients SOCKET N\n");
		return 2;
	}
	strcpy(addr.sun_path, argv[1]);
	n = atoi(argv[2]);
	if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
		lim.rlim_cur = lim.rlim_max;
		setrlimit(RLIMIT_NOFILE, &lim);
	}
	fds = calloc(n, sizeof(*fds));
	if (!fds)
		return 1;
	for (i = 0; i < n; i++) {
		fds[i] = socket(AF_UNIX, SOCK_SEQPACKET, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&addr, sizeof(addr))) {
			printf("idle-clients: connection %d: %s\n", i + 1, strerror(errno));
			return 1;
		}
	}
	signal(SIGUSR1, on_usr1);
	printf("LUO-VM: %d idle connections open\n", n);
	fflush(stdout);
	for (;;) {
		int gone = 0;

		pause();
		if (!report)
			continue;
		report = 0;
		for (i = 0; i < n; i++) {
			struct pollfd p = { .fd = fds[i], .events = POLLIN };

			if (poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP)))
				gone++;
		}
		printf("LUO-VM: %d of %d idle connections hung up on\n", gone, n);
		fflush(stdout);
	}
}
