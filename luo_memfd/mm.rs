// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers around the shmem and page cache steps in `memfd_mm.c`.
//!
//! The handler's logic works on three things that only C can touch: a memfd under its inode
//! lock ([`Locked`]), the folios of a memfd pinned for preservation ([`Pinned`]), and folios
//! received from the previous kernel ([`RestoredFolio`]). Each owns what it holds (the lock, the
//! pins and KHO preservations, a folio reference) and gives it back on drop, so every error path
//! of the handler unwinds by dropping.

use crate::abi::{
    folio as entry,
    FolioEntry,
    FOLIO_DIRTY,
    FOLIO_UPTODATE, //
};
use core::ptr::NonNull;
use kernel::{
    alloc::{
        KVVec,
        VVec, //
    },
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    fs::File,
    page::PAGE_SHIFT,
    prelude::*,
    sync::aref::ARef, //
};

/// Whether `file` is a memfd (an unlinked shmem file).
pub(crate) fn can_preserve(file: &File) -> bool {
    // SAFETY: `file` is a valid open file.
    unsafe { bindings::luo_memfd_can_preserve(file.as_ptr()) }
}

/// The file position.
pub(crate) fn pos(file: &File) -> u64 {
    // SAFETY: `file` is a valid open file.
    unsafe { bindings::luo_memfd_pos(file.as_ptr()) }
}

/// The key under which a memfd counts as preserved: its inode, shared by all its open files.
pub(crate) fn id(file: &File) -> usize {
    // SAFETY: `file` is a valid open file, whose inode pointer is set for its whole life.
    unsafe { (*file.as_ptr()).f_inode as usize }
}

/// A memfd whose inode lock is held: its size and seals cannot change.
pub(crate) struct Locked<'a> {
    file: &'a File,
}

impl<'a> Locked<'a> {
    /// Takes the inode lock of `file`, a memfd ([`can_preserve`]).
    pub(crate) fn lock(file: &'a File) -> Self {
        // SAFETY: `file` is a valid open file; the lock is released on drop.
        unsafe { bindings::luo_memfd_lock(file.as_ptr()) };
        Self { file }
    }

    /// Refuses (`true`) or allows again (`false`) every change of the file's size.
    pub(crate) fn set_frozen(&self, frozen: bool) {
        // SAFETY: `file` is a shmem file and we hold its inode lock.
        unsafe { bindings::luo_memfd_set_frozen(self.file.as_ptr(), frozen) };
    }

    /// The file's size in bytes.
    pub(crate) fn size(&self) -> u64 {
        // SAFETY: `file` is a valid open file.
        unsafe { bindings::luo_memfd_size(self.file.as_ptr()) }
    }

    /// The file's seals.
    pub(crate) fn seals(&self) -> Result<u32> {
        // SAFETY: `file` is a valid open file.
        let seals = unsafe { bindings::luo_memfd_seals(self.file.as_ptr()) };
        to_result(seals)?;
        u32::try_from(seals).map_err(|_| EINVAL)
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: We took the lock in `lock`.
        unsafe { bindings::luo_memfd_unlock(self.file.as_ptr()) };
    }
}

/// The folios of a memfd, pinned (so they stay in memory, out of CMA and KHO's scratch area),
/// and, once [`Pinned::preserve`] ran, preserved for the next kernel.
///
/// # Invariants
///
/// Each pointer is a folio with one pin of ours; the first `preserved` are KHO-preserved by us.
pub(crate) struct Pinned {
    folios: KVVec<NonNull<bindings::folio>>,
    preserved: usize,
}

// SAFETY: Pins and preservations are not tied to a thread.
unsafe impl Send for Pinned {}
// SAFETY: Shared references give no access to the folios.
unsafe impl Sync for Pinned {}

impl Pinned {
    /// Pins every folio of the first `size` bytes (`size > 0`) of `memfd`, allocating the holes.
    pub(crate) fn pin(memfd: &Locked<'_>, size: u64) -> Result<Self> {
        let pages = size.div_ceil(1 << PAGE_SHIFT);
        let max = u32::try_from(pages).map_err(|_| EFBIG)?;
        if max == 0 {
            return Err(EINVAL);
        }
        let mut folios =
            KVVec::<NonNull<bindings::folio>>::with_capacity(max as usize, GFP_KERNEL)?;
        // SAFETY: `memfd.file` is a shmem file; the array has room for `max` pointers, which
        // `memfd_pin_folios()` fills from the start and counts in its result.
        let n = unsafe {
            bindings::luo_memfd_pin_folios(
                memfd.file.as_ptr(),
                size,
                folios.as_mut_ptr().cast(),
                max,
            )
        };
        let n = usize::try_from(n).map_err(|_| Error::from_errno(n as i32))?;
        if n > max as usize {
            return Err(EINVAL);
        }
        // SAFETY: `memfd_pin_folios()` wrote `n <= max` non-NULL folio pointers, each pinned.
        unsafe { folios.inc_len(n) };
        // INVARIANT: `n` pinned folios, none preserved yet.
        Ok(Self {
            folios,
            preserved: 0,
        })
    }

    /// The number of folios.
    pub(crate) fn len(&self) -> usize {
        self.folios.len()
    }

