// SPDX-License-Identifier: GPL-2.0

//! Kexec HandOver (KHO): memory that survives a kexec into the next kernel.
//!
//! A kernel that is about to be replaced by kexec marks memory as *preserved*; KHO tells the
//! next kernel where that memory is, the next kernel keeps it out of its allocator, and a
//! subsystem there *restores* each piece to take ownership of it again. Named *subtrees* let
//! the next kernel find a subsystem's root structure.
//!
//! This module covers what a subsystem that hands over page-sized records needs:
//! [`PreservedPage`] for data written in this kernel, [`RestoredPage`] for data received from
//! the previous one, and the subtree calls; and for larger arrays, [`PreservedVmalloc`] and
//! [`RestoredVmalloc`], described to the next kernel by a [`VmallocDesc`].
//!
//! C header: [`include/linux/kexec_handover.h`](srctree/include/linux/kexec_handover.h)

use crate::{
    alloc::VVec,
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    page::PAGE_SIZE,
    prelude::*,
    str::CStr, //
};
use core::ptr::NonNull;

/// A physical address as stored in handover data.
pub type PhysAddr = u64;

/// Returns true if KHO is enabled in this boot (`kho=` or the Kconfig default).
pub fn is_enabled() -> bool {
    // SAFETY: Reading a boolean set during early boot.
    unsafe { bindings::kho_is_enabled() }
}

/// One zeroed page of memory that is preserved for the next kernel.
///
/// Dropping it withdraws the preservation and frees the page. To hand the page over, keep it
/// alive until the kexec (for example with [`PreservedPage::keep`]).
///
/// # Invariants
///
/// `ptr` is the address of an order-0 folio from `kho_alloc_preserve()` that is preserved and
/// owned by this object.
pub struct PreservedPage {
    ptr: NonNull<u8>,
}

// SAFETY: The page is plain memory owned by this object; it may be used from any thread.
unsafe impl Send for PreservedPage {}
// SAFETY: Shared references only give read access to the page.
unsafe impl Sync for PreservedPage {}

impl PreservedPage {
    /// Allocates a zeroed page and preserves it.
    ///
    /// # Errors
    ///
    /// `ENOMEM`, or the error KHO gives for the preservation.
    pub fn new() -> Result<Self> {
        // SAFETY: `kho_alloc_preserve()` may be called with any size.
        let ptr = from_err_ptr(unsafe { bindings::kho_alloc_preserve(PAGE_SIZE) })?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(ENOMEM)?;
        // INVARIANT: `kho_alloc_preserve(PAGE_SIZE)` returns an order-0 preserved folio.
        Ok(Self { ptr })
    }

    /// The physical address the next kernel will find the page at.
    pub fn phys(&self) -> PhysAddr {
        // SAFETY: `ptr` is a directly mapped kernel address by the type invariant.
        unsafe { bindings::virt_to_phys(self.ptr.as_ptr().cast()) }
    }

    /// The contents of the page.
    pub fn bytes(&self) -> &[u8; PAGE_SIZE] {
        // SAFETY: The page is owned by this object and `PAGE_SIZE` bytes long.
        unsafe { &*self.ptr.as_ptr().cast() }
    }

    /// The contents of the page, for writing.
    pub fn bytes_mut(&mut self) -> &mut [u8; PAGE_SIZE] {
        // SAFETY: The page is owned by this object, `PAGE_SIZE` bytes long, and `&mut self`
        // makes this the only reference.
        unsafe { &mut *self.ptr.as_ptr().cast() }
    }

    /// A raw pointer to the page, for C interfaces that record it.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Keeps the page preserved for the rest of this kernel's life and returns it.
    pub fn keep(self) -> &'static mut [u8; PAGE_SIZE] {
        let ptr = self.ptr.as_ptr();
        core::mem::forget(self);
        // SAFETY: The page is never freed now, and the forgotten owner cannot reach it again.
        unsafe { &mut *ptr.cast() }
    }
}

impl Drop for PreservedPage {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the page came from `kho_alloc_preserve()` and is owned
        // by us.
        unsafe { bindings::kho_unpreserve_free(self.ptr.as_ptr().cast()) };
    }
}

