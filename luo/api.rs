// SPDX-License-Identifier: GPL-2.0

//! The in-kernel C API of `include/linux/liveupdate.h`.
//!
//! These functions keep the prototypes of the header so that C users link against the Rust core
//! unchanged. File handlers and FLBs cannot be carried by the Rust core yet, so registration
//! fails with `EOPNOTSUPP` (the error the C API gives when live update is off, which every
//! upstream caller already tolerates), and the reboot path has nothing to serialize.

use kernel::{
    bindings,
    prelude::*, //
};

use crate::{
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
    match session::serialize() {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Registers a file handler, after which files of its kind can be preserved and its data from
/// the previous kernel can be read.
///
/// Returns `-EOPNOTSUPP` if live update is off, `-EINVAL` if a required operation is missing,
/// `-EEXIST` if the compatible string is taken. (The in-kernel FLB test hook,
/// `liveupdate_test_register()`, is called once FLBs are supported.)
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
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Unregisters a file handler.
///
/// # Safety
///
/// `fh` was passed to `liveupdate_register_file_handler()`, or is not dereferenced.
#[export]
pub unsafe extern "C" fn liveupdate_unregister_file_handler(
    fh: *mut bindings::liveupdate_file_handler,
) {
    if let Ok(r) = handler::registry() {
        r.write().remove(fh);
    }
}

/// Links an FLB to a file handler; not supported by the Rust core yet.
///
/// # Safety
///
/// Neither pointer is dereferenced.
#[export]
pub unsafe extern "C" fn liveupdate_register_flb(
    _fh: *mut bindings::liveupdate_file_handler,
    _flb: *mut bindings::liveupdate_flb,
) -> c_int {
    EOPNOTSUPP.to_errno()
}

/// Unlinks an FLB from a file handler; nothing was linked, so nothing to do.
///
/// # Safety
///
/// Neither pointer is dereferenced.
#[export]
pub unsafe extern "C" fn liveupdate_unregister_flb(
    _fh: *mut bindings::liveupdate_file_handler,
    _flb: *mut bindings::liveupdate_flb,
) {
}

/// Gets the incoming object of an FLB; no FLB can exist yet.
///
/// # Safety
///
/// Neither pointer is dereferenced.
#[export]
pub unsafe extern "C" fn liveupdate_flb_get_incoming(
    _flb: *mut bindings::liveupdate_flb,
    _objp: *mut *mut c_void,
) -> c_int {
    EOPNOTSUPP.to_errno()
}

/// Drops a reference taken by `liveupdate_flb_get_incoming()`, which never succeeds yet.
///
/// # Safety
///
/// `_flb` is never dereferenced.
#[export]
pub unsafe extern "C" fn liveupdate_flb_put_incoming(_flb: *mut bindings::liveupdate_flb) {}

/// Gets the outgoing object of an FLB; no FLB can exist yet.
///
/// # Safety
///
/// Neither pointer is dereferenced.
#[export]
pub unsafe extern "C" fn liveupdate_flb_get_outgoing(
    _flb: *mut bindings::liveupdate_flb,
    _objp: *mut *mut c_void,
) -> c_int {
    EOPNOTSUPP.to_errno()
}

/// Drops a reference taken by `liveupdate_flb_get_outgoing()`, which never succeeds yet.
///
/// # Safety
///
/// `_flb` is never dereferenced.
#[export]
pub unsafe extern "C" fn liveupdate_flb_put_outgoing(_flb: *mut bindings::liveupdate_flb) {}
