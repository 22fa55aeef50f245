// SPDX-License-Identifier: GPL-2.0

//! The "memfd-v2" handover format of `include/linux/kho/abi/memfd.h`.
//!
//! For each memfd the handler hands over one `struct memfd_luo_ser` (48 bytes, packed; its
//! physical address is the file's serialized data) and, through a KHO vmalloc area, an array
//! of `struct memfd_luo_folio_ser` (16 bytes each). The folio entry's first word is a C
//! bitfield; it is encoded here explicitly (the page frame number in bits 0-51, the flags in
//! bits 52-63, as GCC lays it out on little-endian machines), never through a Rust bitfield or
//! a cast of the bytes.
//!
//! Everything read back comes from the previous kernel and is checked before use.

use kernel::{
    bindings,
    kho::{
        field::{
            get_u16,
            get_u32,
            get_u64,
            put_u16,
            put_u32,
            put_u64, //
        },
        VmallocDesc,
    },
    prelude::*, //
};

use core::mem::{
    offset_of,
    size_of, //
};

/// The handler's compatible string (`MEMFD_LUO_FH_COMPATIBLE`).
pub(crate) const COMPATIBLE: &CStr = c"memfd-v2";

/// The seals a preserved memfd may carry (`MEMFD_LUO_ALL_SEALS`): `F_SEAL_SEAL`, `SHRINK`,
/// `GROW`, `WRITE`, `FUTURE_WRITE` and `EXEC`.
pub(crate) const ALL_SEALS: u32 = 0x3f;

/// Checks that a memfd carries only seals this format can hand over.
///
/// # Errors
///
/// `EOPNOTSUPP` for any other seal (as the C handler), so that a newer seal is never
/// silently dropped.
pub(crate) fn check_seals(seals: u32) -> Result<u32> {
    if seals & !ALL_SEALS != 0 {
        return Err(EOPNOTSUPP);
    }
    Ok(seals)
}

// The flags of a folio entry are written and read by the C helpers (`memfd_mm.c`); the tests
// build entries with them.
/// `MEMFD_LUO_FOLIO_DIRTY`.
#[cfg(CONFIG_LIVEUPDATE_RUST_KUNIT_TEST)]
pub(crate) const FOLIO_DIRTY: u16 = 1 << 0;
/// `MEMFD_LUO_FOLIO_UPTODATE`.
#[cfg(CONFIG_LIVEUPDATE_RUST_KUNIT_TEST)]
pub(crate) const FOLIO_UPTODATE: u16 = 1 << 1;

/// Width of the page frame number in a folio entry's first word.
const PFN_BITS: u32 = 52;
/// Width of the flags above it.
const FLAG_BITS: u32 = 12;

/// `struct memfd_luo_ser`.
pub(crate) mod ser {
    /// Size of the structure.
    pub(crate) const SIZE: usize = 48;
    /// `u64 pos`: the file position.
    pub(crate) const POS: usize = 0;
    /// `u64 size`: the file size.
    pub(crate) const FILE_SIZE: usize = 8;
    /// `u32 seals`.
    pub(crate) const SEALS: usize = 16;
    /// `u32 flags`: none defined, always 0.
    pub(crate) const FLAGS: usize = 20;
    /// `u64 nr_folios`.
    pub(crate) const NR_FOLIOS: usize = 24;
    /// `struct kho_vmalloc folios`: `u64 first`.
    pub(crate) const VMALLOC_FIRST: usize = 32;
    /// `unsigned int total_pages`.
    pub(crate) const VMALLOC_TOTAL_PAGES: usize = 40;
    /// `unsigned short flags`.
    pub(crate) const VMALLOC_FLAGS: usize = 44;
    /// `unsigned short order`.
    pub(crate) const VMALLOC_ORDER: usize = 46;
}

/// `struct memfd_luo_folio_ser`.
pub(crate) mod folio {
    /// Size of an entry.
    pub(crate) const SIZE: usize = 16;
    /// `u64 pfn:52; u64 flags:12;`.
    pub(crate) const WORD: usize = 0;
    /// `u64 index`: the page offset of the folio in the file.
    pub(crate) const INDEX: usize = 8;
}

// The layouts above are the C ones.
const _: () = {
    assert!(size_of::<bindings::memfd_luo_ser>() == ser::SIZE);
    assert!(offset_of!(bindings::memfd_luo_ser, pos) == ser::POS);
    assert!(offset_of!(bindings::memfd_luo_ser, size) == ser::FILE_SIZE);
    assert!(offset_of!(bindings::memfd_luo_ser, seals) == ser::SEALS);
    assert!(offset_of!(bindings::memfd_luo_ser, flags) == ser::FLAGS);
    assert!(offset_of!(bindings::memfd_luo_ser, nr_folios) == ser::NR_FOLIOS);
    assert!(offset_of!(bindings::memfd_luo_ser, folios) == ser::VMALLOC_FIRST);
    assert!(size_of::<bindings::kho_vmalloc>() == 16);
    assert!(
        offset_of!(bindings::kho_vmalloc, total_pages) + ser::VMALLOC_FIRST
            == ser::VMALLOC_TOTAL_PAGES
    );
    assert!(offset_of!(bindings::kho_vmalloc, flags) + ser::VMALLOC_FIRST == ser::VMALLOC_FLAGS);
    assert!(offset_of!(bindings::kho_vmalloc, order) + ser::VMALLOC_FIRST == ser::VMALLOC_ORDER);
    assert!(size_of::<bindings::memfd_luo_folio_ser>() == folio::SIZE);
    assert!(offset_of!(bindings::memfd_luo_folio_ser, index) == folio::INDEX);
    assert!(PFN_BITS + FLAG_BITS == 64);
    assert!(ALL_SEALS == bindings::MEMFD_LUO_ALL_SEALS);
};