/// One page received from the previous kernel, now owned by this one.
///
/// Dropping it frees the page to this kernel's allocator. To keep data of the previous kernel
/// away from every other user (for example after finding it corrupt), [`RestoredPage::leak`] it.
///
/// # Invariants
///
/// `folio` is an order-0 folio restored with `kho_restore_folio()` and owned by this object.
pub struct RestoredPage {
    folio: NonNull<bindings::folio>,
}

// SAFETY: The page is plain memory owned by this object; it may be used from any thread.
unsafe impl Send for RestoredPage {}
// SAFETY: Shared references only give read access to the page.
unsafe impl Sync for RestoredPage {}

/// Returns true if `phys` starts memory the previous kernel preserved and no one restored yet.
///
/// Addresses read from the previous kernel's data are untrusted: test them here before
/// restoring, because KHO's restore functions warn about an address they do not know.
pub fn is_preserved(phys: PhysAddr) -> bool {
    // SAFETY: `kho_is_preserved()` accepts any address; it only reads the `struct page` of an
    // online page frame.
    unsafe { bindings::kho_is_preserved(phys) }
}

impl RestoredPage {
    /// Takes ownership of the page at `phys`, which the previous kernel preserved.
    ///
    /// A page can be restored once; a second attempt, like any address the previous kernel did
    /// not preserve, is refused without a warning.
    ///
    /// # Errors
    ///
    /// `EINVAL` if `phys` is not page aligned, or is not a preserved page, or was preserved as
    /// a larger folio (which is then kept from the allocator, not freed).
    pub fn restore(phys: PhysAddr) -> Result<Self> {
        if phys == 0 || phys % PAGE_SIZE as u64 != 0 || !is_preserved(phys) {
            return Err(EINVAL);
        }
        // SAFETY: `phys` is preserved memory; `kho_restore_folio()` checks it again.
        let folio = NonNull::new(unsafe { bindings::kho_restore_folio(phys) }).ok_or(EINVAL)?;
        // SAFETY: `folio` was just restored and is valid.
        if unsafe { bindings::folio_order(folio.as_ptr()) } != 0 {
            // The previous kernel's data claimed a page where a larger folio is; it now belongs
            // to us and is deliberately never freed.
            return Err(EINVAL);
        }
        // INVARIANT: An order-0 folio, restored and now ours.
        Ok(Self { folio })
    }

    /// The contents of the page.
    pub fn bytes(&self) -> &[u8; PAGE_SIZE] {
        // SAFETY: The folio is ours, order 0, and in the direct map.
        unsafe { &*bindings::folio_address(self.folio.as_ptr()).cast() }
    }

    /// Keeps the page out of the allocator for the rest of this kernel's life.
    pub fn leak(self) {
        core::mem::forget(self);
    }
}

impl Drop for RestoredPage {
    fn drop(&mut self) {
        // SAFETY: The folio is owned by this object (type invariant); this drops our reference.
        unsafe { bindings::folio_put(self.folio.as_ptr()) };
    }
}

/// A preserved page registered with KHO under a name, where the next kernel looks it up with
/// [`retrieve_subtree`].
///
/// The registration owns the page, so the page cannot be freed while KHO records its address:
/// dropping it withdraws the name first, then frees the page.
pub struct Subtree {
    page: PreservedPage,
}

impl Subtree {
    /// Registers `page` under `name`; `size` is the length of the structure at the start of
    /// the page. On error the page is dropped.
    ///
    /// # Errors
    ///
    /// `EINVAL` if `size` exceeds the page, `EEXIST` if `name` is taken, `ENOMEM`, or another
    /// KHO error.
    pub fn new(name: &'static CStr, page: PreservedPage, size: usize) -> Result<Self> {
        if size > PAGE_SIZE {
            return Err(EINVAL);
        }
        // SAFETY: `name` is NUL-terminated and lives for ever; `page` is preserved memory of at
        // least `size` bytes, owned by the registration until it withdraws the name.
        to_result(unsafe {
            bindings::kho_add_subtree(name.as_char_ptr(), page.as_ptr().cast(), size)
        })?;
        Ok(Self { page })
    }

