// SPDX-License-Identifier: GPL-2.0

//! The LUO handover format ("luo-v5"), as written and read by Linux 7.3.
//!
//! A kernel with the C core and one with the Rust core must be able to live update into each
//! other, so these layouts are a contract with the C code in `include/linux/kho/abi/luo.h` and
//! `include/linux/kho/abi/block.h`. All fields are native-endian (little-endian on every
//! architecture KHO supports), packed, and physical addresses are raw `u64` values with 0
//! meaning "none".
//!
//! Everything here works on byte slices with explicit offsets: nothing from the previous kernel
//! is ever viewed through a Rust reference to a struct, and every decoder checks what it reads.

use core::num::NonZeroUsize;
use kernel::prelude::*;

/// Size of a handover block: one page (`KHO_BLOCK_SIZE`).
pub(crate) const BLOCK_SIZE: usize = 4096;

/// The KHO subtree LUO registers its root under (`LUO_KHO_ENTRY_NAME`).
pub(crate) const KHO_ENTRY_NAME: &CStr = c"LUO";

/// The root's compatible string (`LUO_ABI_COMPATIBLE`), NUL-padded to 8 bytes.
pub(crate) const COMPATIBLE: [u8; 8] = *b"luo-v5\0\0";

/// Most blocks a chain may have (`KHO_MAX_BLOCKS`); a longer chain is corrupt.
pub(crate) const MAX_BLOCKS: usize = 10000;

/// `struct luo_ser`: the root of all LUO state.
pub(crate) mod root {
    /// Size of the structure.
    pub(crate) const SIZE: usize = 32;
    /// `char compatible[8]`.
    pub(crate) const COMPATIBLE: usize = 0;
    /// `u64 liveupdate_num`: how many live updates led to the kernel that reads it.
    pub(crate) const LIVEUPDATE_NUM: usize = 8;
    /// `u64 sessions_pa`: first session block, or 0.
    pub(crate) const SESSIONS_PA: usize = 16;
    /// `u64 flbs_pa`: the FLB page.
    pub(crate) const FLBS_PA: usize = 24;
}

/// `struct kho_block_header_ser`: the start of every block in a chain.
pub(crate) mod block {
    /// Size of the header; entries follow it directly.
    pub(crate) const HEADER: usize = 16;
    /// `u64 next`: the next block, or 0.
    pub(crate) const NEXT: usize = 0;
    /// `u64 count`: entries in this block.
    pub(crate) const COUNT: usize = 8;
}

/// `struct luo_session_ser`: one session in a session block.
pub(crate) mod session {
    /// Size of an entry.
    pub(crate) const SIZE: usize = 80;
    /// `char name[64]`.
    pub(crate) const NAME: usize = 0;
    /// `struct luo_file_set_ser`: `u64 files` (first file block, or 0).
    pub(crate) const FILES: usize = 64;
    /// `struct luo_file_set_ser`: `u64 count`.
    pub(crate) const FILE_COUNT: usize = 72;
}

/// `struct luo_file_ser`: one preserved file in a file block.
pub(crate) mod file {
    /// Size of an entry.
    pub(crate) const SIZE: usize = 64;
    /// `char compatible[48]`: the handler that wrote `data`.
    pub(crate) const COMPATIBLE: usize = 0;
    /// `u64 data`: the handler's own handle to what it preserved.
    pub(crate) const DATA: usize = 48;
    /// `u64 token`: the user's name for the file.
    pub(crate) const TOKEN: usize = 56;
}

