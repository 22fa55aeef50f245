// SPDX-License-Identifier: GPL-2.0

//! Whether live update is active in this boot.
//!
//! Live update is active only when the user asked for it with `liveupdate=` and KHO, which
//! carries the state to the next kernel, is enabled too. The request is recorded while the
//! command line is parsed and settled at the early initcall, as in the C core: built-in file
//! handlers and FLB users register from their own initcalls (device level and later), and must
//! find the registries there and `liveupdate_enabled()` already true. Only what needs the rest
//! of the kernel up waits for the late initcall: the outgoing handover data and
//! `/dev/liveupdate`.

use kernel::{
    prelude::*,
    sync::atomic::{
        AtomicFlag,
        Relaxed, //
    }, //
};

use crate::{
    device,
    file,
    flb,
    handler,
    handover,
    session, //
};

/// `liveupdate=` as given on the command line (default off).
static REQUESTED: AtomicFlag = AtomicFlag::new(false);

/// Live update is active: requested, and KHO is enabled.
static ENABLED: AtomicFlag = AtomicFlag::new(false);

/// Reads the previous kernel's handover data, if any, before anything can reuse its memory,
/// and settles whether live update is active in this boot.
///
/// The handover data is read even when live update is off for this boot, as in the C core.
/// Returns 0 or a negative errno for the initcall; a failure leaves live update disabled.
#[export]
pub extern "C" fn luo_rs_early_init(kho_enabled: bool) -> c_int {
    if kho_enabled {
        handover::early_init();
    }
    if !REQUESTED.load(Relaxed) {
        return 0;
    }
    if !kho_enabled {
        pr_warn!("Disabling liveupdate because KHO is disabled\n");
        return 0;
    }
    if handover::refused() {
        pr_warn!("luo-rs: live update disabled for this boot: the handover data was refused\n");
        return 0;
    }
    match handler::init()
        .and_then(|()| flb::init())
        .and_then(|()| file::init())
    {
        Ok(()) => {
            ENABLED.store(true, Relaxed);
            0
        }
        Err(e) => {
            pr_err!("luo-rs: cannot set up live update: {:?}\n", e);
            e.to_errno()
        }
    }
}

/// Records the value of the `liveupdate=` boot parameter.
#[export]
pub extern "C" fn luo_rs_request(enable: bool) {
    REQUESTED.store(enable, Relaxed);
}

/// Reads the rest of the incoming handover data, creates the outgoing handover data and
/// registers `/dev/liveupdate`.
///
/// Returns 0 or a negative errno for the initcall; a failure disables live update, as the C
/// core does when it cannot set up its outgoing data.
#[export]
pub extern "C" fn luo_rs_late_init() -> c_int {
    if !enabled() {
        return 0;
    }
    if handover::read_rest().is_err() {
        ENABLED.store(false, Relaxed);
        pr_warn!("luo-rs: live update disabled for this boot: the handover data was refused\n");
        return 0;
    }
    match session::init().and_then(|()| device::register()) {
        Ok(()) => {
            pr_info!("luo-rs: Rust core active, /dev/liveupdate registered\n");
            0
        }
        Err(e) => {
            ENABLED.store(false, Relaxed);
            pr_err!("luo-rs: cannot register /dev/liveupdate: {:?}\n", e);
            e.to_errno()
        }
    }
}

/// Returns true if live update is active in this boot.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Relaxed)
}
