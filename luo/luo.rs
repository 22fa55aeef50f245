// SPDX-License-Identifier: GPL-2.0

//! Live Update Orchestrator (LUO) core, written in Rust.
//!
//! This crate stands in for `kernel/liveupdate/luo_*.c` behind the unchanged C API of
//! [`include/linux/liveupdate.h`], so that C file handlers (such as `mm/memfd_luo.c`) and
//! `kernel/kexec_core.c` link against it exactly as they link against the C core. The
//! `CONFIG_LIVEUPDATE_CORE_RUST` choice selects it instead of the C files.
//!
//! Boot-time hooks that `module!` cannot express (an early parameter, an early and a late
//! initcall) live in `luo_shim.c` and call into [`state`].
//!
//! [`include/linux/liveupdate.h`]: srctree/include/linux/liveupdate.h

mod abi;
pub mod api;
mod chain;
#[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
pub mod corrupt;
mod device;
mod file;
mod flb;
mod handler;
mod handover;
#[cfg(CONFIG_LIVEUPDATE_RUST_KUNIT_TEST)]
mod kunit;
mod session;
pub mod state;
mod tokens;
mod uapi;

/// Prefix of every message this crate prints; `module!` would define it for a module.
const __LOG_PREFIX: &[u8] = b"luo\0";

/// The owner of the `file_operations` this crate builds; `#[vtable]` refers to it by this name.
///
/// The core is always built in, and built-in code has no `struct module` (C's `THIS_MODULE` is
/// NULL there too).
struct LocalModule;

impl kernel::ModuleMetadata for LocalModule {
    const NAME: &'static kernel::str::CStr = c"luo";

    const THIS_MODULE: kernel::ThisModule = {
        // SAFETY: Built-in code is owned by no module, which C spells as a NULL `THIS_MODULE`;
        // `try_module_get()` and `module_put()` accept NULL.
        unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) }
    };
}
