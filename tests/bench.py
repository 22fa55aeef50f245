#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""C core against luo-rs: what each live update operation costs, side by side in one run.

The stock 7.3 kernel (`c`) and the product (`rust`) boot the same guest program
(tools/vm/luo-bench.c) in the same VM settings, alternating, several times; each run is a
live update (stage 1 creates and preserves, kexecs; stage 2 retrieves and finishes). The
medians per operation and kernel, and the Rust/C ratio, are printed as a table and written
with pictures of cost against count and size.

By default the guest's clocks count instructions (QEMU -icount): under TCG, wall time
measures the emulator as much as the kernel (see CLOCKS). `--clock wall` times with the
host's clock instead.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenarios  # noqa: E402
import vm  # noqa: E402

ROOT = vm.ROOT
KERNELS = ("c", "rust")
BENCH_LINE = re.compile(r"^BENCH (\S+) (\d+)", re.M)
MEM_LINE = re.compile(r"^BENCH-MEM (\S+) (-?\d+) kB", re.M)
TSC_LINE = re.compile(r"^BENCH-TSC (reboot|retrieved) (\d+)$", re.M)
THP_LINE = re.compile(r"^BENCH-THP (-?\d+) kB$", re.M)
KMSG_TIME = re.compile(r"^\[\s*([\d.]+)\] (.*)$", re.M)
# The LUO initcalls of each core, timed by initcall_debug in the next kernel.
EARLY_INIT = ("liveupdate_early_init", "luo_rs_early_startup")
LATE_INIT = ("luo_late_startup", "liveupdate_ioctl_init", "luo_rs_late_startup")
# initcall_debug's own "after N usecs" reads the timekeeping clock, which is still jiffies (4 ms
# steps) at early initcalls; the log's timestamps (local_clock, the TSC) are fine-grained.
INITCALL = re.compile(r"^BENCH-INITCALL \[\s*([\d.]+)\] (calling  |initcall )(\w+)\+", re.M)
CLOCK = re.compile(r"^BENCH-INFO clocksource (\S+) resolution (\d+) ns", re.M)

# What each operation is, in the order of the table.
OPERATIONS = [
    ("create_session@1", "CREATE_SESSION, 1 existing session"),
    ("create_session@1000", "CREATE_SESSION, 1000 existing"),
    ("create_session@10000", "CREATE_SESSION, 10000 existing"),
    ("create_10000_sessions", "10000 × CREATE_SESSION (total)"),
    ("retrieve_session@1", "RETRIEVE_SESSION, the 2nd of 10100"),
    ("retrieve_session@1000", "RETRIEVE_SESSION, the 1001st"),
    ("retrieve_session@10000", "RETRIEVE_SESSION, the 10001st"),
    ("first_open_deserialize", "first open: 10100 sessions, 500 files"),
    ("preserve_fd:4k", "PRESERVE_FD 4 KiB memfd"),
    ("preserve_fd:1m", "PRESERVE_FD 1 MiB"),
    ("preserve_fd:64m", "PRESERVE_FD 64 MiB"),
    ("preserve_fd:1g", "PRESERVE_FD 1 GiB"),
    ("preserve_fd:holes-1g", "PRESERVE_FD 1 GiB, 3 pages written"),
    ("preserve_fd:thp-64m", "PRESERVE_FD 64 MiB in 2 MiB folios"),
    ("preserve_fd_in_500_file_session", "PRESERVE_FD into a session of up to 500 files"),
    ("retrieve_fd:4k", "RETRIEVE_FD 4 KiB"),
    ("retrieve_fd:1m", "RETRIEVE_FD 1 MiB"),
    ("retrieve_fd:64m", "RETRIEVE_FD 64 MiB"),
    ("retrieve_fd:1g", "RETRIEVE_FD 1 GiB"),
    ("retrieve_fd:holes-1g", "RETRIEVE_FD 1 GiB, 3 pages written"),
    ("retrieve_fd:thp-64m", "RETRIEVE_FD 64 MiB in 2 MiB folios"),
    ("retrieve_fd_of_500", "RETRIEVE_FD from a 500-file session"),
    ("finish_all_retrieved", "FINISH, every file retrieved"),
    ("finish_discarding_1m_memfd", "FINISH discarding a 1 MiB memfd"),
    ("finish_500_files_250_unretrieved", "FINISH, 500 files, 250 unretrieved"),
    ("early_init", "early boot: finding the handover (early initcall)"),
    ("late_init", "late boot: outgoing state and /dev/liveupdate (late initcalls)"),
    ("reboot_path", "reboot() to 'Starting new kernel' (kernel log clock)"),
    ("blackout", "blackout: reboot() to the first RETRIEVE_FD (TSC)"),
]


