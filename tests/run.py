#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The luo-rs test command: build the kernels, run every test, print one summary line.

Layers run here: host unit tests of the harness itself, the upstream selftests from the
7.3 tree (unmodified) on the C reference kernel, the in-kernel FLB test's messages, and
boot/kexec checks of the Rust core. Results are counted one by one; the last line is
"N passed, N failed[, N skipped]" and the exit status is non-zero if anything failed.
"""

import argparse
import concurrent.futures
import fnmatch
import contextlib
import difflib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenarios  # noqa: E402
import vm  # noqa: E402

ROOT = vm.ROOT


class Tally:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.names = []

    def record(self, name, status, detail="", seconds=None):
        self.names.append(name)
        took = f" ({seconds:.1f}s)" if seconds is not None else ""
        if status == "pass":
            self.passed += 1
            print(f"PASS {name}{took}", flush=True)
        elif status == "skip":
            self.skipped += 1
            print(f"SKIP {name}{took} {detail}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}{took}", flush=True)
            for line in detail.splitlines():
                print(f"     {line}", flush=True)


VARIANTS = set(scenarios.VARIANTS)


def distinct_checks(names):
    """How many results are distinct checks: a result's name without its kernel variant, its
    direction across implementations and the memfd size it ran at names the check; the other
    results replay one."""
    keys = set()
    for name in names:
        parts = name.split("/")
        if parts[0] in VARIANTS:
            parts[0] = "*"
        elif parts[0] == "cross" and len(parts) > 1:
            parts[1] = re.sub(r"c-to-rust|rust-to-c", "X", parts[1])
        keys.add(re.sub(r"(memfd-(set|holes|discard[a-z-]*))-\d+g?$", r"\1", "/".join(parts)))
    return len(keys)


def sh(*cmd):
    subprocess.run(cmd, check=True)


def host_tests(tally, pattern):
    """Unit tests of the harness (log judging, KTAP parsing) on the host."""
    if not fnmatch.fnmatch("host/harness", pattern):
        return
    suite = unittest.defaultTestLoader.discover(os.path.join(ROOT, "tests"), "test_*.py")
    for case in _flatten(suite):
        res = unittest.TestResult()
        case.run(res)
        problems = res.failures + res.errors
        tally.record(f"host/{case.id()}", "fail" if problems else "pass",
                     "\n".join(p[1] for p in problems))


def rustfmt_check(tally, pattern):
    """Kernel-side Rust must be rustfmt-clean with the kernel's .rustfmt.toml."""
    name = "host/rustfmt"
    if not fnmatch.fnmatch(name, pattern):
        return
    rustfmt = shutil.which("rustfmt") or os.path.expanduser("~/.cargo/bin/rustfmt")
    dirs = ("luo", "luo_test", "memfd_luo", "rust")
    files = sorted(str(p) for d in dirs for p in pathlib.Path(ROOT, d).rglob("*.rs"))
    if not os.path.exists(rustfmt):
        tally.record(name, "fail", "rustfmt not found (it comes with the machine's rustup)")
        return
    conf = os.path.join(ROOT, "tests", "rustfmt.toml")
    proc = subprocess.run([rustfmt, "--edition", "2021", "--config-path", conf, "--check", *files],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tally.record(name, "pass" if proc.returncode == 0 else "fail",
                 proc.stdout[-2000:] + "\nfix with: rustfmt --edition 2021 --config-path "
                 "tests/rustfmt.toml FILE")


UAPI_HEADER = os.path.join("include", "uapi", "linux", "liveupdate.h")


def uapi_check(tally, pattern):
    """The uAPI header the project's userspace is built against must be the kernel's own: the
    project adds no ioctl of its own, and a drift would build the tests against another ABI."""
    name = "host/uapi-header"
    if not fnmatch.fnmatch(name, pattern):
        return
    ours = os.path.join(ROOT, UAPI_HEADER)
    theirs = os.path.join(vm.kernel_tree(), UAPI_HEADER)
    try:
        with open(ours) as a, open(theirs) as b:
            mine, kernel = a.readlines(), b.readlines()
    except OSError as e:
        tally.record(name, "fail", f"cannot compare the headers: {e}")
        return
    diff = "".join(difflib.unified_diff(kernel, mine, theirs, ours))
    tally.record(name, "fail" if diff else "pass", diff[-3000:])


SERIES_CHECKS = [
    # The series is written with git format-patch;
    ("host/series-format-patch", "make"),
    # it applies with git am to pristine 7.3 and yields the overlaid tree;
    ("host/series-git-am", "am"),
    # checkpatch.pl --strict reports no error in it.
    ("host/series-checkpatch", "checkpatch"),
]


def series_check(tally, pattern):
    """The project as an upstream patch series (make series). Each step reads what the one
    before it wrote, so selecting any of them runs the steps before it too."""
    wanted = [fnmatch.fnmatch(name, pattern) for name, _ in SERIES_CHECKS]
    if not any(wanted):
        return
    last = max(i for i, w in enumerate(wanted) if w)
    broken = None
    for i, (name, command) in enumerate(SERIES_CHECKS[:last + 1]):
        if broken:
            status, detail, took = "fail", f"not checked: {broken} failed", None
        else:
            start = time.monotonic()
            r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "series.sh"), command],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            status, detail = ("pass" if r.returncode == 0 else "fail"), r.stdout[-3000:]
            took = time.monotonic() - start
            if r.returncode:
                broken = name
        if wanted[i]:
            tally.record(name, status, detail, took)


