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
    phys: PhysAddr,
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
        if phys == 0 || phys % PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        // SAFETY: `kho_try_restore_folio()` accepts any address and restores a folio only where
        // the previous kernel preserved one.
        let folio = NonNull::new(unsafe { bindings::kho_try_restore_folio(phys) }).ok_or(EINVAL)?;
        // SAFETY: `folio` was just restored and is valid.
        if unsafe { bindings::folio_order(folio.as_ptr()) } != 0 {
            // The previous kernel's data claimed a page where a larger folio is; it now belongs
            // to us and is deliberately never freed.
            return Err(EINVAL);
        }
        // INVARIANT: An order-0 folio, restored and now ours.
        Ok(Self { folio, phys })
    }

    /// The physical address the page was restored from.
    pub fn phys(&self) -> PhysAddr {
        self.phys
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

/// A vmalloc area received from the previous kernel: its pages, read through the direct map.
///
/// KHO's `kho_restore_vmalloc()` maps the pages again; when one of its allocations fails after
/// it took the pages, it neither gives them back nor can it be called again, so the area and
/// whatever it describes are lost for the boot. Here every page address is checked and every
/// allocation made before the first page is taken: `ENOMEM` leaves the area preserved, for
/// another try.
///
/// # Invariants
///
/// `pages` holds the area's pages in order, each restored and owned by this object.
pub struct RestoredVmalloc {
    pages: KVVec<RestoredPage>,
}

/// Page addresses in one `struct kho_vmalloc_chunk`, after its link to the next chunk.
const CHUNK_ENTRIES: usize = PAGE_SIZE / 8 - 1;

/// The chunk pages of a vmalloc area read so far: freed once the whole list checked out, kept
/// from the allocator if it did not.
///
/// One chunk lists 511 pages, so most areas have one, held without an allocation: a memfd's
/// folio array is restored for every file a session hands over or discards.
struct ChunkPages {
    first: Option<RestoredPage>,
    more: KVVec<RestoredPage>,
}

impl ChunkPages {
    /// Room for `max` chunks, allocated now, so that no allocation fails once pages are taken.
    fn with_capacity(max: usize) -> Result<Self> {
        Ok(Self {
            first: None,
            more: KVVec::with_capacity(max.saturating_sub(1), GFP_KERNEL)?,
        })
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    /// Keeps `chunk`; `EINVAL` past the room reserved.
    fn push(&mut self, chunk: RestoredPage) -> Result {
        if self.first.is_none() {
            self.first = Some(chunk);
            return Ok(());
        }
        self.more.push_within_capacity(chunk).map_err(|_| EINVAL)
    }

    /// Keeps every chunk page from the allocator for good.
    fn leak(self) {
        self.first.into_iter().for_each(RestoredPage::leak);
        self.more.into_iter().for_each(RestoredPage::leak);
    }
}

impl RestoredVmalloc {
    /// Takes ownership of the area `desc` describes, which the previous kernel preserved with
    /// `kho_preserve_vmalloc()` in single pages (order 0, as every plain `vmalloc()` area).
    ///
    /// The descriptor and the chunks come from the previous kernel: each chunk and each page
    /// must be memory it preserved and nobody restored, the chunks must list exactly
    /// `total_pages` pages, and no more chunks than those need. The chunk pages are freed once
    /// read, as KHO does.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a malformed descriptor or chunk list (the pages taken so far are then kept
    /// from the allocator for good); `ENOMEM` before any page is taken.
    pub fn restore(desc: &VmallocDesc) -> Result<Self> {
        if desc.first == 0
            || desc.first % PAGE_SIZE as u64 != 0
            || desc.total_pages == 0
            || desc.flags & !VMALLOC_KNOWN_FLAGS != 0
            || desc.order != 0
            || !is_preserved(desc.first)
        {
            return Err(EINVAL);
        }
        let total = desc.total_pages as usize;
        let max_chunks = total.div_ceil(CHUNK_ENTRIES);
        let mut pages = KVVec::with_capacity(total, GFP_KERNEL)?;
        let mut chunks = ChunkPages::with_capacity(max_chunks)?;
        let result = Self::take_pages(desc.first, total, max_chunks, &mut pages, &mut chunks);
        if result.is_err() {
            // Malformed: nothing of it may reach another user.
            pages.into_iter().for_each(RestoredPage::leak);
            chunks.leak();
            return Err(EINVAL);
        }
        // The chunks were only the list; the pages are the area.
        drop(chunks);
        // INVARIANT: `take_pages` restored the `total` pages the chunks list, in order.
        Ok(Self { pages })
    }

    /// Restores the chunks from `first` on and the pages they list into the room reserved.
    fn take_pages(
        first: PhysAddr,
        total: usize,
        max_chunks: usize,
        pages: &mut KVVec<RestoredPage>,
        chunks: &mut ChunkPages,
    ) -> Result {
        let mut next = first;
        while next != 0 {
            if chunks.len() >= max_chunks {
                return Err(EINVAL);
            }
            let chunk = RestoredPage::restore(next)?;
            let bytes = chunk.bytes();
            next = field::get_u64(bytes, 0);
            for i in 0..CHUNK_ENTRIES {
                let phys = field::get_u64(bytes, 8 * (i + 1));
                if phys == 0 {
                    break;
                }
                if pages.len() >= total {
                    return Err(EINVAL);
                }
                pages
                    .push_within_capacity(RestoredPage::restore(phys)?)
                    .map_err(|_| EINVAL)?;
            }
            chunks.push(chunk)?;
        }
        if pages.len() != total {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// The area's length in bytes.
    pub fn len(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }

    /// Returns true if the area has no pages (never: an area has at least one).
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The area's pages in order, as the contents of each: for a caller that hands a page of
    /// entries at a time to C.
    pub fn pages(&self) -> impl Iterator<Item = &[u8; PAGE_SIZE]> + '_ {
        self.pages.iter().map(|page| page.bytes())
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
