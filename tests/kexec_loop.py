#!/usr/bin/env python3
"""Kexecs a kernel into itself again and again and counts the kernel reports on the way.

usage: python3 tests/kexec_loop.py VARIANT BOOTS "CMDLINE"

Not a test: the study behind `no5lvl` in the debug runs (README, "the early-boot KASAN
splat"). The initramfs copies itself with busybox cpio before each kexec, so one QEMU run
boots any number of times without nesting images; give `panic_on_warn=0` (the default) so
that a report does not end the chain. Uses the variant's kernel and the guest programs that
`make test` built in $LUO_CACHE.
"""
import os
import re
import subprocess
import sys
import time

import vm

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
boot=$(sed -n 's/.*loop_boot=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
echo "KEXEC-LOOP: boot $boot"
if [ "$boot" -ge {boots} ]; then echo "KEXEC-LOOP: done"; reboot -f; fi
cd /
find . -xdev | grep -v '^\\./\\(proc\\|sys\\|tmp\\)/' | cpio -o -H newc > /tmp/self.cpio 2>/dev/null
luo-kexec /next/kernel /tmp/self.cpio \\
    "$(sed 's/ *loop_boot=[0-9]*//' /proc/cmdline) loop_boot=$((boot + 1))"
echo "KEXEC-LOOP: kexec failed"
reboot -f
"""


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.splitlines()[2].strip())
    variant, boots, cmdline = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cache = vm.cache_dir()
    kernel = os.path.join(cache, "build", variant, "arch/x86/boot/bzImage")
    gen = os.path.join(cache, "build", variant, "usr", "gen_init_cpio")
    kexec = os.path.join(cache, "work", "bin", "luo-kexec")
    work = os.path.join(cache, "work", f"kexec-loop-{variant}")
    os.makedirs(work, exist_ok=True)
    init = os.path.join(work, "init")
    with open(init, "w") as f:
        f.write(INIT.format(boots=boots))
    initrd = os.path.join(work, "initrd.cpio")
    vm.cpio(gen, [
        "dir /bin 0755 0 0", "dir /dev 0755 0 0", "dir /proc 0755 0 0", "dir /sys 0755 0 0",
        "dir /tmp 0755 0 0", "dir /next 0755 0 0", "nod /dev/console 0600 0 0 c 5 1",
        f"file /init {init} 0755 0 0", "file /bin/busybox /bin/busybox 0755 0 0",
        f"file /bin/luo-kexec {kexec} 0755 0 0", f"file /next/kernel {kernel} 0644 0 0",
    ], initrd)
    serial = os.path.join(work, "serial.log")
    start = time.monotonic()
    subprocess.run(vm.qemu_command(60 * boots, "2G", serial, kernel, initrd,
                                   f"kunit.enable=0 {cmdline} loop_boot=1"),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False)
    with open(serial, errors="replace") as f:
        log = f.read()
    booted = len(re.findall(r"^KEXEC-LOOP: boot \d+", log, re.M))
    reports = [line.strip() for line in log.splitlines() if vm.SPLAT.search(line)]
    print(f"{variant} {cmdline!r}: {booted} boots of {boots}"
          f"{'' if 'KEXEC-LOOP: done' in log else ' (the chain broke)'} in "
          f"{time.monotonic() - start:.0f} s; {len(reports)} kernel reports; log {serial}")
    for line in reports:
        print("   ", line)
    sys.exit(0 if booted == boots else 1)


if __name__ == "__main__":
    main()
