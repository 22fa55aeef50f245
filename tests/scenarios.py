# SPDX-License-Identifier: GPL-2.0
"""The VM test scenarios and how their results are counted."""

import dataclasses
import fnmatch
import os
import re
import shutil
import subprocess

import vm

ROOT = vm.ROOT
SELFTESTS = "tools/testing/selftests/liveupdate"

# The upstream two-stage tests, run unmodified: stage 1 preserves and kexecs,
# stage 2 verifies and prints "... TEST PASSED ...".
UPSTREAM_KEXEC = ["luo_kexec_simple", "luo_multi_session", "luo_stress_sessions", "luo_stress_files"]
UPSTREAM_API_TESTS = 15
# The project's kselftests of the errno contract (tools/testing/selftests/liveupdate/): results
# of luo_abi (device and outgoing sessions) and of luo_abi_incoming -s 2 (incoming sessions).
ABI_TESTS = 60
ABI_INCOMING_TESTS = 18

# Kernels the test command builds, the matrix of DESIGN.md: the C reference (C core, C
# memfd), the product (Rust core, Rust memfd), the two mixed combinations, and the
# product with KASAN, lockdep and atomic-sleep checks (built with LLVM). Each also boots
# Debian's systemd (base.config; systemd_guest.py runs it on the first two).
VARIANTS = ("c", "rust", "rust-cmemfd", "c-rmemfd", "rust-debug", "c-debug")


@dataclasses.dataclass
class Environment:
    """Kernels and guest binaries the scenarios need, built on demand."""

    tree: str
    work: str
    kernels: dict
    gen_init_cpio: str
    binaries: dict

    # Kernels named here but not built yet: the caller builds them while other tests run.
    deferred: tuple = ()

    @classmethod
    def prepare(cls, pattern, defer=()):
        """Builds the kernels `pattern` needs, except those in `defer`, whose image paths are
        returned in `kernels` all the same and listed in `deferred`."""
        cache = vm.cache_dir()
        wanted = [v for v in VARIANTS
                  if pattern.startswith("*") or pattern.startswith(v + "/")
                  or pattern.startswith("cross/") and v in ("c", "rust")
                  or pattern.startswith("harness/") and v == "c"]
        if not wanted:
            return None
        # The guest programs need a built kernel's headers, so one kernel at least is built now.
        deferred = [v for v in wanted if v in defer]
        if len(deferred) == len(wanted):
            deferred = []
        kernels = {}
        for variant in wanted:
            build = (os.path.join(cache, "build", variant) if variant in deferred
                     else vm.build_kernel(variant))
            kernels[variant] = os.path.join(build, "arch/x86/boot/bzImage")
        any_build = os.path.join(cache, "build", next(v for v in wanted if v not in deferred))
        work = os.path.join(cache, "work")
        os.makedirs(work, exist_ok=True)
        tree = vm.kernel_tree()
        binaries = build_guest_binaries(tree, os.path.join(any_build, "hdr"),
                                        os.path.join(work, "bin"))
        return cls(tree, work, kernels, os.path.join(any_build, "usr", "gen_init_cpio"),
                   binaries, tuple(deferred))


def cargo_target_dir():
    return os.path.join(vm.cache_dir(), "cargo-target")


# Static guest programs built from the userspace crates: (crate, cargo target kind, name).
RUST_GUEST_PROGRAMS = (
    ("liveupdate", "example", "luo-roundtrip"),
    ("luo-agent", "bin", "luo-agent"),
    ("luo-agent", "bin", "luoctl"),
    ("luo-agent", "example", "kv-service"),
)


def build_rust_guest_binaries(out):
    """Static guest programs built on the userspace crates (tools/)."""
    env = dict(os.environ, CARGO_TARGET_DIR=cargo_target_dir(),
               RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols")
    target = "x86_64-unknown-linux-gnu"
    bins = {}
    for crate, kind, name in RUST_GUEST_PROGRAMS:
        subprocess.run(["cargo", "build", "--quiet", "--release", "--target", target,
                        f"--{kind}", name],
                       cwd=os.path.join(ROOT, "tools", crate), env=env, check=True)
        sub = ("examples",) if kind == "example" else ()
        src = os.path.join(cargo_target_dir(), target, "release", *sub, name)
        dst = os.path.join(out, name)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755)
        bins[name] = dst
    return bins


def build_guest_binaries(tree, hdr, out):
    """Static guest programs: the liveupdate kselftests (upstream's and the project's, linked into
    the tree by the overlay) built with their own Makefile, and the project's helper programs."""
    os.makedirs(out, exist_ok=True)
    subprocess.run(["make", "-s", "-C", os.path.join(tree, SELFTESTS), f"OUTPUT={out}",
                    f"KHDR_INCLUDES=-isystem {hdr}/include", "LDFLAGS=-static -s"], check=True)
    bins = {name: os.path.join(out, name)
            for name in ["liveupdate", "luo_abi", "luo_abi_incoming", "luo_sessions", "luo_memfd",
                         "luo_test_files", "luo_fault", "luo_stress"] + UPSTREAM_KEXEC}
    cflags = ["-static", "-s", "-O2", "-Wall", "-D_GNU_SOURCE=", "-Wno-unused-function",
              "-isystem", f"{hdr}/include"]
    for src in sorted(os.listdir(os.path.join(ROOT, "tools", "vm"))):
        if src.endswith(".c"):
            dst = os.path.join(out, src[:-2])
            # Our programs see the project's copy of the uAPI header first (run.py checks
            # that it is the kernel's).
            subprocess.run(["gcc", *cflags, "-I", os.path.join(ROOT, "include", "uapi"),
                            os.path.join(ROOT, "tools", "vm", src), "-o", dst], check=True)
            bins[src[:-2]] = dst
    bins.update(build_rust_guest_binaries(out))
    return bins


@dataclasses.dataclass
class Test(vm.Scenario):
    """A scenario plus the rule that turns its outcome into counted results."""

    counter: object = None
    # Run only by `make test-long`, left out to keep a cold `make test` under an hour: a
    # replay on the debug build of a check the other kernels run in `make test`, or a check
    # at the handover format's own limits, which takes minutes under TCG.
    long: bool = False

    def result_names(self):
        return [self.name]

    def results(self, out):
        if self.counter:
            return self.counter(self, out)
        return [(self.name, "pass" if out.ok else "fail", "\n".join(out.problems))]


def ktap_rows(test_name, results):
    """Result rows of a KTAP or KUnit run. Every kernel here has LUO, so a skipped case is a
    failure: upstream's tests skip when /dev/liveupdate is missing."""
    rows = []
    for name, status in results:
        if status == "skip":
            rows.append((f"{test_name}/{name}", "fail", "skipped on a kernel that has LUO"))
        else:
            rows.append((f"{test_name}/{name}", status, "see serial log"))
    return rows


def count_ktap(expected, stage=0):
    """Count each KTAP result of one stage on its own; a broken VM run fails too.

    `expected` is the number of results the program must report: a plan of "1..0" (a program
    that found nothing to test) is a failure, not an empty pass.
    """
    return count_ktap_stages([(stage, "the program", expected)])


def count_ktap_stages(runs):
    """count_ktap for several KTAP programs, one per stage: `runs` lists (stage, program,
    expected results)."""
    def counter(test, out):
        logs = out.stage_logs()
        rows, problems = [], list(out.problems)
        for stage, prog, expected in runs:
            results, plan = vm.ktap_results(logs[stage] if stage < len(logs) else "")
            rows += ktap_rows(test.name, results)
            if plan != expected or len(results) != expected:
                problems.append(f"{prog}: expected {expected} results, plan said {plan}, "
                                f"{len(results)} reported")
        if problems:
            rows.append((test.name, "fail", "\n".join(problems)))
        return rows
    return counter


FLB_NAMES = [f"liveupdate-test-flb-v{i}" for i in range(3)]

# lib/tests/liveupdate.c messages, per stage, that show the FLB lifecycle.
FLB_STAGE1 = [(r"liveupdate test: Registered 3 FLBs with file handler: \[memfd-v2\]",
               "test FLBs registered with the memfd handler")] + [
    (rf"liveupdate test: {n}: preserve was triggered", f"{n} preserved") for n in FLB_NAMES]
FLB_STAGE2 = [(r"liveupdate test: Registered 3 FLBs with file handler: \[memfd-v2\]",
               "test FLBs registered again after kexec")] + [
    (rf"liveupdate test: {n}: found flb data from the previous boot", f"{n} retrieved")
    for n in FLB_NAMES] + [
    (rf"liveupdate test: {n}: finish was triggered", f"{n} finished") for n in FLB_NAMES]


def count_kexec_with_flb(test, out):
    """The upstream kexec test, and the in-kernel FLB test judged from the same log."""
    rows = [(test.name, "pass" if out.ok else "fail", "\n".join(out.problems))]
    flb = f"{test.name.rsplit('/', 1)[0]}/in-kernel-flb-test"
    parts = out.stage_logs()
    problems = []
    for i, expect in enumerate([FLB_STAGE1, FLB_STAGE2]):
        part = parts[i] if i < len(parts) else ""
        problems += [f"stage {i + 1}: missing /{r}/ ({m})" for r, m in expect
                     if not re.search(r, part)]
        problems += [line for line in part.splitlines() if "liveupdate test: " in line
                     and "ERROR" in line or "liveupdate_flb_get_incoming for" in line]
    rows.append((flb, "fail" if problems else "pass", "\n".join(problems)))
    return rows


def upstream_kexec(variant, kernel, name, binaries, vmopts=None, second=None):
    """An upstream two-stage kexec test; `second` is the kernel of stage 2 if it differs."""
    return Test(
        name=f"{variant}/{name}",
        stages=[
            vm.Stage(kernel, f"{name} -s 1\n"),
            vm.Stage(second or kernel, f"{name} -s 2\n", [
                (r"TEST PASSED", "upstream stage 2 verdict"),
                (r"luo: Retrieved live update data, liveupdate number: 1$", "handover found"),
            ]),
        ],
        binaries=binaries,
        timeout=240,
        counter=count_kexec_with_flb if name == "luo_kexec_simple" else None,
        **(vmopts or {}),
    )


