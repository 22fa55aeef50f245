// SPDX-License-Identifier: GPL-2.0

//! Test-only damage to the outgoing handover data, one class at a time.
//!
//! The reader of the handover data must survive a previous kernel that writes garbage: refuse
//! it with a log line, no splat, and a usable machine. KUnit feeds the decoders malformed bytes;
//! this module makes a real kernel write them, so a test can check the whole path end to end:
//! KHO, the early initcall, the first open of `/dev/liveupdate`.
//!
//! `luo_rs_corrupt=CLASS` on the command line picks the damage; the reboot path applies it
//! after it has written everything. Built only with `CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST`.

use kernel::{
    page::PAGE_SIZE,
    prelude::*,
    sync::SetOnce, //
};

use crate::{
    abi::{
        self,
        block,
        flb,
        per_block,
        put_u64,
        session, //
    },
    chain::OutChain,
    file::FileSet,
    handover::Outgoing, //
};

/// What to damage.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The root's compatible string says `luo-v4`.
    RootVersion,
    /// The root points at a session chain far outside memory.
    SessionsOutsideMemory,
    /// The root points into the middle of a preserved page.
    SessionsMisaligned,
    /// The root points at a page that was never preserved.
    SessionsNotPreserved,
    /// The first session block claims one entry more than fit.
    BlockCount,
    /// The last session block links back to the first.
    BlockCycle,
    /// The second session takes the first one's name.
    DuplicateName,
    /// The first session's name fills all 64 bytes.
    UnterminatedName,
    /// The first session claims a file but has no file block.
    FileSetInconsistent,
    /// The first session with files claims one file more than its chain holds.
    FileCount,
    /// The second file of that session takes the first one's token.
    DuplicateToken,
    /// The first file of that session has an empty compatible string.
    EmptyCompatible,
    /// The FLB page claims more entries than fit.
    FlbCount,
    /// The FLB page names its first FLB twice.
    DuplicateFlb,
}

const CLASSES: [(&[u8], Class); 14] = [
    (b"root-version", Class::RootVersion),
    (b"sessions-outside-memory", Class::SessionsOutsideMemory),
    (b"sessions-misaligned", Class::SessionsMisaligned),
    (b"sessions-not-preserved", Class::SessionsNotPreserved),
    (b"block-count", Class::BlockCount),
    (b"block-cycle", Class::BlockCycle),
    (b"duplicate-name", Class::DuplicateName),
    (b"unterminated-name", Class::UnterminatedName),
    (b"file-set-inconsistent", Class::FileSetInconsistent),
    (b"file-count", Class::FileCount),
    (b"duplicate-token", Class::DuplicateToken),
    (b"empty-compatible", Class::EmptyCompatible),
    (b"flb-count", Class::FlbCount),
    (b"duplicate-flb", Class::DuplicateFlb),
];

static CHOSEN: SetOnce<Class> = SetOnce::new();

/// Records `luo_rs_corrupt=` from the command line.
///
/// # Safety
///
/// `name` is null or a NUL-terminated string that is valid for the duration of the call.
#[export]
pub unsafe extern "C" fn luo_rs_corrupt_request(name: *const c_char) {
    // SAFETY: By the caller's guarantee.
    match unsafe { kernel::liveupdate::damage_class(name, &CLASSES) } {
        Some((n, class)) => {
            CHOSEN.populate(class);
            pr_warn!("luo-rs: test build: the handover data will be corrupted ({n})\n");
        }
        None => pr_err!("luo-rs: unknown luo_rs_corrupt= class, nothing corrupted\n"),
    }
}

/// True if a class of damage was asked for.
pub(crate) fn requested() -> bool {
    CHOSEN.as_ref().is_some()
}