# How the guest's clocks run. "instructions": QEMU's -icount with shift 0 makes every clock of
# the guest (the TSC, and the kernel's clocks on it) advance one nanosecond per guest
# instruction executed, and jump over idle time, so a figure counts the instructions an
# operation executes, the same from run to run. Under TCG the wall time of an instruction
# depends on the emulator: a jump to another guest page is not chained and costs a lookup,
# so moving a hot function (xas_store, when the kernel's text before lib/ grows) across a
# page boundary changes its cost by percents in one build and not the other. "wall": the
# guest's TSC is the host's, and figures are elapsed time under emulation.
CLOCKS = {
    "instructions": ("-icount", "shift=0,sleep=on"),
    "wall": (),
}

# Kernel notices and infos stay off the console while the guest program prints results
# (warnings and worse still show).
QUIET = "dmesg -n 5\n"


def host_tsc_khz(binary):
    """The TSC frequency, measured on the host: under TCG the guest's TSC is the host's. Every
    guest kernel is given it, because one that cannot calibrate its TSC against the PIT (a
    kexec'd one here, and now and then a cold-booted one) falls back to a jiffies clock."""
    out = subprocess.run([binary, "tsc-khz"], check=True, stdout=subprocess.PIPE, text=True)
    return int(out.stdout.strip())


MEMFDS = [("4k", "4 KiB"), ("1m", "1 MiB"), ("64m", "64 MiB"), ("1g", "1 GiB"),
          ("holes-1g", "1 GiB, 3 pages written"), ("thp-64m", "64 MiB in 2 MiB folios")]


def scenario(kernel, sessions, mib, memory, khz, clock):
    return scenarios.Test(
        name="bench",
        stages=[
            vm.Stage(kernel, QUIET + f"luo-bench out {sessions} {mib}\n",
                     [(r"luo-bench: outgoing side measured", "every operation measured")]),
            vm.Stage(kernel, QUIET + f"luo-bench in {sessions} {mib}\ndmesg -n 7\n"
                     + "dmesg | grep -E '(calling  |initcall )(" + "|".join(EARLY_INIT + LATE_INIT)
                     + ")\\+' | sed 's/^/BENCH-INITCALL /'\n",
                     [(r"luo-bench: done", "every operation measured")]),
        ],
        timeout=900,
        memory=memory,
        qemu_args=CLOCKS[clock],
        # Both kernels boot the same way: no KUnit suites at boot (the product has more).
        # initcall_debug times the LUO initcalls; the larger log keeps their lines. Only
        # notices and worse reach the serial console, which costs about a millisecond a
        # line under TCG: informational lines (the cores print different ones) would
        # otherwise be timed as part of the operation that prints them. The tick stays on
        # the PIT: setting up the local APIC timer loses ticks here, and until late boot the
        # log's clock is held within a tick of the jiffies clock, so the early initcalls
        # would read as taking no time.
        cmdline=f"liveupdate=on kunit.enable=0 tsc_early_khz={khz} nolapic_timer initcall_debug "
                "log_buf_len=4M loglevel=6",
    )


