// SPDX-License-Identifier: GPL-2.0
/*
 * luo-kexec: load a kernel with kexec_file_load(2) and reboot into it.
 *
 * The guest initramfs has no kexec-tools; this is the one step of a live
 * update that a shell cannot do. A refused reboot (for example a failed
 * liveupdate_reboot()) is reported with its errno and exit status 1, so a
 * scenario can test that path too.
 *
 * usage: luo-kexec [--unload-first] KERNEL INITRD CMDLINE
 *
 * With --unload-first the image is loaded, unloaded again and a reboot is
 * tried without one (it must fail with EINVAL and change nothing) before the
 * image is loaded for good.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kexec.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int load(const char *kernel, const char *initrd, const char *cmdline)
{
	int kfd, ifd;

	kfd = open(kernel, O_RDONLY | O_CLOEXEC);
	if (kfd < 0) {
		fprintf(stderr, "luo-kexec: open %s: %s\n", kernel, strerror(errno));
		return -1;
	}
	ifd = open(initrd, O_RDONLY | O_CLOEXEC);
	if (ifd < 0) {
		fprintf(stderr, "luo-kexec: open %s: %s\n", initrd, strerror(errno));
		close(kfd);
		return -1;
	}
	if (syscall(__NR_kexec_file_load, kfd, ifd, strlen(cmdline) + 1, cmdline, 0UL)) {
		fprintf(stderr, "luo-kexec: kexec_file_load: %s\n", strerror(errno));
		close(kfd);
		close(ifd);
		return -1;
	}
	close(kfd);
	close(ifd);
	return 0;
}

static long reboot_kexec(void)
{
	return syscall(__NR_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		       LINUX_REBOOT_CMD_KEXEC, NULL);
}

/* Loads the image, unloads it, and checks that a reboot without one fails. */
static int load_and_unload(const char *kernel, const char *initrd, const char *cmdline)
{
	if (load(kernel, initrd, cmdline))
		return -1;
	if (syscall(__NR_kexec_file_load, -1, -1, 0UL, NULL, (unsigned long)KEXEC_FILE_UNLOAD)) {
		fprintf(stderr, "luo-kexec: unload: %s\n", strerror(errno));
		return -1;
	}
	printf("luo-kexec: image loaded and unloaded\n");
	if (reboot_kexec() == 0 || errno != EINVAL) {
		fprintf(stderr, "luo-kexec: reboot without an image: want EINVAL, got %s\n",
			strerror(errno));
		return -1;
	}
	printf("luo-kexec: reboot without an image refused with EINVAL\n");
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	int unload_first = argc > 1 && !strcmp(argv[1], "--unload-first");

	argv += unload_first;
	argc -= unload_first;
	if (argc != 4) {
		fprintf(stderr, "usage: luo-kexec [--unload-first] KERNEL INITRD CMDLINE\n");
		return 2;
	}
	if (unload_first && load_and_unload(argv[1], argv[2], argv[3]))
		return 1;
	if (load(argv[1], argv[2], argv[3]))
		return 1;
	sync();
	reboot_kexec();
	fprintf(stderr, "luo-kexec: reboot(LINUX_REBOOT_CMD_KEXEC): %s\n", strerror(errno));
	return 1;
}