/// `struct luo_flb_header_ser` and the `struct luo_flb_ser` entries after it: the FLB page.
pub(crate) mod flb {
    /// `u64 pgcnt`: always 1.
    pub(crate) const PGCNT: usize = 0;
    /// `u64 count`: FLB entries that follow.
    pub(crate) const COUNT: usize = 8;
    /// Size of the header; entries follow it directly.
    pub(crate) const HEADER: usize = 16;
    /// Size of an entry.
    pub(crate) const SIZE: usize = 64;
    /// `char name[48]`: the FLB's compatible string.
    pub(crate) const NAME: usize = 0;
    /// `u64 data`: the FLB's own handle to what it preserved.
    pub(crate) const DATA: usize = 48;
    /// `u64 count`: files that depended on the FLB.
    pub(crate) const FILE_COUNT: usize = 56;
    /// Most entries the page holds (`LUO_FLB_MAX`).
    pub(crate) const MAX: usize = (super::BLOCK_SIZE - HEADER) / SIZE;
}

/// Longest compatible string of a file handler or FLB, including its NUL.
pub(crate) const COMPAT_LENGTH: usize = 48;

/// The compatible string of a C handler or FLB (`const char compatible[48]`) without its NUL;
/// an unterminated one is cut to 47 bytes, as the C core's `strscpy()` would write it.
pub(crate) fn c_compatible(raw: &[c_char; COMPAT_LENGTH]) -> &[u8] {
    // SAFETY: `c_char` and `u8` have the same size and alignment, and every bit pattern is
    // valid for both.
    let bytes: &[u8; COMPAT_LENGTH] = unsafe { &*core::ptr::from_ref(raw).cast() };
    let len = bytes
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(COMPAT_LENGTH - 1);
    bytes.get(..len).unwrap_or(&[])
}

/// Entries of `entry_size` bytes that fit in one block (at least one for any entry that fits).
pub(crate) const fn per_block(entry_size: usize) -> NonZeroUsize {
    let n = match (BLOCK_SIZE - block::HEADER).checked_div(entry_size) {
        Some(n) => n,
        None => 1,
    };
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => NonZeroUsize::MIN,
    }
}

// The counts the C core derives from the same layouts (SPEC: 51 sessions, 63 files a block).
const _: () = assert!(per_block(session::SIZE).get() == 51);
const _: () = assert!(per_block(file::SIZE).get() == 63);
const _: () = assert!(flb::MAX == 63);
const _: () = assert!(file::TOKEN + 8 == file::SIZE && flb::FILE_COUNT + 8 == flb::SIZE);

pub(crate) use kernel::kho::field::{
    get_u64,
    put_u64, //
};

/// Why data from the previous kernel was refused; it says so in the log and is `EINVAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// The root blob is shorter than `struct luo_ser`.
    RootTooSmall(usize),
    /// The root is not "luo-v5".
    Incompatible,
    /// A block claims more entries than fit.
    BlockCount(u64),
    /// An entry has the wrong size.
    EntrySize(usize),
    /// A session name is empty or not NUL-terminated.
    SessionName,
    /// A session has files without a file block, or a file block without files.
    FileSet,
    /// A compatible string is empty or not NUL-terminated.
    Compatible,
    /// Two files of a session carry the same token.
    DuplicateToken(u64),
    /// A file block chain holds a different number of files than its session says.
    FileCount { expected: u64, found: usize },
    /// The FLB page is not one page or holds more entries than fit.
    FlbHeader { pgcnt: u64, count: u64 },
    /// Two FLB entries share a name.
    DuplicateFlb,
}

impl kernel::fmt::Display for Malformed {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        // The first two mirror the C core's messages.
        match self {
            Self::RootTooSmall(len) => {
                write!(f, "LUO state is too small ({} < {})", len, root::SIZE)
            }
            Self::Incompatible => write!(f, "LUO state is incompatible with 'luo-v5'"),
            Self::BlockCount(n) => write!(f, "Block contains invalid entry count: {}", n),
            Self::EntrySize(n) => write!(f, "Entry has {} bytes", n),
            Self::SessionName => write!(f, "Session name is empty or not NUL-terminated"),
            Self::FileSet => write!(f, "Session file set is inconsistent"),
            Self::Compatible => write!(f, "Compatible string is empty or not NUL-terminated"),
            Self::DuplicateToken(t) => write!(f, "Token {:#x} appears twice in a session", t),
            Self::FileCount { expected, found } => write!(
                f,
                "File count mismatch: expected {}, found {}",
                expected, found
            ),
            Self::FlbHeader { pgcnt, count } => {
                write!(f, "FLB header is invalid: pgcnt {}, count {}", pgcnt, count)
            }
            Self::DuplicateFlb => write!(f, "FLB name appears twice"),
        }
    }
}

