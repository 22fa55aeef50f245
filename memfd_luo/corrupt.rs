// SPDX-License-Identifier: GPL-2.0

//! Test-only damage to what the memfd handler hands over, one class at a time.
//!
//! A memfd's record and folio array come from the previous kernel, which may be buggy or
//! hostile; the retrieve path must refuse bad ones with an errno, a log line and no splat.
//! KUnit feeds the decoders malformed bytes; this module makes a real kernel write them, so a
//! test sees the whole path: KHO, RETRIEVE_FD, the folios, FINISH.
//!
//! `luo_memfd_corrupt=CLASS` on the command line picks the damage, done to the first memfd
//! frozen at the next kexec. The folio array this kernel keeps for its own bookkeeping is left
//! alone: a damaged copy is preserved beside it and named in the record instead. Built only
//! with `CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST`.

use crate::{
    abi::{
        folio as entry,
        FolioEntry,
        Memfd, //
    },
    folio_set::FolioSet,
};
use core::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use kernel::{
    alloc::VVec,
    kho::PreservedVmalloc,
    page::{
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::SetOnce, //
};

/// What to damage.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The first folio starts at the page just past the end of the file.
    IndexOutsideFile,
    /// The first folio (a large one) starts one page off its alignment.
    IndexMisaligned,
    /// The second folio takes the first one's page offset.
    DuplicateIndex,
    /// The first folio's page frame is one the previous kernel did not preserve.
    PfnNotPreserved,
    /// The first folio's page frame lies far outside memory.
    PfnOutsideMemory,
    /// The record claims more folios than the array holds.
    FolioCount,
    /// The record names a folio array at a page that was not preserved.
    ArrayNotPreserved,
    /// The record's file size leaves no room for the folios.
    FileSize,
}

const CLASSES: [(&[u8], Class); 8] = [
    (b"folio-index-outside-file", Class::IndexOutsideFile),
    (b"folio-index-misaligned", Class::IndexMisaligned),
    (b"folio-duplicate-index", Class::DuplicateIndex),
    (b"folio-pfn-not-preserved", Class::PfnNotPreserved),
    (b"folio-pfn-outside-memory", Class::PfnOutsideMemory),
    (b"folio-count", Class::FolioCount),
    (b"folio-array-not-preserved", Class::ArrayNotPreserved),
    (b"memfd-size", Class::FileSize),
];

static CHOSEN: SetOnce<Class> = SetOnce::new();
static DONE: AtomicBool = AtomicBool::new(false);

/// Records `luo_memfd_corrupt=` from the command line.
///
/// # Safety
///
/// `name` is null or a NUL-terminated string that is valid for the duration of the call.
#[export]
pub unsafe extern "C" fn luo_memfd_corrupt_request(name: *const c_char) {
    // SAFETY: By the caller's guarantee.
    match unsafe { kernel::liveupdate::damage_class(name, &CLASSES) } {
        Some((n, class)) => {
            CHOSEN.populate(class);
            pr_warn!("test build: the first memfd frozen will be damaged ({n})\n");
        }
        None => pr_err!("unknown luo_memfd_corrupt= class, nothing damaged\n"),
    }
}

/// A physical address no machine this runs on has memory at (4 PiB).
const OUTSIDE_MEMORY_PFN: u64 = 1 << 40;
/// Page frame 1: low memory the firmware keeps, never preserved.
const UNPRESERVED_PFN: u64 = 1;

/// Damages `memfd`, a copy of the record of the memfd whose folios are `folios`, if a class
/// was asked for and no memfd was damaged yet; the caller writes it out. Returns the damaged
/// copy of the folio array, if the damage needs one: it must stay preserved as long as the
/// record names it.
pub(crate) fn apply(folios: &FolioSet, memfd: &mut Memfd) -> Result<Option<PreservedVmalloc>> {
    let Some(class) = CHOSEN.as_ref().copied() else {
        return Ok(None);
    };
    if folios.count() < 2 || DONE.swap(true, Ordering::Relaxed) {
        return Ok(None);
    }
    pr_warn!("test build: memfd data damaged as asked\n");
    let pages = memfd.size.div_ceil(PAGE_SIZE as u64);
    // The classes that damage the record alone.
    match class {
        Class::FolioCount => {
            // More entries than the array's pages hold, but no more than the file has pages.
            let room = u64::from(memfd.folios.total_pages) * (PAGE_SIZE / entry::SIZE) as u64;
            memfd.nr_folios = (room + 1).min(pages);
            return Ok(None);
        }
        Class::ArrayNotPreserved => {
            memfd.folios.first = UNPRESERVED_PFN << PAGE_SHIFT;
            return Ok(None);
        }
        Class::FileSize => {
            memfd.size = PAGE_SIZE as u64;
            return Ok(None);
        }
        _ => {}
    }
    let mut copy = VVec::<u8>::with_capacity(folios.array_bytes().len(), GFP_KERNEL)?;
    copy.extend_from_slice(folios.array_bytes(), GFP_KERNEL)?;
    let (head, tail) = copy.split_at_mut(entry::SIZE);
    let first = FolioEntry::decode(head);
    let mut damaged = first;
    match class {
        Class::IndexOutsideFile => damaged.index = pages,
        Class::IndexMisaligned => damaged.index = first.index + 1,
        Class::PfnNotPreserved => damaged.pfn = UNPRESERVED_PFN,
        Class::PfnOutsideMemory => damaged.pfn = OUTSIDE_MEMORY_PFN,
        _ => {
            let second = FolioEntry {
                index: first.index,
                ..FolioEntry::decode(tail)
            };
            second.encode(tail)?;
        }
    }
    damaged.encode(head)?;
    let copy = PreservedVmalloc::new(copy)?;
    memfd.folios = copy.desc();
    Ok(Some(copy))
}
