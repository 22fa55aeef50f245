// SPDX-License-Identifier: GPL-2.0

//! Chains of one-page blocks that carry fixed-size entries to the next kernel.
//!
//! Sessions, and the files of each session, are handed over as singly linked chains of
//! preserved pages, each holding a header and up to `per_block` entries (see [`crate::abi`]).
//! The outgoing side grows its chain whenever an entry is added, so the reboot path only fills
//! memory it already has and cannot fail for lack of it. The incoming side restores and checks
//! every block before anything in it is used.

use kernel::{
    alloc::kvec::PushError,
    kho::{
        PreservedPage,
        RestoredPage, //
    },
    prelude::*, //
};

use kernel::sync::atomic::{
    Atomic,
    Relaxed, //
};

use core::num::NonZeroUsize;

use crate::abi::{
    self,
    block,
    per_block,
    BLOCK_SIZE,
    MAX_BLOCKS, //
};

/// Pages of the previous kernel this boot keeps from the allocator for good.
static KEPT: Atomic<usize> = Atomic::new(0);

/// Keeps `page`, found unusable or not needed, from the allocator for the rest of this boot,
/// so that no data of the previous kernel reaches another user, and counts it.
pub(crate) fn keep(page: RestoredPage) {
    page.leak();
    KEPT.add(1, Relaxed);
}

/// Pages kept by [`keep`] so far.
pub(crate) fn kept() -> usize {
    KEPT.load(Relaxed)
}

/// An outgoing chain with room for a number of entries.
pub(crate) struct OutChain {
    entry_size: usize,
    blocks: KVec<PreservedPage>,
}

impl OutChain {
    /// An empty chain for entries of `entry_size` bytes.
    pub(crate) const fn new(entry_size: usize) -> Self {
        Self {
            entry_size,
            blocks: KVec::new(),
        }
    }

    fn per_block(&self) -> NonZeroUsize {
        per_block(self.entry_size)
    }

    /// Entries the chain has room for.
    fn capacity(&self) -> usize {
        self.blocks.len().saturating_mul(self.per_block().get())
    }

    /// Makes room for `count` entries.
    ///
    /// # Errors
    ///
    /// `ENOSPC` past [`MAX_BLOCKS`] blocks, `ENOMEM`, or a KHO error; the chain is unchanged then.
    pub(crate) fn grow(&mut self, count: usize) -> Result {
        let old = self.blocks.len();
        while count > self.capacity() {
            if let Err(e) = self.grow_one() {
                self.blocks.truncate(old);
                return Err(e);
            }
        }
        Ok(())
    }

    fn grow_one(&mut self) -> Result {
        if self.blocks.len() >= MAX_BLOCKS {
            return Err(ENOSPC);
        }
        self.blocks.reserve(1, GFP_KERNEL)?;
        self.blocks.push(PreservedPage::new()?, GFP_KERNEL)?;
        Ok(())
    }

    /// Number of blocks.
    #[cfg(any(CONFIG_LIVEUPDATE_RUST_KUNIT_TEST, CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST))]
    pub(crate) fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Physical address of block `i` (0 if there is none).
    #[cfg(any(CONFIG_LIVEUPDATE_RUST_KUNIT_TEST, CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST))]
    pub(crate) fn phys(&self, i: usize) -> u64 {
        self.blocks.get(i).map_or(0, |p| p.phys())
    }

    /// Contents of block `i`, for the corruption tests.
    #[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
    pub(crate) fn block_mut(&mut self, i: usize) -> Option<&mut [u8; abi::BLOCK_SIZE]> {
        self.blocks.get_mut(i).map(|p| p.bytes_mut())
    }

    /// Contents of block `i`.
    #[cfg(CONFIG_LIVEUPDATE_RUST_KUNIT_TEST)]
    pub(crate) fn page(&self, i: usize) -> &[u8; abi::BLOCK_SIZE] {
        static EMPTY: [u8; abi::BLOCK_SIZE] = [0; abi::BLOCK_SIZE];
        self.blocks.get(i).map_or(&EMPTY, |p| p.bytes())
    }

    /// Releases the blocks that `count` entries do not need.
    pub(crate) fn shrink(&mut self, count: usize) {
        let per = self.per_block();
        let needed = count / per + usize::from(count % per != 0);
        self.blocks.truncate(needed);
    }

    /// Entry `index`, counted over the whole chain; `None` beyond the chain's room.
    pub(crate) fn entry_mut(&mut self, index: usize) -> Option<&mut [u8]> {
        let per = self.per_block().get();
        let size = self.entry_size;
        let page = self.blocks.get_mut(index / per)?;
        Some(abi::entry_mut(page.bytes_mut(), size, index % per))
    }

    /// Writes `count` entries, each filled in by `fill(index, entry)` in increasing index
    /// order, and seals the chain (see [`OutChain::seal`]).
    ///
    /// # Errors
    ///
    /// `ENOSPC` if the chain has less room than `count` entries.
    pub(crate) fn write(
        &mut self,
        count: usize,
        mut fill: impl FnMut(usize, &mut [u8]),
    ) -> Result<u64> {
        if count > self.capacity() {
            return Err(ENOSPC);
        }
        for i in 0..count {
            if let Some(e) = self.entry_mut(i) {
                fill(i, e);
            }
        }
        self.seal(count)
    }

