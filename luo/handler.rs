// SPDX-License-Identifier: GPL-2.0

//! The registry of file handlers.
//!
//! A file handler is a C structure (`struct liveupdate_file_handler`) that a subsystem registers
//! to say it can preserve one kind of file, such as memfds; its `compatible` string names the
//! format of the data it hands over, and the next kernel uses it to find the handler that can
//! read that data. Handlers are usually static objects; the core keeps raw pointers to them
//! between registration and unregistration, as the C API requires.

use core::ptr::NonNull;
use kernel::{
    bindings,
    prelude::*,
    sync::{
        rwsem::{
            new_rwsem,
            RwSemaphore, //
        },
        SetOnce,
    }, //
};

/// Longest compatible string, including its NUL (`LIVEUPDATE_HNDL_COMPAT_LENGTH`).
pub(crate) const COMPAT_LENGTH: usize = 48;

/// A registered handler.
///
/// # Invariants
///
/// `ptr` points to a handler whose `ops` table has every required operation, and both stay
/// valid and unchanged (apart from the private fields the core owns) until the handler is
/// unregistered.
pub(crate) struct Handler {
    ptr: NonNull<bindings::liveupdate_file_handler>,
}

// SAFETY: Handlers are shared, immutable C objects; the C API allows them to be used from any
// thread.
unsafe impl Send for Handler {}
// SAFETY: As above.
unsafe impl Sync for Handler {}

impl Handler {
    /// Checks a handler passed to `liveupdate_register_file_handler()`.
    ///
    /// # Safety
    ///
    /// `fh` is null or points to a handler that stays valid until it is unregistered, with an
    /// `ops` pointer that is null or valid for as long.
    ///
    /// # Errors
    ///
    /// `EINVAL` if the handler or its table is missing, or a required operation is (`preserve`,
    /// `unpreserve`, `retrieve`, `finish`, `can_preserve`).
    pub(crate) unsafe fn new(fh: *mut bindings::liveupdate_file_handler) -> Result<Self> {
        let ptr = NonNull::new(fh).ok_or(EINVAL)?;
        // SAFETY: `ptr` is valid by the caller's guarantee.
        let ops = unsafe { (*ptr.as_ptr()).ops };
        // SAFETY: `ops` is null or valid by the caller's guarantee.
        let ops = unsafe { ops.as_ref() }.ok_or(EINVAL)?;
        if ops.preserve.is_none()
            || ops.unpreserve.is_none()
            || ops.retrieve.is_none()
            || ops.finish.is_none()
            || ops.can_preserve.is_none()
        {
            return Err(EINVAL);
        }
        // INVARIANT: Checked above; validity is the caller's guarantee.
        Ok(Self { ptr })
    }

    /// The compatible string, without its NUL (at most 47 bytes; an unterminated one is cut).
    pub(crate) fn compatible(&self) -> &[u8] {
        // SAFETY: The handler is valid by the type invariant; `compatible` is a byte array that
        // does not change while the handler is registered.
        let raw: &[c_char; COMPAT_LENGTH] = unsafe { &(*self.ptr.as_ptr()).compatible };
        // SAFETY: `c_char` and `u8` have the same size and alignment.
        let bytes: &[u8; COMPAT_LENGTH] = unsafe { &*core::ptr::from_ref(raw).cast() };
        let len = bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(COMPAT_LENGTH - 1);
        bytes.get(..len).unwrap_or(&[])
    }

    /// True if this is the handler at `fh`.
    pub(crate) fn is(&self, fh: *const bindings::liveupdate_file_handler) -> bool {
        core::ptr::eq(self.ptr.as_ptr(), fh)
    }

    /// Initialises the list heads of the handler that the C API reserves for the core, so that
    /// C code inspecting them (`list_empty()`) sees a registered handler.
    fn init_private(&self) {
        let fh = self.ptr.as_ptr();
        // SAFETY: The handler is valid (type invariant) and its private fields belong to the
        // core from registration on; nobody else reads or writes them concurrently.
        unsafe {
            let list = core::ptr::addr_of_mut!((*fh).list);
            (*list).next = list;
            (*list).prev = list;
            let flb_list = core::ptr::addr_of_mut!((*fh).flb_list);
            (*flb_list).next = flb_list;
            (*flb_list).prev = flb_list;
        }
    }
}

/// A set of handlers with unique compatible strings.
pub(crate) struct HandlerSet {
    handlers: KVec<Handler>,
}

impl HandlerSet {
    /// An empty set.
    pub(crate) const fn new() -> Self {
        Self {
            handlers: KVec::new(),
        }
    }

    /// Adds `handler`.
    ///
    /// # Errors
    ///
    /// `EEXIST` if a handler with the same compatible string is registered; `ENOMEM`.
    pub(crate) fn add(&mut self, handler: Handler) -> Result {
        if self.find(handler.compatible()).is_some() {
            pr_err!(
                "File handler registration failed: Compatible string '{}' already registered.\n",
                kernel::str::BStr::from_bytes(handler.compatible())
            );
            return Err(EEXIST);
        }
        self.handlers.reserve(1, GFP_KERNEL)?;
        handler.init_private();
        self.handlers.push(handler, GFP_KERNEL)?;
        Ok(())
    }

    /// Removes the handler at `fh`; returns false if it was not registered.
    pub(crate) fn remove(&mut self, fh: *const bindings::liveupdate_file_handler) -> bool {
        let before = self.handlers.len();
        self.handlers.retain(|h| !h.is(fh));
        self.handlers.len() != before
    }

    /// The handler whose compatible string is `compatible`.
    pub(crate) fn find(&self, compatible: &[u8]) -> Option<&Handler> {
        self.handlers.iter().find(|h| h.compatible() == compatible)
    }
}

/// The handlers registered through the C API.
static REGISTRY: SetOnce<Pin<KBox<RwSemaphore<HandlerSet>>>> = SetOnce::new();

/// Creates the registry; called once at late init, before live update is enabled.
pub(crate) fn init() -> Result {
    let set = KBox::pin_init(new_rwsem!(HandlerSet::new()), GFP_KERNEL)?;
    if !REGISTRY.populate(set) {
        return Err(EBUSY);
    }
    Ok(())
}

/// The registry of handlers.
pub(crate) fn registry() -> Result<&'static RwSemaphore<HandlerSet>> {
    REGISTRY.as_ref().map(|r| &**r).ok_or(EOPNOTSUPP)
}