    /// Preserves every folio for the next kernel, marked dirty and uptodate, and returns the
    /// folio array in the handover format.
    pub(crate) fn preserve(&mut self) -> Result<VVec<u8>> {
        let bytes = self.folios.len().checked_mul(entry::SIZE).ok_or(EFBIG)?;
        let mut array = VVec::<u8>::with_capacity(bytes, GFP_KERNEL)?;
        array.resize(bytes, 0, GFP_KERNEL)?;
        for (i, folio) in self.folios.iter().enumerate() {
            // SAFETY: The folio is pinned by us (type invariant).
            to_result(unsafe { bindings::kho_preserve_folio(folio.as_ptr()) })?;
            // INVARIANT: Folios are preserved in order; this one is now.
            self.preserved = i + 1;
            let (mut pfn, mut index) = (0u64, 0u64);
            // SAFETY: The folio is pinned by us; both out pointers are valid for writes.
            unsafe { bindings::luo_memfd_prepare_folio(folio.as_ptr(), &mut pfn, &mut index) };
            let e = FolioEntry {
                pfn,
                flags: FOLIO_DIRTY | FOLIO_UPTODATE,
                index,
            };
            let off = i * entry::SIZE;
            e.encode(array.get_mut(off..off + entry::SIZE).ok_or(EINVAL)?)?;
        }
        Ok(array)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for (i, folio) in self.folios.iter().enumerate() {
            if i < self.preserved {
                // SAFETY: We preserved this folio (type invariant).
                unsafe { bindings::kho_unpreserve_folio(folio.as_ptr()) };
            }
            // SAFETY: We hold one pin on the folio (type invariant), released once here.
            unsafe { bindings::unpin_folio(folio.as_ptr()) };
        }
    }
}

/// Creates the memfd a preserved one is retrieved into: the caller's, with `seals` (checked
/// against the supported set), the position and the size, and no pages yet.
pub(crate) fn new_file(seals: u32, pos: u64, size: u64) -> Result<ARef<File>> {
    // SAFETY: Plain values; the C helper returns a new file with one reference, or an error.
    let file = from_err_ptr(unsafe { bindings::luo_memfd_new_file(seals, pos, size) })?;
    let file = NonNull::new(file).ok_or(ENOMEM)?;
    // SAFETY: We own the new file's only reference; `File` is a transparent wrapper of it.
    Ok(unsafe { ARef::from_raw(file.cast::<File>()) })
}

/// Accounts `pages` restored pages to the memfd `file`, after they were added.
pub(crate) fn account(file: &File, pages: u64) {
    let pages = isize::try_from(pages).unwrap_or(isize::MAX);
    // SAFETY: `file` is a shmem file.
    unsafe { bindings::luo_memfd_account(file.as_ptr(), pages) };
}

/// A folio received from the previous kernel, with our one reference.
///
/// # Invariants
///
/// `folio` was restored with `kho_restore_folio()` and we own a reference to it.
pub(crate) struct RestoredFolio {
    folio: NonNull<bindings::folio>,
}

impl RestoredFolio {
    /// Takes the folio at page frame `pfn`, if the previous kernel preserved one there.
    pub(crate) fn restore(pfn: u64) -> Option<Self> {
        if pfn == 0 || pfn >> (64 - PAGE_SHIFT) != 0 {
            return None;
        }
        // SAFETY: KHO checks the address against its own records (the folio's magic) and
        // returns NULL if nothing was preserved there, or if it was restored already.
        let folio = unsafe { bindings::kho_restore_folio(pfn << PAGE_SHIFT) };
        // INVARIANT: A restored folio; KHO hands it over with one reference.
        NonNull::new(folio).map(|folio| Self { folio })
    }

    /// Number of pages in the folio.
    pub(crate) fn nr_pages(&self) -> u64 {
        // SAFETY: The folio is ours (type invariant).
        1u64 << unsafe { bindings::folio_order(self.folio.as_ptr()) }
    }

    /// Adds the folio to `file` at page `index`, which the caller checked is aligned to the
    /// folio's size and inside the file. The folio goes to the page cache, or is freed on error.
    pub(crate) fn add_to(self, file: &File, index: u64, flags: u16) -> Result {
        let folio = self.folio.as_ptr();
        core::mem::forget(self);
        // SAFETY: `file` is a shmem file; the folio is ours and its reference is consumed by
        // the helper in every case.
        to_result(unsafe {
            bindings::luo_memfd_add_folio(
                file.as_ptr(),
                folio,
                index,
                flags & FOLIO_DIRTY != 0,
                flags & FOLIO_UPTODATE != 0,
            )
        })
    }
}

impl Drop for RestoredFolio {
    fn drop(&mut self) {
        // SAFETY: We own a reference (type invariant); dropping it frees an unused folio.
        unsafe { bindings::folio_put(self.folio.as_ptr()) };
    }
}

/// Frees every folio of a folio array that was not used (a memfd that is never retrieved, or
/// the rest of one whose retrieval failed). Returns the number of folios freed.
pub(crate) fn discard(array: &[u8], entries: core::ops::Range<usize>) -> usize {
    let mut freed = 0;
    for i in entries {
        let Some(e) = array.get(i * entry::SIZE..(i + 1) * entry::SIZE) else {
            break;
        };
        let e = FolioEntry::decode(e);
        if e.pfn == 0 {
            continue;
        }
        match RestoredFolio::restore(e.pfn) {
            Some(folio) => {
                drop(folio);
                freed += 1;
            }
            None => pr_warn!("cannot restore the folio at pfn {:#x}\n", e.pfn),
        }
    }
    freed
}