    /// Makes the chain hand over its first `count` entries, written in place beforehand:
    /// links the blocks, sets their entry counts and returns the physical address of the
    /// first block (0 for no entries).
    ///
    /// The chain must have room (see [`OutChain::grow`]); blocks beyond what `count` needs are
    /// released first, because the C reader rejects a block without entries. What follows the
    /// last entry is cleared, so no entry dropped since (a closed session's name) reaches the
    /// next kernel.
    ///
    /// # Errors
    ///
    /// `ENOSPC` if the chain has less room than `count` entries.
    pub(crate) fn seal(&mut self, count: usize) -> Result<u64> {
        let per = self.per_block().get();
        if count > self.capacity() {
            return Err(ENOSPC);
        }
        self.shrink(count);
        let head = self.blocks.first().map_or(0, |p| p.phys());
        let mut first = 0usize;
        for b in 0..self.blocks.len() {
            let next = self.blocks.get(b + 1).map_or(0, |p| p.phys());
            let Some(page) = self.blocks.get_mut(b) else {
                break;
            };
            let n = count.saturating_sub(first).min(per);
            let bytes = page.bytes_mut();
            let used = block::HEADER.saturating_add(n.saturating_mul(self.entry_size));
            if let Some(rest) = bytes.get_mut(used..) {
                rest.fill(0);
            }
            abi::put_u64(bytes, block::NEXT, next);
            abi::put_u64(bytes, block::COUNT, n as u64);
            first = first.saturating_add(per);
        }
        Ok(head)
    }
}

/// A chain received from the previous kernel: its pages, each with its number of entries.
///
/// A chain is restored block by block and may be left part-way for lack of memory: KHO hands
/// each page over once, so the blocks restored so far stay with the chain and a later
/// [`InChain::restore_rest`] goes on from the first block not restored.
pub(crate) struct InChain {
    head: u64,
    entry_size: usize,
    /// In a `KVVec`: a chain may have up to [`MAX_BLOCKS`] blocks.
    blocks: KVVec<(RestoredPage, usize)>,
    /// The next block to restore; 0 once the chain is whole.
    next: u64,
}

impl InChain {
    /// The chain that starts at `head` (0: an empty chain), none of it restored yet.
    pub(crate) fn new(head: u64, entry_size: usize) -> Self {
        Self {
            head,
            entry_size,
            blocks: KVVec::new(),
            next: head,
        }
    }

    /// Restores and checks the blocks not restored yet.
    ///
    /// Every block must be a page the previous kernel preserved, hold at most `per_block`
    /// entries, and appear once; the chain has at most [`MAX_BLOCKS`] blocks. A block without
    /// entries carries nothing and is skipped (see [`abi::decode_block`]).
    ///
    /// # Errors
    ///
    /// `EINVAL` for a malformed chain: the caller keeps its blocks ([`InChain::keep_all`]).
    /// `ENOMEM` before a block is restored: the chain holds the blocks restored so far, and
    /// calling again goes on from there.
    pub(crate) fn restore_rest(&mut self) -> Result {
        while self.next != 0 {
            self.next = self.restore_one(self.next)?;
        }
        let empty = self.blocks.iter().filter(|(_, n)| *n == 0).count();
        if empty != 0 {
            pr_info!(
                "Chain at {:#x}: {} block(s) without entries skipped\n",
                self.head,
                empty
            );
        }
        Ok(())
    }

    /// Restores the block at `pa` and returns the address of the next one. Memory is
    /// allocated before the page is taken from KHO, so `ENOMEM` leaves the chain as it was.
    fn restore_one(&mut self, pa: u64) -> Result<u64> {
        if self.blocks.len() >= MAX_BLOCKS {
            pr_err!("Block set is corrupted: more than {} blocks\n", MAX_BLOCKS);
            return Err(EINVAL);
        }
        self.blocks.reserve(1, GFP_KERNEL)?;
        // KHO hands a page over once, so a block met again (a cycle) is no longer preserved
        // and its restore fails: the chain cannot be followed forever, and no address needs
        // to be remembered on the way. Only the error tells which of the two it was.
        let page = RestoredPage::restore(pa).inspect_err(|_| {
            if self.blocks.iter().any(|(p, _)| p.phys() == pa) {
                pr_err!("Block set is corrupted: block {:#x} appears twice\n", pa);
            } else {
                pr_err!(
                    "Block {:#x} is not a page preserved by the previous kernel\n",
                    pa
                );
            }
        })?;
        let (next, count) = match abi::decode_block(page.bytes(), self.entry_size) {
            Ok(v) => v,
            Err(m) => {
                pr_warn!("{}\n", m);
                keep(page);
                return Err(m.into());
            }
        };
        if let Err(PushError((page, _))) = self.blocks.push_within_capacity((page, count)) {
            // Cannot happen: room was reserved above.
            keep(page);
            return Err(EINVAL);
        }
        Ok(next)
    }

    /// Keeps every block restored so far from the allocator for good (data found to be
    /// unusable), leaving the chain empty.
    pub(crate) fn keep_all(&mut self) {
        while let Some((page, _)) = self.blocks.pop() {
            keep(page);
        }
        self.next = 0;
    }

    /// Visits every entry in order.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8]) -> Result) -> Result {
        for (page, count) in self.blocks.iter() {
            for i in 0..*count {
                f(abi::entry(page.bytes(), self.entry_size, i))?;
            }
        }
        Ok(())
    }

    /// Number of entries in the chain.
    pub(crate) fn len(&self) -> usize {
        self.blocks
            .iter()
            .fold(0, |sum, (_, n)| sum.saturating_add(*n))
    }

    /// Keeps the chain's pages from the allocator for good (data found to be unusable).
    pub(crate) fn abandon(mut self) {
        self.keep_all();
    }
}

// Entries must fit a block for the chain arithmetic above.
const _: () = assert!(BLOCK_SIZE > block::HEADER);