def upstream_suite(variant, kernel, bins, vmopts=None):
    """Every upstream test, unmodified: the API tests (each result counted) and the four
    kexec tests, with the in-kernel FLB test judged from the luo_kexec_simple log."""
    return [Test(
        name=f"{variant}/liveupdate-api",
        stages=[vm.Stage(kernel, "liveupdate\n")],
        binaries=bins,
        timeout=300,
        counter=count_ktap(UPSTREAM_API_TESTS),
        **(vmopts or {}),
    )] + [upstream_kexec(variant, kernel, n, bins, vmopts) for n in UPSTREAM_KEXEC]


def count_must_fail(reason):
    """A harness self-test: the run must be judged failed, for the stated reason."""
    def counter(test, out):
        if out.ok:
            return [(test.name, "fail", "the harness passed a run it should have failed")]
        if not any(reason in p for p in out.problems):
            return [(test.name, "fail", f"failed, but not for '{reason}':\n" + "\n".join(out.problems))]
        return [(test.name, "pass", "")]
    return counter


def harness_self_tests(kernel, bins):
    """Real VM runs that must fail: a kernel WARNING in the log, and a marker that never shows."""
    return [
        Test(name="harness/warning-fails-run",
             stages=[vm.Stage(kernel, "echo 'WARNING: CPU: 0 PID: 1 at harness self-test' > /dev/kmsg\n")],
             binaries=bins, timeout=60, counter=count_must_fail("kernel report in serial log")),
        Test(name="harness/missing-marker-fails-run",
             stages=[vm.Stage(kernel, "echo hello\n", [(r"this marker is never printed", "bait")])],
             binaries=bins, timeout=60, counter=count_must_fail("missing marker")),
        Test(name="harness/failing-script-fails-run",
             stages=[vm.Stage(kernel, "false\n"), vm.Stage(kernel, "true\n")],
             binaries=bins, timeout=60, counter=count_must_fail("script failed")),
    ]


# The KUnit suites of luo-rs (luo/kunit.rs, luo/session.rs, memfd_luo/kunit.rs,
# luo_test/luo_test.rs) and the number of cases each has: a suite whose init fails reports no
# case, and a case that is lost reports nothing, so the counts are pinned.
KUNIT_SUITES = {"luo_rs_abi": 13, "luo_rs_session": 3, "luo_rs_chain": 3, "luo_rs_handler": 4,
                "luo_rs_handler_api": 3, "luo_rs_memfd_abi": 6,
                "luo_rs_session_entries": 1}


def count_kunit(test, out):
    """Each KUnit case of the Rust core counts on its own."""
    results, suites = vm.kunit_results(out.stage_logs()[0], "luo_rs_")
    rows = ktap_rows(test.name, results)
    problems = list(out.problems)
    missing = [s for s in KUNIT_SUITES if s not in suites]
    if missing:
        problems.append(f"KUnit suites missing from the boot log: {', '.join(missing)}")
    for suite, expected in KUNIT_SUITES.items():
        seen = sum(1 for name, _ in results if name.startswith(suite + "."))
        if suite in suites and seen != expected:
            problems.append(f"KUnit suite {suite} reported {seen} cases, expected {expected}")
    if problems:
        rows.append((test.name, "fail", "\n".join(problems)))
    return rows


def abi_errno_test(variant, kernel, bins):
    """The errno contract kselftests; the same binaries must pass on the C and the Rust core.

    Stage 1 runs luo_abi and luo_abi_incoming -s 1, which leaves a session per incoming test
    for stage 2, where luo_abi_incoming -s 2 runs them, as upstream's kexec tests run.
    """
    return Test(
        name=f"{variant}/abi-errno",
        stages=[vm.Stage(kernel, "luo_abi\nluo_abi_incoming -s 1\n"),
                vm.Stage(kernel, "luo_abi_incoming -s 2\n")],
        binaries=bins,
        timeout=180,
        counter=count_ktap_stages([(0, "luo_abi", ABI_TESTS),
                                   (1, "luo_abi_incoming", ABI_INCOMING_TESTS)]),
    )


# KASAN's shadow memory makes KHO's default scratch size (twice the memory in use at
# boot) too large to reserve; debug kernels get explicit scratch sizes and more RAM. A
# WARNING or a KASAN report stops the kernel on the spot. (Not kasan_multi_shot: with it, the
# early-boot interrupt splat of a kexec'd KASAN kernel, see vm.early_irq_splat, cascades into
# reports from every later interrupt and a hang, instead of one report and a panic.) no5lvl:
# that splat is a KASAN false positive of 5-level paging (see vm.early_irq_splat), which the
# guest otherwise gets from QEMU's "-cpu max". kmemleak=off: tracking costs about 11 s of a
# 42 s debug run (measured side by side); only the runs that scan for leaks keep it on
# (leak_checked).
DEBUG_VM = {"memory": "2G",
            "cmdline": "liveupdate=on kho_scratch=16M,256M,256M panic_on_warn=1 no5lvl "
                       "kmemleak=off"}


def rust_core_tests(variant, r, bins):
    """The Rust core: the upstream tests, its KUnit suites, the errno contract, boot and
    kexec."""
    vmopts = DEBUG_VM if variant.endswith("-debug") else {}
    device_check = (
        "test -c /dev/liveupdate\n"
        "exec 3<>/dev/liveupdate\n"
        "if (exec 4<>/dev/liveupdate) 2>/dev/null; then echo second open allowed; exit 1; fi\n"
        "echo 'exclusive open: second open refused'\n"
        "exec 3>&-\n"
    )
    registered = (r"luo: luo-rs: Rust core active, /dev/liveupdate registered",
                  "the Rust crate registered the device")
    edges = failure_path_tests(variant, r, bins, vmopts) + lifecycle_edge_tests(
        variant, r, bins, vmopts)
    if variant.endswith("-debug"):
        edges = [leak_checked(t) for t in edges]
    return upstream_suite(variant, r, bins, vmopts) + file_lifecycle_tests(
        variant, r, bins, vmopts) + edges + [flb_unasked_test(variant, r, bins, vmopts),
                                     missing_handler_test(variant, r, bins, vmopts)] + [
        Test(
            name=f"{variant}/kunit",
            stages=[vm.Stage(r, "true\n")],
            binaries=bins,
            timeout=180,
            counter=count_kunit,
            kunit=True,
            **vmopts,
        ),
        dataclasses.replace(abi_errno_test(variant, r, bins), **vmopts),
        Test(
            name=f"{variant}/boot-and-kexec",
            stages=[
                vm.Stage(r, device_check, [registered, (r"exclusive open: second open refused",
                                                        "exclusive open")]),
                vm.Stage(r, device_check, [registered]),
            ],
            binaries=bins,
            timeout=180,
            **vmopts,
        ),
    ]


def c_debug_control(k, bins):
    """The C reference built like rust-debug (KASAN, UBSAN, lockdep, kmemleak, ...) and booted
    the same way: the control for the debug runs of the Rust core. A report that shows here is
    upstream's or the debug options', not luo-rs's. The test FLB is left off, as on `c`."""
    device_check = "test -c /dev/liveupdate && echo 'device present'\n"
    present = [(r"^device present$", "/dev/liveupdate is there")]
    return [
        Test(name="c-debug/boot-and-kexec",
             stages=[vm.Stage(k, device_check, present), vm.Stage(k, device_check, present)],
             binaries=bins, timeout=180, **DEBUG_VM),
        upstream_kexec("c-debug", k, "luo_kexec_simple", bins, DEBUG_VM),
    ] + lifecycle_edge_tests("c-debug", k, bins, DEBUG_VM, with_flb=False)


def count_lines(pattern, label):
    """A stage-script line that prints how many kernel log lines match `pattern`."""
    return f"echo \"{label}: $(dmesg | grep -cE '{pattern}' || true)\"\n"


def two_stage(variant, k, bins, vmopts):
    """A maker of two-stage tests on kernel `k`: name, the two scripts and their markers."""
    def test(name, stage1, stage2, expect1=(), expect2=()):
        return Test(name=f"{variant}/{name}",
                    stages=[vm.Stage(k, stage1, list(expect1)), vm.Stage(k, stage2, list(expect2))],
                    binaries=bins, timeout=300, **(vmopts or {}))
    return test


# The command line of the next stage, for stage scripts that call luo-kexec themselves.
NEXT_CMDLINE = "\"$(sed 's/ *luo_stage=[0-9]*//' /proc/cmdline) luo_stage=2\""


def file_lifecycle_tests(variant, k, bins, vmopts=None):
    """The file lifecycle paths the upstream tests cannot reach, driven through the luo-rs
    test handler (luo_test/) and memfds: each scenario is a live update."""
    test = two_stage(variant, k, bins, vmopts)
    # 4 sessions of 25 files; file 60 (value 2010, third session) fails freeze on request.
    freeze_failure = (
        "luo_test_files -n 4 -f 25 -k 60 -- -t preserve\n"
        f"if luo-kexec /next/kernel /next/initrd {NEXT_CMDLINE}; then exit 1; fi\n"
        + count_lines("luo_test: unfreeze [0-9]+$", "unfrozen")
        + count_lines("luo_test: unfreeze 2010$", "failing file unfrozen")
        + "kill -USR1 $(cat /tmp/luo_test_files.pid)\nsleep 1\n"
    )
    flb_once = count_lines("luo_test: flb finish$", "test FLB finished")
    return [
        test("freeze-failure-rollback", freeze_failure,
             "luo_test_files -n 4 -f 25 -- -t verify\n" + flb_once, [
                 (r"luo_test: freeze 2010 fails on request", "the handler failed freeze"),
                 (r"Freeze failed for token\[0x7da\] handler\[luo-rs-test-v1\]",
                  "the core reported the failing file"),
                 (r"luo-kexec: reboot\(LINUX_REBOOT_CMD_KEXEC\): Resource temporarily unavailable",
                  "the kexec was called off with the handler's error"),
                 (r"^unfrozen: 60$", "the 60 files frozen before it were unfrozen"),
                 (r"^failing file unfrozen: 0$", "the failing file was not unfrozen"),
                 (r"luo_test_files: freeze failure cleared", "failure cleared for the retry"),
             ], [
                 (r"luo_test_files: verified 4 x 25 test files", "all 100 files arrived"),
                 (r"^test FLB finished: 1$", "the test FLB finished once"),
             ]),
        test("preserve-after-session-close", "luo_test_files -- -t reuse\n",
             "luo_test_files -- -t reuse_verify\n", [
                 (r"preserved in another session: EBUSY", "one file, one session"),
                 (r"preserved again after its session was closed", "closing released it"),
             ], [(r"re-preserved memfd arrived intact", "the second preservation crossed")]),
        test("retrieve-twice", "luo_test_files -- -t memfd\n", "luo_test_files -- -t twice\n",
             [(r"luo_test_files: memfd preserved", "memfd preserved")],
             [(r"luo_test_files: two fds, one open file", "idempotent retrieve")]),
        test("finish-discards-unretrieved", "luo_test_files -n 1 -f 3 -- -t preserve\n",
             "luo_test_files -f 3 -- -t partial\n"
             + count_lines("luo_test: finish [0-9]+ discarded$", "discarded")
             + count_lines("luo_test: finish 0 retrieved$", "retrieved and finished"), [], [
                 (r"finished with 2 unretrieved files", "FINISH with files left"),
                 (r"^discarded: 2$", "the handler discarded both"),
                 (r"^retrieved and finished: 1$", "the retrieved one finished as such"),
             ]),
        test("finish-refused-while-busy", "luo_test_files -n 1 -f 2 -- -t preserve\n",
             "luo_test_files -- -t refuse\n" + flb_once, [], [
                 (r"luo_test: can_finish 1: not yet", "the handler said no"),
                 (r"FINISH refused with EBUSY", "EBUSY"),
                 (r"FINISH accepted once the handler agreed", "finish after all"),
                 (r"^test FLB finished: 1$", "the test FLB finished once, after the files"),
             ]),
    ]