impl From<Malformed> for Error {
    fn from(_: Malformed) -> Error {
        EINVAL
    }
}

/// The decoded root of the previous kernel.
#[derive(Clone, Copy)]
pub(crate) struct Root {
    pub(crate) liveupdate_num: u64,
    pub(crate) sessions_pa: u64,
    pub(crate) flbs_pa: u64,
}

/// Decodes and checks the root blob of `len` bytes.
///
/// # Errors
///
/// If the blob is shorter than the structure or is not "luo-v5".
pub(crate) fn decode_root(blob: &[u8], len: usize) -> Result<Root, Malformed> {
    if len < root::SIZE || blob.len() < root::SIZE {
        return Err(Malformed::RootTooSmall(len.min(blob.len())));
    }
    if blob.get(root::COMPATIBLE..root::COMPATIBLE + 8) != Some(&COMPATIBLE[..]) {
        return Err(Malformed::Incompatible);
    }
    Ok(Root {
        liveupdate_num: get_u64(blob, root::LIVEUPDATE_NUM),
        sessions_pa: get_u64(blob, root::SESSIONS_PA),
        flbs_pa: get_u64(blob, root::FLBS_PA),
    })
}

/// Writes a root with no sessions yet.
pub(crate) fn encode_root(blob: &mut [u8], liveupdate_num: u64, flbs_pa: u64) {
    blob[..root::SIZE].fill(0);
    blob[root::COMPATIBLE..root::COMPATIBLE + 8].copy_from_slice(&COMPATIBLE);
    put_u64(blob, root::LIVEUPDATE_NUM, liveupdate_num);
    put_u64(blob, root::FLBS_PA, flbs_pa);
}

/// Decodes a block header and checks its entry count.
///
/// Returns `(next, count)`. Unlike the C reader, a block with no entry is accepted: it carries
/// nothing, and a stock 7.3 C kernel writes one after a refused duplicate `CREATE_SESSION` at a
/// multiple of 51 sessions (SPEC 10.4 item 1); refusing it would lose every session.
///
/// # Errors
///
/// If the block claims more entries than fit.
pub(crate) fn decode_block(
    page: &[u8; BLOCK_SIZE],
    entry_size: usize,
) -> Result<(u64, usize), Malformed> {
    let next = get_u64(page, block::NEXT);
    let count = get_u64(page, block::COUNT);
    if count > per_block(entry_size).get() as u64 {
        return Err(Malformed::BlockCount(count));
    }
    Ok((next, count as usize))
}

/// Byte range of the entry at `index` of a block (empty if it does not fit).
fn entry_range(entry_size: usize, index: usize) -> core::ops::Range<usize> {
    let start = index
        .checked_mul(entry_size)
        .and_then(|o| o.checked_add(block::HEADER));
    match start.and_then(|s| Some(s..s.checked_add(entry_size)?)) {
        Some(r) if r.end <= BLOCK_SIZE => r,
        _ => 0..0,
    }
}

/// The entry at `index` of a block.
pub(crate) fn entry(page: &[u8; BLOCK_SIZE], entry_size: usize, index: usize) -> &[u8] {
    page.get(entry_range(entry_size, index)).unwrap_or(&[])
}

/// The entry at `index` of a block, for writing.
pub(crate) fn entry_mut(page: &mut [u8; BLOCK_SIZE], entry_size: usize, index: usize) -> &mut [u8] {
    page.get_mut(entry_range(entry_size, index))
        .unwrap_or(&mut [])
}