/// Damages what the reboot path has just written: the root, the session chain with `count`
/// entries, the FLB page, and the files of `with_files`, the first session that has files
/// (and its index).
pub(crate) fn apply(
    handover: &mut Outgoing,
    sessions: &mut OutChain,
    count: usize,
    with_files: Option<(usize, &mut FileSet)>,
) {
    let Some(class) = CHOSEN.as_ref().copied() else {
        return;
    };
    let done = match class {
        Class::RootVersion => {
            if let Some(c) = handover.root_mut().get_mut(abi::root::COMPATIBLE..) {
                c.iter_mut().zip(b"luo-v4\0\0").for_each(|(d, s)| *d = *s);
            }
            true
        }
        Class::SessionsOutsideMemory => set_sessions(handover, 1 << 46),
        Class::SessionsMisaligned => set_sessions(handover, sessions.phys(0) + 64),
        Class::SessionsNotPreserved => not_preserved(handover),
        Class::BlockCount => sessions.block_mut(0).is_some_and(|b| {
            put_u64(b, block::COUNT, per_block(session::SIZE).get() as u64 + 1);
            true
        }),
        Class::BlockCycle => {
            let head = sessions.phys(0);
            let last = sessions.blocks().saturating_sub(1);
            sessions.block_mut(last).is_some_and(|b| {
                put_u64(b, block::NEXT, head);
                true
            })
        }
        Class::DuplicateName => {
            count >= 2 && {
                let mut name = [0u8; 64];
                if let Some(e) = sessions.entry_mut(0) {
                    name.iter_mut().zip(e.iter()).for_each(|(d, s)| *d = *s);
                }
                sessions.entry_mut(1).is_some_and(|e| {
                    e.iter_mut().zip(name.iter()).for_each(|(d, s)| *d = *s);
                    true
                })
            }
        }
        Class::UnterminatedName => sessions.entry_mut(0).is_some_and(|e| {
            e.iter_mut().take(64).for_each(|b| *b = b'x');
            true
        }),
        Class::FileSetInconsistent => sessions.entry_mut(0).is_some_and(|e| {
            put_u64(e, session::FILES, 0);
            put_u64(e, session::FILE_COUNT, 1);
            true
        }),
        Class::FileCount => with_files.is_some_and(|(i, files)| {
            let n = files.count() as u64 + 1;
            sessions.entry_mut(i).is_some_and(|e| {
                put_u64(e, session::FILE_COUNT, n);
                true
            })
        }),
        Class::DuplicateToken => with_files.is_some_and(|(_, files)| {
            files.count() >= 2
                && files.chain_mut().block_mut(0).is_some_and(|b| {
                    let token = abi::get_u64(abi::entry(b, abi::file::SIZE, 0), abi::file::TOKEN);
                    put_u64(
                        abi::entry_mut(b, abi::file::SIZE, 1),
                        abi::file::TOKEN,
                        token,
                    );
                    true
                })
        }),
        Class::EmptyCompatible => with_files.is_some_and(|(_, files)| {
            files.chain_mut().block_mut(0).is_some_and(|b| {
                let e = abi::entry_mut(b, abi::file::SIZE, 0);
                e.iter_mut().take(abi::COMPAT_LENGTH).for_each(|b| *b = 0);
                true
            })
        }),
        Class::FlbCount => {
            put_u64(handover.flbs_mut(), flb::COUNT, flb::MAX as u64 + 1);
            true
        }
        Class::DuplicateFlb => {
            let page = handover.flbs_mut();
            let first = flb::HEADER..flb::HEADER + flb::SIZE;
            page.copy_within(first, flb::HEADER + flb::SIZE);
            put_u64(page, flb::COUNT, 2);
            true
        }
    };
    if done {
        pr_warn!("luo-rs: test build: handover data corrupted as asked\n");
    } else {
        pr_err!("luo-rs: test build: nothing to corrupt for the class asked\n");
    }
}

fn set_sessions(handover: &mut Outgoing, pa: u64) -> bool {
    handover.set_sessions(pa);
    true
}

/// Points the root at a page of this kernel that is not preserved: the next kernel finds some
/// other data there, or none.
fn not_preserved(handover: &mut Outgoing) -> bool {
    match KBox::new([0u8; PAGE_SIZE], GFP_KERNEL) {
        Ok(page) => {
            let page = KBox::leak(page);
            // SAFETY: A kmalloc'd page is in the direct map; it is leaked, so the address
            // stays valid (and the page unused) until the kexec.
            let pa = unsafe { kernel::bindings::virt_to_phys(page.as_mut_ptr().cast()) };
            set_sessions(handover, pa)
        }
        Err(_) => false,
    }
}