# On the debug build (kmemleak): wait past kmemleak's minimum object age (5 s) so that what
# the script just did is examined, scan, and scan once more only if something was found, as
# kmemleak advises against transient false positives (a scan takes about 14 s under TCG).
LEAK_CHECK = (
    "sleep 5\necho scan > /sys/kernel/debug/kmemleak\n"
    "leaks=$(grep -c '^unreferenced object' /sys/kernel/debug/kmemleak || true)\n"
    "if [ \"$leaks\" != 0 ]; then echo scan > /sys/kernel/debug/kmemleak;"
    " leaks=$(grep -c '^unreferenced object' /sys/kernel/debug/kmemleak || true); fi\n"
    "echo \"kmemleak: $leaks unreferenced objects\"\n"
    "grep -A12 '^unreferenced object' /sys/kernel/debug/kmemleak | head -60\n"
)
NO_LEAK = (r"^kmemleak: 0 unreferenced objects$", "kmemleak finds no leak")


# The debug-build tests that end with a kmemleak scan (about 15 s with its wait): a
# refusal at early boot, one at the first open, a failed retrieve, sessions left unfinished,
# and a handler unregistered with files present, whose first stage is scanned as well.
LEAK_CHECKED = ("rust-debug/corrupt-duplicate-flb", "rust-debug/corrupt-duplicate-token",
                "rust-debug/retrieve-failure-kept", "rust-debug/kexec-with-incoming-unfinished",
                "rust-debug/unregister-with-files-present", "rust-debug/fault-injection",
                "rust-debug/stress-random-calls",
                "rust-debug/corrupt-memfd-folio-duplicate-index")
EVERY_STAGE_LEAK_CHECKED = ("rust-debug/unregister-with-files-present",
                            "rust-debug/fault-injection")


# Debug-build replays left to `make test-long` to keep a cold `make test` well under the hour:
# each replays on the debug kernel a path that a debug run kept in `make test` goes through
# as well (the same ioctls, the same kexec and finish code), and each runs on `rust` and,
# where it applies, `c` in `make test`. The C control keeps its boot and kexec runs there.
DEBUG_REPLAYS_LONG = (
    "rust-debug/boot-and-kexec", "rust-debug/preserve-after-session-close",
    "rust-debug/flb-held-refuses-kexec", "rust-debug/plain-reboot-with-sessions-open",
    "c-debug/plain-reboot-with-sessions-open",
    "rust-debug/retrieve-twice", "rust-debug/finish-refused-while-busy",
    "rust-debug/flb-retrieve-failure", "rust-debug/kexec-after-an-unloaded-image",
    "rust-debug/missing-handler-eio", "rust-debug/flb-finished-by-its-files",
    "rust-debug/sessions-duplicate-at-51",
    "c-debug/kexec-after-an-unloaded-image", "c-debug/kexec-into-liveupdate-off",
    "c-debug/kexec-with-incoming-unfinished", "c-debug/unregister-with-files-present",
)


def leak_checked(test):
    """Appends the kmemleak check to the last stage of a debug-build test in LEAK_CHECKED,
    or to each of its stages."""
    if test.name not in LEAK_CHECKED:
        return test
    test.cmdline = test.cmdline.replace(" kmemleak=off", "")
    # A scan reads every page's struct page: 1 GiB (none of these tests needs more) scans in
    # about 9 s where 2 GiB take 15.
    test.memory = "1G"
    every = test.name in EVERY_STAGE_LEAK_CHECKED
    for stage in test.stages if every else test.stages[-1:]:
        stage.script += LEAK_CHECK
        stage.expect.append(NO_LEAK)
    return test


# After a refusal the machine must still work: 256 MiB of page cache written and freed.
USABLE = ("dd if=/dev/zero of=/tmp/fill bs=1M count=256 2>/dev/null && rm /tmp/fill "
          "&& echo 'machine usable: 256 MiB written and freed'\n")


def with_args(vmopts, args):
    """VM options `vmopts` with `args` added to the kernel command line."""
    opts = dict(vmopts or {})
    opts["cmdline"] = f"{opts.get('cmdline', 'liveupdate=on')} {args}"
    return opts


def without_test_flb(vmopts):
    """VM options that boot the test handler without its FLB. The C core's FLB count
    underflows (a WARNING) whenever test files finish before anyone asked for the FLB (SPEC
    10.4 item 2, shown by c/flb-unasked-underflows-upstream); without the FLB, the C control
    runs of the other paths are not drowned by that known bug."""
    return with_args(vmopts, "luo_test_flb=off")


def failure_path_tests(variant, k, bins, vmopts=None, with_flb=True):
    """Handler and FLB failures the test handler produces on request (luo_test/uapi.h): a
    file whose retrieve fails, an FLB whose preserve fails, an FLB whose retrieve fails.
    Without `with_flb`, only the file's failure, on a handler without its FLB."""
    test = two_stage(variant, k, bins, vmopts if with_flb else without_test_flb(vmopts))
    tests = [
        test("retrieve-failure-kept", "luo_test_files -- -t fail_retrieve\n",
             "luo_test_files -- -t fail_retrieve_verify\n"
             + count_lines("luo_test: retrieve 1 fails on request$", "handler retrieve calls")
             + count_lines("luo_test: finish 1 failed$", "finished as failed")
             + count_lines("luo_test: finish [02] retrieved$", "others finished"),
             [(r"preserved 3 files, file 1 to fail its retrieve", "preserved")], [
                 (r"retrieve of file 1, attempt 1: EIO", "the handler's error reaches userspace"),
                 (r"retrieve of file 1, attempt 2: EIO", "the error is kept"),
                 (r"^handler retrieve calls: 1$", "the handler is not asked again"),
                 (r"FINISH after a failed retrieve succeeded", "the session still finishes"),
                 (r"^finished as failed: 1$", "finish tells the handler the retrieve failed"),
                 (r"^others finished: 2$", "the other files finish as retrieved"),
             ]),
    ]
    if not with_flb:
        return tests
    return tests + [
        test("flb-preserve-failure", "luo_test_files -- -t flb_fail_preserve\n",
             "luo_test_files -n 1 -f 1 -- -t verify\n"
             + count_lines("luo_test: flb finish$", "test FLB finished"), [
                 (r"luo_test: flb preserve fails on request", "the FLB failed"),
                 (r"PRESERVE_FD failed with the FLB's ENOSPC", "its error reaches userspace"),
                 (r"the same PRESERVE_FD succeeded once the FLB worked", "nothing was left"),
             ], [
                 (r"luo_test_files: verified 1 x 1 test files", "the retried file arrived"),
                 (r"^test FLB finished: 1$", "and its FLB, once"),
             ]),
        test("flb-retrieve-failure", "luo_test_files -- -t flb_fail_retrieve\n",
             "luo_test_files -n 1 -f 2 -- -t verify\n"
             + count_lines("luo_test: flb retrieve fails on request$", "FLB retrieve calls")
             + count_lines("luo_test: flb finish$", "test FLB finished"),
             [(r"preserved 2 files on an FLB whose retrieve will fail", "preserved")], [
                 (r"luo_test_files: verified 1 x 2 test files", "the files still arrive"),
                 (r"^FLB retrieve calls: 1$", "the FLB's retrieve was tried once"),
                 (r"^test FLB finished: 0$", "an FLB that was never retrieved is not finished"),
             ]),
        # An FLB only an outgoing reference keeps preserved: no file would finish it in the
        # next kernel, so the kexec is refused until the reference is put.
        test("flb-held-refuses-kexec",
             "luo_test_files -- -t flb_held\n"
             f"if luo-kexec /next/kernel /next/initrd {NEXT_CMDLINE}; then exit 1; fi\n"
             + count_lines("luo_test: flb unpreserve$", "FLB unpreserved while referenced")
             + "luo_test_files -- -t flb_put\n"
             + count_lines("luo_test: flb unpreserve$", "FLB unpreserved after the put")
             + "luo_test_files -n 1 -f 1 -- -t preserve\n",
             "luo_test_files -n 1 -f 1 -- -t verify\n"
             + count_lines("luo_test: flb finish$", "test FLB finished"), [
                 (r"luo_test_files: FLB referenced, its only file's session closed",
                  "a reference alone keeps the FLB preserved"),
                 (r"FLB 'luo-rs-test-flb-v1' is referenced but no preserved file depends on it",
                  "the core names the FLB"),
                 (r"luo-kexec: reboot\(LINUX_REBOOT_CMD_KEXEC\): Device or resource busy",
                  "the kexec is refused with EBUSY"),
                 (r"^FLB unpreserved while referenced: 0$", "the referenced FLB stays preserved"),
                 (r"^FLB unpreserved after the put: 1$", "the put unpreserves it"),
             ], [
                 (r"luo_test_files: verified 1 x 1 test files", "the next kexec carries a file"),
                 (r"^test FLB finished: 1$", "and its FLB, finished once"),
             ]),
    ]


