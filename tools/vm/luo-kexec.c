// SPDX-License-Identifier: GPL-2.0
/*
 * luo-kexec: load a kernel with kexec_file_load(2) and reboot into it.
 *
 * The guest initramfs has no kexec-tools; this is the one step of a live
 * update that a shell cannot do. A refused reboot (for example a failed
 * liveupdate_reboot()) is reported with its errno and exit status 1, so a
 * scenario can test that path too.
 *
 * usage: luo-kexec KERNEL INITRD CMDLINE
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int kfd, ifd;

	if (argc != 4) {
		fprintf(stderr, "usage: %s KERNEL INITRD CMDLINE\n", argv[0]);
		return 2;
	}
	kfd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (kfd < 0) {
		fprintf(stderr, "luo-kexec: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	ifd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (ifd < 0) {
		fprintf(stderr, "luo-kexec: open %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	if (syscall(__NR_kexec_file_load, kfd, ifd, strlen(argv[3]) + 1, argv[3], 0UL)) {
		fprintf(stderr, "luo-kexec: kexec_file_load: %s\n", strerror(errno));
		return 1;
	}
	sync();
	syscall(__NR_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		LINUX_REBOOT_CMD_KEXEC, NULL);
	fprintf(stderr, "luo-kexec: reboot(LINUX_REBOOT_CMD_KEXEC): %s\n", strerror(errno));
	return 1;
}
