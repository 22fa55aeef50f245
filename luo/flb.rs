// SPDX-License-Identifier: GPL-2.0

//! File-Lifecycle-Bound objects (FLBs): state shared by many preserved files.
//!
//! An FLB (`struct liveupdate_flb`, registered by C or Rust code) stands for something several
//! files depend on, such as an IOMMU domain. It is preserved when the first dependent file is
//! preserved and unpreserved when the last one goes away; in the next kernel its object is
//! retrieved on demand and finished once the last dependent file is finished.
//!
//! The core keeps each FLB's state here, keyed by the FLB's address, rather than in the C
//! structure's private fields. Two differences from the C core make the counts exact:
//!
//! - The incoming count is set from the previous kernel's data when the FLB is first seen,
//!   not when its object is first retrieved, so files finished before anyone asked for the
//!   object still count down, and the FLB's `finish` runs exactly once.
//! - The count handed to the next kernel is the number of dependent files only; references
//!   taken with `liveupdate_flb_get_outgoing()` do not leak into it.
//!
//! An FLB is known by its address and its compatible string together, and its state is
//! dropped when it holds nothing and is not registered (after an unlink or a failed
//! registration), so an FLB later placed at a freed one's address starts afresh.
//!
//! Lock order: the handler registry (`handler::registry()`), then the table of known FLBs
//! (`KNOWN`), then one FLB's `outgoing` or `incoming` mutex. Only [`Flb::is_idle`] looks at
//! an FLB's mutexes with `KNOWN` held, and it only tries them. An FLB's operations are called
//! with its own mutex held and may use other FLBs (nested FLBs such as iommufd and iommu):
//! they take `KNOWN` and the other FLB's mutex, never their own FLB's again.

use core::ptr::NonNull;
use kernel::{
    bindings,
    error::to_result,
    new_mutex,
    prelude::*,
    sync::{
        Arc,
        Mutex,
        SetOnce, //
    }, //
};

use crate::{
    abi::{
        self,
        FlbRecord, //
    },
    handler::{
        self,
        ModuleRef,
        Registered, //
    },
    handover, //
};

/// The object an FLB's operations produced (`obj`); never looked at by the core.
#[derive(Clone, Copy)]
struct Object(*mut c_void);

// SAFETY: The object is only handed back to the FLB that made it, which the C API allows from
// any thread.
unsafe impl Send for Object {}

/// This kernel's side of an FLB, for the next kernel.
struct Outgoing {
    /// Preserved files that depend on the FLB.
    files: usize,
    /// References taken with `liveupdate_flb_get_outgoing()` and not yet put.
    refs: usize,
    data: u64,
    obj: Object,
    /// Held while the FLB is preserved.
    module: Option<ModuleRef>,
}

/// The previous kernel's side of an FLB.
struct Incoming {
    /// The previous kernel's entry for this FLB, if it had one.
    record: Option<FlbRecord>,
    /// Dependent files not finished yet plus references taken with
    /// `liveupdate_flb_get_incoming()`; starts at the previous kernel's file count.
    count: u64,
    obj: Object,
    /// 0: not retrieved; 1: retrieved; negative: the cached error of a failed retrieve.
    status: i32,
    finished: bool,
    /// Held from a successful retrieve until finish.
    module: Option<ModuleRef>,
}

/// The state of one FLB.
///
/// # Invariants
///
/// `ptr` points to an FLB whose `ops` table has every operation; the FLB stays valid while it
/// is registered or holds a module reference here (a static FLB of built-in code forever).
#[pin_data]
pub(crate) struct Flb {
    ptr: NonNull<bindings::liveupdate_flb>,
    /// The compatible string when the state was created, NUL-padded. With the address it
    /// identifies the FLB: another FLB later placed at a freed FLB's address has its own
    /// format, and must not inherit the first one's state.
    name: [u8; abi::COMPAT_LENGTH],
    #[pin]
    outgoing: Mutex<Outgoing>,
    #[pin]
    incoming: Mutex<Incoming>,
}