/// One folio of a memfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FolioEntry {
    /// Page frame number of the folio's first page; 0 marks an entry to skip.
    pub(crate) pfn: u64,
    /// `FOLIO_DIRTY`, `FOLIO_UPTODATE`.
    pub(crate) flags: u16,
    /// Page offset of the folio in the file.
    pub(crate) index: u64,
}

impl FolioEntry {
    /// Writes the entry.
    ///
    /// # Errors
    ///
    /// `EINVAL` if the page frame number needs more than 52 bits or the flags more than 12.
    pub(crate) fn encode(&self, e: &mut [u8]) -> Result {
        if self.pfn >> PFN_BITS != 0 || u32::from(self.flags) >> FLAG_BITS != 0 {
            return Err(EINVAL);
        }
        put_u64(e, folio::WORD, self.pfn | u64::from(self.flags) << PFN_BITS);
        put_u64(e, folio::INDEX, self.index);
        Ok(())
    }

    /// Reads an entry; every bit pattern is a valid entry, which the retrieve path checks
    /// further (the folio must be one the previous kernel preserved).
    pub(crate) fn decode(e: &[u8]) -> Self {
        let word = get_u64(e, folio::WORD);
        Self {
            pfn: word & ((1 << PFN_BITS) - 1),
            flags: (word >> PFN_BITS) as u16,
            index: get_u64(e, folio::INDEX),
        }
    }
}

/// A memfd as the handler describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Memfd {
    pub(crate) pos: u64,
    pub(crate) size: u64,
    pub(crate) seals: u32,
    pub(crate) nr_folios: u64,
    pub(crate) folios: VmallocDesc,
}

/// `MAX_LFS_FILESIZE` on 64-bit: the largest file position.
const MAX_POS: u64 = i64::MAX as u64;

/// Bytes in a page.
const PAGE_SIZE: u64 = kernel::page::PAGE_SIZE as u64;

impl Memfd {
    /// Writes a `struct memfd_luo_ser`.
    pub(crate) fn encode(&self, e: &mut [u8]) {
        e.iter_mut().take(ser::SIZE).for_each(|b| *b = 0);
        put_u64(e, ser::POS, self.pos);
        put_u64(e, ser::FILE_SIZE, self.size);
        put_u32(e, ser::SEALS, self.seals);
        put_u64(e, ser::NR_FOLIOS, self.nr_folios);
        put_u64(e, ser::VMALLOC_FIRST, self.folios.first);
        put_u32(e, ser::VMALLOC_TOTAL_PAGES, self.folios.total_pages);
        put_u16(e, ser::VMALLOC_FLAGS, self.folios.flags);
        put_u16(e, ser::VMALLOC_ORDER, self.folios.order);
    }

    /// The number of folio entries the folio array holds.
    pub(crate) fn folio_array_len(&self) -> usize {
        usize::try_from(self.nr_folios).unwrap_or(usize::MAX)
    }

    /// Reads and checks a `struct memfd_luo_ser` from the previous kernel.
    ///
    /// # Errors
    ///
    /// `EOPNOTSUPP` for seals this version does not know (as the C handler); `EINVAL` for a
    /// short structure, unknown flags, a file of more than `u32::MAX` pages, more folios than
    /// the file has pages, or folios without a folio array.
    pub(crate) fn decode(e: &[u8]) -> Result<Self> {
        if e.len() < ser::SIZE {
            return Err(EINVAL);
        }
        let m = Self {
            pos: get_u64(e, ser::POS),
            size: get_u64(e, ser::FILE_SIZE),
            seals: get_u32(e, ser::SEALS),
            nr_folios: get_u64(e, ser::NR_FOLIOS),
            folios: VmallocDesc {
                first: get_u64(e, ser::VMALLOC_FIRST),
                total_pages: get_u32(e, ser::VMALLOC_TOTAL_PAGES),
                flags: get_u16(e, ser::VMALLOC_FLAGS),
                order: get_u16(e, ser::VMALLOC_ORDER),
            },
        };
        check_seals(m.seals)?;
        let pages = m.size.div_ceil(PAGE_SIZE);
        if get_u32(e, ser::FLAGS) != 0 || pages > u64::from(u32::MAX) || m.nr_folios > pages {
            return Err(EINVAL);
        }
        if m.nr_folios != 0 && m.folios.first == 0 {
            return Err(EINVAL);
        }
        // A position the VFS cannot seek to (C would silently leave it at 0).
        if m.pos > MAX_POS {
            return Err(EINVAL);
        }
        Ok(m)
    }
}