/// A session as the previous kernel described it.
#[derive(Clone, Copy)]
pub(crate) struct SessionRecord {
    /// NUL-padded, non-empty, NUL-terminated name.
    pub(crate) name: [u8; 64],
    /// First file block, or 0.
    pub(crate) files_pa: u64,
    /// Number of files.
    pub(crate) file_count: u64,
}

/// Decodes one `struct luo_session_ser`.
///
/// # Errors
///
/// If the name is empty or not NUL-terminated, or the file set is inconsistent (files without
/// a block, or a block without files).
pub(crate) fn decode_session(e: &[u8]) -> Result<SessionRecord, Malformed> {
    let mut name = [0u8; 64];
    match e.get(session::NAME..session::NAME + 64) {
        Some(src) if e.len() == session::SIZE => name.copy_from_slice(src),
        _ => return Err(Malformed::EntrySize(e.len())),
    }
    let len = name
        .iter()
        .position(|&b| b == 0)
        .ok_or(Malformed::SessionName)?;
    if len == 0 {
        return Err(Malformed::SessionName);
    }
    // Bytes after the terminator are ignored, as by the C reader; normalise them.
    name[len..].fill(0);
    let files_pa = get_u64(e, session::FILES);
    let file_count = get_u64(e, session::FILE_COUNT);
    if (files_pa == 0) != (file_count == 0) {
        return Err(Malformed::FileSet);
    }
    Ok(SessionRecord {
        name,
        files_pa,
        file_count,
    })
}

/// Writes one `struct luo_session_ser`.
pub(crate) fn encode_session(e: &mut [u8], name: &[u8; 64], files_pa: u64, file_count: u64) {
    e.fill(0);
    if let Some(dst) = e.get_mut(session::NAME..session::NAME + 64) {
        dst.copy_from_slice(name);
    }
    put_u64(e, session::FILES, files_pa);
    put_u64(e, session::FILE_COUNT, file_count);
}

/// A compatible string as stored in the handover data: NUL-padded, NUL-terminated, non-empty.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compatible([u8; COMPAT_LENGTH]);

impl Compatible {
    /// Reads a stored compatible string.
    ///
    /// # Errors
    ///
    /// If it is empty or has no NUL within its 48 bytes.
    pub(crate) fn decode(raw: &[u8]) -> Result<Self, Malformed> {
        let raw = raw.get(..COMPAT_LENGTH).ok_or(Malformed::Compatible)?;
        let len = raw
            .iter()
            .position(|&b| b == 0)
            .ok_or(Malformed::Compatible)?;
        if len == 0 {
            return Err(Malformed::Compatible);
        }
        let mut c = [0u8; COMPAT_LENGTH];
        for (d, s) in c.iter_mut().zip(raw.iter().take(len)) {
            *d = *s;
        }
        Ok(Self(c))
    }

    /// The string's bytes without the NUL.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(0);
        self.0.get(..len).unwrap_or(&[])
    }
}

/// Writes a compatible string into a 48-byte field, cut to 47 bytes and NUL-padded like C's
/// `strscpy()`.
fn put_compatible(dst: &mut [u8], compatible: &[u8]) {
    dst.fill(0);
    for (d, s) in dst
        .iter_mut()
        .zip(compatible.iter().take(COMPAT_LENGTH - 1))
    {
        *d = *s;
    }
}

/// A file as the previous kernel described it.
#[derive(Clone, Copy)]
pub(crate) struct FileRecord {
    pub(crate) compatible: Compatible,
    pub(crate) data: u64,
    pub(crate) token: u64,
}

/// Decodes one `struct luo_file_ser`.
///
/// # Errors
///
/// If the entry has the wrong size or its compatible string is malformed.
pub(crate) fn decode_file(e: &[u8]) -> Result<FileRecord, Malformed> {
    if e.len() != file::SIZE {
        return Err(Malformed::EntrySize(e.len()));
    }
    Ok(FileRecord {
        compatible: Compatible::decode(e.get(file::COMPATIBLE..).unwrap_or(&[]))?,
        data: get_u64(e, file::DATA),
        token: get_u64(e, file::TOKEN),
    })
}

