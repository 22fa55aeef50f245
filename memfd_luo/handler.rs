// SPDX-License-Identifier: GPL-2.0

//! The memfd handler's operations.
//!
//! They follow `mm/memfd_luo.c`, because the next kernel may run that handler: the same
//! properties are preserved (contents, size, position, seals), the same folio flags are forced,
//! and the same errors are returned. Two things differ. Only the folios a file holds are
//! preserved, not its holes ([`crate::folio_set`]). And on the receiving side everything the
//! previous kernel wrote is checked before use: the structure's fields, the folio array's
//! descriptor and length, and each folio's index (starting inside the file, aligned to the
//! folio's size), so a malformed handover gives an error instead of a crash.

use crate::{
    abi::{
        self,
        folio as entry,
        FolioEntry,
        Memfd, //
    },
    folio_set::FolioSet,
    mm::{
        self,
        Locked,
        RestoreError, //
    },
};
use kernel::{
    fs::File,
    kho::{
        PhysAddr,
        PreservedPage,
        RestoredPage,
        RestoredVmalloc, //
    },
    liveupdate::{
        FileHandler,
        RetrieveStatus, //
    },
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        aref::ARef,
        Mutex, //
    },
};

/// The memfd handler.
pub(crate) struct MemfdHandler;

/// What this kernel keeps for a preserved memfd until the kexec, or until it is unpreserved.
///
/// Dropping it undoes the preservation: the folios with their array, then the structure page.
#[pin_data]
pub(crate) struct Preserved {
    #[pin]
    state: Mutex<State>,
}

/// A preserved memfd's record and what it names.
struct State {
    /// The folios, and the folio array the next kernel reads.
    folios: FolioSet,
    /// What `ser` says.
    memfd: Memfd,
    /// The `struct memfd_luo_ser` the next kernel reads.
    ser: PreservedPage,
    /// A damaged copy of the folio array that `ser` names instead (test builds only).
    #[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
    damaged: Option<kernel::kho::PreservedVmalloc>,
}

impl State {
    /// Writes the record again after the position or the folios changed.
    fn update(&mut self, pos: u64) {
        self.memfd.pos = pos;
        self.memfd.nr_folios = self.folios.count() as u64;
        self.memfd.folios = self.folios.desc();
        self.memfd.encode(self.ser.bytes_mut());
    }
}

/// Preserves a memfd whose inode lock is held and whose size is frozen.
fn preserve_locked(memfd: &Locked<'_>, file: &File) -> Result<(PhysAddr, Pin<KBox<Preserved>>)> {
    let ser = PreservedPage::new()?;
    let seals = abi::check_seals(memfd.seals()?)?;
    let size = memfd.size();
    // `memfd_pin_folios()` counts folios in 32 bits; never preserve just a prefix.
    if size.div_ceil(PAGE_SIZE as u64) > u64::from(u32::MAX) {
        return Err(EFBIG);
    }
    let folios = if size == 0 {
        FolioSet::empty()
    } else {
        FolioSet::collect(file, size)?
    };
    let mut state = State {
        folios,
        memfd: Memfd {
            size,
            seals,
            ..Memfd::default()
        },
        ser,
        #[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
        damaged: None,
    };
    state.update(mm::pos(file));
    let phys = state.ser.phys();
    let preserved = KBox::pin_init(
        pin_init!(Preserved {
            state <- new_mutex!(state),
        }),
        GFP_KERNEL,
    )?;
    Ok((phys, preserved))
}

/// Fills the new memfd `file` with the folios of `array`, which the previous kernel wrote for
/// a file of `m.size` bytes. On error the folios already added stay in `file` (they are freed
/// with it) and the rest are freed here.
fn retrieve_folios(file: &File, m: &Memfd, array: &RestoredVmalloc) -> Result {
    let count = m.folio_array_len();
    if count
        .checked_mul(entry::SIZE)
        .is_none_or(|n| n > array.len())
    {
        pr_err!(
            "folio array of {} bytes for {} folios\n",
            array.len(),
            count
        );
        return Err(EINVAL);
    }
    let pages = m.size.div_ceil(PAGE_SIZE as u64);
    let mut added = 0u64;
    let mut result = Ok(());
    // Entries before `next` were restored (or were empty), or failed.
    let mut next = 0;
    for page in array.pages() {
        let take = (PAGE_SIZE / entry::SIZE).min(count.saturating_sub(next));
        if take == 0 {
            break;
        }
        let entries = page.get(..take * entry::SIZE).unwrap_or(&[]);
        let (n, restored) = mm::restore_folios(file, entries, pages);
        added += n;
        let Err((at, why)) = restored else {
            next += take;
            continue;
        };
        let i = next + at;
        // A charge that failed came after every folio of the page was added.
        next = if at == take { i } else { i + 1 };
        let failed = FolioEntry::decode(entries.get(at * entry::SIZE..).unwrap_or(&[]));
        result = Err(match why {
            RestoreError::NotPreserved => {
                pr_err!("cannot restore the folio at pfn {:#x}\n", failed.pfn);
                EIO
            }
            // A large folio may reach past the end of the file (shmem allocates such folios),
            // but it starts inside it.
            RestoreError::Misplaced(n) => {
                pr_err!(
                    "folio {} ({} pages) at page {} of a {}-page file\n",
                    i,
                    n,
                    failed.index,
                    pages
                );
                EINVAL
            }
            RestoreError::Account(err) => {
                pr_err!(
                    "cannot charge the folios of entries {}..{}: {:?}\n",
                    i - take,
                    i,
                    err
                );
                err
            }
            RestoreError::Add(err) => {
                pr_err!(
                    "cannot add folio {} at page {}: {:?}\n",
                    i,
                    failed.index,
                    err
                );
                err
            }
        });
        break;
    }
    mm::account(file, added);
    if result.is_err() {
        mm::discard(array, next..count);
    }
    result
}

