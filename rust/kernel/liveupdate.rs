// SPDX-License-Identifier: GPL-2.0

//! Live update: preserving files and the state they share across a kexec.
//!
//! A subsystem that can carry one kind of file into the next kernel (memfds, device files)
//! implements [`FileHandler`] and registers it ([`Registration::register`]); the Live Update
//! Orchestrator then calls it when userspace preserves such a file, at the kexec, and in the
//! next kernel when userspace retrieves and finishes it. State that several files depend on (an
//! IOMMU domain, a device's context) is an FLB: it implements [`Flb`], lives in an
//! [`FlbRegistration`], and is linked to the handlers whose files depend on it with
//! [`Registered::link_flb`].
//!
//! Registrations of handlers and FLBs are `'static`. The orchestrator keeps a pointer to the
//! handler (and its FLBs) in every file it holds for it, and neither core waits for those files
//! when a handler is unregistered or an FLB unlinked: the files are preserved, frozen, or
//! waiting in the next kernel to be retrieved, for as long as userspace wants. Memory that lives
//! for good makes unregistering safe whenever it happens. The memory of a module's statics goes
//! away only when the module is unloaded, and the orchestrator holds a reference on the
//! handler's module for each of its files, so that cannot happen while any is left.
//!
//! The abstraction sits on the C API of `include/linux/liveupdate.h`, so it works with either
//! implementation of the orchestrator. What a handler hands over is a `u64` in the handover
//! format ([`SerializedData`] gives it a type); it is the handler's own format, named by its
//! compatible string, and the next kernel's handler with the same string must read it.
//!
//! C header: [`include/linux/liveupdate.h`](srctree/include/linux/liveupdate.h)

use crate::{
    bindings,
    error::{
        from_result,
        to_result, //
    },
    fs::File,
    module::this_module,
    prelude::*,
    str::CStr,
    sync::{
        aref::ARef,
        SetOnce, //
    },
    types::{
        ForeignOwnable,
        Opaque, //
    }, //
};
use core::marker::PhantomData;

/// Longest compatible string of a handler or FLB, including its NUL.
pub const COMPAT_LENGTH: usize = bindings::LIVEUPDATE_HNDL_COMPAT_LENGTH as usize;

// Handlers and FLBs share the limit, and `write_compatible()` relies on it.
const _: () = assert!(bindings::LIVEUPDATE_FLB_COMPAT_LENGTH as usize == COMPAT_LENGTH);

/// A handler's serialized data: the `u64` the next kernel receives for each file.
///
/// Data read back comes from the previous kernel and must be validated by the handler before
/// use.
pub trait SerializedData: Copy {
    /// The value written into the handover data.
    fn to_raw(self) -> u64;
    /// The value read from the handover data.
    fn from_raw(raw: u64) -> Self;
}

impl SerializedData for u64 {
    fn to_raw(self) -> u64 {
        self
    }
    fn from_raw(raw: u64) -> Self {
        raw
    }
}

/// What happened to an incoming file before `can_finish` and `finish`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrieveStatus {
    /// Userspace never retrieved the file: its preserved state must be discarded.
    NotRetrieved,
    /// The file was retrieved and handed to userspace.
    Retrieved,
    /// Retrieving failed with this error.
    Failed(Error),
}

impl RetrieveStatus {
    fn from_raw(status: c_int) -> Self {
        match status {
            0 => Self::NotRetrieved,
            s if s > 0 => Self::Retrieved,
            s => Self::Failed(Error::from_errno(s)),
        }
    }
}

/// Writes `name` into the `compatible` field of a C handler or FLB.
///
/// # Safety
///
/// `dst` is valid for writes.
///
/// # Errors
///
/// `EINVAL` if `name` is empty (the next kernel could not match it) or it and its NUL do not
/// fit.
unsafe fn write_compatible(dst: *mut [c_char; COMPAT_LENGTH], name: &CStr) -> Result {
    let name = name.to_bytes_with_nul();
    if name.len() <= 1 || name.len() > COMPAT_LENGTH {
        return Err(EINVAL);
    }
    // SAFETY: `dst` is valid for writes of `COMPAT_LENGTH` bytes, at least `name.len()`, and
    // cannot overlap a `CStr` the caller holds.
    unsafe { core::ptr::copy_nonoverlapping(name.as_ptr(), dst.cast::<u8>(), name.len()) };
    Ok(())
}