def lifecycle_edge_tests(variant, k, bins, vmopts=None, with_flb=True):
    """Live updates off the usual path: an image loaded and unloaded before the real one,
    a next kernel booted with liveupdate=off, incoming sessions left unfinished at a kexec,
    the handler of preserved files unregistered (and registered again) before it, and a
    plain reboot with sessions open."""
    vm_opts = (vmopts or {}) if with_flb else without_test_flb(vmopts)
    opts = dict(binaries=bins, timeout=300, **vm_opts)
    unload_first = ("printf '#!/bin/sh\\nexec luo-kexec --unload-first \"$1\" \"$2\" \"$3\"\\n'"
                    " > /tmp/kexec-with\nchmod +x /tmp/kexec-with\n")
    return [
        Test(name=f"{variant}/kexec-after-an-unloaded-image", stages=[
            vm.Stage(k, "luo_test_files -n 1 -f 2 -- -t preserve\n" + unload_first, [
                (r"luo-kexec: image loaded and unloaded", "an image was loaded and unloaded"),
                (r"reboot without an image refused with EINVAL", "kexec without image refused"),
            ]),
            vm.Stage(k, "luo_test_files -n 1 -f 2 -- -t verify\n", [
                (r"luo_test_files: verified 1 x 2 test files", "nothing was lost"),
            ]),
        ], **opts),
        Test(name=f"{variant}/kexec-into-liveupdate-off", stages=[
            vm.Stage(k, "luo_test_files -n 1 -f 2 -- -t preserve\necho liveupdate=off > /tmp/next-cmdline\n"),
            vm.Stage(k, "grep -q 'luo_stage=2 liveupdate=off$' /proc/cmdline && echo 'live update off'\n"
                     "test ! -e /dev/liveupdate && echo 'no /dev/liveupdate'\n" + USABLE, [
                (r"^live update off$", "booted with liveupdate=off"),
                (r"^no /dev/liveupdate$", "no device"),
                (r"^machine usable: 256 MiB written and freed$", "machine usable"),
            ]),
        ], **opts),
        Test(name=f"{variant}/kexec-with-incoming-unfinished", stages=[
            vm.Stage(k, "luo_test_files -n 2 -f 2 -- -t preserve\n"),
            vm.Stage(k, "luo_test_files -- -t half\n", [
                (r"tf-0 retrieved, not finished; tf-1 untouched; next preserved", "left unfinished"),
            ]),
            vm.Stage(k, "luo_test_files -- -t after_half\n", [
                (r"the unfinished sessions did not cross a second kexec", "they are gone"),
                (r"the session made beside them arrived", "the new one arrived"),
            ]),
        ], **opts),
        # A plain reboot (guest-init's `reboot -f`; QEMU runs with -no-reboot, so the restart
        # ends the run) with test files and their FLB preserved: the live update's reboot path
        # is the kexec's alone, so nothing is frozen or written.
        Test(name=f"{variant}/plain-reboot-with-sessions-open", stages=[
            vm.Stage(k, "luo_test_files -n 2 -f 3 -- -t preserve\n", [
                (r"luo_test_files: preserved 2 x 3 test files", "test files preserved"),
                (r"reboot: Restarting system", "the machine restarts"),
                (r"\A(?![\s\S]*(?:luo_test: freeze|liveupdate_reboot:|Freeze failed))",
                 "nothing of the live update's reboot path ran"),
            ]),
        ], **opts),
        # The orchestrator keeps pointers to a handler in the files it holds for it, and does
        # not wait for them when the handler is unregistered (review defect 1).
        Test(name=f"{variant}/unregister-with-files-present", stages=[
            vm.Stage(k, "luo_test_files -- -t unregister\n", [
                (r"handler unregistered with 2 files preserved", "unregistered with files"),
                (r"without its handler, a new file is refused with ENOENT", "no handler, no file"),
                (r"registered again, file 2 preserved", "registered again"),
            ]),
            vm.Stage(k, "luo_test_files -n 1 -f 3 -- -t verify\n", [
                (r"luo_test_files: verified 1 x 3 test files", "all three files arrived"),
            ]),
        ], **opts),
    ]


def missing_handler_test(variant, k, bins, vmopts=None):
    """The next kernel lacks the handler of a preserved file: as in the C core, the first
    open of /dev/liveupdate fails with EIO, and so does every later one (latched)."""
    kexec_without = "echo luo_test=off > /tmp/next-cmdline\n"
    eio_twice = (
        "for i in 1 2; do\n"
        "  if (exec 3<>/dev/liveupdate) 2>/tmp/err; then echo \"open $i succeeded\"; exit 1; fi\n"
        "  grep -q 'Input/output error' /tmp/err && echo \"open $i: EIO\"\n"
        "done\n"
    )
    return Test(
        name=f"{variant}/missing-handler-eio",
        stages=[
            vm.Stage(k, "luo_test_files -n 1 -f 2 -- -t preserve\n" + kexec_without),
            vm.Stage(k, eio_twice + "grep -q luo_test=off /proc/cmdline && echo 'no test handler'\n", [
                (r"^no test handler$", "booted without the test handler"),
                (r"No registered handler for compatible 'luo-rs-test-v1'", "cause logged"),
                (r"^open 1: EIO$", "first open fails with EIO"),
                (r"^open 2: EIO$", "the failure is latched"),
            ]),
        ],
        binaries=bins, timeout=240, **(vmopts or {}))


# Stage 1 of the fault-injection tests leaves the kexec to luo_fault, which calls reboot()
# under faults until it goes through.
REBOOT_UNDER_FAULTS = ("printf '#!/bin/sh\\nexec luo_fault reboot \"$1\" \"$2\" \"$3\"\\n'"
                       " > /tmp/kexec-with\nchmod +x /tmp/kexec-with\n")
FAULTS = r"(\d+) faults injected: \d+ refused \(([A-Z ]+|none)\), \d+ got by; then it succeeded"


def fault_injection_test(variant, k, bins, vmopts=None, open_faults=True):
    """Every LUO call with its 1st, 2nd, ... allocation failing (CONFIG_FAILSLAB,
    CONFIG_FAIL_PAGE_ALLOC, /proc/thread-self/fail-nth; luo_fault) until it
    succeeds: each fault is refused with an errno and leaves nothing behind (the same call
    then succeeds), and what the final calls made crosses the kexec intact. The reboot path
    runs under faults too. Without `open_faults`, the first open in the next kernel is made
    without faults (the C core loses every incoming session at one: see
    fault_first_open_test)."""
    opts = dict(vmopts or {}) if open_faults else without_test_flb(vmopts)
    call = lambda name: (rf"luo_fault: {name}: {FAULTS}", f"{name} under faults")  # noqa: E731
    stage2 = [call(r"open \(first, reading the incoming sessions\)")] if open_faults else []
    return Test(
        name=f"{variant}/fault-injection",
        stages=[
            vm.Stage(k, "luo_fault -t out\n" + REBOOT_UNDER_FAULTS, [
                call(r"open \(first\)"), call("CREATE_SESSION"), call("PRESERVE_FD memfd"),
                call("PRESERVE_FD test file"), call("GET_NAME"),
                (r"luo_fault: stage 1 done", "the files for stage 2 preserved"),
                (r"luo_fault: reboot: attempt 1$", "reboot() under faults"),
            ]),
            vm.Stage(k, "luo_fault -t " + ("in" if open_faults else "in_no_open") + "\n", stage2 + [
                call("RETRIEVE_SESSION"),
                (r"luo_fault: the memfd preserved under faults arrived intact",
                 "the memfd crossed intact"),
                (r"luo_fault: the test file preserved under faults arrived",
                 "the test file crossed"),
                call("FINISH"),
                (rf"luo_fault: RETRIEVE_FD memfd: \d+ faults injected", "RETRIEVE_FD of memfds"),
                (rf"luo_fault: RETRIEVE_FD test file: \d+ faults injected",
                 "RETRIEVE_FD of test files"),
                call("FINISH with files given up and left"),
                (r"luo_fault: stage 2 done", "every call made under faults"),
            ]),
        ],
        binaries=bins, timeout=400, **opts)


# The seed of the stress runs in `make test`; LUO_STRESS_SEED=n replays another.
STRESS_SEED = int(os.environ.get("LUO_STRESS_SEED", "20261202"))


def stress_test(variant, k, bins, vmopts=None):
    """Threads in several processes issuing every ioctl with random arguments, seeded
    (luo_stress): each outcome as predicted, never two live sessions of one name,
    one winner of two racing preserves of a file, files free again after their session was
    closed under a preserve; then the kexec carries exactly the survivors, byte for byte."""
    return Test(
        name=f"{variant}/stress-random-calls",
        stages=[
            vm.Stage(k, f"luo_stress -r {STRESS_SEED} -- -t out\n", [
                (rf"luo_stress: seed {STRESS_SEED}: ", "the seed printed"),
                (r"luo_stress: stage 1 outcomes: success \d+(?=.* EBUSY)(?=.* EEXIST)(?=.* EFAULT)"
                 r"(?=.* E2BIG)(?=.* EBADF)(?=.* ENOTTY)", "the calls met every refusal"),
                (r"luo_stress: stage 1: [1-9]\d* sessions with [1-9]\d* files survive; \d+ calls, "
                 r"0 wrong outcomes", "every outcome as predicted"),
                (r"luo_stress: stage 1 done", "the survivors written down")]),
            vm.Stage(k, "luo_stress -- -t in\n", [
                (r"luo_stress: stage 2: [1-9]\d* sessions and [1-9]\d* files arrived as the "
                 r"manifest says; \d+ calls, 0 wrong outcomes", "exactly the survivors crossed"),
                (r"luo_stress: stage 2 done", "every survivor finished")]),
        ],
        binaries=bins, timeout=600, **dict(vmopts or {}))


