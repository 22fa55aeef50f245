#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The main job: live-update a VM running a service whose data set is held by luo-agent.

The luo-rs kernel is built (incrementally after the first time) and booted in QEMU. In the
guest, luo-agent starts, kv-service builds a data set of a few hundred MiB in a memfd and
hands it to the agent, and the agent live-updates the machine into the freshly built kernel
(kexec with the memfd preserved). In the new kernel a new agent adopts the session, the
service restarts, gets its memfd back, checks every byte and serves again. The blackout is
measured on the host, from the agent's reboot() to the service's first answer.
"""

import argparse
import os
import re
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenarios  # noqa: E402
import vm  # noqa: E402

SHOW = re.compile(r"luo-agent:|kv-service|luoctl:|LUO-VM: stage \d: (start|done)")
REBOOT = "luo-agent: rebooting into the new kernel"
SERVING = re.compile(r"kv-service kv: .* serving")


def follow(path, done, seen):
    """Print the guest's interesting lines as they appear, noting (host time) when the two
    ends of the blackout are seen."""
    pos, buf = 0, b""
    while True:
        finished = done.is_set()
        if os.path.exists(path):
            if os.path.getsize(path) < pos:
                # The harness ran the scenario again (see vm.run): start over.
                pos, buf = 0, b""
                seen.clear()
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
            pos += len(data)
            *lines, buf = (buf + data).split(b"\n")
            now = time.monotonic()
            for raw in lines:
                line = raw.decode(errors="replace").strip()
                if REBOOT in line:
                    seen.setdefault("reboot", now)
                if "LUO-VM: stage 2: start" in line:
                    seen.setdefault("userspace", now)
                if SERVING.search(line):
                    seen.setdefault("serving", now)
                if SHOW.search(line):
                    print("   guest| " + line, flush=True)
        if finished:
            return
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="rust",
                    help="kernel variant (default: rust, luo-rs core and memfd handler)")
    ap.add_argument("--mib", type=int, default=256, help="size of the data set in MiB")
    args = ap.parse_args()

    print(f"== building the {args.variant} kernel (incremental after the first time)", flush=True)
    build = vm.build_kernel(args.variant)
    kernel = os.path.join(build, "arch/x86/boot/bzImage")
    print("== building the guest programs (luo-agent, luoctl, kv-service)", flush=True)
    bins = scenarios.build_guest_binaries(vm.kernel_tree(), os.path.join(build, "hdr"),
                                          os.path.join(vm.cache_dir(), "work", "bin"))
    work = os.path.join(vm.cache_dir(), "work", "demo")
    shutil.rmtree(work, ignore_errors=True)
    scn = scenarios.demo(kernel, args.mib)
    scn.binaries = bins
    print(f"== booting {kernel} in QEMU (TCG); kv-service keeps a {args.mib} MiB data set, "
          "luo-agent live-updates the machine into the same freshly built kernel", flush=True)
    done, seen, result = threading.Event(), {}, {}

    def runner():
        result["out"] = vm.run(scn, work, os.path.join(build, "usr", "gen_init_cpio"))
        done.set()

    t = threading.Thread(target=runner)
    t.start()
    follow(os.path.join(work, "serial.log"), done, seen)
    t.join()
    out = result["out"]
    print(f"serial log: {os.path.join(work, 'serial.log')} ({out.seconds:.1f}s in QEMU)")
    if not out.ok:
        print("== live update FAILED:")
        for p in out.problems:
            print("   " + p)
        return 1
    print(f"== live update succeeded: kv-service's {args.mib} MiB data set was preserved in a "
          "memfd held by luo-agent, carried across the kexec, and every byte came back intact")
    if "reboot" in seen and "serving" in seen:
        total = seen["serving"] - seen["reboot"]
        boot = seen.get("userspace", seen["serving"]) - seen["reboot"]
        print(f"== blackout: {total:.1f} s from the agent's reboot() to the service answering "
              f"again ({boot:.1f} s kexec and boot of the new kernel, {total - boot:.1f} s agent "
              "start, retrieve and the service's check of every byte); measured on the host, "
              "with QEMU emulating the CPU (no KVM here), so a real machine is much faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
