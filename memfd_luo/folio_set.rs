// SPDX-License-Identifier: GPL-2.0

//! The folios a preserved memfd hands over, recorded in the handover's own folio array.
//!
//! Only populated folios are preserved; holes stay holes. The C handler pins the whole file,
//! which allocates every hole: a 4 GiB memfd holding three written pages costs 4 GiB of memory
//! and an array entry per page there. Here memory and time follow the folios the file holds,
//! and a large folio is one entry whatever its size.
//!
//! A hole can still be filled after `PRESERVE_FD` through a mapping made before it. Such
//! folios are picked up when the file is frozen for the kexec ([`FolioSet::refresh`]), so a
//! writer that stops before the reboot loses nothing; a page first written after the freeze
//! is not carried (the C handler has it, since it allocated every hole up front).
//!
//! The array is the only record of the set: each entry names a folio this kernel pinned and
//! preserved, so no second per-folio structure is kept beside it.

use crate::{
    abi::{
        folio as entry,
        FolioEntry, //
    },
    mm::{
        self,
        Pinned,
        PreservedFolios,
        Runs, //
    },
};
use kernel::{
    alloc::VVec,
    fs::File,
    kho::{
        PreservedVmalloc,
        VmallocDesc, //
    },
    page::PAGE_SIZE,
    prelude::*,
};

/// The preserved folios of one memfd.
///
/// # Invariants
///
/// `array` holds `count` entries in the memfd-v2 format, sorted by page offset, with distinct
/// page frame numbers; the folio of every entry is pinned and KHO-preserved by this set, and
/// they hold `pages` pages in all. `array` is `None` exactly when `count` is 0.
pub(crate) struct FolioSet {
    array: Option<PreservedVmalloc>,
    count: usize,
    pages: u64,
}

impl FolioSet {
    /// No folios.
    pub(crate) const fn empty() -> Self {
        // INVARIANT: No entries, no array.
        Self {
            array: None,
            count: 0,
            pages: 0,
        }
    }

    /// Pins and preserves every populated folio of the first `size` bytes of the memfd `file`.
    pub(crate) fn collect(file: &File, size: u64) -> Result<Self> {
        let mut set = Self::empty();
        set.add_new(file, size)?;
        Ok(set)
    }

    /// Adds the folios that `file` gained since the set was made (holes written through a
    /// mapping). Returns whether the set changed.
    ///
    /// # Errors
    ///
    /// `ENOMEM` or KHO's error; the set is unchanged then.
    pub(crate) fn refresh(&mut self, file: &File, size: u64) -> Result<bool> {
        // Pinned folios stay in the file, so an unchanged count means no new folio.
        if mm::populated_pages(file) == self.pages {
            return Ok(false);
        }
        self.add_new(file, size)
    }

    /// Number of folios.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The folio array's entries, as the next kernel reads them.
    pub(crate) fn array_bytes(&self) -> &[u8] {
        let bytes = self.array.as_ref().map_or(&[][..], |a| a.bytes());
        bytes.get(..self.count * entry::SIZE).unwrap_or(bytes)
    }

    /// What the next kernel needs to map the folio array.
    pub(crate) fn desc(&self) -> VmallocDesc {
        self.array
            .as_ref()
            .map_or(VmallocDesc::default(), |a| a.desc())
    }

    /// Entry `i`, which must exist.
    fn entry(&self, i: usize) -> FolioEntry {
        FolioEntry::decode(
            self.array_bytes()
                .get(i * entry::SIZE..(i + 1) * entry::SIZE)
                .unwrap_or(&[0; entry::SIZE]),
        )
    }

    /// Whether the folio at `pfn`, at page offset `index`, is in the set.
    fn contains(&self, pfn: u64, index: u64) -> bool {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.entry(mid);
            match e.index.cmp(&index) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => return e.pfn == pfn,
            }
        }
        false
    }

    /// Pins and preserves the populated folios of `file` that are not in the set yet, and
    /// writes a new array holding them all.
    fn add_new(&mut self, file: &File, size: u64) -> Result<bool> {
        let mut new = Pinned::new();
        for run in Runs::new(file, size.div_ceil(PAGE_SIZE as u64)) {
            new.pin_run(file, size, run)?;
            if self.count != 0 {
                new.retain(|pfn, index| !self.contains(pfn, index));
            }
        }
        if new.len() == 0 {
            return Ok(false);
        }
        let count = self.count.checked_add(new.len()).ok_or(ENOMEM)?;
        let bytes = count.checked_mul(entry::SIZE).ok_or(ENOMEM)?;
        let (array, new) = if self.count == 0 {
            preserve_into_array(new)?
        } else {
            // Runs are pinned in order, so both the set and the new entries are sorted.
            let (added, new) = preserve_into_array(new)?;
            let mut array = VVec::<u8>::with_capacity(bytes, GFP_KERNEL)?;
            array.resize(bytes, 0, GFP_KERNEL)?;
            self.merge_into(&added, &mut array)?;
            (array, new)
        };
        let array = PreservedVmalloc::new(array)?;
        let pages = new.pages();
        new.hand_over();
        // INVARIANT: The new array lists the old entries and the new folios, whose pins and
        // preservations this set now owns; the old array (plain memory) is dropped.
        self.array = Some(array);
        self.count = count;
        self.pages = self.pages.saturating_add(pages);
        Ok(true)
    }

    /// Writes the set's entries and the sorted entries `added` into `out`, sorted by page
    /// offset.
    fn merge_into(&self, added: &[u8], out: &mut [u8]) -> Result {
        let mut old = (0..self.count).map(|i| self.entry(i)).peekable();
        let mut new = added
            .chunks_exact(entry::SIZE)
            .map(FolioEntry::decode)
            .peekable();
        for slot in out.chunks_exact_mut(entry::SIZE) {
            let take_old = match (old.peek(), new.peek()) {
                (Some(o), Some(a)) => o.index < a.index,
                (Some(_), None) => true,
                _ => false,
            };
            let e = if take_old { old.next() } else { new.next() };
            e.ok_or(EINVAL)?.encode(slot)?;
        }
        Ok(())
    }
}

/// Preserves the folios of `new` and returns them with their entries of the folio array.
///
/// The array is not zeroed first, as `vcalloc()` zeroes the C handler's: every byte of it is an
/// entry the preserve writes.
fn preserve_into_array(new: Pinned) -> Result<(VVec<u8>, PreservedFolios)> {
    let bytes = new.len().checked_mul(entry::SIZE).ok_or(ENOMEM)?;
    let mut array = VVec::<u8>::with_capacity(bytes, GFP_KERNEL)?;
    let room = array.spare_capacity_mut().get_mut(..bytes).ok_or(ENOMEM)?;
    let preserved = new.preserve(room)?;
    // SAFETY: The preserve succeeded, so it wrote each of the first `bytes` bytes of the spare
    // capacity of `array`, which is empty and has room for them.
    unsafe { array.inc_len(bytes) };
    Ok((array, preserved))
}

impl Drop for FolioSet {
    fn drop(&mut self) {
        for i in 0..self.count {
            // SAFETY: Every entry names a folio this set pinned and preserved (type
            // invariant); each is released once, and the set is gone after this.
            unsafe { mm::release_preserved(self.entry(i).pfn) };
        }
    }
}