def fault_first_open_test(variant, k, bins, vmopts=None):
    """The C core at the first open of /dev/liveupdate in the next kernel: one failed
    allocation while it reads the incoming sessions fails that open with EIO, and every
    later open too, for the rest of the boot: every session the previous kernel handed over
    is lost (luo-rs: ENOMEM, and the next open goes on; */fault-injection)."""
    return Test(
        name=f"{variant}/fault-first-open-latches-upstream",
        stages=[
            vm.Stage(k, "luo_fault -t out\n"),
            vm.Stage(k, "luo_fault -t open_latches\n", [
                (r"luo_fault: first open, allocation \d+ failing: EIO",
                 "a fault reading the incoming sessions fails the open with EIO"),
                (r"luo_fault: open 3 without faults: EIO", "latched: every session is lost"),
            ]),
        ],
        binaries=bins, timeout=300, **without_test_flb(vmopts))


def flb_unasked_test(variant, k, bins, vmopts=None):
    """An FLB whose object nobody asks for in the next kernel: its files' finish alone must
    finish it (SPEC 10.4 item 2). The C core leaves the count at zero and underflows."""
    t = Test(
        name=f"{variant}/flb-finished-by-its-files",
        stages=[
            vm.Stage(k, "luo_test_files -n 1 -f 2 -- -t preserve\n",
                     [(r"luo_test: flb preserve", "the test FLB was preserved with the first file")]),
            vm.Stage(k, "luo_test_files -n 1 -f 2 -- -t verify\n"
                     + count_lines("luo_test: flb retrieve$", "test FLB retrieved")
                     + count_lines("luo_test: flb finish$", "test FLB finished"), [
                (r"^test FLB retrieved: 1$", "retrieved once, when the last file finished"),
                (r"^test FLB finished: 1$", "finished exactly once"),
            ]),
        ],
        binaries=bins, timeout=240, **(vmopts or {}))
    if variant == "c":
        t.name = "c/flb-unasked-underflows-upstream"
        t.counter = count_must_fail("refcount")
    return t


MEMFD_VM = {"memory": "3G"}


def memfd_set_test(name, first, second, mib, vmopts=None):
    """luo_memfd's set: a large patterned memfd, a sparse one, one written through an mmap
    after preserve, one per allowed seal; preserved by `first`, checked byte for byte by
    `second`."""
    return Test(
        name=name,
        stages=[
            vm.Stage(first, f"luo_memfd -s 1 -m {mib} -- -t set\n", [
                (r"big memfd while preserved: ftruncate Operation not permitted, fallocate "
                 r"Operation not permitted: ok", "size changes refused with EPERM"),
                (r"after its session was closed: ftruncate and fallocate allowed: ok",
                 "size changes allowed again after the session is closed"),
                (r"luo_memfd: preserved 6 sealed memfds", "a memfd per allowed seal"),
                (r"seal 0x40 refused by F_ADD_SEALS: ok", "no other seal can be set"),
                (r"luo_memfd: set preserved", "set preserved")]),
            vm.Stage(second, f"luo_memfd -s 2 -m {mib} -- -t set\n", [
                (rf"big memfd checksum ([0-9a-f]{{16}}), identical to the preserved \1, 0 bad "
                 r"words: ok", f"{mib} MiB identical"),
                (r"big memfd position 12293 \(want 12293\): ok", "position kept"),
                (r"sparse memfd: size 67108864, 3 written pages and zeros, 0 bad words: ok",
                 "sparse memfd intact"),
                (r"memfd written through mmap after preserve checksum .* 0 bad words: ok",
                 "mmap writes after preserve arrived"),
                (r"seal 0x20: seals after kexec 0x3e \(want 0x3e\): ok", "seals kept"),
                (r"luo_memfd: set verified", "every check held")]),
        ],
        timeout=600,
        **(vmopts or MEMFD_VM),
    )


# Stage 1 of an agent scenario ends with the agent doing the kexec: guest-init runs
# /tmp/kexec-with instead of luo-kexec when a script leaves one.
AGENT_START = ("mkdir -p /run\nluo-agent &\n"
               "for i in $(seq 50); do [ -S /run/luo-agent.sock ] && break; sleep 0.1; done\n")
AGENT_KEXEC = ("printf '#!/bin/sh\\nexec luoctl kexec \"$1\" \"$2\" \"$3\"\\n' > /tmp/kexec-with\n"
               "chmod +x /tmp/kexec-with\n")


def agent_test(name, first, second):
    """Several services hand memfds to luo-agent and exit; the agent kexecs on request;
    after the live update the services get their data back from the new agent."""
    return Test(
        name=name,
        stages=[
            vm.Stage(first, AGENT_START
                     + "kv-service start cache-a 64\nkv-service start cache-b 16\n"
                     + "kv-service start vm-ram 8\nkv-service start-own guest 8\n"
                     + "if kv-service start cache-a 1; then exit 1; fi\n"
                     + "if luo-agent --socket /run/second.sock; then exit 1; fi\n"
                     + "if luoctl preserve other 1 /dev/null; then exit 1; fi\n"
                     + "if luoctl retrieve nosuch 1; then exit 1; fi\n"
                     + "luoctl retrieve cache-b 1 > /tmp/copy-b\n"
                     + "echo \"LUO-VM: a copy of cache-b before the update: "
                       "$(wc -c < /tmp/copy-b) bytes\"\nrm /tmp/copy-b\n"
                     + "luoctl list\n" + AGENT_KEXEC, [
                (r"luo-agent: no sessions from a previous kernel", "agent started clean"),
                (r"kv-service cache-a: 64 MiB data set .* handed to the agent", "first service"),
                (r"kv-service vm-ram: 8 MiB data set .* handed to the agent", "third service"),
                (r"kv-service guest: 4 MiB data set .* preserved as token 2 into its own session",
                 "a service preserves into its own session"),
                (r"luoctl: session \"guest\" \(to carry across the next live update, delegated "
                 r"to its client, who keeps its own files in it\): tokens \[\]",
                 "the delegated session listed"),
                (r"kv-service: refused \(DuplicateToken\): preserving token 1 in session "
                 r"\"cache-a\": PreserveFd failed: this token is already used in the session",
                 "duplicate token explained"),
                (r"luo-agent: cannot open /dev/liveupdate: Open failed: another process has "
                 r"/dev/liveupdate open", "a second agent is told the device is busy"),
                (r"luoctl: refused \(Unsupported\): .*no handler can preserve this kind of file",
                 "unsupported file explained"),
                (r"luoctl: refused \(UnknownSession\): no session \"nosuch\"",
                 "unknown session explained"),
                (r"LUO-VM: a copy of cache-b before the update: 16781312 bytes",
                 "a preserved file can be taken back before the update"),
                (r"luoctl: session \"cache-b\" \(to carry across the next live update\): "
                 r"tokens \[1\]", "listed"),
                (r"luoctl: asking the agent to live update", "kexec asked of the agent"),
            ]),
            vm.Stage(second, AGENT_START
                     + "luoctl list\n"
                     + "kv-service resume cache-b\nkv-service resume cache-a\n"
                     + "kv-service resume vm-ram\nkv-service resume-own guest\n"
                     + "luoctl list\n", [
                (r"luo-agent: adopted session \"cache-a\" with 1 file", "agent adopted sessions"),
                (r"luoctl: session \"vm-ram\" \(from the previous kernel, waiting to be handed "
                 r"back\): tokens \[1\]", "incoming listed"),
                (r"kv-service cache-a: 64 MiB data set back, all 8388608 values intact",
                 "64 MiB intact"),
                (r"kv-service cache-b: 16 MiB data set back, all \d+ values intact", "16 MiB intact"),
                (r"kv-service vm-ram: 8 MiB data set back, all \d+ values intact", "8 MiB intact"),
                (r"kv-service guest: token 1: 8 MiB data set back, all \d+ values intact",
                 "the delegated session's first file"),
                (r"kv-service guest: token 2: 4 MiB data set back, all \d+ values intact",
                 "and its second"),
                (r"kv-service guest: its own session finished and released",
                 "the client finished its own session"),
                (r"luoctl: the agent holds no sessions", "every session finished"),
            ]),
        ],
        timeout=400,
        **MEMFD_VM,
    )


def memfd_cycle_test(name, kernels, mib, vmopts=None):
    """The same memfd carried through len(kernels) - 1 live updates: each kernel retrieves
    and checks it, finishes, and preserves it again."""
    stages = []
    for gen, k in enumerate(kernels, 1):
        last = gen == len(kernels)
        expect = [(rf"luo_memfd: generation {gen} verified", f"generation {gen} intact")] \
            if gen > 1 else []
        if not last:
            expect.append((rf"luo_memfd: generation {gen} preserved", f"generation {gen} preserved"))
        stages.append(vm.Stage(k, f"luo_memfd -s {gen} -m {mib}{' -l' if last else ''} -- -t cycle\n",
                               expect))
    return Test(name=name, stages=stages, timeout=180 * len(kernels), **(vmopts or MEMFD_VM))


def memfd_tests(variant, k, bins, vmopts=None):
    """The memfd handler's own scenarios (a smaller memfd on the debug build, where all but the
    set, the holes and the large folios past EOF are left to `make test-long`)."""
    big = 64 if vmopts else 512
    gone = 64 if vmopts else 256
    tests = [
        memfd_set_test(f"{variant}/memfd-set-{big}", k, k, big, vmopts),
        memfd_holes_test(f"{variant}/memfd-holes-4g", k, k, 4, vmopts),
        memfd_thp_test(f"{variant}/memfd-thp-past-eof", k, k, vmopts),
        memfd_swap_test(f"{variant}/memfd-swapped-out", k, k, vmopts),
        memfd_cycle_test(f"{variant}/memfd-three-updates", [k, k, k, k], 64, vmopts),
        Test(
            name=f"{variant}/memfd-discard-returns-memory",
            stages=[
                vm.Stage(k, f"luo_memfd -s 1 -m {gone} -- -t discard\n",
                         [(rf"preserved {gone} MiB that will not be retrieved", "memfd preserved")]),
                vm.Stage(k, f"luo_memfd -s 2 -m {gone} -- -t discard\n",
                         [(rf"MemFree .* MiB returned of {gone}: ok", "memory returned after FINISH")]),
            ],
            binaries=bins,
            timeout=400,
            **(vmopts or MEMFD_VM),
        ),
    ]
    for t in tests[3:]:
        t.long = variant.endswith("-debug")
    return tests


