# SPDX-License-Identifier: GPL-2.0
"""A real client: Debian's systemd (262) as PID 1 carries its services' fd stores across a
live update, on the C reference, on the product and across.

The other scenarios boot an initramfs whose PID 1 is the project's own script. These boot a
Debian root filesystem (scripts/systemd-rootfs.sh) from a virtio disk, opened with
snapshot=on so that no run changes it, and a second small disk with what the scenario
brings: the driver script (tests/systemd/run.sh), the service program
(tests/systemd/luo-fdstore.c, linked against libsystemd like any service) and the next
kernel. systemd does the update itself (`systemctl kexec`): its shutdown path preserves the
fd stores in a LUO session of its own, and the next kernel's PID 1 gives them back to the
services.

One boot pair counts three results: the memfd a service kept in its fd store, the LUO
session a service created itself and kept there, and luo-agent run as packaged under
systemd, holding another service's data (see tools/luo-agent/src/systemd.rs). A problem of
the run as a whole (a kernel report, a stage that did not finish) fails all three.
"""

import dataclasses
import os
import re
import shutil
import subprocess
import threading

import vm
from scenarios import Test

ROOTFS_SCRIPT = os.path.join(vm.ROOT, "scripts", "systemd-rootfs.sh")
GUEST = os.path.join(vm.ROOT, "tests", "systemd")
# systemd as PID 1 logs at debug level to the kernel's ring buffer (the driver prints its LUO
# lines), which the console's level keeps off the serial line.
CMDLINE = ("root=/dev/vda rw liveupdate=on kunit.enable=0 systemd.log_level=debug "
           "systemd.log_target=kmsg printk.devkmsg=on log_buf_len=8M")
KERNELS = ("c", "rust")

_rootfs_lock = threading.Lock()
_rootfs = None


def rootfs():
    """The guest image, built on first use (about half a minute, then cached)."""
    global _rootfs
    with _rootfs_lock:
        if _rootfs is None:
            out = subprocess.run(["bash", ROOTFS_SCRIPT], check=True, stdout=subprocess.PIPE)
            _rootfs = out.stdout.decode().strip().splitlines()[-1]
        return _rootfs


def service_program(out):
    """luo-fdstore, built against the host's libsystemd and uAPI header; the guest's newer
    libsystemd runs it."""
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror",
                    "-I", os.path.join(vm.ROOT, "include", "uapi"),
                    os.path.join(GUEST, "luo-fdstore.c"), "-o", out, "-lsystemd"], check=True)


# What each service prints when its part worked, per stage.
PARTS = {
    "memfd": ([r"luo-fdstore: pushed 'dataset' into the fd store",
               r"LUO-VM: luo-memfd.service holds 1 fd"],
              [r"luo-fdstore: received fd \d+ named 'dataset'",
               r"luo-fdstore: memfd stage 2 ok"]),
    "session": ([r"luo-fdstore: pushed 'own-session' into the fd store",
                 r"LUO-VM: luo-session.service holds 1 fd"],
                [r"luo-fdstore: the session fd is 'anon_inode:\[luo_session\] luo-fdstore-own'",
                 r"luo-fdstore: session 'luo-fdstore-own' finished",
                 r"luo-fdstore: session stage 2 ok"]),
    "agent": ([r"luo-agent: ready on the socket systemd passed \(luo-agent.socket\)",
               r"kv-service cache-a: 16 MiB data set .* handed to the agent",
               r"LUO-VM: luo-agent.service is active after the first client",
               r"luoctl: the agent holds no sessions",
               r"luoctl: refused \(NotPermitted\): session \"cache-a\" belongs to another user",
               r"luoctl: refused \(NotPermitted\): only root may live update the machine",
               r"LUO-VM: the agent's refusals are warnings in the journal, the rest information",
               r"luo-agent: adopted session \"cache-a\" with 1 file\(s\) kept across the "
               r"agent's restart",
               r"luoctl: session \"cache-a\" \(to carry across the next live update\): "
               r"tokens \[1\]",
               r"LUO-VM: luo-agent.service holds 2 fd",
               r"luo-agent: uid 0 pid \d+: live update into /luo/next-kernel, handed to the system manager",
               r"luoctl: the system manager is performing the live update"],
              [r"LUO-VM: luo-agent.service got 2 fd",
               r"luo-agent: adopted session \"cache-a\" with 1 file\(s\) from the previous "
               r"kernel",
               r"luoctl: /bin/false failed \(exit status: 1\); the agent keeps the file for "
               r"another try",
               r"luo-agent: file 1 of session \"cache-a\" was handed out unconfirmed; kept for "
               r"its client",
               r"kv-service cache-a: 16 MiB data set back, all \d+ values intact",
               r"luoctl: the agent holds no sessions",
               r"LUO-VM: luo-agent.service holds 1 fd"]),
}
RESULT = {"memfd": "fdstore-memfd", "session": "fdstore-own-session", "agent": "luo-agent"}
# The parts whose data set prints a checksum on both sides of the update.
CHECKSUMMED = ("memfd", "session")
# The luo-agent programs the driver runs, from the scenario's disk.
AGENT_PROGRAMS = ("luo-agent", "luoctl", "kv-service")