    /// The contents of the page, for writing.
    pub fn bytes_mut(&mut self) -> &mut [u8; PAGE_SIZE] {
        self.page.bytes_mut()
    }
}

impl Drop for Subtree {
    fn drop(&mut self) {
        // SAFETY: KHO looks the blob up by address; it was registered in `new`. The page is
        // freed only after this, when `page` is dropped.
        unsafe { bindings::kho_remove_subtree(self.page.as_ptr().cast()) };
    }
}

/// Looks up the subtree `name` that the previous kernel registered.
///
/// Returns its physical address and size, or `None` if the previous kernel registered none
/// (a cold boot, or a kernel without that subsystem).
///
/// # Errors
///
/// The KHO error if the handover data is malformed.
pub fn retrieve_subtree(name: &CStr) -> Result<Option<(PhysAddr, usize)>> {
    let mut phys: bindings::phys_addr_t = 0;
    let mut size: usize = 0;
    // SAFETY: `name` is NUL-terminated and both out pointers are valid for writing.
    let ret = unsafe { bindings::kho_retrieve_subtree(name.as_char_ptr(), &mut phys, &mut size) };
    match to_result(ret) {
        Ok(()) => Ok(Some((phys, size))),
        Err(e) if e == ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// `struct kho_vmalloc`: where the next kernel finds a preserved vmalloc area.
///
/// `first` is the physical address of KHO's first chunk of page addresses; the area has
/// `total_pages` pages, mapped in blocks of `1 << order` pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmallocDesc {
    /// Physical address of the first chunk (`KHOSER_PTR`).
    pub first: PhysAddr,
    /// Number of pages in the area.
    pub total_pages: u32,
    /// `KHO_VMALLOC_*` flags.
    pub flags: u16,
    /// Page order of the blocks.
    pub order: u16,
}

/// `KHO_VMALLOC_ALLOC | KHO_VMALLOC_HUGE_VMAP`: the flags KHO knows.
const VMALLOC_KNOWN_FLAGS: u16 = 0x3;

impl VmallocDesc {
    fn from_raw(raw: &bindings::kho_vmalloc) -> Self {
        Self {
            // SAFETY: `first` is a plain 64-bit value in every variant of the union.
            first: unsafe { raw.first.phys },
            total_pages: raw.total_pages,
            flags: raw.flags,
            order: raw.order,
        }
    }

    fn to_raw(self) -> bindings::kho_vmalloc {
        let mut raw = bindings::kho_vmalloc::default();
        raw.first.phys = self.first;
        raw.total_pages = self.total_pages;
        raw.flags = self.flags;
        raw.order = self.order;
        raw
    }
}

/// A vmalloc area whose pages are preserved for the next kernel.
///
/// Dropping it withdraws the preservation and frees the area. To hand it over, keep it alive
/// until the kexec.
///
/// # Invariants
///
/// `buf` is non-empty and its pages are preserved as described by `desc`.
pub struct PreservedVmalloc {
    buf: VVec<u8>,
    desc: bindings::kho_vmalloc,
}

// SAFETY: The area is plain memory owned by this object; KHO's record of it is not tied to a
// thread.
unsafe impl Send for PreservedVmalloc {}
// SAFETY: Shared references only read the area and the descriptor.
unsafe impl Sync for PreservedVmalloc {}

impl PreservedVmalloc {
    /// Preserves the pages of `buf` (the bytes up to its capacity).
    ///
    /// # Errors
    ///
    /// `EINVAL` for an empty buffer, `ENOMEM`, or the error KHO gives.
    pub fn new(buf: VVec<u8>) -> Result<Self> {
        if buf.capacity() == 0 {
            return Err(EINVAL);
        }
        let mut desc = bindings::kho_vmalloc::default();
        // SAFETY: A non-empty `VVec` owns a vmalloc area that starts at its pointer; KHO
        // records its pages in `desc`, which outlives the call.
        to_result(unsafe {
            bindings::kho_preserve_vmalloc(buf.as_ptr().cast_mut().cast(), &mut desc)
        })?;
        // INVARIANT: `buf` is non-empty and was just preserved into `desc`.
        Ok(Self { buf, desc })
    }

    /// The bytes of the area that were written.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// What the next kernel needs to restore the area.
    pub fn desc(&self) -> VmallocDesc {
        VmallocDesc::from_raw(&self.desc)
    }
}

impl Drop for PreservedVmalloc {
    fn drop(&mut self) {
        // SAFETY: `desc` describes the preservation of `buf` (type invariant); it is withdrawn
        // once, before `buf` frees the area.
        unsafe { bindings::kho_unpreserve_vmalloc(&mut self.desc) };
    }
}

/// A vmalloc area received from the previous kernel, mapped again in this one.
///
/// # Invariants
///
/// `ptr` is the start of a mapping of `len` bytes returned by `kho_restore_vmalloc()` and
/// owned by this object.
pub struct RestoredVmalloc {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: The area is plain memory owned by this object.
unsafe impl Send for RestoredVmalloc {}
// SAFETY: Shared references only read the area.
unsafe impl Sync for RestoredVmalloc {}

impl RestoredVmalloc {
    /// Takes ownership of the area `desc` describes, which the previous kernel preserved.
    ///
    /// The descriptor comes from the previous kernel and is checked before KHO walks it: a
    /// non-zero page-aligned chunk address, at least one page, known flags and an order the
    /// page allocator has. KHO checks each page address against its own records.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a malformed descriptor or when KHO cannot restore the area.
    pub fn restore(desc: &VmallocDesc) -> Result<Self> {
        if desc.first == 0
            || desc.first % PAGE_SIZE as u64 != 0
            || desc.total_pages == 0
            || desc.flags & !VMALLOC_KNOWN_FLAGS != 0
            || u32::from(desc.order) > bindings::MAX_PAGE_ORDER
            || !is_preserved(desc.first)
        {
            return Err(EINVAL);
        }
        let len = (desc.total_pages as usize)
            .checked_mul(PAGE_SIZE)
            .ok_or(EINVAL)?;
        let raw = desc.to_raw();
        // SAFETY: `raw` is a valid descriptor for the duration of the call; KHO validates the
        // pages it names and returns NULL if it cannot restore them.
        let ptr = unsafe { bindings::kho_restore_vmalloc(&raw) };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(EINVAL)?;
        // INVARIANT: A mapping of `total_pages` pages, now ours.
        Ok(Self { ptr, len })
    }

    /// The contents of the area.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: The mapping is `len` bytes long and owned by this object (type invariant).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for RestoredVmalloc {
    fn drop(&mut self) {
        // SAFETY: The mapping came from `kho_restore_vmalloc()` and is owned by us; `kvfree()`
        // of a vmalloc address is `vfree()`, which unmaps it and frees its pages.
        unsafe { bindings::kvfree(self.ptr.as_ptr().cast()) };
    }
}

/// Fields of handover records: C structures in the machine's byte order, read and written at
/// their byte offsets.
///
/// The accessors never panic: a field that does not fit the buffer reads as 0 and is not
/// written, so a record's length is checked once, where it is decoded.
pub mod field {
    macro_rules! accessors {
        ($($get:ident $put:ident $t:ty;)*) => {$(
            #[doc = concat!("Reads the `", stringify!($t), "` at `off`; out of range reads as 0.")]
            #[inline]
            pub fn $get(buf: &[u8], off: usize) -> $t {
                const N: usize = core::mem::size_of::<$t>();
                off.checked_add(N)
                    .and_then(|end| buf.get(off..end))
                    .and_then(|src| <[u8; N]>::try_from(src).ok())
                    .map_or(0, <$t>::from_ne_bytes)
            }

            #[doc = concat!("Writes the `", stringify!($t), "` `v` at `off`; out of range \
                             writes nothing.")]
            #[inline]
            pub fn $put(buf: &mut [u8], off: usize, v: $t) {
                const N: usize = core::mem::size_of::<$t>();
                if let Some(dst) = off.checked_add(N).and_then(|end| buf.get_mut(off..end)) {
                    for (d, s) in dst.iter_mut().zip(v.to_ne_bytes()) {
                        *d = s;
                    }
                }
            }
        )*};
    }

    accessors! {
        get_u64 put_u64 u64;
        get_u32 put_u32 u32;
        get_u16 put_u16 u16;
    }
}