def memfd_holes_test(name, first, second, gib, vmopts=None):
    """A memfd of `gib` GiB with three written pages, in a 1 GiB guest: preserving it must not
    fill its holes, and the next kernel gets the pages back with the holes still holes."""
    return Test(
        name=name,
        stages=[
            vm.Stage(first, f"luo_memfd -s 1 -m {gib} -- -t holes\n", [
                (rf"MemFree .* kB for a {gib} GiB memfd with 3 written pages: ok",
                 "preserving it took next to no memory"),
                (r"preserved memfd holds 3 pages: ok", "the holes were not filled")]),
            vm.Stage(second, f"luo_memfd -s 2 -m {gib} -- -t holes\n", [
                (rf"retrieved memfd: size {gib << 30} \(want {gib << 30}\), 3 pages \(want 3\): ok",
                 "size kept, three pages"),
                (r"data 1 at .*: ok", "SEEK_DATA finds the middle page where it was"),
                (r"no data after the last page: ok", "nothing else has data"),
                (r"3 written pages back, sampled holes read zeros, 0 bad: ok", "contents intact"),
                (rf"luo_memfd: {gib} GiB memfd with holes verified", "every check held")]),
        ],
        timeout=300,
        **(vmopts or {}),
    )


def memfd_thp_test(name, first, second, vmopts=None):
    """A memfd in 2 MiB folios (shmem THP), the last one reaching past the end of the file:
    every byte comes back, and the folios stay 2 MiB."""
    return Test(
        name=name,
        stages=[
            vm.Stage(first, "luo_memfd -s 1 -- -t thp\n", [
                (r"ShmemHugePages 6144 kB: three 2 MiB folios .* the last past the end: ok",
                 "shmem put the file in 2 MiB folios, the last past EOF"),
                (r"luo_memfd: preserved a memfd in 2 MiB folios", "preserved")]),
            vm.Stage(second, "luo_memfd -s 2 -- -t thp\n", [
                (r"memfd in 2 MiB folios checksum .* 0 bad words: ok", "every byte back"),
                (r"ShmemHugePages after retrieve 6144 kB \(want 6144\): ok", "folios still 2 MiB"),
                (r"luo_memfd: memfd in 2 MiB folios verified", "every check held")]),
        ],
        timeout=300,
        **(vmopts or {}),
    )


# A swap device for the guest: zram, compressed in memory (no disk needed).
SWAP_ON = ("echo 64M > /sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null && "
           "swapon /dev/zram0 && ")


def memfd_swap_test(name, first, second, vmopts=None):
    """A memfd half pushed out to swap: PRESERVE_FD reads the swapped folios back in (swap
    empties again), and the next kernel has every byte, the hole at the end reading zeros."""
    return Test(
        name=name,
        stages=[
            vm.Stage(first, SWAP_ON + "luo_memfd -s 1 -m 32 -- -t swap\n", [
                (r"swap holds \d+ kB of the memfd's 16384 kB pushed out: ok",
                 "half the memfd went to swap"),
                (r"after PRESERVE_FD swap holds \d+ kB: read back in: ok",
                 "PRESERVE_FD read it back in"),
                (r"luo_memfd: preserved a memfd that was half in swap", "preserved")]),
            vm.Stage(second, "luo_memfd -s 2 -m 32 -- -t swap\n", [
                (r"memfd once in swap: 24 MiB written, 8 MiB of hole, 0 bad words: ok",
                 "every byte back"),
                (r"luo_memfd: memfd once in swap verified", "every check held")]),
        ],
        timeout=300,
        **(vmopts or {}),
    )


def sessions_kexec(name, kernels, counts, vmopts=None, dup=False):
    """Sessions created in stage 1 survive each kexec, are checked and (except in the last
    stage) created again, by the luo_sessions kselftest. `kernels` names the kernel of each
    stage, so a scenario can cross from one implementation to the other."""
    stages = []
    n = counts
    for i, kernel in enumerate(kernels, 1):
        last = i == len(kernels)
        passed = (r"^ok 1 sessions\.carried$", f"luo_sessions -s {i} passed")
        if i == 1:
            script = f"luo_sessions -s 1 -n {n}{' -d' if dup else ''}\n"
            expect = [(rf"luo_sessions: created {n} sessions", "sessions created"), passed]
            if dup:
                expect.append((r"duplicate create refused with EEXIST", "duplicate refused"))
        else:
            script = f"luo_sessions -s {i} -n {n}{'' if last else ' -k'}\n"
            expect = [
                (rf"luo_sessions: verified {n} sessions", "sessions verified after kexec"),
                (rf"liveupdate number: {i - 1}$", "live update number incremented"),
                passed,
            ]
        stages.append(vm.Stage(kernel, script, expect))
    # Each stage's initramfs carries the next ones; from three stages on, the first outgrows
    # what a cold-booted 1 GiB guest leaves beside KHO's scratch reservation.
    opts = vmopts or ({"memory": "2G"} if len(kernels) > 2 else {})
    return Test(name=name, stages=stages, timeout=120 + 120 * len(kernels), **opts)


def scale_tests(variant, k, bins, long=False):
    """More than one kmalloc'd array can hold: a session with 50,000 files and 60,000
    sessions across a kexec (luo-rs used to refuse them, or WARN in the page allocator; the
    C core carries both). With `long`, the format's own limits: 510,000 sessions, the most
    10,000 blocks of 51 hold, and 200,000 files in one session."""
    sessions, files = (510_000, 200_000) if long else (60_000, 50_000)
    # The test handler logs each callback at info level: not on the serial console (set
    # after boot, so that the boot banners the log is judged by are printed).
    quiet = "echo 4 > /proc/sys/kernel/printk\n"
    big = sessions_kexec(f"{variant}/sessions-kexec-{sessions}", [k, k], sessions,
                         {"memory": "2G"})
    big.timeout, big.long = (900 if long else 300), long
    return [big, Test(
        name=f"{variant}/files-{files}-in-one-session",
        stages=[vm.Stage(k, f"{quiet}luo_test_files -n 1 -f {files} -- -t preserve\n", [
                    (rf"luo_test_files: preserved 1 x {files} test files", "files preserved")]),
                vm.Stage(k, f"{quiet}luo_test_files -n 1 -f {files} -- -t verify\n", [
                    (rf"luo_test_files: verified 1 x {files} test files", "files verified")])],
        binaries=bins, timeout=900 if long else 300, long=long, memory="2G")]


def empty_block_rescued(c, r):
    """The C core leaves an empty block after a duplicate create at 51 sessions (SPEC 10.4
    item 1) and panics reading it. The Rust core skips the block, keeps all 51 sessions and
    writes a clean chain, which the next C kernel reads again."""
    t = sessions_kexec("cross/c-empty-block-rescued-by-rust", [c, r, c], 51, dup=True)
    t.stages[1].expect.append(
        (r"block\(s\) without entries skipped", "the empty block is skipped, not refused"))
    return t


# Classes of luo_rs_corrupt= (luo/corrupt.rs) and what the next kernel must log. Damage to the
# structure is refused during boot, so /dev/liveupdate never appears: the root and the session
# chain at the early initcall, the FLB page when the test handler registers its FLBs (it is
# read on first use, as by the C core); damage to a session entry or a session's files at the
# first open of /dev/liveupdate, which then fails with EIO, as in the C core, which reads the
# entries there too.
CORRUPTIONS = [
    # (class, where it is refused: boot, session or files, what the log says, pages of the
    # previous kernel kept for good)
    ("root-version", "boot", r"LUO state is incompatible with 'luo-v5'", 1),
    # The session chain is restored at the first open; what was restored of it is kept (the
    # root was read at boot and given back).
    ("sessions-outside-memory", "session",
     r"Block 0x400000000000 is not a page preserved by the previous kernel", 0),
    ("sessions-misaligned", "session", r"Block 0x[0-9a-f]+040 is not a page preserved", 0),
    ("sessions-not-preserved", "session", r"Block 0x[0-9a-f]+000 is not a page preserved", 0),
    ("block-count", "session", r"Block contains invalid entry count: 52", 1),
    ("block-cycle", "session", r"Block set is corrupted: block 0x[0-9a-f]+ appears twice", 2),
    # The two session blocks are kept.
    ("duplicate-name", "session", r"Duplicate session name in the handover data: \[tf-\d+\]",
     2),
    ("unterminated-name", "session",
     r"Malformed session entry in the handover data: Session name is empty or not "
     r"NUL-terminated", 2),
    ("file-set-inconsistent", "session",
     r"Malformed session entry in the handover data: Session file set is inconsistent", 2),
    # The FLB page is kept; the session chain, not restored yet, stays reserved.
    ("flb-count", "boot",
     r"Malformed FLB page in the handover data: FLB header is invalid: pgcnt 1, count 64", 1),
    ("duplicate-flb", "boot",
     r"Malformed FLB page in the handover data: FLB name appears twice", 1),
    ("file-count", "files", r"File count mismatch: expected 3, found 2", 1),
    ("duplicate-token", "files", r"Token 0x[0-9a-f]+ appears twice in a session", 1),
    ("empty-compatible", "files",
     r"Malformed file entry in the handover data: Compatible string is empty or not "
     r"NUL-terminated", 1),
]


def corrupted_handover_test(variant, k, bins, corruption, vmopts=None):
    """The Rust core writes damaged handover data (one class, test build only); the next
    kernel refuses it with a log line and no splat, even under panic_on_warn, and boots on."""
    name, where, reason, kept = corruption
    if where == "boot":
        script = "test ! -e /dev/liveupdate && echo 'no /dev/liveupdate'\n" + USABLE
        expect = [(reason, "the damage is named in the log"),
                  (r"The incoming tree failed to initialize properly", "refusal logged"),
                  (rf"luo-rs: {kept} page\(s\) of it kept from the allocator",
                   "every page read so far is kept from the allocator"),
                  (r"live update disabled for this boot", "live update off, boot goes on"),
                  (r"^no /dev/liveupdate$", "no device this boot")]
    else:
        script = ("if (exec 3<>/dev/liveupdate) 2>/tmp/err; then echo 'open succeeded'; exit 1; fi\n"
                  "echo \"first open refused: $(sed 's/.*: //' /tmp/err)\"\n" + USABLE)
        expect = [(reason, "the damage is named in the log"),
                  (r"^first open refused: Input/output error$", "the first open fails: EIO"),
                  (rf"\b{kept} page\(s\) of the previous kernel kept from the allocator",
                   f"the {where} blocks are kept from the allocator")]
        if where == "files":
            expect.append((r"Failed to deserialize files for session \[tf-0\]", "session named"))
    expect.append((r"^machine usable: 256 MiB written and freed$", "machine usable"))
    opts = with_args(vmopts, f"panic_on_warn=1 luo_rs_corrupt={name}")
    return Test(
        name=f"{variant}/corrupt-{name}",
        stages=[
            # 60 sessions of 2 test files: two session blocks, files, the test FLB.
            vm.Stage(k, "luo_test_files -n 60 -f 2 -- -t preserve\n", [
                (r"handover data corrupted as asked", "the damage was written")]),
            vm.Stage(k, script, expect),
        ],
        binaries=bins,
        timeout=240,
        **opts,
    )