def parse(out, khz):
    """The measurements of one run: {operation: nanoseconds}, memory figures, clocks."""
    stages = out.stage_logs()
    if len(stages) < 2:
        return None
    one, two = stages[0], stages[1]
    ns = {op: int(v) for op, v in BENCH_LINE.findall(one + two)}
    mem = {op: int(v) for op, v in MEM_LINE.findall(one)}
    # The least of the large-folio memfds that shmem put in huge folios.
    huge = [int(v) for v in THP_LINE.findall(one)]
    if huge:
        mem["thp-huge"] = min(huge)
    tsc = dict(TSC_LINE.findall(one + two))
    if "reboot" in tsc and "retrieved" in tsc:
        ns["blackout"] = int((int(tsc["retrieved"]) - int(tsc["reboot"])) * 1e6 / khz)
    times = {text: float(t) for t, text in KMSG_TIME.findall(one)}
    start = next((t for text, t in times.items() if "luo-bench: reboot" in text), None)
    end = next((t for text, t in times.items() if "Starting new kernel" in text), None)
    if start is not None and end is not None:
        ns["reboot_path"] = int((end - start) * 1e9)
    begin, done = {}, {}
    for stamp, what, name in INITCALL.findall(two):
        (begin if what.startswith("calling") else done)[name] = float(stamp)
    for op, names in (("early_init", EARLY_INIT), ("late_init", LATE_INIT)):
        spans = [done[n] - begin[n] for n in names if n in begin and n in done]
        if spans:
            ns[op] = int(sum(spans) * 1e9)
    clocks = CLOCK.findall(one + two)
    return ns, mem, clocks


def run(reps, sessions, mib, outdir, memory="4G", quiet=False, env=None, timing="instructions"):
    """Boots each kernel `reps` times, alternating; returns (medians, memory figures, spreads,
    problems, clock), where a spread is the largest figure of an operation over its smallest.
    `env` is the test command's environment (kernels and guest programs built already)."""
    env = env or scenarios.Environment.prepare("cross/")
    samples = {k: {} for k in KERNELS}
    mem = {k: {} for k in KERNELS}
    problems, clock = [], None
    work = os.path.join(env.work, "bench")
    # Counting instructions, the guest's TSC ticks once a nanosecond.
    khz = 1_000_000 if timing == "instructions" else host_tsc_khz(env.binaries["luo-bench"])
    for rep in range(reps):
        # Alternate, and swap the order every repetition, so drift favours neither.
        order = KERNELS if rep % 2 == 0 else tuple(reversed(KERNELS))
        for k in order:
            scn = scenario(env.kernels[k], sessions, mib, memory, khz, timing)
            scn.binaries = env.binaries
            out = vm.run(scn, os.path.join(work, f"{k}-{rep}"), env.gen_init_cpio)
            parsed = parse(out, khz) if out.ok else None
            if not parsed:
                problems.append(f"{k} run {rep + 1}: " + "; ".join(out.problems or ["no results"]))
                continue
            ns, m, clocks = parsed
            # Every boot must time with the TSC; a coarser clock makes the run worthless.
            coarse = [c for c in clocks if c[0] not in ("tsc", "tsc-early") or int(c[1]) > 1000]
            if len(clocks) != 2 or coarse:
                problems.append(f"{k} run {rep + 1}: clock not fine enough: {clocks}")
                continue
            clock = (clocks[0][0], max(int(c[1]) for c in clocks), khz)
            for op, v in ns.items():
                samples[k].setdefault(op, []).append(v)
            for op, v in m.items():
                mem[k].setdefault(op, []).append(v)
            if not quiet:
                print(f"   run {rep + 1} {k}: {len(ns)} operations measured", flush=True)
    medians = {k: {op: statistics.median(v) for op, v in samples[k].items()} for k in KERNELS}
    memmed = {k: {op: statistics.median(v) for op, v in mem[k].items()} for k in KERNELS}
    spreads = {k: {op: max(v) / min(v) if min(v) > 0 else float("inf")
                   for op, v in samples[k].items()} for k in KERNELS}
    return medians, memmed, spreads, problems, clock


def fmt(ns):
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def table(medians, sessions, spreads):
    """Markdown rows: operation, C, Rust, Rust/C, and how far each kernel's runs spread."""
    rows = ["| operation | C | Rust | Rust/C | spread C / Rust |", "|---|---|---|---|---|"]
    seen = set()
    for op, text in OPERATIONS:
        op = op.replace("10000", str(sessions)) if op == "create_10000_sessions" else op
        seen.add(op)
        c, r = medians["c"].get(op), medians["rust"].get(op)
        if c is None or r is None:
            continue
        ratio = r / c if c else float("inf")
        mark = "**" if ratio > 1.0 else ""
        spread = " / ".join(f"{spreads[k].get(op, 1.0):.2f}" for k in KERNELS)
        rows.append(f"| {text} | {fmt(c)} | {fmt(r)} | {mark}{ratio:.3f}{mark} | {spread} |")
    return rows


