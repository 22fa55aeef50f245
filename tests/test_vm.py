# SPDX-License-Identifier: GPL-2.0
"""Host tests of the VM harness: a run must fail for every reason it is meant to."""

import unittest

import run
import scenarios
import vm

BOOT = "[    0.000000] Linux version 7.3.4 (root@host) #1 SMP\n"


def scenario(stages=2, expect=None):
    st = [vm.Stage("bzImage", "true\n") for _ in range(stages)]
    if expect:
        st[-1].expect.append((expect, "test marker"))
    return vm.Scenario("t", st)


def good_log(stages=2, extra=""):
    log = ""
    for i in range(1, stages + 1):
        log += BOOT + f"LUO-VM: stage {i}: start\n"
        if i == stages:
            log += extra
        log += f"LUO-VM: stage {i}: script ok\n"
        if i < stages:
            log += f"LUO-VM: stage {i}: kexec into stage {i + 1}\n"
    return log + f"LUO-VM: stage {stages}: done\n"


class JudgeTest(unittest.TestCase):
    def test_clean_log_passes(self):
        self.assertEqual(vm.judge(scenario(expect="TEST PASSED"), good_log(extra="TEST PASSED\n")), [])

    def test_missing_marker_fails(self):
        problems = vm.judge(scenario(expect="TEST PASSED"), good_log())
        self.assertTrue(any("missing marker" in p for p in problems), problems)

    def test_marker_in_wrong_stage_fails(self):
        log = good_log().replace("LUO-VM: stage 1: start\n", "LUO-VM: stage 1: start\nTEST PASSED\n")
        self.assertTrue(vm.judge(scenario(expect="TEST PASSED"), log))

    def test_warning_fails(self):
        log = good_log(extra="[    1.0] WARNING: CPU: 0 PID: 1 at kernel/liveupdate/x.c:1\n")
        problems = vm.judge(scenario(), log)
        self.assertTrue(any("kernel report" in p for p in problems), problems)

    def test_every_splat_kind_fails(self):
        for splat in ["BUG: KASAN: use-after-free in foo", "Oops: 0000 [#1] SMP",
                      "Kernel panic - not syncing: x", "WARNING: possible circular locking dependency",
                      "BUG: sleeping function called from invalid context at x",
                      "UBSAN: shift-out-of-bounds in x", "general protection fault, probably"]:
            with self.subTest(splat=splat):
                self.assertTrue(vm.judge(scenario(), good_log(extra=splat + "\n")))

    def test_script_failure_fails(self):
        log = good_log().replace("LUO-VM: stage 2: script ok", "LUO-VM: stage 2: script failed with status 1")
        problems = vm.judge(scenario(), log)
        self.assertTrue(any("script failed" in p for p in problems), problems)

    def test_missing_stage_fails(self):
        problems = vm.judge(scenario(stages=2), good_log(stages=1))
        self.assertTrue(any("never booted" in p for p in problems), problems)

    def test_hang_before_done_fails(self):
        log = good_log().replace("LUO-VM: stage 2: done\n", "")
        self.assertTrue(vm.judge(scenario(), log))

    def test_empty_log_fails(self):
        self.assertTrue(vm.judge(scenario(), ""))


class KunitTest(unittest.TestCase):
    LOG = """[    1.0] KTAP version 1
[    1.0] 1..2
[    1.0]     KTAP version 1
[    1.0]     # Subtest: luo_rs_abi
[    1.0]     1..2
[    1.0]     ok 1 root_round_trip
[    1.0]     not ok 2 block_counts_are_checked
[    1.0] not ok 1 luo_rs_abi
[    1.0]     # Subtest: other_suite
[    1.0]     ok 1 unrelated
[    1.0] ok 2 other_suite
"""

    def test_only_matching_suites_count(self):
        results, suites = vm.kunit_results(self.LOG, "luo_rs_")
        self.assertEqual(suites, ["luo_rs_abi"])
        self.assertEqual(results, [("luo_rs_abi.root_round_trip", "pass"),
                                   ("luo_rs_abi.block_counts_are_checked", "fail")])


