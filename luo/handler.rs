// SPDX-License-Identifier: GPL-2.0

//! File handlers, and the registry of handlers and their FLBs.
//!
//! A file handler is a C structure (`struct liveupdate_file_handler`) that a subsystem registers
//! to say it can preserve one kind of file, such as memfds; its `compatible` string names the
//! format of the data it hands over, and the next kernel uses it to find the handler that can
//! read that data. Handlers are usually static objects; the core keeps raw pointers to them
//! between registration and unregistration, as the C API requires, and calls their operations
//! only through the wrappers here.
//!
//! The registry also records which FLBs each handler depends on. The C core keeps these links
//! in list heads inside the handler and FLB structures; here they are Rust vectors, so the C
//! structures' private fields are only initialised (for C code that looks at them), never used.

use core::ptr::NonNull;
use kernel::{
    bindings,
    error::to_result,
    fs::File,
    prelude::*,
    sync::{
        aref::ARef,
        rwsem::{
            new_rwsem,
            RwSemaphore, //
        },
        Arc, SetOnce,
    }, //
};

use crate::{
    abi,
    flb::Flb, //
};

/// A reference on the module that owns a handler or an FLB, dropped with this value.
pub(crate) struct ModuleRef(*mut bindings::module);

// SAFETY: A module reference may be dropped from any thread.
unsafe impl Send for ModuleRef {}
// SAFETY: `ModuleRef` has no methods taking `&self`.
unsafe impl Sync for ModuleRef {}

impl ModuleRef {
    /// Takes a reference on `owner` (null: built-in code, always succeeds).
    ///
    /// Returns `None` if the module is going away.
    pub(crate) fn get(owner: *mut bindings::module) -> Option<Self> {
        // SAFETY: `owner` is null or the owner of a handler or FLB whose owner pointer stays
        // valid while it is registered; `try_module_get` accepts both.
        unsafe { bindings::luo_rs_module_get(owner) }.then_some(Self(owner))
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: The reference was taken in `ModuleRef::get`.
        unsafe { bindings::luo_rs_module_put(self.0) };
    }
}

/// The handler's per-file cookie (`private_data`): produced by `preserve`, handed back to
/// `freeze`, `unfreeze` and `unpreserve`, never looked at by the core.
#[derive(Clone, Copy)]
pub(crate) struct Private(*mut c_void);

// SAFETY: The cookie is only passed back to the handler that made it, which the C API allows
// from any thread.
unsafe impl Send for Private {}

impl Private {
    /// No cookie (incoming files, which the handler has not preserved in this kernel).
    pub(crate) const fn none() -> Self {
        Self(core::ptr::null_mut())
    }
}