def expected_ops(sessions, mib):
    """The operations a complete run reports for these parameters."""
    ops = [op for op, _ in OPERATIONS if "@" not in op and "create_" not in op
           and op not in ("preserve_fd:64m", "preserve_fd:1g", "retrieve_fd:64m",
                          "retrieve_fd:1g")]
    ops.append(f"create_{sessions}_sessions")
    ops += [f"create_session@{p}" for p in (1, 100, 1000, 2000, 5000, 10000) if p <= sessions]
    ops += [f"retrieve_session@{p}" for p in (1, 1000, 10000) if p <= sessions]
    if mib >= 64:
        ops += ["preserve_fd:64m", "retrieve_fd:64m"]
    if mib >= 1024:
        ops += ["preserve_fd:1g", "retrieve_fd:1g"]
    return ops


def svg_chart(path, title, xlabel, series, xlog=True):
    """A small line chart, log-log, of {label: [(x, y_ns)]}, written as SVG."""
    import math
    w, h, left, bottom, top, right = 640, 400, 80, 50, 40, 20
    pts = [p for s in series.values() for p in s if p[0] > 0 and p[1] > 0]
    if not pts:
        return
    fx = (lambda v: math.log10(v)) if xlog else (lambda v: v)
    xs = [fx(x) for x, _ in pts]
    ys = [math.log10(y) for _, y in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = math.floor(min(ys)), math.ceil(max(ys)) if math.ceil(max(ys)) > math.floor(min(ys)) else math.floor(min(ys)) + 1

    def px(x):
        return left + (fx(x) - x0) / (x1 - x0) * (w - left - right)

    def py(y):
        return h - bottom - (math.log10(y) - y0) / (y1 - y0) * (h - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">{xlabel}</text>',
           f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" '
           f'text-anchor="middle">time (log scale)</text>']
    for e in range(y0, y1 + 1):
        y = h - bottom - (e - y0) / (y1 - y0) * (h - top - bottom)
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 5}" y="{y + 4}" text-anchor="end">{fmt(10 ** e)}</text>')
    xticks = sorted({x for x, _ in pts})
    for x in xticks:
        label = f"{x:g}" if x < 1024 or not xlog else (
            f"{x / 2**30:g} GiB" if x >= 2**30 else f"{x / 2**20:g} MiB" if x >= 2**20
            else f"{x / 1024:g} KiB")
        out.append(f'<text x="{px(x)}" y="{h - bottom + 15}" text-anchor="middle">{label}</text>')
    colours = {"C": "#1f77b4", "Rust": "#d62728"}
    for i, (label, s) in enumerate(series.items()):
        s = sorted(p for p in s if p[0] > 0 and p[1] > 0)
        colour = colours.get(label.split()[0], "#2ca02c")
        dash = "" if "holes" not in label else ' stroke-dasharray="5,4"'
        d = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for j, (x, y) in enumerate(s))
        out.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for x, y in s:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
        out.append(f'<text x="{left + 10}" y="{top + 15 + 15 * i}" fill="{colour}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def pictures(medians, outdir):
    sizes = {"4k": 4096, "1m": 2**20, "64m": 64 * 2**20, "1g": 2**30}
    names = {"c": "C", "rust": "Rust"}
    svg_chart(os.path.join(outdir, "sessions.svg"), "CREATE_SESSION per call",
              "sessions existing", {
                  f"{names[k]} CREATE_SESSION": [(int(op.split("@")[1]), v)
                                                  for op, v in medians[k].items()
                                                  if op.startswith("create_session@")]
                  for k in KERNELS} | {
                  f"{names[k]} RETRIEVE_SESSION": [(int(op.split("@")[1]), v)
                                                    for op, v in medians[k].items()
                                                    if op.startswith("retrieve_session@")]
                  for k in KERNELS})
    series = {}
    for k in KERNELS:
        for what in ("preserve_fd", "retrieve_fd"):
            series[f"{names[k]} {what.upper()}"] = [
                (b, medians[k][f"{what}:{s}"]) for s, b in sizes.items()
                if f"{what}:{s}" in medians[k]]
    svg_chart(os.path.join(outdir, "memfd.svg"), "memfd PRESERVE_FD / RETRIEVE_FD, dense",
              "memfd size", series)


def smoke(env):
    """The bench's seconds-long run for the test command, on its environment: (ok, what went
    wrong)."""
    import tempfile
    with tempfile.TemporaryDirectory() as out:
        sessions, mib = 100, 16
        medians, mem, spreads, problems, clock = run(1, sessions, mib, out, memory="3G",
                                                     quiet=True, env=env)
        problems += [f"{k}: no measurement of {op}" for k in KERNELS
                     for op in expected_ops(sessions, mib) if op not in medians[k]]
        problems += [f"{k}: no count of the large-folio memfd's huge folios" for k in KERNELS
                     if "thp-huge" not in mem[k]]
        table(medians, sessions, spreads)
        pictures(medians, out)
        for name in ("sessions.svg", "memfd.svg"):
            if not os.path.getsize(os.path.join(out, name)):
                problems.append(f"{name} is empty")
    return not problems, "\n".join(problems)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="runs per kernel (default 3)")
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--mib", type=int, default=1024, help="largest dense memfd (MiB)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="instructions",
                    help="count guest instructions (default) or time with the host's clock")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds-long run: 1 repetition, 100 sessions, small memfds")
    ap.add_argument("--out", default=os.path.join(ROOT, "Documentation", "bench"),
                    help="where the table and pictures go")
    args = ap.parse_args()
    if args.smoke:
        args.reps, args.sessions, args.mib = 1, 100, 16
    os.makedirs(args.out, exist_ok=True)
    print(f"== {args.reps} alternating runs per kernel ({', '.join(KERNELS)}): "
          f"{args.sessions} sessions, memfds up to {args.mib} MiB", flush=True)
    medians, mem, spreads, problems, clock = run(args.reps, args.sessions, args.mib, args.out,
                                                 memory="3G" if args.smoke else "6G",
                                                 timing=args.clock)
    missing = [f"{k}: {op}" for k in KERNELS for op in expected_ops(args.sessions, args.mib)
               if op not in medians[k]]
    rows = table(medians, args.sessions, spreads)
    clock_note = (f"guest clocksource tsc ({clock[2]} kHz), smallest step between two "
                  f"CLOCK_MONOTONIC readings at most {clock[1]} ns"
                  if clock else "guest clock unknown")
    how = ("Timed in guest instructions: QEMU -icount shift=0, every guest clock advances "
           "1 ns per instruction executed (idle time skipped), so 1 ms reads as a million "
           "instructions, whatever the emulation's speed"
           if args.clock == "instructions" else "Timed with the host's clock (wall time under "
           "emulation)")
    lines = [f"{how}. Medians of {args.reps} alternating runs per kernel; {clock_note}; QEMU TCG, "
             f"2 vCPUs. The spread is each kernel's largest figure over its smallest across "
             f"its runs: a Rust/C ratio closer to 1.00 than the spreads are wide does not tell "
             f"the two apart.", ""] + rows
    huge = {k: mem[k].pop("thp-huge", None) for k in KERNELS}
    lines += ["", "Of each 64 MiB large-folio memfd, shmem put at least "
              + " and ".join(f"{'?' if huge[k] is None else f'{huge[k] / 1024:.0f} MiB'} "
                             f"({'C' if k == 'c' else 'Rust'})" for k in KERNELS)
              + " in 2 MiB folios (median of the runs); the rest is in small pages."]
    lines += ["", "Handover metadata (the folio array, vmalloc) allocated by PRESERVE_FD:", "",
              "| memfd | C | Rust |", "|---|---|---|"]
    for op in sorted(set(mem["c"]) | set(mem["rust"]), key=lambda o: [x for x, _ in MEMFDS].index(o)
                     if o in [x for x, _ in MEMFDS] else 99):
        c, r = mem["c"].get(op), mem["rust"].get(op)
        text = dict(MEMFDS).get(op, op)
        lines.append(f"| {text} | {c if c is None else f'{c:.0f} kB'} | "
                     f"{r if r is None else f'{r:.0f} kB'} |")
    print("\n".join(lines))
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    pictures(medians, args.out)
    print(f"written: {args.out}/results.md, sessions.svg, memfd.svg")
    for p in problems + [f"missing measurement {m}" for m in missing]:
        print("PROBLEM " + p)
    return 1 if problems or missing else 0


if __name__ == "__main__":
    sys.exit(main())
