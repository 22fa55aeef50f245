// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers around the shmem and page cache steps in `memfd_mm.c`.
//!
//! The handler's logic works on two things that only C can touch: a memfd under its inode
//! lock ([`Locked`]) and the folios of a memfd pinned for preservation ([`Pinned`]). Each owns
//! what it holds (the lock, the pins and KHO preservations) and gives it back on drop, so
//! every error path of the handler unwinds by dropping. Folios received from the previous
//! kernel go from KHO into the new file ([`restore_folios`]) or back to the page allocator
//! ([`discard`]) in one step each. A file may have millions of folios, so the per-folio loops,
//! preserving included, are C's: one call per page of the folio array, not per folio.

use crate::abi::{
    folio as entry,
    FolioEntry, //
};
use core::{
    mem::MaybeUninit,
    ptr::NonNull, //
};
use kernel::{
    alloc::KVVec,
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    fs::File,
    kho,
    page::PAGE_SIZE,
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

/// Runs of populated pages of a memfd: resident folios and folios swapped out, never holes.
///
/// Yields `(first, end)` page ranges in increasing order, each at most [`RUN_ALIGN`] pages,
/// that no folio straddles (see `luo_memfd_next_run()`), so pinning them one by one meets every
/// folio once.
pub(crate) struct Runs<'a> {
    file: &'a File,
    next: u64,
    last: u64,
    /// The file holds as many pages as its size: no scan, every aligned chunk is a run.
    dense: bool,
}

/// Runs end at multiples of this many pages (`LUO_MEMFD_RUN_ALIGN`).
const RUN_ALIGN: u64 = 1 << 16;

impl<'a> Runs<'a> {
    /// The runs among the first `pages` pages of the memfd `file`.
    pub(crate) fn new(file: &'a File, pages: u64) -> Self {
        Self {
            file,
            next: 0,
            // With no pages, `next > last` ends the walk at once.
            last: pages.wrapping_sub(1),
            // A file whose page count equals its size in pages has no hole, unless a large
            // folio reaching past the end makes up for one; then that hole is allocated, as
            // the C handler allocates every hole.
            dense: populated_pages(file) == pages,
        }
    }
}

impl Iterator for Runs<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.next > self.last || self.last == u64::MAX {
            return None;
        }
        if self.dense {
            let first = self.next;
            let end = (first / RUN_ALIGN + 1)
                .saturating_mul(RUN_ALIGN)
                .min(self.last.saturating_add(1));
            self.next = end;
            return Some((first, end));
        }
        let mut first = self.next;
        // SAFETY: `file` is a shmem file; `first` is valid for reads and writes.
        let end =
            unsafe { bindings::luo_memfd_next_run(self.file.as_ptr(), &mut first, self.last) };
        if end <= first {
            self.next = u64::MAX;
            return None;
        }
        self.next = end;
        Some((first, end))
    }
}

/// Pages the memfd `file` holds, resident or swapped out, including parts of large folios
/// past the end of the file.
pub(crate) fn populated_pages(file: &File) -> u64 {
    // SAFETY: `file` is a shmem file.
    unsafe { bindings::luo_memfd_populated_pages(file.as_ptr()) }
}

/// Folios of a memfd pinned by this kernel (so they stay in memory, out of CMA and KHO's
/// scratch area), and, once [`Pinned::preserve`] ran, preserved for the next kernel.
///
/// # Invariants
///
/// Each pointer is a distinct folio with one pin of ours; the first `preserved` are
/// KHO-preserved by us.
pub(crate) struct Pinned {
    folios: KVVec<NonNull<bindings::folio>>,
    preserved: usize,
}

// SAFETY: Pins and preservations are not tied to a thread.
unsafe impl Send for Pinned {}
// SAFETY: Shared references give no access to the folios.
unsafe impl Sync for Pinned {}

impl Pinned {
    /// No folios.
    pub(crate) fn new() -> Self {
        // INVARIANT: Nothing pinned.
        Self {
            folios: KVVec::new(),
            preserved: 0,
        }
    }

    /// Pins every folio of a run of populated pages `[first, end)` (from [`Runs`]) of the
    /// memfd `file` of `size` bytes. Swapped-out folios are read back in.
    pub(crate) fn pin_run(&mut self, file: &File, size: u64, (first, end): (u64, u64)) -> Result {
        const PAGE: u64 = PAGE_SIZE as u64;
        let start = first.checked_mul(PAGE).ok_or(EINVAL)?;
        let stop = end
            .checked_mul(PAGE)
            .ok_or(EINVAL)?
            .min(size)
            .checked_sub(1)
            .ok_or(EINVAL)?;
        if start > stop {
            // The run lies past the end of the file: part of a large folio met before.
            return Ok(());
        }
        let max = u32::try_from(end - first).map_err(|_| EINVAL)?;
        self.folios.reserve(max as usize, GFP_KERNEL)?;
        let spare = self.folios.spare_capacity_mut();
        // SAFETY: `file` is a shmem file and `start..=stop` lies inside it; `spare` has room
        // for `max` pointers, which `memfd_pin_folios()` fills from the start and counts in its
        // result.
        let n = unsafe {
            bindings::luo_memfd_pin_folios(
                file.as_ptr(),
                start,
                stop,
                spare.as_mut_ptr().cast(),
                max,
            )
        };
        let n = usize::try_from(n).map_err(|_| Error::from_errno(n as i32))?;
        if n > max as usize {
            return Err(EINVAL);
        }
        // SAFETY: `memfd_pin_folios()` wrote `n <= max` non-NULL folio pointers, each pinned.
        // INVARIANT: A run holds folios that no other run holds, so they are distinct.
        unsafe { self.folios.inc_len(n) };
        Ok(())
    }

