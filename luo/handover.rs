// SPDX-License-Identifier: GPL-2.0

//! The LUO root in the KHO handover data: what the previous kernel left, what this one leaves.
//!
//! Early boot restores and checks only the previous kernel's root (the C core also restores
//! the session chain there). Its FLB page is read when an FLB is first registered or at late
//! init, whichever comes first; its session chain is handed whole, not yet restored, to the
//! session registry, which restores and reads it at the first open of `/dev/liveupdate`.
//!
//! Unlike the C core, which panics on some malformed data and follows other data unchecked, a
//! malformed root or FLB page is refused here: the reason is logged, the memory it occupies
//! stays reserved (no data of the previous kernel reaches another user), and live update stays
//! disabled for this boot, which otherwise continues normally. A malformed session chain is
//! refused the same way at the first open (see `session::deserialize_once`).
//!
//! At late init this kernel's own root is created for the next live update.

use kernel::{
    kho::{
        self,
        PreservedPage,
        RestoredPage,
        Subtree, //
    },
    new_mutex,
    prelude::*,
    sync::{
        atomic::{
            AtomicFlag,
            Relaxed, //
        },
        Mutex,
        SetOnce, //
    }, //
};

use crate::{
    abi::{
        self,
        FlbRecord, //
    },
    chain::{
        keep,
        kept,
        InChain, //
    },
};

/// What the previous kernel handed over.
#[pin_data]
pub(crate) struct Incoming {
    /// Its live update number.
    liveupdate_num: u64,
    /// Its FLB page (0: none).
    flbs_pa: u64,
    /// Its FLBs once read, or `None` if it handed over no FLB page.
    flbs: SetOnce<Option<KVec<FlbRecord>>>,
    /// Held while the FLB page is read.
    #[pin]
    flbs_read: Mutex<()>,
    /// Its session chain, not restored yet, until the session registry takes it to read the
    /// entries.
    #[pin]
    sessions: Mutex<Option<InChain>>,
}

/// Set at early init if there was handover data from a previous kernel and its root was
/// valid.
static INCOMING: SetOnce<Pin<KBox<Incoming>>> = SetOnce::new();

/// Set if handover data was found but refused: at early init, or when the FLB page is read.
static REFUSED: AtomicFlag = AtomicFlag::new(false);

/// The previous kernel's state, if it handed any over.
fn incoming() -> Option<&'static Incoming> {
    INCOMING.as_ref().map(|i| &**i)
}

/// The previous kernel's live update number, or 0 after a cold boot.
pub(crate) fn incoming_liveupdate_num() -> u64 {
    incoming().map_or(0, |i| i.liveupdate_num)
}

/// Hands the previous kernel's session chain to the one caller that reads its entries.
pub(crate) fn take_incoming_sessions() -> Option<InChain> {
    incoming().and_then(|i| i.sessions.lock().take())
}

/// The previous kernel's FLBs, if it handed over a valid FLB page; the first call reads it.
///
/// A malformed page refuses the whole handover: its pages and the session chain are kept from
/// the allocator, and live update is not offered in this boot (see [`read_rest`]).
pub(crate) fn incoming_flbs() -> Option<&'static [FlbRecord]> {
    let i = incoming()?;
    if let Some(flbs) = i.flbs.as_ref() {
        return flbs.as_deref();
    }
    let _read = i.flbs_read.lock();
    if i.flbs.as_ref().is_none() && !refused() {
        match read_flbs(i.flbs_pa) {
            Ok(flbs) => {
                i.flbs.populate(flbs);
            }
            Err(e) => {
                if let Some(chain) = i.sessions.lock().take() {
                    chain.abandon();
                }
                refuse(e);
            }
        }
    }
    i.flbs.as_ref().and_then(|flbs| flbs.as_deref())
}

/// Reads what early boot left of the handover data, before `/dev/liveupdate` is offered.
///
/// # Errors
///
/// `EINVAL` if the handover data was refused, now or before.
pub(crate) fn read_rest() -> Result {
    incoming_flbs();
    if refused() {
        return Err(EINVAL);
    }
    Ok(())
}

fn refuse(e: Error) {
    REFUSED.store(true, Relaxed);
    pr_err!(
        "The incoming tree failed to initialize properly [{:?}], disabling live update\n",
        e
    );
    pr_err!(
        "luo-rs: {} page(s) of it kept from the allocator, the rest stays reserved; \
         this boot continues\n",
        kept()
    );
}