/// A registered handler.
///
/// # Invariants
///
/// `ptr` points to a handler whose `ops` table has every required operation, and both stay
/// valid and unchanged (apart from the private fields the core owns) until the handler is
/// unregistered; the core holds a reference on the handler's module for every file it keeps
/// for it, so a handler of a module outlives those files.
#[derive(Clone, Copy)]
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
    /// `EINVAL` if the handler or its table is missing, a required operation is (`preserve`,
    /// `unpreserve`, `retrieve`, `finish`, `can_preserve`), or the compatible string is empty
    /// (the C core accepts one, and writes handover data its reader here refuses).
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
        let handler = Self { ptr };
        if handler.compatible().is_empty() {
            return Err(EINVAL);
        }
        Ok(handler)
    }

    fn ops(&self) -> &bindings::liveupdate_file_ops {
        // SAFETY: The handler and its table are valid and unchanged (type invariant).
        unsafe { &*(*self.ptr.as_ptr()).ops }
    }

    /// The compatible string, without its NUL (at most 47 bytes; an unterminated one is cut).
    pub(crate) fn compatible(&self) -> &[u8] {
        // SAFETY: The handler is valid by the type invariant; `compatible` is a byte array that
        // does not change while the handler is registered.
        abi::c_compatible(unsafe { &(*self.ptr.as_ptr()).compatible })
    }

    /// The compatible string for log messages.
    pub(crate) fn name(&self) -> &kernel::str::BStr {
        kernel::str::BStr::from_bytes(self.compatible())
    }

    /// True if this is the handler at `fh`.
    pub(crate) fn is(&self, fh: *const bindings::liveupdate_file_handler) -> bool {
        core::ptr::eq(self.ptr.as_ptr(), fh)
    }

    /// Takes a reference on the module that owns the handler.
    pub(crate) fn get_module(&self) -> Option<ModuleRef> {
        ModuleRef::get(self.ops().owner)
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

    /// Arguments for an operation on `file` (or on no file yet).
    fn args(&self, file: Option<&File>, data: u64) -> bindings::liveupdate_file_op_args {
        bindings::liveupdate_file_op_args {
            handler: self.ptr.as_ptr(),
            retrieve_status: 0,
            file: file.map_or(core::ptr::null_mut(), |f| f.as_ptr()),
            serialized_data: data,
            private_data: core::ptr::null_mut(),
        }
    }

    /// `can_preserve`: whether this handler accepts `file`.
    pub(crate) fn can_preserve(&self, file: &File) -> bool {
        match self.ops().can_preserve {
            // SAFETY: The handler is valid and `file` is a live file.
            Some(f) => unsafe { f(self.ptr.as_ptr(), file.as_ptr()) },
            None => false,
        }
    }

    /// The key of `file` in the registry of preserved files: `get_id`, or the file's address.
    pub(crate) fn id(&self, file: &File) -> usize {
        match self.ops().get_id {
            // SAFETY: `file` is a live file this handler accepts.
            Some(f) => unsafe { f(file.as_ptr()) },
            None => file.as_ptr() as usize,
        }
    }

    /// `preserve`: returns the handler's serialized data and its cookie.
    pub(crate) fn preserve(&self, file: &File) -> Result<(u64, Private)> {
        let mut args = self.args(Some(file), 0);
        let preserve = self.ops().preserve.ok_or(EINVAL)?;
        // SAFETY: `args` names this handler and a live file.
        to_result(unsafe { preserve(&mut args) })?;
        Ok((args.serialized_data, Private(args.private_data)))
    }

    /// `unpreserve`: undoes `preserve`.
    pub(crate) fn unpreserve(&self, file: &File, data: u64, private: Private) {
        let mut args = self.args(Some(file), data);
        args.private_data = private.0;
        if let Some(f) = self.ops().unpreserve {
            // SAFETY: `args` carries what `preserve` returned for this live file.
            unsafe { f(&mut args) };
        }
    }

    /// `freeze` (optional): the last chance to update the serialized data before the kexec.
    pub(crate) fn freeze(&self, file: &File, data: &mut u64, private: Private) -> Result {
        let Some(f) = self.ops().freeze else {
            return Ok(());
        };
        let mut args = self.args(Some(file), *data);
        args.private_data = private.0;
        // SAFETY: `args` carries what `preserve` returned for this live file.
        to_result(unsafe { f(&mut args) })?;
        *data = args.serialized_data;
        Ok(())
    }

    /// `unfreeze` (optional): undoes `freeze` after the kexec was called off.
    pub(crate) fn unfreeze(&self, file: &File, data: u64, private: Private) {
        if let Some(f) = self.ops().unfreeze {
            let mut args = self.args(Some(file), data);
            args.private_data = private.0;
            // SAFETY: `args` carries what `preserve`/`freeze` returned for this live file.
            unsafe { f(&mut args) };
        }
    }

    /// `retrieve`: rebuilds the file from the previous kernel's data.
    pub(crate) fn retrieve(&self, data: u64) -> Result<ARef<File>> {
        let mut args = self.args(None, data);
        let retrieve = self.ops().retrieve.ok_or(EINVAL)?;
        // SAFETY: `args` names this handler and data the previous kernel recorded for it.
        to_result(unsafe { retrieve(&mut args) })?;
        let file = NonNull::new(args.file).ok_or_else(|| {
            pr_err!("Handler [{}] retrieved no file\n", self.name());
            EINVAL
        })?;
        // SAFETY: A successful `retrieve` hands over one reference to the file it returns;
        // `File` is transparent over `struct file`.
        Ok(unsafe { ARef::from_raw(file.cast()) })
    }

    /// `can_finish` (optional): whether the handler is ready to let go of its incoming file.
    pub(crate) fn can_finish(&self, file: Option<&File>, data: u64, status: i32) -> bool {
        let Some(f) = self.ops().can_finish else {
            return true;
        };
        let mut args = self.args(file, data);
        args.retrieve_status = status;
        // SAFETY: `args` names this handler, its data and the retrieved file, if any.
        unsafe { f(&mut args) }
    }

    /// `finish`: the handler lets go of an incoming file; data never retrieved is discarded.
    pub(crate) fn finish(&self, file: Option<&File>, data: u64, status: i32) {
        if let Some(f) = self.ops().finish {
            let mut args = self.args(file, data);
            args.retrieve_status = status;
            // SAFETY: `args` names this handler, its data and the retrieved file, if any.
            unsafe { f(&mut args) };
        }
    }
}

