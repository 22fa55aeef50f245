# SPDX-License-Identifier: GPL-2.0
# luo-rs entry points. Both targets set up what they need (packages,
# toolchain, kernel source) on first use and reuse it afterwards.

PYTHON ?= python3

.PHONY: run test test-long bench series series-check setup kernel-c kernel-rust

# The main job: a live update of a memfd in a VM.
run: setup
	$(PYTHON) tests/demo.py

# Every test; the last line is "N passed, N failed".
test: setup
	$(PYTHON) tests/run.py

# make test plus the long replays on the debug build (run before merging a
# change to the Rust core or a handler, and weekly).
test-long: setup
	$(PYTHON) tests/run.py --long

# C core against luo-rs, side by side: medians, Rust/C ratios, pictures in
# Documentation/bench/.
bench: setup
	$(PYTHON) tests/bench.py

# The project as a git format-patch series against Linux 7.3, written to
# ~/.cache/luo-rs/series (see patches/series); the test command checks that it
# applies with git am, yields the overlaid tree and passes checkpatch.
series: setup
	bash scripts/series.sh make

# Build the product's kernel after every patch of the series (bisectability).
series-check: series kernel-rust
	bash scripts/series.sh bisect

setup:
	bash scripts/setup.sh

kernel-c kernel-rust: setup
	bash scripts/build-kernel.sh $(@:kernel-%=%)