/// Where a registration is kept for good: a static slot, filled once with [`keep_in`].
pub type Slot<T> = SetOnce<Pin<KBox<T>>>;

/// Places what `init` initialises in `slot` for good, and returns it pinned: how a handler's or
/// an FLB's registration becomes `'static`.
///
/// # Errors
///
/// `EBUSY` if `slot` holds a value already, `ENOMEM`, or the error of `init`.
pub fn keep_in<T, E>(slot: &'static Slot<T>, init: impl PinInit<T, E>) -> Result<Pin<&'static T>>
where
    Error: From<E>,
{
    if slot.as_ref().is_some() {
        return Err(EBUSY);
    }
    if !slot.populate(KBox::pin_init(init, GFP_KERNEL)?) {
        return Err(EBUSY);
    }
    slot.as_ref().map(|kept| kept.as_ref()).ok_or(EBUSY)
}

/// Test builds only: the kind of damage a boot parameter's value names, among `classes`, with
/// its name; `None` for a null or unknown value.
///
/// The orchestrator and handlers that can damage their handover data on request (to test the
/// next kernel's reader) each take such a parameter.
///
/// # Safety
///
/// `value` is null or a NUL-terminated string that is valid for the duration of the call.
#[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
pub unsafe fn damage_class<T: Copy>(
    value: *const c_char,
    classes: &[(&'static [u8], T)],
) -> Option<(&'static crate::str::BStr, T)> {
    if value.is_null() {
        return None;
    }
    // SAFETY: A NUL-terminated string valid for the call, by the caller's guarantee.
    let value = unsafe { CStr::from_char_ptr(value) };
    classes
        .iter()
        .find(|(n, _)| *n == value.to_bytes())
        .map(|(n, class)| (crate::str::BStr::from_bytes(n), *class))
}

/// A file handler: preserves one kind of file across a live update.
///
/// The methods map to `struct liveupdate_file_ops`. `freeze`, `unfreeze`, `can_finish` and
/// `get_id` are optional.
#[vtable]
pub trait FileHandler: Send + Sync + Sized + 'static {
    /// The handler's data for one file in the handover format.
    type Data: SerializedData;

    /// What the handler keeps for a preserved file in this kernel (not handed over).
    type Private: ForeignOwnable + Send;

    /// Whether this handler can preserve `file`.
    fn can_preserve(&self, file: &File) -> bool;

    /// Preserves `file`; returns its data for the next kernel and this kernel's state for it.
    fn preserve(&self, file: &File) -> Result<(Self::Data, Self::Private)>;

    /// Undoes [`FileHandler::preserve`]: the file's session was closed before a kexec.
    fn unpreserve(&self, file: &File, data: Self::Data, private: Self::Private);

    /// Last step before the kexec; may update the data. An error calls the kexec off.
    fn freeze(
        &self,
        _file: &File,
        _data: &mut Self::Data,
        _private: <Self::Private as ForeignOwnable>::Borrowed<'_>,
    ) -> Result {
        build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// Undoes [`FileHandler::freeze`]: the kexec was called off.
    fn unfreeze(
        &self,
        _file: &File,
        _data: Self::Data,
        _private: <Self::Private as ForeignOwnable>::Borrowed<'_>,
    ) {
        build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// In the next kernel: rebuilds the file from the previous kernel's data.
    fn retrieve(&self, data: Self::Data) -> Result<ARef<File>>;

    /// Whether the incoming file may be finished now.
    fn can_finish(&self, _file: Option<&File>, _data: Self::Data, _status: RetrieveStatus) -> bool {
        build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }

    /// The orchestrator lets go of an incoming file; a file never retrieved is discarded.
    fn finish(&self, file: Option<&File>, data: Self::Data, status: RetrieveStatus);

    /// The key under which a file counts as preserved (default: the open file itself). Two
    /// files with the same key cannot both be preserved.
    fn get_id(_file: &File) -> usize {
        build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }
}

/// The C handler and its operations, which point at each other.
#[repr(C)]
struct RawHandler {
    fh: bindings::liveupdate_file_handler,
    ops: bindings::liveupdate_file_ops,
}

/// A file handler and the C structures the orchestrator knows it by; registered with
/// [`Registration::register`] once it is `'static` (see the module documentation).
#[pin_data]
pub struct Registration<T: FileHandler> {
    handler: T,
    #[pin]
    raw: Opaque<RawHandler>,
}

// SAFETY: The registration only gives out shared access to `T`, which is `Sync`; the C
// structure is only written during registration.
unsafe impl<T: FileHandler> Sync for Registration<T> {}
// SAFETY: As above; `T` is `Send`.
unsafe impl<T: FileHandler> Send for Registration<T> {}

impl<T: FileHandler> Registration<T> {
    /// Prepares `handler` under `compatible`, the name of its data format; nothing is
    /// registered yet.
    ///
    /// # Errors
    ///
    /// `EINVAL` if `compatible` is empty or does not fit 47 bytes.
    pub fn new(compatible: &'static CStr, handler: T) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            handler,
            raw <- Opaque::try_ffi_init(move |slot: *mut RawHandler| {
                // SAFETY: `slot` is valid for writes and pinned; the operations table lives
                // in the same pinned allocation as the handler that points to it.
                unsafe {
                    let ops = &raw mut (*slot).ops;
                    ops.write(Self::OPS);
                    let fh = &raw mut (*slot).fh;
                    fh.write(pin_init::zeroed());
                    (*fh).ops = ops;
                    write_compatible(&raw mut (*fh).compatible, compatible)
                }
            }),
        })
    }

    /// Registers the handler until the returned guard is dropped.
    ///
    /// # Errors
    ///
    /// The orchestrator's: `EOPNOTSUPP` if live update is off, `EEXIST` if the compatible
    /// string is taken (also by this very handler, registered already).
    pub fn register(self: Pin<&'static Self>) -> Result<Registered<T>> {
        // SAFETY: The handler is initialised and lives for good at this address. Both cores
        // check for a taken compatible string before touching the structure, so a handler
        // registered already is refused with `EEXIST` and left as it is.
        to_result(unsafe { bindings::liveupdate_register_file_handler(self.fh()) })?;
        Ok(Registered { reg: self })
    }

    fn fh(&self) -> *mut bindings::liveupdate_file_handler {
        // SAFETY: `raw` is initialised; the handler is its first field.
        unsafe { &raw mut (*self.raw.get()).fh }
    }

    /// The handler.
    pub fn handler(&self) -> &T {
        &self.handler
    }

    /// # Safety
    ///
    /// `fh` is the handler of a live `Registration<T>`.
    unsafe fn from_fh<'a>(fh: *mut bindings::liveupdate_file_handler) -> &'a Self {
        // SAFETY: The handler is the first field of `RawHandler`, which `Opaque` wraps
        // transparently inside a live `Registration<T>`, by the caller's guarantee.
        unsafe { &*crate::container_of!(fh.cast::<Opaque<RawHandler>>(), Self, raw) }
    }

    /// # Safety
    ///
    /// `args` comes from the orchestrator for a handler of a live `Registration<T>`.
    unsafe fn from_args<'a>(args: *mut bindings::liveupdate_file_op_args) -> &'a T {
        // SAFETY: By the caller's guarantee.
        unsafe { &Self::from_fh((*args).handler).handler }
    }

    const OPS: bindings::liveupdate_file_ops = bindings::liveupdate_file_ops {
        can_preserve: Some(Self::can_preserve),
        preserve: Some(Self::preserve),
        unpreserve: Some(Self::unpreserve),
        freeze: if T::HAS_FREEZE {
            Some(Self::freeze)
        } else {
            None
        },
        unfreeze: if T::HAS_UNFREEZE {
            Some(Self::unfreeze)
        } else {
            None
        },
        retrieve: Some(Self::retrieve),
        can_finish: if T::HAS_CAN_FINISH {
            Some(Self::can_finish)
        } else {
            None
        },
        finish: Some(Self::finish),
        get_id: if T::HAS_GET_ID {
            Some(Self::get_id)
        } else {
            None
        },
        owner: this_module::<T::OwnerModule>().as_ptr(),
    };

    /// # Safety
    ///
    /// Called by the orchestrator with a handler of a live `Registration<T>` and a live file.
    unsafe extern "C" fn can_preserve(
        fh: *mut bindings::liveupdate_file_handler,
        file: *mut bindings::file,
    ) -> bool {
        // SAFETY: By the caller's guarantee.
        let (this, file) = unsafe { (Self::from_fh(fh), File::from_raw_file(file)) };
        this.handler.can_preserve(file)
    }

    /// # Safety
    ///
    /// Called by the orchestrator with valid `args` for this handler and a live file.
    unsafe extern "C" fn preserve(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        from_result(|| {
            // SAFETY: By the caller's guarantee.
            let (this, a) = unsafe { (Self::from_args(args), &mut *args) };
            // SAFETY: `a.file` is a live file for the duration of the call.
            let file = unsafe { File::from_raw_file(a.file) };
            let (data, private) = this.preserve(file)?;
            a.serialized_data = data.to_raw();
            a.private_data = private.into_foreign();
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the orchestrator with valid `args` that carry what `preserve` returned.
    unsafe extern "C" fn unpreserve(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: By the caller's guarantee.
        let (this, a) = unsafe { (Self::from_args(args), &mut *args) };
        // SAFETY: `a.file` is a live file; `private_data` came from `into_foreign` in
        // `preserve` and is given back once, here.
        let (file, private) = unsafe {
            (
                File::from_raw_file(a.file),
                T::Private::from_foreign(a.private_data),
            )
        };
        this.unpreserve(file, T::Data::from_raw(a.serialized_data), private);
    }

    /// # Safety
    ///
    /// Called by the orchestrator with valid `args` that carry what `preserve` returned.
    unsafe extern "C" fn freeze(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        from_result(|| {
            // SAFETY: By the caller's guarantee.
            let (this, a) = unsafe { (Self::from_args(args), &mut *args) };
            // SAFETY: `a.file` is live; `private_data` came from `preserve` and is not given
            // back before `unpreserve`, which cannot run during this call.
            let (file, private) = unsafe {
                (
                    File::from_raw_file(a.file),
                    T::Private::borrow(a.private_data),
                )
            };
            let mut data = T::Data::from_raw(a.serialized_data);
            this.freeze(file, &mut data, private)?;
            a.serialized_data = data.to_raw();
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the orchestrator with valid `args` that carry what `preserve` returned.
    unsafe extern "C" fn unfreeze(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: By the caller's guarantee.
        let (this, a) = unsafe { (Self::from_args(args), &mut *args) };
        // SAFETY: As in `freeze`.
        let (file, private) = unsafe {
            (
                File::from_raw_file(a.file),
                T::Private::borrow(a.private_data),
            )
        };
        this.unfreeze(file, T::Data::from_raw(a.serialized_data), private);
    }

    /// # Safety
    ///
    /// Called by the orchestrator with valid `args` for this handler.
    unsafe extern "C" fn retrieve(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        from_result(|| {
            // SAFETY: By the caller's guarantee.
            let (this, a) = unsafe { (Self::from_args(args), &mut *args) };
            let file = this.retrieve(T::Data::from_raw(a.serialized_data))?;
            // The orchestrator takes over the reference.
            a.file = ARef::into_raw(file).as_ptr().cast();
            Ok(0)
        })
    }

    /// The file of `args`, if there is one.
    ///
    /// # Safety
    ///
    /// `a.file` is null or a live file for `'a`.
    unsafe fn file<'a>(a: &bindings::liveupdate_file_op_args) -> Option<&'a File> {
        // SAFETY: By the caller's guarantee.
        (!a.file.is_null()).then(|| unsafe { File::from_raw_file(a.file) })
    }

    /// # Safety
    ///
    /// Called by the orchestrator with valid `args` for an incoming file of this handler.
    unsafe extern "C" fn can_finish(args: *mut bindings::liveupdate_file_op_args) -> bool {
        // SAFETY: By the caller's guarantee.
        let (this, a) = unsafe { (Self::from_args(args), &*args) };
        // SAFETY: The file, if any, is live for the duration of the call.
        let file = unsafe { Self::file(a) };
        let status = RetrieveStatus::from_raw(a.retrieve_status);
        this.can_finish(file, T::Data::from_raw(a.serialized_data), status)
    }

    /// # Safety
    ///
    /// Called by the orchestrator with valid `args` for an incoming file of this handler.
    unsafe extern "C" fn finish(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: By the caller's guarantee.
        let (this, a) = unsafe { (Self::from_args(args), &*args) };
        // SAFETY: The file, if any, is live for the duration of the call.
        let file = unsafe { Self::file(a) };
        let status = RetrieveStatus::from_raw(a.retrieve_status);
        this.finish(file, T::Data::from_raw(a.serialized_data), status);
    }

    /// # Safety
    ///
    /// Called by the orchestrator with a live file this handler accepts.
    unsafe extern "C" fn get_id(file: *mut bindings::file) -> c_ulong {
        // SAFETY: By the caller's guarantee.
        T::get_id(unsafe { File::from_raw_file(file) }) as c_ulong
    }
}

/// A registered file handler; dropping it unregisters the handler (and undoes its FLB links).
///
/// Files the orchestrator holds for the handler keep it, and are carried and finished as
/// before: unregistering only stops new files from being preserved with it, and keeps the
/// next kernel's files from being matched to it if it is unregistered before they are read.
pub struct Registered<T: FileHandler> {
    reg: Pin<&'static Registration<T>>,
}

impl<T: FileHandler> Registered<T> {
    /// Links `flb` to the handler: files it preserves depend on the FLB from now on. The link
    /// is undone when the returned value is dropped, or with the handler's registration.
    ///
    /// # Errors
    ///
    /// `EEXIST` if linked already or another FLB has the same compatible string, `ENOSPC` if
    /// too many FLBs are registered, `ENOMEM`, `EOPNOTSUPP` if live update is off.
    pub fn link_flb<F: Flb>(&self, flb: Pin<&'static FlbRegistration<F>>) -> Result<FlbLink<'_>> {
        // SAFETY: The handler is registered while `self` lives, which the link borrows; both
        // structures live for good.
        to_result(unsafe { bindings::liveupdate_register_flb(self.reg.fh(), flb.raw()) })?;
        Ok(FlbLink {
            fh: self.reg.fh(),
            flb: flb.raw(),
            _p: PhantomData,
        })
    }

    /// The handler.
    pub fn handler(&self) -> &T {
        &self.reg.handler
    }
}

impl<T: FileHandler> Drop for Registered<T> {
    fn drop(&mut self) {
        // SAFETY: The handler was registered by `register`, and only this guard unregisters
        // it. Files still held for it point to memory that lives for good.
        unsafe { bindings::liveupdate_unregister_file_handler(self.reg.fh()) };
    }
}

/// State that several preserved files depend on (a File-Lifecycle-Bound object).
///
/// It is preserved with the first dependent file and unpreserved with the last; in the next
/// kernel it is retrieved when first asked for (or when its last file finishes) and finished
/// once every file that depended on it has finished.
pub trait Flb: Send + Sync + Sized + 'static {
    /// The live object in each kernel.
    type Object: ForeignOwnable + Send + Sync;

    /// Preserves the state; returns its data for the next kernel and this kernel's object.
    fn preserve(&self) -> Result<(u64, Self::Object)>;

    /// Undoes [`Flb::preserve`]: no dependent file is preserved any more.
    fn unpreserve(&self, data: u64, obj: Self::Object);

    /// In the next kernel: rebuilds the object from the previous kernel's data.
    fn retrieve(&self, data: u64) -> Result<Self::Object>;

    /// The last dependent file was finished.
    fn finish(&self, obj: Self::Object);
}

/// The C FLB and its operations.
#[repr(C)]
struct RawFlb {
    flb: bindings::liveupdate_flb,
    ops: bindings::liveupdate_flb_ops,
}

/// An FLB, ready to be linked to file handlers with [`Registered::link_flb`] once it is
/// `'static` (see the module documentation).
#[pin_data]
pub struct FlbRegistration<T: Flb> {
    inner: T,
    #[pin]
    raw: Opaque<RawFlb>,
}

// SAFETY: Only shared access to `T` (which is `Sync`) is given out; the C structure belongs to
// the orchestrator.
unsafe impl<T: Flb> Sync for FlbRegistration<T> {}
// SAFETY: As above; `T` is `Send`.
unsafe impl<T: Flb> Send for FlbRegistration<T> {}

impl<T: Flb> FlbRegistration<T> {
    /// Creates the FLB under `compatible`, the name of its data format.
    ///
    /// # Errors
    ///
    /// `EINVAL` if `compatible` is empty or does not fit 47 bytes.
    pub fn new(compatible: &'static CStr, inner: T) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            inner,
            raw <- Opaque::try_ffi_init(move |slot: *mut RawFlb| {
                // SAFETY: `slot` is valid for writes and pinned; the table lives next to the
                // FLB that points to it.
                unsafe {
                    let ops = &raw mut (*slot).ops;
                    ops.write(Self::OPS);
                    let flb = &raw mut (*slot).flb;
                    flb.write(pin_init::zeroed());
                    (*flb).ops = ops;
                    write_compatible(&raw mut (*flb).compatible, compatible)
                }
            }),
        })
    }

    fn raw(&self) -> *mut bindings::liveupdate_flb {
        // SAFETY: `raw` is initialised; the FLB is its first field.
        unsafe { &raw mut (*self.raw.get()).flb }
    }

    /// The object of the previous kernel, retrieved on first use.
    ///
    /// # Errors
    ///
    /// `ENODATA` if the previous kernel handed over no FLBs or this one was finished, `ENOENT`
    /// if it handed over none of this name, or the error of [`Flb::retrieve`] (kept for later
    /// calls).
    pub fn incoming(&self) -> Result<FlbRef<'_, T>> {
        let mut obj = core::ptr::null_mut();
        // SAFETY: The FLB is initialised and pinned; `obj` is valid for a write.
        to_result(unsafe { bindings::liveupdate_flb_get_incoming(self.raw(), &mut obj) })?;
        Ok(FlbRef {
            flb: self,
            obj,
            incoming: true,
        })
    }

    /// This kernel's object, while a dependent file is preserved.
    ///
    /// # Errors
    ///
    /// `ENOENT` if the FLB is not preserved.
    pub fn outgoing(&self) -> Result<FlbRef<'_, T>> {
        let mut obj = core::ptr::null_mut();
        // SAFETY: The FLB is initialised and pinned; `obj` is valid for a write.
        to_result(unsafe { bindings::liveupdate_flb_get_outgoing(self.raw(), &mut obj) })?;
        Ok(FlbRef {
            flb: self,
            obj,
            incoming: false,
        })
    }

    /// # Safety
    ///
    /// `args` comes from the orchestrator for the FLB of a live `FlbRegistration<T>`.
    unsafe fn from_args<'a>(args: *mut bindings::liveupdate_flb_op_args) -> &'a T {
        // SAFETY: The FLB is the first field of `RawFlb`, which `Opaque` wraps transparently
        // inside a live `FlbRegistration<T>`, by the caller's guarantee.
        unsafe {
            let raw = (*args).flb.cast::<Opaque<RawFlb>>();
            &(*crate::container_of!(raw, Self, raw)).inner
        }
    }

    const OPS: bindings::liveupdate_flb_ops = bindings::liveupdate_flb_ops {
        preserve: Some(Self::preserve),
        unpreserve: Some(Self::unpreserve),
        retrieve: Some(Self::retrieve),
        finish: Some(Self::finish),
        // FLB registrations are `'static`; the handler's module reference already keeps a
        // module's FLB alive while files depend on it.
        owner: core::ptr::null_mut(),
    };

    /// # Safety
    ///
    /// Called by the orchestrator with valid `args` for this FLB.
    unsafe extern "C" fn preserve(args: *mut bindings::liveupdate_flb_op_args) -> c_int {
        from_result(|| {
            // SAFETY: By the caller's guarantee.
            let (this, a) = unsafe { (Self::from_args(args), &mut *args) };
            let (data, obj) = this.preserve()?;
            a.data = data;
            a.obj = obj.into_foreign();
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the orchestrator with the `args` `preserve` filled in.
    unsafe extern "C" fn unpreserve(args: *mut bindings::liveupdate_flb_op_args) {
        // SAFETY: By the caller's guarantee; `obj` came from `into_foreign` in `preserve` and
        // is given back once, here.
        let (this, a, obj) = unsafe {
            (
                Self::from_args(args),
                &*args,
                T::Object::from_foreign((*args).obj),
            )
        };
        this.unpreserve(a.data, obj);
    }

    /// # Safety
    ///
    /// Called by the orchestrator with valid `args` for this FLB.
    unsafe extern "C" fn retrieve(args: *mut bindings::liveupdate_flb_op_args) -> c_int {
        from_result(|| {
            // SAFETY: By the caller's guarantee.
            let (this, a) = unsafe { (Self::from_args(args), &mut *args) };
            a.obj = this.retrieve(a.data)?.into_foreign();
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the orchestrator with the `args` `retrieve` filled in.
    unsafe extern "C" fn finish(args: *mut bindings::liveupdate_flb_op_args) {
        // SAFETY: By the caller's guarantee; `obj` came from `into_foreign` in `retrieve` and
        // is given back once, here.
        let (this, obj) = unsafe { (Self::from_args(args), T::Object::from_foreign((*args).obj)) };
        this.finish(obj);
    }
}

/// A link between a registered file handler and an FLB; dropping it unlinks them. It cannot
/// outlive the handler's registration, which undoes every link of the handler.
pub struct FlbLink<'a> {
    fh: *mut bindings::liveupdate_file_handler,
    flb: *mut bindings::liveupdate_flb,
    _p: PhantomData<&'a ()>,
}

impl Drop for FlbLink<'_> {
    fn drop(&mut self) {
        // SAFETY: The link was made by `link_flb` and the handler is still registered (the
        // link borrows its guard); both structures live for good.
        unsafe { bindings::liveupdate_unregister_flb(self.fh, self.flb) };
    }
}

/// A reference to an FLB's object; dropping it puts the reference back (the last reference to
/// an incoming object finishes the FLB).
pub struct FlbRef<'a, T: Flb> {
    flb: &'a FlbRegistration<T>,
    obj: *mut c_void,
    incoming: bool,
}

// SAFETY: The C API lets any thread put the reference, and the object it borrows is `Send` and
// `Sync` (`Flb::Object`).
unsafe impl<T: Flb> Send for FlbRef<'_, T> {}

// SAFETY: A shared `FlbRef` only hands out shared borrows of the object, which is `Sync`.
unsafe impl<T: Flb> Sync for FlbRef<'_, T> {}

impl<T: Flb> FlbRef<'_, T> {
    /// The object.
    pub fn get(&self) -> <T::Object as ForeignOwnable>::Borrowed<'_> {
        // SAFETY: `obj` came from `into_foreign` in `preserve` or `retrieve`, and the reference
        // held by `self` keeps it from being given back.
        unsafe { T::Object::borrow(self.obj) }
    }
}

impl<T: Flb> Drop for FlbRef<'_, T> {
    fn drop(&mut self) {
        // SAFETY: The reference was taken in `incoming`/`outgoing` on this FLB.
        unsafe {
            if self.incoming {
                bindings::liveupdate_flb_put_incoming(self.flb.raw());
            } else {
                bindings::liveupdate_flb_put_outgoing(self.flb.raw());
            }
        }
    }
}
