#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The main job: build a kernel, boot it in QEMU and live-update a memfd through kexec."""

import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenarios  # noqa: E402
import vm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="c", help="kernel variant to boot (default: c)")
    ap.add_argument("--mib", type=int, default=64, help="size of the preserved memfd in MiB")
    args = ap.parse_args()

    cache = subprocess.run(["bash", "-c", f"source {vm.ROOT}/scripts/lib.sh; echo $LUO_CACHE"],
                           check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    print(f"== building the {args.variant} kernel (incremental after the first time)", flush=True)
    subprocess.run(["bash", os.path.join(vm.ROOT, "scripts", "build-kernel.sh"), args.variant],
                   check=True)
    build = os.path.join(cache, "build", args.variant)
    kernel = os.path.join(build, "arch/x86/boot/bzImage")
    work = os.path.join(cache, "work", "demo")
    bins = scenarios.build_guest_binaries(
        subprocess.run(["bash", "-c", f"source {vm.ROOT}/scripts/lib.sh; kernel_tree"],
                       check=True, stdout=subprocess.PIPE, text=True).stdout.strip(),
        os.path.join(build, "hdr"), os.path.join(cache, "work", "bin"))
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
