#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The main job: build a kernel, boot it in QEMU and live-update a memfd through kexec."""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenarios  # noqa: E402
import vm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="rust", help="kernel variant to boot (default: rust, the luo-rs core)")
    ap.add_argument("--mib", type=int, default=64, help="size of the preserved memfd in MiB")
    args = ap.parse_args()

    print(f"== building the {args.variant} kernel (incremental after the first time)", flush=True)
    build = vm.build_kernel(args.variant)
    kernel = os.path.join(build, "arch/x86/boot/bzImage")
    work = os.path.join(vm.cache_dir(), "work", "demo")
    bins = scenarios.build_guest_binaries(vm.kernel_tree(), os.path.join(build, "hdr"),
                                          os.path.join(vm.cache_dir(), "work", "bin"))
    scn = scenarios.demo(kernel, args.mib)
    scn.binaries = bins
    print(f"== booting {kernel} in QEMU (TCG); the guest preserves a {args.mib} MiB memfd, "
          "kexecs into the same kernel and checks the data", flush=True)
    out = vm.run(scn, work, os.path.join(build, "usr", "gen_init_cpio"))
    for line in out.log.splitlines():
        if re.search(r"luo-demo:|LUO-VM: stage \d: (kexec into|done)|liveupdate number", line):
            print("   guest| " + line.strip())
    print(f"serial log: {os.path.join(work, 'serial.log')} ({out.seconds:.1f}s in QEMU)")
    if out.ok:
        print("== live update succeeded: the memfd survived the kexec intact")
        return 0
    print("== live update FAILED:")
    for p in out.problems:
        print("   " + p)
    return 1


if __name__ == "__main__":
    sys.exit(main())
