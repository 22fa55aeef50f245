// SPDX-License-Identifier: GPL-2.0

//! The memfd handler's operations.
//!
//! They follow `mm/memfd_luo.c` step for step, because the next kernel may run that handler: the
//! same properties are preserved (contents, size, position, seals), the same folio flags are
//! forced, and the same errors are returned. What differs is on the receiving side, where
//! everything the previous kernel wrote is checked before use: the structure's fields, the
//! folio array's descriptor and length, and each folio's index (inside the file, aligned to the
//! folio's size), so a malformed handover gives an error instead of a crash.

use crate::{
    abi::{
        self,
        folio as entry,
        FolioEntry,
        Memfd, //
    },
    mm::{
        self,
        Locked,
        Pinned,
        RestoredFolio, //
    },
};
use kernel::{
    fs::File,
    kho::{
        PhysAddr,
        PreservedPage,
        PreservedVmalloc,
        RestoredPage,
        RestoredVmalloc,
        VmallocDesc, //
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
/// Dropping it undoes the preservation: the folio array, then the folios (preservation and
/// pins), then the structure page.
#[pin_data]
pub(crate) struct Preserved {
    /// The folio array in the handover format; `None` for an empty file.
    array: Option<PreservedVmalloc>,
    /// The file's folios; `None` for an empty file.
    folios: Option<Pinned>,
    /// The `struct memfd_luo_ser` the next kernel reads; `freeze` updates the position.
    #[pin]
    ser: Mutex<PreservedPage>,
}

/// Preserves a memfd whose inode lock is held and whose size is frozen.
fn preserve_locked(memfd: &Locked<'_>, file: &File) -> Result<(PhysAddr, Pin<KBox<Preserved>>)> {
    let mut page = PreservedPage::new()?;
    let seals = abi::check_seals(memfd.seals()?)?;
    let size = memfd.size();
    // `memfd_pin_folios()` counts folios in 32 bits; never preserve just a prefix.
    if size.div_ceil(PAGE_SIZE as u64) > u64::from(u32::MAX) {
        return Err(EFBIG);
    }
    let (folios, array) = if size == 0 {
        (None, None)
    } else {
        let mut folios = Pinned::pin(memfd, size)?;
        let array = PreservedVmalloc::new(folios.preserve()?)?;
        (Some(folios), Some(array))
    };
    let m = Memfd {
        pos: mm::pos(file),
        size,
        seals,
        nr_folios: folios.as_ref().map_or(0, |f| f.len() as u64),
        folios: array.as_ref().map_or(VmallocDesc::default(), |a| a.desc()),
    };
    m.encode(page.bytes_mut());
    let phys = page.phys();
    let preserved = KBox::pin_init(
        pin_init!(Preserved {
            array,
            folios,
            ser <- new_mutex!(page),
        }),
        GFP_KERNEL,
    )?;
    Ok((phys, preserved))
}

/// Fills the new memfd `file` with the folios of `array`, which the previous kernel wrote for
/// a file of `m.size` bytes. On error the folios already added stay in `file` (they are freed
/// with it) and the rest are freed here.
fn retrieve_folios(file: &File, m: &Memfd, array: &[u8]) -> Result {
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
    let mut next = 0;
    while next < count {
        let i = next;
        next += 1;
        let Some(e) = array.get(i * entry::SIZE..(i + 1) * entry::SIZE) else {
            result = Err(EINVAL);
            break;
        };
        let e = FolioEntry::decode(e);
        if e.pfn == 0 {
            continue;
        }
        let Some(folio) = RestoredFolio::restore(e.pfn) else {
            pr_err!("cannot restore the folio at pfn {:#x}\n", e.pfn);
            result = Err(EIO);
            break;
        };
        let n = folio.nr_pages();
        if e.index % n != 0 || e.index.checked_add(n).is_none_or(|end| end > pages) {
            pr_err!(
                "folio {} ({} pages) at page {} of a {}-page file\n",
                i,
                n,
                e.index,
                pages
            );
            result = Err(EINVAL);
            break;
        }
        if let Err(err) = folio.add_to(file, e.index, e.flags) {
            pr_err!("cannot add folio {} at page {}: {:?}\n", i, e.index, err);
            result = Err(err);
            break;
        }
        added += n;
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
        Ok(array) => {
            let count = m.folio_array_len().min(array.bytes().len() / entry::SIZE);
            mm::discard(array.bytes(), 0..count);
        }
        Err(_) => pr_warn!("cannot restore the folio array, folios kept\n"),
    }
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
        // Only the position may have changed since `preserve`.
        Memfd::write_pos(private.ser.lock().bytes_mut(), mm::pos(file));
        Ok(())
    }

    fn retrieve(&self, data: PhysAddr) -> Result<ARef<File>> {
        let page = RestoredPage::restore(data).inspect_err(|_| {
            pr_err!("no memfd data at {:#x} from the previous kernel\n", data);
        })?;
        let m = Memfd::decode(page.bytes()).inspect_err(|e| {
            pr_err!("malformed memfd data from the previous kernel: {:?}\n", e);
        })?;
        let file = mm::new_file(m.seals, m.pos, m.size).inspect_err(|e| {
            pr_err!("cannot create the memfd: {:?}\n", e);
            // `finish` skips a failed retrieve: return the memory now.
            discard_all(&m);
        })?;
        if m.nr_folios != 0 {
            let array = RestoredVmalloc::restore(&m.folios).inspect_err(|_| {
                pr_err!("cannot restore the folio array\n");
            })?;
            retrieve_folios(&file, &m, array.bytes())?;
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