CLIPPY_WHERE = re.compile(r"^\s*--> (\S+?):\d+:\d+")


def clippy_check(tally, pattern, nice=False):
    """Kernel-side Rust of luo-rs must be clippy-clean under the kernel's lint set.

    Builds the rust-clippy variant with rustup's toolchain and CLIPPY=1, after removing the
    objects of the luo, luo_test and memfd_luo crates and the kernel crate so that all are
    linted again, and fails on any warning located in a file of this project.
    """
    name = "host/clippy"
    if not fnmatch.fnmatch(name, pattern):
        return
    lib = os.path.join(ROOT, "scripts", "lib.sh")
    have = subprocess.run(["bash", "-c", f"source {lib}; clippy_make_vars"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if have.returncode != 0:
        tally.record(name, "skip", "no clippy-driver of a version with rust-src in the apt "
                     "sources (see scripts/setup.sh clippy_toolchain)")
        return
    out = os.path.join(vm.cache_dir(), "build", "rust-clippy")
    for obj in ("kernel/liveupdate/luo_rs/luo/luo.o", "kernel/liveupdate/luo_rs/luo_test/luo_test.o",
                "kernel/liveupdate/luo_rs/memfd_luo/memfd_luo.o", "rust/kernel.o"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, obj))
    ours = [str(p.relative_to(ROOT)) for p in pathlib.Path(ROOT, "rust").rglob("*.rs")]
    start = time.monotonic()
    proc = subprocess.run(["nice", "-n", "19" if nice else "0", "bash",
                           os.path.join(ROOT, "scripts", "build-kernel.sh"), "rust-clippy"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = proc.stdout.splitlines()
    findings = []
    for i, line in enumerate(lines):
        if not re.match(r"^(warning|error)(\[|:)", line):
            continue
        where = next((CLIPPY_WHERE.match(l) for l in lines[i + 1:i + 4] if CLIPPY_WHERE.match(l)), None)
        path = where.group(1) if where else ""
        if "/luo_rs/" in path or any(path.endswith("/" + f) for f in ours):
            end = next((j for j in range(i + 1, len(lines)) if not lines[j].strip()), len(lines))
            text = "\n".join(lines[i:end])
            if text not in findings:
                findings.append(text)
    if proc.returncode != 0:
        findings.append("the clippy build failed:\n" + "\n".join(lines[-30:]))
    tally.record(name, "fail" if findings else "pass", "\n\n".join(findings[:10]),
                 time.monotonic() - start)


CARGO_TEST_LINE = re.compile(r"^test (.+?) \.\.\. (ok|FAILED|ignored)", re.M)


# The userspace crates under tools/, the names their results are counted under, and how many
# tests `cargo test` runs in each (pinned, so that a test that stops being built or run fails).
CRATES = (("liveupdate", "liveupdate-lib", 9), ("luo-agent", "luo-agent", 46))


RUSTUP_BIN = os.path.expanduser("~/.cargo/bin")


def cargo_tests(tally, pattern):
    """`cargo test`, `cargo fmt --check` and `cargo clippy` of the userspace crates, each test
    counted on its own."""
    env = dict(os.environ, CARGO_TARGET_DIR=scenarios.cargo_target_dir(),
               LIVEUPDATE_UAPI_INCLUDE=os.path.join(vm.kernel_tree(), "include", "uapi"))
    for crate_dir, label, expected in CRATES:
        if not fnmatch.fnmatch(f"host/{label}/x", pattern):
            continue
        crate = os.path.join(ROOT, "tools", crate_dir)
        proc = subprocess.run(["cargo", "test", "--quiet", "--", "--format", "pretty"],
                              cwd=crate, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        found = CARGO_TEST_LINE.findall(proc.stdout)
        for name, status in found:
            status = {"ok": "pass", "ignored": "skip"}.get(status, "fail")
            tally.record(f"host/{label}/{name}", status, "see cargo test output")
        if proc.returncode != 0 or len(found) != expected:
            tally.record(f"host/{label}", "fail",
                         f"{len(found)} tests ran, {expected} expected (CRATES in tests/run.py)\n"
                         + proc.stdout[-3000:])
        for name, cmd in (("fmt", ["cargo", "fmt", "--check"]),
                          ("clippy", ["cargo", "clippy", "--quiet", "--all-targets", "--",
                                      "-D", "warnings"]),
                          ("doc", ["cargo", "doc", "--quiet", "--no-deps"])):
            run_env = dict(env, RUSTDOCFLAGS="-D warnings")
            if name == "clippy":
                # Clippy comes from rustup's toolchain (the system one has none): cargo and
                # rustc must come from there too, or clippy cannot read the dependencies the
                # system rustc built. Its artifacts get their own target directory.
                run_env["PATH"] = RUSTUP_BIN + os.pathsep + env.get("PATH", "")
                run_env["CARGO_TARGET_DIR"] = env["CARGO_TARGET_DIR"] + "-clippy"
            proc = subprocess.run(cmd, cwd=crate, env=run_env,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
            tally.record(f"host/{label}/{name}", "pass" if proc.returncode == 0 else "fail",
                         proc.stdout[-3000:])


class Rows:
    """Results recorded away from the tally (in another thread), to be counted later."""

    def __init__(self):
        self.rows = []

    def record(self, *args, **kwargs):
        self.rows.append((args, kwargs))

    def replay(self, tally):
        for args, kwargs in self.rows:
            tally.record(*args, **kwargs)


class BackgroundBuilds(threading.Thread):
    """The debug kernels and the clippy lint build, built while the other kernels' tests run.

    A test VM keeps one core busy and leaves the other nearly idle; the debug kernel (KASAN,
    UBSAN, built with LLVM) is the longest build of all, so building it then, at the lowest
    CPU priority so that the running VM is not slowed, takes most of it off a cold run.
    """

    def __init__(self, variants, pattern):
        super().__init__(daemon=True)
        self.variants = variants
        self.pattern = pattern
        self.done = {v: threading.Event() for v in variants}
        self.failed = {}
        self.clippy = Rows()

    def run(self):
        script = os.path.join(ROOT, "scripts", "build-kernel.sh")
        for variant in self.variants:
            # Whatever happens, the tests waiting for this kernel are released.
            try:
                proc = subprocess.run(["nice", "-n", "19", "bash", script, variant],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
                print(proc.stdout.rstrip(), flush=True)
                if proc.returncode != 0:
                    self.failed[variant] = proc.stdout[-3000:]
            except Exception as e:  # noqa: BLE001 - reported as the build's failure
                self.failed[variant] = f"the build could not run: {e!r}"
            finally:
                self.done[variant].set()
        try:
            clippy_check(self.clippy, self.pattern, nice=True)
        except Exception as e:  # noqa: BLE001 - counted as a failure of the check
            self.clippy.record("host/clippy", "fail", f"the check could not run: {e!r}")

    def wait_for(self, variant):
        """Waits for a variant's build; returns the failed build's output, or None."""
        self.done[variant].wait()
        return self.failed.get(variant)


def run_deferred(scn, env, args, tally, lock, background, later):
    """Runs a test on kernels built in the background, once they are built."""
    pending = {later[st.kernel] for st in scn.stages if st.kernel in later}
    broken = [b for b in (background.wait_for(v) for v in sorted(pending)) if b]
    if broken:
        fail_all(scn, tally, lock, "its kernel did not build:\n" + broken[0])
        return
    run_scenario(scn, env, args, tally, lock)


def fail_all(scn, tally, lock, why):
    """Counts every result of a test that could not run as failed."""
    with lock:
        for name in scn.result_names():
            tally.record(name, "fail", why)


def run_scenario(scn, env, args, tally, lock):
    """Boots one test and counts its results; what it prints is printed in one piece."""
    workdir = os.path.join(env.work, scn.name.replace("/", "_"))
    try:
        # A test that boots its own kind of guest (systemd_guest) says how.
        boot = getattr(scn, "boot", None)
        out = boot(workdir, env) if boot else vm.run(scn, workdir, env.gen_init_cpio)
    except Exception as e:  # noqa: BLE001 - counted as the test's failure
        fail_all(scn, tally, lock, f"the test could not run: {e!r}")
        return
    rows = scn.results(out)
    with lock:
        print(f"---- {scn.name}: {len(scn.stages)} stage(s)", flush=True)
        if out.retried:
            print("     note: tried again after an early-boot interrupt splat before any LUO "
                  "code ran:", flush=True)
            for line in out.retried:
                print(f"       {line}", flush=True)
        for name, status, detail in rows:
            tally.record(name, status, detail, out.seconds if name == scn.name else None)
        if args.keep_logs or any(status == "fail" for _, status, _ in rows):
            print(f"     serial log: {os.path.join(workdir, 'serial.log')}", flush=True)


def bench_smoke(tally, pattern, lock, env):
    """`make bench` in its seconds-long form, so that it cannot rot: both kernels boot the
    benchmark and report every operation. Its timings are not judged (speed is measured by
    `make bench`, never in a test)."""
    name = "bench/smoke"
    if not fnmatch.fnmatch(name, pattern):
        return
    import bench
    if not env or not all(k in env.kernels for k in bench.KERNELS):
        env = scenarios.Environment.prepare("cross/")
    start = time.monotonic()
    try:
        ok, detail = bench.smoke(env)
    except Exception as e:  # noqa: BLE001 - counted as the smoke run's failure
        ok, detail = False, f"the smoke run could not run: {e!r}"
    with lock:
        tally.record(name, "pass" if ok else "fail", detail, time.monotonic() - start)


def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", "--only", default="*", help="run only tests whose name matches this glob")
    ap.add_argument("--keep-logs", action="store_true", help="print where each serial log is")
    ap.add_argument("--long", action="store_true",
                    help="also run the long tests: debug-build replays, format limits (make test-long)")
    args = ap.parse_args()

    start = time.monotonic()
    tally = Tally()
    host_tests(tally, args.only)
    rustfmt_check(tally, args.only)
    uapi_check(tally, args.only)
    series_check(tally, args.only)
    cargo_tests(tally, args.only)

    env = scenarios.Environment.prepare(args.only, defer=("rust-debug", "c-debug"))
    background = None
    if env and env.deferred:
        # The lint build starts from the product's build and recompiles only the Rust code
        # (scripts/build-kernel.sh); it runs after the debug kernel, in the same thread.
        background = BackgroundBuilds(env.deferred, args.only)
        background.start()
    else:
        clippy_check(tally, args.only)
    left_out = []
    scns = scenarios.all_scenarios(env) if env else []
    later = {env.kernels[v]: v for v in env.deferred} if env else {}
    selected = []
    for scn in scns:
        if not any(fnmatch.fnmatch(n, args.only) for n in [scn.name] + scn.result_names()):
            continue
        if getattr(scn, "long", False) and not args.long:
            left_out.append(scn.name)
            continue
        selected.append(scn)
    # Tests on kernels still being built run last, in the order those are built (sorted is
    # stable: the order is otherwise the one all_scenarios gives).
    order = {k: env.deferred.index(v) + 1 for k, v in later.items()}
    waits = {id(t): max((order.get(st.kernel, 0) for st in t.stages), default=0)
             for t in selected}
    now = [t for t in selected if waits[id(t)] == 0]
    deferred = sorted((t for t in selected if waits[id(t)]), key=lambda t: waits[id(t)])
    lock = threading.Lock()
    # While the background builds run, one test VM at a time (the builds take the other
    # core); the tests of the kernels built there run two at a time once they are built.
    for scn in now:
        run_scenario(scn, env, args, tally, lock)
    # The bench's smoke run (on kernels built already) goes last in the same pool, beside the
    # last debug-build tests rather than after them.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(run_deferred, scn, env, args, tally, lock, background, later)
                for scn in deferred]
        jobs.append(pool.submit(bench_smoke, tally, args.only, lock, env))
        for f in jobs:
            f.result()

    if background:
        background.join()
        background.clippy.replay(tally)

    if left_out:
        print(f"{len(left_out)} long tests left to `make test-long`: "
              + ", ".join(left_out))
    print(f"total time {time.monotonic() - start:.0f}s")
    distinct = distinct_checks(tally.names)
    print(f"{distinct} distinct checks, {len(tally.names) - distinct} replays on other kernels "
          "or directions")
    line = f"{tally.passed} passed, {tally.failed} failed"
    if tally.skipped:
        line += f", {tally.skipped} skipped"
    print(line)
    return 1 if tally.failed or not (tally.passed + tally.failed) else 0


if __name__ == "__main__":
    sys.exit(main())
