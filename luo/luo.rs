// SPDX-License-Identifier: GPL-2.0

//! Live Update Orchestrator (LUO) core, written in Rust.
//!
//! This crate stands in for `kernel/liveupdate/luo_*.c` behind the unchanged C API of
//! [`include/linux/liveupdate.h`], so that C file handlers (such as `mm/memfd_luo.c`) and
//! `kernel/kexec_core.c` link against it exactly as they link against the C core. The
//! `CONFIG_LIVEUPDATE_CORE_RUST` choice selects it instead of the C files.
//!
//! Boot-time hooks that `module!` cannot express (an early parameter and a late initcall) live
//! in `luo_shim.c` and call into [`state`].
//!
//! [`include/linux/liveupdate.h`]: srctree/include/linux/liveupdate.h

mod api;
mod device;
mod state;

/// Prefix of every message this crate prints; `module!` would define it for a module.
const __LOG_PREFIX: &[u8] = b"liveupdate\0";