/// A registered handler and the FLBs it depends on, in registration order.
pub(crate) struct Entry {
    pub(crate) handler: Handler,
    pub(crate) flbs: KVec<Arc<Flb>>,
}

/// The registered handlers (unique compatible strings) and FLBs (unique names, at most 63).
pub(crate) struct Registered {
    pub(crate) handlers: KVec<Entry>,
    /// Every FLB linked to at least one handler, in registration order.
    pub(crate) flbs: KVec<Arc<Flb>>,
}

impl Registered {
    /// An empty set.
    pub(crate) const fn new() -> Self {
        Self {
            handlers: KVec::new(),
            flbs: KVec::new(),
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
                handler.name()
            );
            return Err(EEXIST);
        }
        self.handlers.reserve(1, GFP_KERNEL)?;
        handler.init_private();
        self.handlers.push(
            Entry {
                handler,
                flbs: KVec::new(),
            },
            GFP_KERNEL,
        )?;
        Ok(())
    }

    /// Removes the handler at `fh` and its FLB links; returns false if it was not registered.
    pub(crate) fn remove(&mut self, fh: *const bindings::liveupdate_file_handler) -> bool {
        let before = self.handlers.len();
        self.handlers.retain(|e| !e.handler.is(fh));
        let removed = self.handlers.len() != before;
        if removed {
            let handlers = &self.handlers;
            self.flbs.retain(|f| {
                handlers
                    .iter()
                    .any(|e| e.flbs.iter().any(|g| Arc::ptr_eq(f, g)))
            });
        }
        removed
    }

    /// The handler whose compatible string is `compatible`.
    pub(crate) fn find(&self, compatible: &[u8]) -> Option<&Entry> {
        self.handlers
            .iter()
            .find(|e| e.handler.compatible() == compatible)
    }

    /// The FLBs the handler at `fh` depends on (none if it is not registered).
    pub(crate) fn flbs_of(&self, handler: &Handler) -> &[Arc<Flb>] {
        self.handlers
            .iter()
            .find(|e| e.handler.is(handler.ptr.as_ptr()))
            .map_or(&[], |e| &e.flbs[..])
    }
}

/// The handlers and FLBs registered through the C API.
static REGISTRY: SetOnce<Pin<KBox<RwSemaphore<Registered>>>> = SetOnce::new();

/// Creates the registry; called once at early init, before live update is enabled.
pub(crate) fn init() -> Result {
    let set = KBox::pin_init(new_rwsem!(Registered::new()), GFP_KERNEL)?;
    if !REGISTRY.populate(set) {
        return Err(EBUSY);
    }
    Ok(())
}

/// The registry of handlers.
pub(crate) fn registry() -> Result<&'static RwSemaphore<Registered>> {
    REGISTRY.as_ref().map(|r| &**r).ok_or(EOPNOTSUPP)
}