class EarlyIrqSplatTest(unittest.TestCase):
    TRACE = """[    0.108000] BUG: KASAN: wild-memory-access in do_raw_spin_lock+0xb6/0x1f0
[    0.108000] Call Trace:
[    0.108000]  do_raw_spin_lock+0xb6/0x1f0
[    0.108000]  handle_edge_irq+0x2c/0x720
[    0.108000]  identify_cpu+0x665/0x3430
[    0.108000]  start_kernel+0x2a3/0x330
[    0.108000]  </TASK>
"""

    def test_only_the_known_early_splat_is_retried(self):
        log = BOOT + "LUO-VM: stage 1: start\n" + BOOT + self.TRACE + "[ 1.0] luo: x\n"
        self.assertTrue(vm.early_irq_splat(log))

    def test_the_panic_on_warn_after_it_belongs_to_it(self):
        log = (BOOT + "LUO-VM: stage 1: start\n" + BOOT + self.TRACE
               + "[    0.108000] Kernel panic - not syncing: kasan.fault=report: panic_on_warn set ...\n")
        self.assertTrue(vm.early_irq_splat(log))
        # A panic without the early splat before it is a failure like any other.
        log = BOOT + "[    0.2] Kernel panic - not syncing: panic_on_warn set ...\n"
        self.assertFalse(vm.early_irq_splat(log))

    def test_splats_after_luo_ran_are_not(self):
        log = BOOT + "[ 0.05] luo: Retrieved live update data\n" + self.TRACE
        self.assertFalse(vm.early_irq_splat(log))

    def test_other_splats_are_not(self):
        log = BOOT + self.TRACE.replace("handle_edge_irq", "luo_rs_thing")
        self.assertFalse(vm.early_irq_splat(log))
        log = BOOT + "[ 1.0] WARNING: CPU: 0 PID: 1 at mm/x.c:1\n"
        self.assertFalse(vm.early_irq_splat(log))
        self.assertFalse(vm.early_irq_splat(BOOT))


class KtapTest(unittest.TestCase):
    def test_results_and_plan(self):
        text = ("TAP version 13\n1..3\n# Starting 3 tests\nok 1 dev.a\n"
                "not ok 2 dev.b\nok 3 dev.c # SKIP no device\n")
        results, plan = vm.ktap_results(text)
        self.assertEqual(plan, 3)
        self.assertEqual(results, [("dev.a", "pass"), ("dev.b", "fail"), ("dev.c", "skip")])

    def test_kernel_message_in_the_line_is_not_the_name(self):
        text = "1..1\nok 1 dev.a[   12.345678] luo: something else\n"
        results, _ = vm.ktap_results(text)
        self.assertEqual(results, [("dev.a", "pass")])


class CountKtapTest(unittest.TestCase):
    """On a kernel with LUO, skips and empty plans are failures, and the count is pinned."""

    def outcome(self, text):
        return vm.Outcome("t", True, [], text, 0.0)

    def rows(self, text, expected=3):
        test = scenarios.Test(name="t", stages=[vm.Stage("bzImage", "true\n")])
        return scenarios.count_ktap(expected)(test, self.outcome(text))

    def test_all_pass(self):
        rows = self.rows("1..3\nok 1 a\nok 2 b\nok 3 c\n")
        self.assertEqual([r[1] for r in rows], ["pass"] * 3)

    def test_skips_fail(self):
        # What upstream's liveupdate test prints without /dev/liveupdate.
        rows = self.rows("1..3\nok 1 a # SKIP no dev\nok 2 b # SKIP no dev\nok 3 c # SKIP x\n")
        self.assertEqual([r[1] for r in rows], ["fail"] * 3)

    def test_empty_plan_fails(self):
        rows = self.rows("1..0 # SKIP cannot open /dev/liveupdate\n")
        self.assertEqual([r[1] for r in rows], ["fail"])

    def test_missing_results_fail(self):
        rows = self.rows("1..2\nok 1 a\nok 2 b\n")
        self.assertIn("fail", [r[1] for r in rows])


class DistinctChecksTest(unittest.TestCase):
    def test_replays_collapse(self):
        names = ["c/liveupdate-api/a", "rust/liveupdate-api/a", "rust-debug/liveupdate-api/b",
                 "cross/c-to-rust/luo_kexec_simple", "cross/rust-to-c/luo_kexec_simple",
                 "rust/memfd-set-512", "rust-debug/memfd-set-64",
                 "c/sessions-duplicate-at-51-panics-upstream", "rust/sessions-duplicate-at-51",
                 "host/rustfmt"]
        # a, b, luo_kexec_simple, memfd-set, the C panic, the Rust pass, rustfmt.
        self.assertEqual(run.distinct_checks(names), 7)


if __name__ == "__main__":
    unittest.main()