# Damage to one memfd's record or folio array (luo_memfd_corrupt=CLASS, the Rust handler's
# test build): (class, the errno RETRIEVE_FD gives, what the log says).
MEMFD_CORRUPTIONS = [
    ("folio-index-outside-file", "EINVAL", r"folio 0 \(512 pages\) at page 1027 of a 1027-page file"),
    ("folio-index-misaligned", "EINVAL", r"folio 0 \(512 pages\) at page 1 of a 1027-page file"),
    ("folio-duplicate-index", "EEXIST", r"cannot add folio 1 at page 0: EEXIST"),
    ("folio-pfn-not-preserved", "EIO", r"cannot restore the folio at pfn 0x1$"),
    ("folio-pfn-outside-memory", "EIO", r"cannot restore the folio at pfn 0x10000000000$"),
    ("folio-count", "EINVAL", r"folio array of 4096 bytes for 257 folios"),
    ("folio-array-not-preserved", "EINVAL", r"cannot restore the folio array"),
    ("memfd-size", "EINVAL", r"malformed memfd data from the previous kernel: EINVAL"),
]


def corrupted_memfd_test(variant, k, bins, corruption, vmopts=None):
    """The Rust memfd handler writes one memfd's data damaged (test build only); in the next
    kernel RETRIEVE_FD refuses that memfd with an errno and a log line, no splat under
    panic_on_warn, while the memfds beside it arrive intact and the machine stays usable."""
    name, errno, reason = corruption
    opts = with_args(vmopts, f"panic_on_warn=1 luo_memfd_corrupt={name}")
    return Test(
        name=f"{variant}/corrupt-memfd-{name}",
        stages=[
            vm.Stage(k, "luo_memfd -s 1 -- -t damaged\n", [
                (r"memfd data damaged as asked", "the damage was written")]),
            vm.Stage(k, f"luo_memfd -s 2 -e {errno} -- -t damaged\n" + USABLE, [
                (reason, "the damage is named in the log"),
                (rf"luo_memfd: damaged memfd: RETRIEVE_FD {errno}, again {errno} .*: ok",
                 f"RETRIEVE_FD refuses it with {errno}, and again"),
                (r"luo_memfd: the damaged memfd refused, the two beside it intact",
                 "the memfds beside it arrive intact"),
                (r"^machine usable: 256 MiB written and freed$", "machine usable")]),
        ],
        binaries=bins, timeout=300, **opts)


def all_scenarios(env):
    bins = env.binaries
    tests = harness_self_tests(next(iter(env.kernels.values())), bins)
    c = env.kernels.get("c")
    if c:
        tests += upstream_suite("c", c, bins)
        tests.append(flb_unasked_test("c", c, bins))
        tests.append(missing_handler_test("c", c, bins))
        tests += failure_path_tests("c", c, bins, with_flb=False)
        tests += lifecycle_edge_tests("c", c, bins, with_flb=False)
        tests.append(abi_errno_test("c", c, bins))
    # The userspace library end to end: a memfd preserved and retrieved through it.
    for variant in ("c", "rust"):
        k = env.kernels.get(variant)
        if k:
            tests.append(Test(
                name=f"{variant}/library-roundtrip",
                stages=[
                    vm.Stage(k, "luo-roundtrip 1 32\n", [
                        (r"luo-roundtrip: second preserve refused: PreserveFd failed: this file is "
                         r"already preserved in some session", "EBUSY explained"),
                        (r"luo-roundtrip: preserved 32 MiB", "memfd preserved")]),
                    vm.Stage(k, "luo-roundtrip 2\n", [
                        (r"luo-roundtrip: verified 33554432 bytes after kexec", "data verified")]),
                ],
                binaries=bins,
                timeout=240,
                memory="2G",
            ))
    for variant in ("rust", "rust-debug"):
        if variant in env.kernels:
            tests += rust_core_tests(variant, env.kernels[variant], bins)
            tests += memfd_tests(variant, env.kernels[variant], bins,
                                 DEBUG_VM if variant.endswith("-debug") else None)
    # Damaged handover data, every class on the product; on the debug build one class of each
    # place the damage is found (root, chain, session, FLB page, file set at the first open).
    if "rust" in env.kernels:
        tests += [corrupted_handover_test("rust", env.kernels["rust"], bins, c)
                  for c in CORRUPTIONS]
        tests += [corrupted_memfd_test("rust", env.kernels["rust"], bins, c)
                  for c in MEMFD_CORRUPTIONS]
    if "c-debug" in env.kernels:
        tests += c_debug_control(env.kernels["c-debug"], bins)
    if "rust-debug" in env.kernels:
        debug_classes = ("sessions-not-preserved", "block-cycle", "duplicate-name",
                         "duplicate-flb", "duplicate-token")
        tests += [leak_checked(corrupted_handover_test("rust-debug", env.kernels["rust-debug"],
                                                       bins, c, DEBUG_VM))
                  for c in CORRUPTIONS if c[0] in debug_classes]
        # One memfd class whose folios are partly added, partly discarded: kmemleak scans.
        tests += [leak_checked(corrupted_memfd_test("rust-debug", env.kernels["rust-debug"],
                                                    bins, c, DEBUG_VM))
                  for c in MEMFD_CORRUPTIONS if c[0] == "folio-duplicate-index"]
    # The mixed combinations: each core with the other memfd handler.
    for variant in ("rust-cmemfd", "c-rmemfd"):
        if variant in env.kernels:
            tests += upstream_suite(variant, env.kernels[variant], bins)
    # luo-agent, the session-holding daemon, on the product and on the C reference.
    for variant in ("rust", "c"):
        if variant in env.kernels:
            k = env.kernels[variant]
            tests.append(agent_test(f"{variant}/agent-several-services", k, k))
            tests.append(agent_failures_test(f"{variant}/agent-failures", k, k))
    if "c-rmemfd" in env.kernels:
        k = env.kernels["c-rmemfd"]
        tests.append(memfd_set_test("c-rmemfd/memfd-set-64", k, k, 64))
    if "rust" in env.kernels:
        k = env.kernels["rust"]
        tests.append(memfd_holes_test("rust/memfd-holes-64g", k, k, 64))
    if "c" in env.kernels:
        tests.append(memfd_thp_test("c/memfd-thp-past-eof", env.kernels["c"], env.kernels["c"]))
        tests.append(memfd_swap_test("c/memfd-swapped-out", env.kernels["c"], env.kernels["c"]))
    # Sessions across kexec: the same scenarios on the C reference show the expectations
    # are 7.3's; the duplicate-at-51 case panics the C kernel (SPEC 10.4 item 1) and
    # runs on the Rust core only.
    for variant in ("c", "rust", "rust-debug"):
        k = env.kernels.get(variant)
        if not k:
            continue
        vmopts = DEBUG_VM if variant.endswith("-debug") else None
        runs = [sessions_kexec(f"{variant}/sessions-kexec-{n}", [k, k], n, vmopts)
                for n in (1, 51, 52, 2000)]
        runs.append(sessions_kexec(f"{variant}/sessions-two-kexecs", [k, k, k], 60, vmopts))
        for t in runs:
            t.long = variant.endswith("-debug")
        tests += runs
        dup = sessions_kexec(f"{variant}/sessions-duplicate-at-51", [k, k], 51, vmopts, dup=True)
        if variant == "c":
            # Documents the upstream hazard the Rust core avoids: the C kernel must panic.
            dup.name = "c/sessions-duplicate-at-51-panics-upstream"
            dup.counter = count_must_fail("Kernel panic")
        tests.append(dup)
    # Allocation failures injected into every call, on the product, its debug build (with
    # kmemleak) and the C reference.
    for variant in ("rust", "rust-debug"):
        if variant in env.kernels:
            tests.append(leak_checked(fault_injection_test(
                variant, env.kernels[variant], bins,
                DEBUG_VM if variant.endswith("-debug") else None)))
    if c:
        tests.append(fault_injection_test("c", c, bins, open_faults=False))
        tests.append(fault_first_open_test("c", c, bins))
    # Random calls from racing threads and processes, then a kexec.
    for variant in ("rust", "rust-debug", "c"):
        if variant in env.kernels:
            tests.append(leak_checked(stress_test(
                variant, env.kernels[variant], bins,
                DEBUG_VM if variant.endswith("-debug") else None)))
    if "rust" in env.kernels:
        tests += scale_tests("rust", env.kernels["rust"], bins)
        tests += scale_tests("rust", env.kernels["rust"], bins, long=True)
    c, r = env.kernels.get("c"), env.kernels.get("rust")
    if c and r:
        tests.append(sessions_kexec("cross/c-to-rust-sessions", [c, r], 100))
        tests.append(sessions_kexec("cross/rust-to-c-sessions", [r, c], 100))
        tests.append(sessions_kexec("cross/c-rust-c-rust-sessions", [c, r, c, r], 75))
        tests.append(empty_block_rescued(c, r))
        # The upstream kexec tests with stage 1 on one core and stage 2 on the other: files
        # (memfds) and FLBs cross between the implementations in both directions.
        # Test-handler files and their FLB written by the C core, finished by the Rust core.
        tests.append(Test(
            name="cross/c-to-rust-test-files",
            stages=[vm.Stage(c, "luo_test_files -n 3 -f 40 -- -t preserve\n"),
                    vm.Stage(r, "luo_test_files -n 3 -f 40 -- -t verify\n"
                             + count_lines("luo_test: flb finish$", "test FLB finished"), [
                        (r"luo_test_files: verified 3 x 40 test files", "files crossed"),
                        (r"^test FLB finished: 1$", "the C core's FLB count is honoured"),
                    ])],
            binaries=bins, timeout=240))
        for name in UPSTREAM_KEXEC:
            tests.append(upstream_kexec("cross/c-to-rust", c, name, bins, second=r))
            tests.append(upstream_kexec("cross/rust-to-c", r, name, bins, second=c))
        # memfds between the stock C kernel and luo-rs (core and handler), checked byte
        # for byte in both directions and along a chain.
        tests.append(memfd_set_test("cross/c-to-rust-memfd-set", c, r, 256))
        tests.append(memfd_set_test("cross/rust-to-c-memfd-set", r, c, 256))
        tests.append(memfd_cycle_test("cross/c-rust-c-rust-memfd", [c, r, c, r], 128))
        # Holes and large folios: luo-rs preserves only what a memfd holds, and the stock C
        # kernel reads that; large folios reaching past EOF cross both ways.
        tests.append(memfd_holes_test("cross/rust-to-c-memfd-holes-4g", r, c, 4))
        tests.append(memfd_thp_test("cross/c-to-rust-memfd-thp-past-eof", c, r))
        tests.append(memfd_thp_test("cross/rust-to-c-memfd-thp-past-eof", r, c))
        tests.append(memfd_swap_test("cross/c-to-rust-memfd-swapped-out", c, r))
        tests.append(memfd_swap_test("cross/rust-to-c-memfd-swapped-out", r, c))
        # A memfd one implementation preserved and the other discards at FINISH.
        for name, first, second in (("c-to-rust", c, r), ("rust-to-c", r, c)):
            tests.append(Test(
                name=f"cross/{name}-memfd-discard",
                stages=[
                    vm.Stage(first, "luo_memfd -s 1 -m 128 -- -t discard\n",
                             [(r"preserved 128 MiB that will not be retrieved", "preserved")]),
                    vm.Stage(second, "luo_memfd -s 2 -m 128 -- -t discard\n",
                             [(r"MemFree .* MiB returned of 128: ok", "memory returned")]),
                ],
                timeout=400, **MEMFD_VM))
    import systemd_guest
    tests += systemd_guest.systemd_tests(env)
    for t in tests:
        t.binaries = t.binaries or bins
        t.long = t.long or t.name in DEBUG_REPLAYS_LONG
    return tests