/// True if the previous kernel's handover data was found malformed and refused.
pub(crate) fn refused() -> bool {
    REFUSED.load(Relaxed)
}

/// Restores and checks the previous kernel's root.
pub(crate) fn early_init() {
    match read_incoming() {
        Ok(Some(incoming)) => {
            INCOMING.populate(incoming);
        }
        Ok(None) => {}
        Err(e) => refuse(e),
    }
}

fn read_incoming() -> Result<Option<Pin<KBox<Incoming>>>> {
    let Some((phys, len)) = kho::retrieve_subtree(abi::KHO_ENTRY_NAME).inspect_err(|e| {
        pr_err!("failed to retrieve LUO state 'LUO' from KHO: {:?}\n", e);
    })?
    else {
        return Ok(None);
    };
    let root_page = RestoredPage::restore(phys).inspect_err(|_| {
        pr_err!(
            "LUO state at {:#x} is not a page preserved by the previous kernel\n",
            phys
        );
    })?;
    let root = match abi::decode_root(root_page.bytes(), len) {
        Ok(root) => root,
        Err(m) => {
            pr_err!("{}\n", m);
            keep(root_page);
            return Err(m.into());
        }
    };
    // SAFETY: The function only prints the number.
    unsafe { kernel::bindings::luo_rs_log_incoming(root.liveupdate_num) };
    // The session chain is restored and checked at the first open, with its entries, as the
    // C core reads it there; until then its pages stay reserved.
    let chain = InChain::new(root.sessions_pa, abi::session::SIZE);
    let liveupdate_num = root.liveupdate_num;
    let flbs_pa = root.flbs_pa;
    // The root is read; its page goes back to the allocator.
    drop(root_page);
    KBox::pin_init(
        pin_init!(Incoming {
            liveupdate_num,
            flbs_pa,
            flbs: SetOnce::new(),
            flbs_read <- new_mutex!(()),
            sessions <- new_mutex!(Some(chain)),
        }),
        GFP_KERNEL,
    )
    .map(Some)
}

/// Reads the FLB page and copies its entries; the page is released once they are copied
/// (the C core never releases it) and kept from the allocator for good if it is malformed.
fn read_flbs(pa: u64) -> Result<Option<KVec<FlbRecord>>> {
    if pa == 0 {
        return Ok(None);
    }
    let page = RestoredPage::restore(pa).inspect_err(|_| {
        pr_err!(
            "FLB page {:#x} is not a page preserved by the previous kernel\n",
            pa
        );
    })?;
    if let Err(m) = abi::check_flbs(page.bytes()) {
        pr_err!("Malformed FLB page in the handover data: {}\n", m);
        keep(page);
        return Err(m.into());
    }
    let mut flbs = KVec::new();
    abi::decode_flbs(page.bytes(), &mut flbs)?;
    Ok(Some(flbs))
}

/// This kernel's root for the next live update, and the FLB page it points to.
pub(crate) struct Outgoing {
    root: Subtree,
    flbs: PreservedPage,
}

impl Outgoing {
    /// Creates the root with the next live update number and registers it with KHO.
    pub(crate) fn new() -> Result<Self> {
        let num = incoming_liveupdate_num() + 1;
        let mut flbs = PreservedPage::new()?;
        abi::put_u64(flbs.bytes_mut(), abi::flb::PGCNT, 1);
        abi::put_u64(flbs.bytes_mut(), abi::flb::COUNT, 0);
        let mut root = PreservedPage::new()?;
        abi::encode_root(root.bytes_mut(), num, flbs.phys());
        let root = Subtree::new(abi::KHO_ENTRY_NAME, root, abi::root::SIZE)?;
        Ok(Self { root, flbs })
    }

    /// Points the root at the session chain (0: no sessions).
    ///
    /// Called with the session registry frozen for the kexec.
    pub(crate) fn set_sessions(&mut self, head: u64) {
        abi::put_u64(self.root.bytes_mut(), abi::root::SESSIONS_PA, head);
    }

    /// The root, for the corruption tests.
    #[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
    pub(crate) fn root_mut(&mut self) -> &mut [u8; abi::BLOCK_SIZE] {
        self.root.bytes_mut()
    }

    /// The FLB page, to be written at the kexec.
    pub(crate) fn flbs_mut(&mut self) -> &mut [u8; abi::BLOCK_SIZE] {
        self.flbs.bytes_mut()
    }
}