/// Frees the folios of a memfd that will not be retrieved.
fn discard_all(m: &Memfd) {
    if m.nr_folios == 0 {
        return;
    }
    match RestoredVmalloc::restore(&m.folios) {
        Ok(array) => discard_listed(m, &array),
        Err(_) => pr_warn!("cannot restore the folio array, folios kept\n"),
    }
}

/// Frees the folios `array`, the memfd's folio array, lists.
fn discard_listed(m: &Memfd, array: &RestoredVmalloc) {
    let count = m.folio_array_len().min(array.len() / entry::SIZE);
    mm::discard(array, 0..count);
}

#[vtable]
impl FileHandler for MemfdHandler {
    type Data = PhysAddr;
    type Private = Pin<KBox<Preserved>>;

    fn can_preserve(&self, file: &File) -> bool {
        mm::can_preserve(file)
    }

    fn preserve(&self, file: &File) -> Result<(PhysAddr, Pin<KBox<Preserved>>)> {
        let memfd = Locked::lock(file);
        memfd.set_frozen(true);
        let r = preserve_locked(&memfd, file);
        if r.is_err() {
            memfd.set_frozen(false);
        }
        r
    }

    fn unpreserve(&self, file: &File, _data: PhysAddr, private: Pin<KBox<Preserved>>) {
        let memfd = Locked::lock(file);
        memfd.set_frozen(false);
        drop(private);
    }

    fn freeze(&self, file: &File, _data: &mut PhysAddr, private: Pin<&Preserved>) -> Result {
        // The size is frozen; the position may have changed, and holes may have been filled
        // through a mapping since `preserve`.
        let mut state = private.state.lock();
        let size = state.memfd.size;
        state.folios.refresh(file, size)?;
        state.update(mm::pos(file));
        #[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
        {
            let mut damaged = state.memfd;
            if let Some(copy) = crate::corrupt::apply(&state.folios, &mut damaged)? {
                state.damaged = Some(copy);
            }
            damaged.encode(state.ser.bytes_mut());
        }
        Ok(())
    }

    fn retrieve(&self, data: PhysAddr) -> Result<ARef<File>> {
        let page = RestoredPage::restore(data).inspect_err(|_| {
            pr_err!("no memfd data at {:#x} from the previous kernel\n", data);
        })?;
        let m = Memfd::decode(page.bytes()).inspect_err(|e| {
            pr_err!("malformed memfd data from the previous kernel: {:?}\n", e);
        })?;
        // `finish` skips a failed retrieve, so every failure below returns the memory itself.
        // The folio array comes first: with it in hand, a failure to create the file can
        // return the folios without another allocation.
        let array = if m.nr_folios == 0 {
            None
        } else {
            Some(RestoredVmalloc::restore(&m.folios).inspect_err(|_| {
                pr_err!("cannot restore the folio array\n");
                // Out of memory, the restore took nothing, so a second try may work; the folios
                // of a malformed array stay reserved.
                discard_all(&m);
            })?)
        };
        let file = mm::new_file(m.seals, m.pos, m.size).inspect_err(|e| {
            pr_err!("cannot create the memfd: {:?}\n", e);
            if let Some(array) = &array {
                discard_listed(&m, array);
            }
        })?;
        if let Some(array) = &array {
            retrieve_folios(&file, &m, array)?;
        }
        Ok(file)
    }

    fn finish(&self, _file: Option<&File>, data: PhysAddr, status: RetrieveStatus) {
        // A retrieved memfd owns its folios; a failed retrieve cleaned up what it could.
        if status != RetrieveStatus::NotRetrieved {
            return;
        }
        let Ok(page) = RestoredPage::restore(data) else {
            pr_warn!("no memfd data at {:#x} to discard\n", data);
            return;
        };
        let m = match Memfd::decode(page.bytes()) {
            Ok(m) => m,
            Err(e) => {
                pr_warn!("malformed memfd data, folios kept: {:?}\n", e);
                return;
            }
        };
        discard_all(&m);
    }

    fn get_id(file: &File) -> usize {
        mm::id(file)
    }
}
