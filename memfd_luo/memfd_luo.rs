// SPDX-License-Identifier: GPL-2.0

//! The memfd live update handler, in Rust.
//!
//! It stands in for `mm/memfd_luo.c` (`LIVEUPDATE_MEMFD_RUST`) and reads and writes the same
//! "memfd-v2" data, so a memfd preserved by either handler can be retrieved by the other, with
//! either orchestrator core. The handover format is in `abi`, the operations in `handler`, the
//! preserved folios in `folio_set`, and the shmem steps that only C can do behind the safe
//! wrappers of `mm`.

mod abi;
#[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
pub mod corrupt;
mod folio_set;
mod handler;
#[cfg(CONFIG_LIVEUPDATE_RUST_KUNIT_TEST)]
mod kunit;
mod mm;

use handler::MemfdHandler;
use kernel::{
    liveupdate::{
        self,
        Registration, //
    },
    prelude::*,
    sync::SetOnce, //
};

/// Prefix of every message this crate prints.
const __LOG_PREFIX: &[u8] = b"memfd_luo\0";

/// The owner of this built-in code's operation tables (no module: C's `THIS_MODULE` is NULL).
struct LocalModule;

impl kernel::ModuleMetadata for LocalModule {
    const NAME: &'static kernel::str::CStr = c"memfd_luo";

    const THIS_MODULE: kernel::ThisModule = {
        // SAFETY: Built-in code is owned by no module, which C spells as a NULL `THIS_MODULE`;
        // `try_module_get()` and `module_put()` accept NULL.
        unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) }
    };
}

/// The handler, for good.
static HANDLER: liveupdate::Slot<Registration<MemfdHandler>> = SetOnce::new();

/// Registers the handler; called at late init by `memfd_mm.c`, as the C handler registers.
#[export]
pub extern "C" fn luo_memfd_init() -> c_int {
    let registered =
        liveupdate::keep_in(&HANDLER, Registration::new(abi::COMPATIBLE, MemfdHandler))
            .and_then(|handler| handler.register());
    match registered {
        Ok(registered) => {
            // Built in: the handler stays registered for the whole boot.
            core::mem::forget(registered);
            0
        }
        // Live update is off in this boot: memfds are simply not preservable.
        Err(e) if e == EOPNOTSUPP => 0,
        Err(e) => {
            pr_err!("Could not register luo filesystem handler: {:?}\n", e);
            e.to_errno()
        }
    }
}