# The agent with its socket open to every user, as the packaged unit has it.
AGENT_START_SHARED = AGENT_START.replace("luo-agent &", "luo-agent --socket-mode 0666 &")
NOBODY = "run-as 65534"


def agent_failures_test(name, first, second):
    """What an operator meets besides the happy path: another user cannot see, take, release
    or live update anything of root's; thousands of idle connections keep nobody out; a live
    update that fails (a bad image, a command line without live update) gives every file back;
    after the update a client killed between RETRIEVE and its confirmation loses nothing."""
    return Test(
        name=name,
        stages=[
            vm.Stage(first, AGENT_START_SHARED
                     + "kv-service start cache-a 8\nkv-service start cache-b 4\n"
                     + f"{NOBODY} kv-service start own 1\n"
                     + "luoctl delegate vm2 -- sh -c 'echo \"LUO-VM: delegated session as fd 3: "
                       "$(readlink /proc/$$/fd/3) ($LISTEN_FDNAMES)\"'\n"
                     + f"{NOBODY} luoctl list > /tmp/seen; cat /tmp/seen\n"
                     + "if grep -q cache- /tmp/seen; then exit 1; fi\n"
                     + f"if {NOBODY} luoctl retrieve cache-a 1 > /tmp/stolen; then exit 1; fi\n"
                     + "[ -s /tmp/stolen ] && exit 1\n"
                     + f"if {NOBODY} luoctl release cache-b; then exit 1; fi\n"
                     + f"if {NOBODY} luoctl kexec /bin/busybox '' liveupdate=on; then exit 1; fi\n"
                     # 3000 idle connections of another user, twice what the agent keeps
                     # (half of its 4096 descriptors): root is still served.
                     + f"{NOBODY} idle-clients /run/luo-agent.sock 3000 > /tmp/idle &\nidle=$!\n"
                     + "for i in $(seq 600); do grep -q open /tmp/idle && break; sleep 0.1; done\n"
                     + "cat /tmp/idle\nluoctl list\n"
                     + "kill -USR1 $idle; sleep 1; tail -1 /tmp/idle\nkill $idle\n"
                     # Failed live updates: nothing is lost, nothing stays loaded.
                     + "head -c 65536 /dev/zero > /tmp/not-a-kernel\n"
                     + "if luoctl kexec /tmp/not-a-kernel '' liveupdate=on; then exit 1; fi\n"
                     + "if luoctl kexec /tmp/not-a-kernel '' quiet; then exit 1; fi\n"
                     + "mkfifo /tmp/fifo\n"
                     + "if luoctl kexec /tmp/fifo '' liveupdate=on; then exit 1; fi\n"
                     + "echo \"LUO-VM: kexec loaded after the failures: "
                       "$(cat /sys/kernel/kexec_loaded)\"\n"
                     + "kv-service resume cache-a\nkv-service resume cache-b\n"
                     + "luoctl list\n" + AGENT_KEXEC, [
                (r"kv-service own: 1 MiB data set .* handed to the agent",
                 "another user preserves its own"),
                (r"LUO-VM: delegated session as fd 3: anon_inode:\[luo_session\] vm2 \(vm2\)",
                 "luoctl delegate passes the session itself"),
                (r"luoctl: session \"own\" \(to carry across", "it sees its own session"),
                (r"luoctl: refused \(NotPermitted\): session \"cache-a\" belongs to another user",
                 "it cannot take root's file"),
                (r"luoctl: refused \(NotPermitted\): session \"cache-b\" belongs to another user",
                 "it cannot release root's session"),
                (r"luoctl: refused \(NotPermitted\): only root may live update",
                 "it cannot live update"),
                (r"LUO-VM: 3000 idle connections open", "3000 idle connections"),
                (r"luoctl: session \"cache-a\" \(to carry across the next live update\)",
                 "root is served through the flood"),
                (r"LUO-VM: (9[0-9][0-9]|1[0-9][0-9][0-9]) of 3000 idle connections hung up on",
                 "the flooder's longest idle made room"),
                (r"luoctl: refused \(Failed\): loading /tmp/not-a-kernel: kexec_file_load",
                 "a bad image is refused by the kernel"),
                (r"luoctl: refused \(BadRequest\): the next kernel's command line \"quiet\" "
                 r"does not turn live update on", "a command line without live update refused"),
                (r"luoctl: refused \(BadRequest\): /tmp/fifo is not a regular file",
                 "a FIFO does not wedge the agent"),
                (r"LUO-VM: kexec loaded after the failures: 0", "nothing left loaded"),
                (r"kv-service cache-a: 8 MiB data set back, all \d+ values intact",
                 "an aborted update gives every file back"),
                (r"kv-service cache-b: 4 MiB data set back, all \d+ values intact",
                 "the second too"),
                (r"luoctl: session \"cache-b\" \(to carry across", "still held for the update"),
                (r"luoctl: asking the agent to live update", "then the update"),
            ]),
            vm.Stage(second, AGENT_START_SHARED
                     + f"{NOBODY} luoctl list > /tmp/seen; cat /tmp/seen\n"
                     + "if grep -q cache- /tmp/seen; then exit 1; fi\n"
                     + f"if {NOBODY} luoctl retrieve cache-a 1 > /tmp/stolen; then exit 1; fi\n"
                     + "[ -s /tmp/stolen ] && exit 1\n"
                     + f"{NOBODY} kv-service resume own\n"
                     + "luoctl delegate vm2 -- sh -c 'echo \"LUO-VM: delegated session as fd 3: "
                       "$(readlink /proc/$$/fd/3) ($LISTEN_FDNAMES)\"'\n"
                     # The client dies after RETRIEVE, before its confirmation.
                     + "luoctl retrieve cache-a 1 -- sh -c "
                       "'echo LUO-VM: client has the file, killing it; kill -9 $PPID; sleep 1' "
                       "|| echo \"LUO-VM: luoctl ended with status $?\"\n"
                     + "luoctl list\n"
                     + "kv-service resume cache-a\nkv-service resume cache-b\nluoctl list\n", [
                (r"luo-agent: adopted session \"own\" with 1 file", "owners carried across"),
                (r"luoctl: session \"own\" \(from the previous kernel", "it sees its own"),
                (r"luoctl: refused \(NotPermitted\): session \"cache-a\" belongs to another user",
                 "it cannot take root's file after the update"),
                (r"kv-service own: 1 MiB data set back, all \d+ values intact",
                 "its own data back"),
                (r"LUO-VM: delegated session as fd 3: anon_inode:\[luo_session\] vm2 \(vm2\)",
                 "the incoming session passed too, then released"),
                (r"LUO-VM: client has the file, killing it", "client killed before confirming"),
                (r"LUO-VM: luoctl ended with status 137", "it died of SIGKILL"),
                (r"luoctl: session \"cache-a\" \(from the previous kernel, waiting to be handed "
                 r"back\): tokens \[1\]", "the agent still holds the file"),
                (r"kv-service cache-a: 8 MiB data set back, all \d+ values intact",
                 "nothing lost"),
                (r"kv-service cache-b: 4 MiB data set back, all \d+ values intact",
                 "second intact"),
                (r"luoctl: the agent holds no sessions", "every session finished"),
            ]),
        ],
        timeout=400,
        **MEMFD_VM,
    )


def demo(kernel, mib=256):
    """The README's main job: a service's data set carried through a live update by
    luo-agent, the service restarted in the new kernel and its data checked."""
    return Test(
        name="demo/kv-service-live-update",
        stages=[
            vm.Stage(kernel, AGENT_START + f"kv-service start kv {mib}\n" + "luoctl list\n"
                     + AGENT_KEXEC, [
                         (rf"kv-service kv: {mib} MiB data set .* handed to the agent",
                          "data set handed to the agent")]),
            vm.Stage(kernel, AGENT_START + "kv-service resume kv\nluoctl list\n", [
                (r"luo-agent: adopted session \"kv\"", "the new agent adopted the session"),
                (rf"kv-service kv: {mib} MiB data set back, all \d+ values intact",
                 "data verified after the live update"),
                (r"luoctl: the agent holds no sessions", "session finished")]),
        ],
        timeout=400,
        **MEMFD_VM,
    )