    /// The number of folios.
    pub(crate) fn len(&self) -> usize {
        self.folios.len()
    }

    /// Keeps only the folios for which `keep(pfn, index)` is true; the others are unpinned.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(u64, u64) -> bool) {
        let mut kept = 0;
        for i in 0..self.folios.len() {
            let Some(&folio) = self.folios.get(i) else {
                break;
            };
            let (pfn, index) = place(folio);
            if !keep(pfn, index) {
                // SAFETY: We hold one pin on the folio, released once here; it leaves the set.
                unsafe { bindings::unpin_folio(folio.as_ptr()) };
                continue;
            }
            if let Some(slot) = self.folios.get_mut(kept) {
                *slot = folio;
            }
            kept += 1;
        }
        // INVARIANT: The first `kept` pointers are the folios still pinned; none is preserved,
        // as only `preserve`, which consumes `self`, preserves folios.
        self.folios.truncate(kept);
    }

    /// Preserves every folio for the next kernel, marked dirty and uptodate, and writes its
    /// entry of the handover's folio array into `entries`, one [`entry::SIZE`] chunk per folio
    /// in order: on success every byte of `entries` is written.
    ///
    /// # Errors
    ///
    /// `EINVAL` if `entries` has not exactly one chunk per folio, or KHO's error; every folio
    /// is unpreserved and unpinned then.
    pub(crate) fn preserve(mut self, entries: &mut [MaybeUninit<u8>]) -> Result<PreservedFolios> {
        let nr = self.folios.len();
        if entries.len() != nr.saturating_mul(entry::SIZE) {
            return Err(EINVAL);
        }
        let (mut done, mut pages) = (0u64, 0u64);
        // SAFETY: The `nr` folios are pinned by us (type invariant), none preserved yet; a
        // `NonNull<folio>` has the layout of a `struct folio *`. `entries` has room for `nr`
        // entries laid out as `struct memfd_luo_folio_ser` (packed, so any address will do; the
        // layout is checked in `abi`); the out pointers are valid for writes.
        let ret = unsafe {
            bindings::luo_memfd_preserve_folios(
                self.folios.as_ptr().cast(),
                nr as u64,
                entries.as_mut_ptr().cast(),
                &mut done,
                &mut pages,
            )
        };
        // INVARIANT: The helper preserved the first `done` folios, in order.
        self.preserved = usize::try_from(done).map_or(nr, |d| d.min(nr));
        to_result(ret)?;
        let folios = core::mem::take(&mut self.folios);
        // INVARIANT: Nothing left here; the pins and preservations moved on.
        self.preserved = 0;
        // INVARIANT: Every folio is pinned and preserved by us.
        Ok(PreservedFolios { folios, pages })
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

/// Folios pinned and preserved by this kernel, until they are handed over to a record that
/// names them by page frame number.
///
/// # Invariants
///
/// Each pointer is a distinct folio with one pin of ours, KHO-preserved by us.
pub(crate) struct PreservedFolios {
    folios: KVVec<NonNull<bindings::folio>>,
    pages: u64,
}

// SAFETY: Pins and preservations are not tied to a thread.
unsafe impl Send for PreservedFolios {}
// SAFETY: Shared references only read counts.
unsafe impl Sync for PreservedFolios {}

impl PreservedFolios {
    /// Number of pages in the folios.
    pub(crate) fn pages(&self) -> u64 {
        self.pages
    }

    /// Gives up ownership of the pins and preservations: the caller recorded every folio's
    /// page frame number and releases each with [`release_preserved`].
    pub(crate) fn hand_over(mut self) {
        // INVARIANT: Nothing left to release on drop.
        self.folios.clear();
    }
}

impl Drop for PreservedFolios {
    fn drop(&mut self) {
        for folio in self.folios.iter() {
            // SAFETY: We preserved and pinned this folio (type invariant); both are withdrawn
            // once here.
            unsafe {
                bindings::kho_unpreserve_folio(folio.as_ptr());
                bindings::unpin_folio(folio.as_ptr());
            }
        }
    }
}

/// The page frame number and page offset of a folio we pin.
fn place(folio: NonNull<bindings::folio>) -> (u64, u64) {
    let (mut pfn, mut index) = (0u64, 0u64);
    // SAFETY: The caller pins the folio; both out pointers are valid for writes.
    unsafe { bindings::luo_memfd_folio_place(folio.as_ptr(), &mut pfn, &mut index) };
    (pfn, index)
}

/// Withdraws the preservation and the pin of a folio that [`PreservedFolios::hand_over`]
/// gave up.
///
/// # Safety
///
/// `pfn` is the page frame number of such a folio, and this is called once for it.
pub(crate) unsafe fn release_preserved(pfn: u64) {
    // SAFETY: The caller guarantees a folio we pinned and preserved is at `pfn`.
    let folio = unsafe { bindings::luo_memfd_pfn_folio(pfn) };
    // SAFETY: The folio is ours to unpreserve and unpin, once (caller's guarantee).
    unsafe {
        bindings::kho_unpreserve_folio(folio);
        bindings::unpin_folio(folio);
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

/// Why a folio listed by the previous kernel could not be put into a file.
#[derive(Debug)]
pub(crate) enum RestoreError {
    /// No folio is preserved at the listed address.
    NotPreserved,
    /// The folio, of that many pages, does not start inside the file at an index aligned to its
    /// size; it was freed.
    Misplaced(u64),
    /// Adding the folio to the file failed; it was freed.
    Add(Error),
    /// The blocks of the folios just added could not be charged to the file; they stay in it
    /// uncounted, to be freed with it.
    Account(Error),
}

/// Restores the folios that `entries` (whole entries of the handover's folio array) list and
/// puts them into `file`, a new memfd of `pages` pages, until one fails. Returns the pages
/// added and charged (to be counted with [`account`] once all folios are in) and, on failure,
/// which entry failed and why: for [`RestoreError::Account`], the number of entries, as every
/// folio listed before the failure was added.
///
/// One call into C per page of entries: the per-folio steps are C's loop, as in
/// `mm/memfd_luo.c`, with no call across the languages per folio.
pub(crate) fn restore_folios(
    file: &File,
    entries: &[u8],
    pages: u64,
) -> (u64, core::result::Result<(), (usize, RestoreError)>) {
    let nr = entries.len() / entry::SIZE;
    let (mut failed, mut added, mut n) = (0u64, 0u64, 0u64);
    // SAFETY: `file` is a shmem file; `entries` holds `nr` whole entries laid out as
    // `struct memfd_luo_folio_ser` (packed, so any address will do; the layout is checked in
    // `abi`), readable for the call; the out pointers are valid for writes. The helper
    // accepts any contents and restores a folio only where the previous kernel preserved one.
    let ret = unsafe {
        bindings::luo_memfd_restore_folios(
            file.as_ptr(),
            entries.as_ptr().cast(),
            nr as u64,
            pages,
            &mut failed,
            &mut added,
            &mut n,
        )
    };
    if ret == 0 {
        return (added, Ok(()));
    }
    let i = usize::try_from(failed).unwrap_or(nr);
    if i >= nr {
        return (
            added,
            Err((nr, RestoreError::Account(Error::from_errno(ret)))),
        );
    }
    let e = FolioEntry::decode(
        entries
            .get(i * entry::SIZE..(i + 1) * entry::SIZE)
            .unwrap_or(&[]),
    );
    let why = if n == 0 {
        RestoreError::NotPreserved
    } else if e.index & (n - 1) != 0 || e.index >= pages {
        RestoreError::Misplaced(n)
    } else {
        RestoreError::Add(Error::from_errno(ret))
    };
    (added, Err((i, why)))
}

/// Frees every folio of a folio array that was not used (a memfd that is never retrieved, or
/// the rest of one whose retrieval failed). Returns the number of folios freed.
///
/// One call into C per page of entries, as for [`restore_folios`].
pub(crate) fn discard(array: &kho::RestoredVmalloc, entries: core::ops::Range<usize>) -> usize {
    const PER_PAGE: usize = PAGE_SIZE / entry::SIZE;
    let (mut freed, mut missing, mut first_missing) = (0u64, 0u64, 0u64);
    for (p, page) in array.pages().enumerate() {
        let base = p * PER_PAGE;
        let from = entries.start.saturating_sub(base).min(PER_PAGE);
        let to = entries.end.saturating_sub(base).min(PER_PAGE);
        let Some(listed) = page.get(from * entry::SIZE..to * entry::SIZE) else {
            continue;
        };
        if listed.is_empty() {
            continue;
        }
        // SAFETY: `listed` holds whole entries laid out as `struct memfd_luo_folio_ser`
        // (packed; the layout is checked in `abi`), readable for the call; the out pointers
        // are valid for writes. The helper frees a folio only where the previous kernel
        // preserved one.
        freed += unsafe {
            bindings::luo_memfd_discard_folios(
                listed.as_ptr().cast(),
                (listed.len() / entry::SIZE) as u64,
                &mut missing,
                &mut first_missing,
            )
        };
    }
    if missing != 0 {
        pr_warn!(
            "cannot restore {} folios, the first at pfn {:#x}\n",
            missing,
            first_missing
        );
    }
    usize::try_from(freed).unwrap_or(usize::MAX)
}