@dataclasses.dataclass
class SystemdTest(Test):
    """A two-stage scenario in the systemd guest: stage 1 on stages[0].kernel, the update to
    stages[1].kernel."""

    timeout: int = 420
    memory: str = "2G"
    cmdline: str = CMDLINE

    def result_names(self):
        return [f"{self.name}-{RESULT[p]}" for p in PARTS]

    def boot(self, workdir, env):
        """Runs the scenario; returns a vm.Outcome like vm.run."""
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        image = rootfs()
        payload = os.path.join(workdir, "payload")
        os.makedirs(payload, exist_ok=True)
        service_program(os.path.join(payload, "luo-fdstore"))
        with open(os.path.join(GUEST, "run.sh")) as src, \
                open(os.path.join(payload, "run.sh"), "w") as dst:
            dst.write(src.read())
        shutil.copyfile(self.stages[1].kernel, os.path.join(payload, "next-kernel"))
        for name in AGENT_PROGRAMS:
            shutil.copy(env.binaries[name], os.path.join(payload, name))
        # The agent's kexec takes an initramfs: an empty one (the trailer alone) leaves the
        # next kernel to mount root= itself.
        subprocess.run([env.gen_init_cpio, "/dev/null"], check=True,
                       stdout=open(os.path.join(payload, "empty.cpio"), "wb"))
        disk = os.path.join(workdir, "payload.ext4")
        subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", payload, disk, "64M"], check=True,
                       stdout=subprocess.DEVNULL)
        serial = os.path.join(workdir, "serial.log")
        cmd = vm.qemu_command(self.timeout, self.memory, serial, self.stages[0].kernel, None,
                              f"{self.cmdline} luo_stage=1",
                              [f"file={image},format=raw,if=virtio,snapshot=on",
                               f"file={disk},format=raw,if=virtio,readonly=on"])
        return vm.boot(self, cmd, serial)

    def results(self, out):
        logs = out.stage_logs()
        systemd_said = "\n".join(l for l in out.log.splitlines() if "LUO-SYSTEMD:" in l)
        rows = []
        for part, per_stage in PARTS.items():
            problems = list(out.problems)
            for i, regexes in enumerate(per_stage):
                text = logs[i] if i < len(logs) else ""
                problems += [f"stage {i + 1}: missing /{r}/" for r in regexes
                             if not re.search(r, text, re.M)]
            if part in CHECKSUMMED:
                problems += checksum_problems(part, logs)
            detail = "\n".join(problems)
            if problems and systemd_said:
                detail += "\nwhat systemd logged about LUO and the fd stores:\n" + systemd_said
            rows.append((f"{self.name}-{RESULT[part]}", "fail" if problems else "pass",
                         detail))
        return rows


def checksum_problems(part, logs):
    """The data set of `part` must print one checksum before the update and the same after."""
    sums = [set(re.findall(rf"luo-fdstore: {part}: .*checksum ([0-9a-f]{{16}})", logs[i]))
            if i < len(logs) else set() for i in range(2)]
    if len(sums[0]) == 1 and sums[0] == sums[1]:
        return []
    return [f"the {part} data set's checksum before the update {sorted(sums[0])} is not the "
            f"one after it {sorted(sums[1])}"]


def systemd_tests(env):
    """The fd-store scenarios on the C reference, the product and across."""
    k = {v: env.kernels.get(v) for v in KERNELS}
    pairs = [("c", "c", "c/systemd-update"),
             ("rust", "rust", "rust/systemd-update"),
             ("c", "rust", "cross/c-to-rust-systemd"),
             ("rust", "c", "cross/rust-to-c-systemd")]
    tests = []
    for first, second, name in pairs:
        if k[first] and k[second]:
            tests.append(SystemdTest(name=name, stages=[
                vm.Stage(k[first], "", [(r"LUO-VM: stage 1: systemctl kexec", "systemd asked")]),
                vm.Stage(k[second], "", [])]))
    return tests