/// Writes one `struct luo_file_ser`.
pub(crate) fn encode_file(e: &mut [u8], compatible: &[u8], data: u64, token: u64) {
    e.fill(0);
    if let Some(dst) = e.get_mut(file::COMPATIBLE..file::COMPATIBLE + COMPAT_LENGTH) {
        put_compatible(dst, compatible);
    }
    put_u64(e, file::DATA, data);
    put_u64(e, file::TOKEN, token);
}

/// An FLB as the previous kernel described it.
#[derive(Clone, Copy)]
pub(crate) struct FlbRecord {
    pub(crate) name: Compatible,
    pub(crate) data: u64,
    /// Files of the previous kernel that depended on the FLB.
    pub(crate) file_count: u64,
}

/// Checks the FLB page without allocating and returns its number of entries.
///
/// # Errors
///
/// If the header does not describe one page with at most 63 entries, an entry's name is
/// malformed or two entries share a name.
pub(crate) fn check_flbs(page: &[u8; BLOCK_SIZE]) -> Result<usize, Malformed> {
    let pgcnt = get_u64(page, flb::PGCNT);
    let count = get_u64(page, flb::COUNT);
    if pgcnt != 1 || count > flb::MAX as u64 {
        return Err(Malformed::FlbHeader { pgcnt, count });
    }
    let count = count as usize;
    for i in 0..count {
        let name = Compatible::decode(flb_entry(page, i).get(flb::NAME..).unwrap_or(&[]))?;
        for j in 0..i {
            if flb_entry(page, j).get(flb::NAME..flb::NAME + COMPAT_LENGTH) == Some(&name.0[..]) {
                return Err(Malformed::DuplicateFlb);
            }
        }
    }
    Ok(count)
}

/// The FLB entry at `index` (empty if it does not fit).
fn flb_entry(page: &[u8; BLOCK_SIZE], index: usize) -> &[u8] {
    let start = index.saturating_mul(flb::SIZE).saturating_add(flb::HEADER);
    page.get(start..start.saturating_add(flb::SIZE))
        .unwrap_or(&[])
}

/// Decodes the FLB page.
///
/// # Errors
///
/// `EINVAL` if [`check_flbs`] refuses the page, `ENOMEM`.
pub(crate) fn decode_flbs(page: &[u8; BLOCK_SIZE], out: &mut KVec<FlbRecord>) -> Result {
    let count = check_flbs(page)?;
    out.reserve(count, GFP_KERNEL)?;
    for i in 0..count {
        let e = flb_entry(page, i);
        out.push(
            FlbRecord {
                name: Compatible::decode(e.get(flb::NAME..).unwrap_or(&[]))?,
                data: get_u64(e, flb::DATA),
                file_count: get_u64(e, flb::FILE_COUNT),
            },
            GFP_KERNEL,
        )?;
    }
    Ok(())
}

/// Writes the FLB page: a header and one entry per `(name, data, file_count)`; entries past
/// the 63 that fit are dropped (registration refuses more FLBs than that).
pub(crate) fn encode_flbs<'a>(
    page: &mut [u8; BLOCK_SIZE],
    entries: impl Iterator<Item = (&'a [u8], u64, u64)>,
) {
    page.fill(0);
    let mut count = 0;
    for (name, data, file_count) in entries.take(flb::MAX) {
        let start = flb::HEADER + count * flb::SIZE;
        if let Some(e) = page.get_mut(start..start + flb::SIZE) {
            if let Some(dst) = e.get_mut(flb::NAME..flb::NAME + COMPAT_LENGTH) {
                put_compatible(dst, name);
            }
            put_u64(e, flb::DATA, data);
            put_u64(e, flb::FILE_COUNT, file_count);
            count += 1;
        }
    }
    put_u64(page, flb::PGCNT, 1);
    put_u64(page, flb::COUNT, count as u64);
}