// SAFETY: FLBs are shared C objects whose operations the C API allows from any thread; the
// mutable state is behind mutexes.
unsafe impl Send for Flb {}
// SAFETY: As above.
unsafe impl Sync for Flb {}

impl Flb {
    fn new(ptr: NonNull<bindings::liveupdate_flb>) -> Result<Arc<Self>> {
        // SAFETY: `ptr` is valid (checked by the caller, `lookup`).
        let current = unsafe { compatible(ptr) };
        let mut name = [0u8; abi::COMPAT_LENGTH];
        name.iter_mut().zip(current).for_each(|(d, s)| *d = *s);
        let record = handover::incoming_flbs()
            .and_then(|flbs| flbs.iter().find(|r| r.name.as_bytes() == current).copied());
        Arc::pin_init(
            pin_init!(Self {
                ptr,
                name,
                outgoing <- new_mutex!(Outgoing {
                    files: 0,
                    refs: 0,
                    data: 0,
                    obj: Object(core::ptr::null_mut()),
                    module: None,
                }),
                incoming <- new_mutex!(Incoming {
                    record,
                    count: record.map_or(0, |r| r.file_count),
                    obj: Object(core::ptr::null_mut()),
                    status: 0,
                    finished: false,
                    module: None,
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// True if this is the state of the FLB at `flb`, which must be valid: the address and the
    /// compatible string match.
    fn is_valid_flb(&self, flb: NonNull<bindings::liveupdate_flb>) -> bool {
        // SAFETY: `flb` is valid by the caller's guarantee.
        self.is(flb.as_ptr()) && self.compatible() == unsafe { compatible(flb) }
    }

    /// True if this is the state of the FLB at address `flb`.
    pub(crate) fn is(&self, flb: *const bindings::liveupdate_flb) -> bool {
        core::ptr::eq(self.ptr.as_ptr(), flb)
    }

    /// The FLB's compatible string, without its NUL.
    pub(crate) fn compatible(&self) -> &[u8] {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(0);
        self.name.get(..len).unwrap_or(&[])
    }

    fn name(&self) -> &kernel::str::BStr {
        kernel::str::BStr::from_bytes(self.compatible())
    }

    fn ops(&self) -> &bindings::liveupdate_flb_ops {
        // SAFETY: The FLB and its table are valid (type invariant).
        unsafe { &*(*self.ptr.as_ptr()).ops }
    }

    fn args(&self, data: u64, obj: Object) -> bindings::liveupdate_flb_op_args {
        bindings::liveupdate_flb_op_args {
            flb: self.ptr.as_ptr(),
            data,
            obj: obj.0,
        }
    }

    /// True if the FLB holds no state: nothing preserved or referenced in this kernel, and the
    /// previous kernel's object untouched (a finished or failed one is remembered, so that it
    /// is not retrieved again).
    ///
    /// Called with the table of known FLBs locked, so it does not wait for the FLB's own
    /// mutexes (see the lock order in the module documentation): an FLB in use is not idle.
    fn is_idle(&self) -> bool {
        let Some(out) = self.outgoing.try_lock() else {
            return false;
        };
        let Some(inc) = self.incoming.try_lock() else {
            return false;
        };
        let untouched =
            inc.status == 0 && !inc.finished && inc.count == inc.record.map_or(0, |r| r.file_count);
        out.files == 0 && out.refs == 0 && untouched
    }

    /// A file that depends on this FLB is being preserved: the first one preserves the FLB.
    pub(crate) fn file_preserved(&self) -> Result {
        let mut out = self.outgoing.lock();
        if out.files == 0 && out.refs == 0 {
            let module = ModuleRef::get(self.ops().owner).ok_or(ENODEV)?;
            let preserve = self.ops().preserve.ok_or(EINVAL)?;
            let mut args = self.args(0, Object(core::ptr::null_mut()));
            // SAFETY: `args` names this FLB; its owner is held by `module`.
            to_result(unsafe { preserve(&mut args) })?;
            out.data = args.data;
            out.obj = Object(args.obj);
            out.module = Some(module);
        }
        out.files += 1;
        Ok(())
    }

    /// A file that depended on this FLB is no longer preserved.
    pub(crate) fn file_unpreserved(&self) {
        let mut out = self.outgoing.lock();
        if out.files == 0 {
            pr_warn!(
                "FLB '{}': more files unpreserved than preserved\n",
                self.name()
            );
            return;
        }
        out.files -= 1;
        self.put_outgoing_locked(&mut out);
    }

    /// `liveupdate_flb_get_outgoing()`.
    pub(crate) fn get_outgoing(&self) -> Result<*mut c_void> {
        let mut out = self.outgoing.lock();
        if out.obj.0.is_null() {
            return Err(ENOENT);
        }
        out.refs += 1;
        Ok(out.obj.0)
    }

    /// `liveupdate_flb_put_outgoing()`.
    pub(crate) fn put_outgoing(&self) {
        let mut out = self.outgoing.lock();
        if out.refs == 0 {
            pr_warn!("FLB '{}': outgoing reference put twice\n", self.name());
            return;
        }
        out.refs -= 1;
        self.put_outgoing_locked(&mut out);
    }

    /// Unpreserves the FLB once nothing uses it any more.
    fn put_outgoing_locked(&self, out: &mut Outgoing) {
        if out.files != 0 || out.refs != 0 {
            return;
        }
        if let Some(unpreserve) = self.ops().unpreserve {
            let mut args = self.args(out.data, out.obj);
            // SAFETY: `args` carries what `preserve` returned; the owner is still held.
            unsafe { unpreserve(&mut args) };
        }
        out.data = 0;
        out.obj = Object(core::ptr::null_mut());
        out.module = None;
    }

    /// True if the FLB is preserved only because `liveupdate_flb_get_outgoing()` references are
    /// held: no preserved file depends on it.
    fn held_without_files(&self) -> bool {
        let out = self.outgoing.lock();
        out.files == 0 && out.refs != 0
    }

    /// What the next kernel is told about this FLB: `(data, dependent files)`, if it is
    /// preserved.
    fn outgoing_record(&self) -> Option<(u64, u64)> {
        let out = self.outgoing.lock();
        (out.files > 0).then_some((out.data, out.files as u64))
    }

    /// Retrieves the incoming object, once; a failure is cached and returned again.
    fn retrieve_locked(&self, inc: &mut Incoming) -> Result {
        if inc.finished {
            return Err(ENODATA);
        }
        if inc.status < 0 {
            return Err(Error::from_errno(inc.status));
        }
        if inc.status > 0 {
            return Ok(());
        }
        if handover::incoming_flbs().is_none() {
            return Err(ENODATA);
        }
        let record = inc.record.ok_or(ENOENT)?;
        let module = ModuleRef::get(self.ops().owner).ok_or(ENODEV)?;
        let retrieve = self.ops().retrieve.ok_or(EINVAL)?;
        let mut args = self.args(record.data, Object(core::ptr::null_mut()));
        // SAFETY: `args` names this FLB and the data the previous kernel recorded for it.
        if let Err(e) = to_result(unsafe { retrieve(&mut args) }) {
            inc.status = e.to_errno();
            return Err(e);
        }
        inc.obj = Object(args.obj);
        inc.status = 1;
        inc.module = Some(module);
        Ok(())
    }

    /// `liveupdate_flb_get_incoming()`.
    pub(crate) fn get_incoming(&self) -> Result<*mut c_void> {
        let mut inc = self.incoming.lock();
        self.retrieve_locked(&mut inc)?;
        inc.count = inc.count.saturating_add(1);
        Ok(inc.obj.0)
    }

    /// `liveupdate_flb_put_incoming()`: drops a reference taken by `get_incoming`.
    pub(crate) fn put_incoming(&self) {
        let mut inc = self.incoming.lock();
        if inc.count == 0 || inc.finished {
            pr_warn!("FLB '{}': incoming reference put twice\n", self.name());
            return;
        }
        self.drop_incoming_locked(&mut inc);
    }

    /// An incoming file that depended on this FLB was finished.
    ///
    /// A file can only depend on an FLB the previous kernel recorded; if it recorded none
    /// (its handler was not linked to this FLB there), there is nothing to count down.
    pub(crate) fn file_finished(&self) {
        let mut inc = self.incoming.lock();
        if inc.record.is_none() || inc.count == 0 || inc.finished {
            return;
        }
        self.drop_incoming_locked(&mut inc);
    }

    /// Counts down, and finishes the FLB when the count reaches zero.
    fn drop_incoming_locked(&self, inc: &mut Incoming) {
        inc.count -= 1;
        if inc.count != 0 {
            return;
        }
        if let Err(e) = self.retrieve_locked(inc) {
            pr_warn!(
                "FLB '{}': cannot finish, retrieve failed: {:?}\n",
                self.name(),
                e
            );
            return;
        }
        if let Some(finish) = self.ops().finish {
            let mut args = self.args(0, inc.obj);
            // SAFETY: `args` carries the object `retrieve` returned; the owner is still held.
            unsafe { finish(&mut args) };
        }
        inc.obj = Object(core::ptr::null_mut());
        inc.finished = true;
        inc.module = None;
    }
}

/// The FLB's compatible string, without its NUL.
///
/// # Safety
///
/// `ptr` points to a valid FLB whose `compatible` does not change while the result is used.
unsafe fn compatible<'a>(ptr: NonNull<bindings::liveupdate_flb>) -> &'a [u8] {
    // SAFETY: By the caller's guarantee.
    abi::c_compatible(unsafe { &(*ptr.as_ptr()).compatible })
}

/// Every FLB the core has seen, registered or not (an FLB's incoming object may be asked for
/// before the FLB is registered).
static KNOWN: SetOnce<Pin<KBox<FlbTable>>> = SetOnce::new();

/// The state of every FLB the core has seen.
type FlbTable = Mutex<KVec<Arc<Flb>>>;

/// Creates the table of FLBs; called once at early init.
pub(crate) fn init() -> Result {
    let table = KBox::pin_init(new_mutex!(KVec::new()), GFP_KERNEL)?;
    if !KNOWN.populate(table) {
        return Err(EBUSY);
    }
    Ok(())
}

/// The state of the FLB at `flb`, created on first use.
///
/// # Safety
///
/// `flb` is null or points to an FLB that stays valid while it is registered or in use (for
/// built-in code: a static FLB), with an `ops` pointer that is null or valid for as long.
///
/// # Errors
///
/// `EINVAL` for a null FLB, one without a compatible string or missing an operation; `ENOMEM`;
/// `EOPNOTSUPP` before init.
pub(crate) unsafe fn lookup(flb: *mut bindings::liveupdate_flb) -> Result<Arc<Flb>> {
    let ptr = NonNull::new(flb).ok_or(EINVAL)?;
    let table = KNOWN.as_ref().ok_or(EOPNOTSUPP)?;
    let mut known = table.lock();
    if let Some(f) = known.iter().find(|f| f.is_valid_flb(ptr)) {
        return Ok(f.clone());
    }
    // SAFETY: `ptr` is valid by the caller's guarantee.
    if unsafe { compatible(ptr) }.is_empty() {
        // The C core accepts it, and writes an entry that the reader here refuses.
        pr_err!("An FLB needs a compatible string\n");
        return Err(EINVAL);
    }
    // SAFETY: `ptr` is valid by the caller's guarantee.
    let ops = unsafe { (*ptr.as_ptr()).ops };
    // SAFETY: `ops` is null or valid by the caller's guarantee.
    let ops = unsafe { ops.as_ref() }.ok_or(EINVAL)?;
    if ops.preserve.is_none()
        || ops.unpreserve.is_none()
        || ops.retrieve.is_none()
        || ops.finish.is_none()
    {
        // SAFETY: `ptr` is valid by the caller's guarantee.
        let name = kernel::str::BStr::from_bytes(unsafe { compatible(ptr) });
        pr_err!("FLB '{}' lacks a required operation\n", name);
        return Err(EINVAL);
    }
    // INVARIANT: Checked above; validity is the caller's guarantee.
    let state = Flb::new(ptr)?;
    known.push(state.clone(), GFP_KERNEL)?;
    Ok(state)
}

/// Checks that every preserved FLB can be handed over: one that only outgoing references keep
/// preserved has no file in the next kernel to finish it, so its state would arrive unclaimed
/// and stay reserved there for good (the C core hands it over with the references counted as
/// files, which never finish). Called by the reboot path before anything is frozen, with
/// session operations held off, so no file can start to depend on an FLB afterwards.
///
/// # Errors
///
/// `EBUSY` while such a reference is held; the kexec is called off and may be tried again
/// once the holder put it.
pub(crate) fn check_handover(flbs: &[Arc<Flb>]) -> Result {
    match flbs.iter().find(|f| f.held_without_files()) {
        Some(f) => {
            pr_err!(
                "FLB '{}' is referenced but no preserved file depends on it: kexec refused until \
                 the reference is put\n",
                f.name()
            );
            Err(EBUSY)
        }
        None => Ok(()),
    }
}

/// Writes the registered FLBs that are preserved into the outgoing FLB page.
pub(crate) fn serialize(flbs: &[Arc<Flb>], page: &mut [u8; abi::BLOCK_SIZE]) {
    abi::encode_flbs(
        page,
        flbs.iter().filter_map(|f| {
            f.outgoing_record()
                .map(|(data, n)| (f.compatible(), data, n))
        }),
    );
}

/// Links `flb` to the registered handler at `fh` (`liveupdate_register_flb()`).
pub(crate) fn register(fh: *mut bindings::liveupdate_file_handler, flb: Arc<Flb>) -> Result {
    let mut registered = handler::registry()?.write();
    let Registered { handlers, flbs } = &mut *registered;
    let Some(entry) = handlers.iter_mut().find(|e| e.handler.is(fh)) else {
        pr_err!("FLB '{}': the file handler is not registered\n", flb.name());
        return Err(EINVAL);
    };
    if entry.flbs.iter().any(|f| Arc::ptr_eq(f, &flb)) {
        return Err(EEXIST);
    }
    let first_link = !flbs.iter().any(|f| Arc::ptr_eq(f, &flb));
    if first_link {
        if flbs.len() >= abi::flb::MAX {
            return Err(ENOSPC);
        }
        if flbs.iter().any(|f| f.compatible() == flb.compatible()) {
            return Err(EEXIST);
        }
        flbs.reserve(1, GFP_KERNEL)?;
    }
    entry.flbs.push(flb.clone(), GFP_KERNEL)?;
    if first_link && flbs.push_within_capacity(flb).is_err() {
        // Cannot happen: room was reserved above.
        entry.flbs.pop();
        return Err(ENOMEM);
    }
    Ok(())
}

/// Unlinks the FLB at `flb` from the handler at `fh` (`liveupdate_unregister_flb()`); an FLB
/// no handler links any more is no longer registered.
pub(crate) fn unregister(
    fh: *mut bindings::liveupdate_file_handler,
    flb: *mut bindings::liveupdate_flb,
) {
    let Ok(registry) = handler::registry() else {
        return;
    };
    let mut registered = registry.write();
    let Registered { handlers, flbs } = &mut *registered;
    let entry = handlers.iter_mut().find(|e| e.handler.is(fh));
    let Some((entry, pos)) =
        entry.and_then(|e| e.flbs.iter().position(|f| f.is(flb)).map(|p| (e, p)))
    else {
        pr_warn!("Failed to unregister FLB: not linked to the file handler\n");
        return;
    };
    if entry.flbs.remove(pos).is_err() {
        return;
    }
    if !handlers.iter().any(|e| e.flbs.iter().any(|f| f.is(flb))) {
        flbs.retain(|f| !f.is(flb));
        forget_idle(flbs);
    }
}

/// Drops the state of every FLB that is not `registered` and holds nothing: such an FLB may
/// be freed next (its module unloaded), and its address reused by another FLB.
pub(crate) fn forget_idle(registered: &[Arc<Flb>]) {
    let Some(table) = KNOWN.as_ref() else {
        return;
    };
    table
        .lock()
        .retain(|f| registered.iter().any(|r| Arc::ptr_eq(r, f)) || !f.is_idle());
}
