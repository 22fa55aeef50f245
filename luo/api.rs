// SPDX-License-Identifier: GPL-2.0

//! The in-kernel C API of `include/linux/liveupdate.h`.
//!
//! These functions keep the prototypes and errors of the header so that C users (the memfd
//! handler, the in-kernel FLB test, `kernel_kexec()`) link against the Rust core unchanged.
//! Upstream exports none of them to modules, and neither does this core.

use kernel::{
    bindings,
    prelude::*,
    time::{
        Instant,
        Monotonic, //
    }, //
};

use crate::{
    flb,
    handler::{
        self,
        Handler, //
    },
    session,
    state, //
};

/// Returns true if the live update orchestrator is enabled.
#[export]
pub extern "C" fn liveupdate_enabled() -> bool {
    state::enabled()
}

/// Called by `kernel_kexec()` before the jump to the next kernel: writes every outgoing session
/// into the handover data. A non-zero return aborts the kexec and is returned by `reboot(2)`.
#[export]
pub extern "C" fn liveupdate_reboot() -> c_int {
    if !state::enabled() {
        return 0;
    }
    let start = Instant::<Monotonic>::now();
    let result = session::serialize();
    let what = if result.is_ok() {
        "serialized"
    } else {
        "failed"
    };
    // The cost of the reboot path that is LUO's, for `make bench` and for operators.
    pr_info!(
        "liveupdate_reboot: {} in {} us\n",
        what,
        start.elapsed().as_micros_ceil()
    );
    match result {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Registers a file handler, after which files of its kind can be preserved and its data from
/// the previous kernel can be read.
///
/// Returns `-EOPNOTSUPP` if live update is off, `-EINVAL` if a required operation is missing,
/// `-EEXIST` if the compatible string is taken. With `CONFIG_LIVEUPDATE_TEST` the in-kernel FLB
/// test then links its FLBs to the handler.
///
/// # Safety
///
/// `fh` points to a handler (with its `ops` table) that stays valid until
/// `liveupdate_unregister_file_handler(fh)` returns.
#[export]
pub unsafe extern "C" fn liveupdate_register_file_handler(
    fh: *mut bindings::liveupdate_file_handler,
) -> c_int {
    if !state::enabled() {
        return EOPNOTSUPP.to_errno();
    }
    // SAFETY: The caller's guarantee is `Handler::new`'s.
    let result = unsafe { Handler::new(fh) }
        .and_then(|h| handler::registry().and_then(|r| r.write().add(h)));
    match result {
        Ok(()) => {
            // SAFETY: `fh` is a registered handler.
            unsafe { bindings::luo_rs_test_register(fh) };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Unregisters a file handler and unlinks its FLBs.
///
/// As in the C core, files the core still holds for the handler keep its module loaded; a
/// built-in handler must not go away while it has files.
///
/// # Safety
///
/// `fh` was passed to `liveupdate_register_file_handler()`, or is not dereferenced.
#[export]
pub unsafe extern "C" fn liveupdate_unregister_file_handler(
    fh: *mut bindings::liveupdate_file_handler,
) {
    if let Ok(r) = handler::registry() {
        let mut registered = r.write();
        if registered.remove(fh) {
            flb::forget_idle(&registered.flbs);
        }
    }
}

/// Links an FLB to a registered file handler: files the handler preserves depend on it.
///
/// Returns `-EOPNOTSUPP` if live update is off; `-EINVAL` if an FLB operation is missing or
/// the handler is not registered; `-EEXIST` if the FLB is linked to this handler already or
/// another FLB has its compatible string; `-ENOSPC` if 63 FLBs are registered; `-ENOMEM`.
///
/// # Safety
///
/// `fh` is null or a handler passed to `liveupdate_register_file_handler()`; `flb` is null or
/// points to an FLB (with its `ops` table) that stays valid until it is unregistered.
#[export]
pub unsafe extern "C" fn liveupdate_register_flb(
    fh: *mut bindings::liveupdate_file_handler,
    flb: *mut bindings::liveupdate_flb,
) -> c_int {
    if !state::enabled() {
        return EOPNOTSUPP.to_errno();
    }
    // SAFETY: The caller's guarantee is `lookup`'s.
    let result = unsafe { flb::lookup(flb) }.and_then(|flb| flb::register(fh, flb));
    match result {
        Ok(()) => 0,
        Err(e) => {
            // The state `lookup` made must not outlive a failed registration.
            if let Ok(r) = handler::registry() {
                flb::forget_idle(&r.read().flbs);
            }
            e.to_errno()
        }
    }
}

/// Unlinks an FLB from a file handler.
///
/// # Safety
///
/// As for `liveupdate_register_flb()`.
#[export]
pub unsafe extern "C" fn liveupdate_unregister_flb(
    fh: *mut bindings::liveupdate_file_handler,
    flb: *mut bindings::liveupdate_flb,
) {
    if state::enabled() {
        flb::unregister(fh, flb);
    }
}

/// Gets the FLB's object from the previous kernel, retrieving it on first use, and takes a
/// reference on it; `liveupdate_flb_put_incoming()` drops it.
///
/// Returns `-EOPNOTSUPP` if live update is off; `-ENODATA` if the previous kernel handed over
/// no FLBs or the FLB was finished; `-ENOENT` if it handed over none of this name; `-ENODEV`
/// if the FLB's module is going; the FLB's `retrieve` error (cached).
///
/// # Safety
///
/// `flb` is null or a valid FLB (see `liveupdate_register_flb()`); `objp` is valid for a write.
#[export]
pub unsafe extern "C" fn liveupdate_flb_get_incoming(
    flb: *mut bindings::liveupdate_flb,
    objp: *mut *mut c_void,
) -> c_int {
    if !state::enabled() {
        return EOPNOTSUPP.to_errno();
    }
    // SAFETY: The caller's guarantee is `lookup`'s.
    match unsafe { flb::lookup(flb) }.and_then(|f| f.get_incoming()) {
        Ok(obj) => {
            // SAFETY: `objp` is valid for a write by the caller's guarantee.
            unsafe { objp.write(obj) };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Drops a reference taken by `liveupdate_flb_get_incoming()`; the last one finishes the FLB.
///
/// # Safety
///
/// `flb` is null or a valid FLB.
#[export]
pub unsafe extern "C" fn liveupdate_flb_put_incoming(flb: *mut bindings::liveupdate_flb) {
    if state::enabled() {
        // SAFETY: The caller's guarantee is `lookup`'s.
        if let Ok(f) = unsafe { flb::lookup(flb) } {
            f.put_incoming();
        }
    }
}

/// Gets the FLB's object of this kernel (it exists while a dependent file is preserved) and
/// takes a reference on it; `liveupdate_flb_put_outgoing()` drops it.
///
/// Returns `-EOPNOTSUPP` if live update is off, `-ENOENT` if the FLB is not preserved.
///
/// # Safety
///
/// `flb` is null or a valid FLB; `objp` is valid for a write.
#[export]
pub unsafe extern "C" fn liveupdate_flb_get_outgoing(
    flb: *mut bindings::liveupdate_flb,
    objp: *mut *mut c_void,
) -> c_int {
    if !state::enabled() {
        return EOPNOTSUPP.to_errno();
    }
    // SAFETY: The caller's guarantee is `lookup`'s.
    match unsafe { flb::lookup(flb) }.and_then(|f| f.get_outgoing()) {
        Ok(obj) => {
            // SAFETY: `objp` is valid for a write by the caller's guarantee.
            unsafe { objp.write(obj) };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Drops a reference taken by `liveupdate_flb_get_outgoing()`.
///
/// # Safety
///
/// `flb` is null or a valid FLB.
#[export]
pub unsafe extern "C" fn liveupdate_flb_put_outgoing(flb: *mut bindings::liveupdate_flb) {
    if state::enabled() {
        // SAFETY: The caller's guarantee is `lookup`'s.
        if let Ok(f) = unsafe { flb::lookup(flb) } {
            f.put_outgoing();
        }
    }
}
