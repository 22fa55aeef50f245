// SPDX-License-Identifier: GPL-2.0

//! Where each file of a session is, by its token.
//!
//! Userspace names a session's files by token, and a session may hold hundreds of thousands of
//! files, so finding one must not walk them all (the C core walks its list, which makes
//! preserving or retrieving n files cost O(n²)). Files preserved one at a time are kept in a
//! tree. The files of an incoming session arrive all at once, when the handover is read: a
//! sorted array of their tokens costs one allocation where a tree costs one per file, once
//! when the session is first opened and again when it is finished.

use kernel::{
    alloc::KVVec,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
};

/// Token to index in the session's file array.
///
/// # Invariants
///
/// `received` is sorted, and no token is in it twice or in both parts.
pub(crate) struct Tokens {
    /// The tokens of an incoming session, as received: each entry is a token in the upper 64
    /// bits and its file's index in the lower, so that sorting plain integers sorts by token.
    received: KVVec<u128>,
    /// Tokens added one at a time (checked to be new by the caller).
    added: RBTree<u64, usize>,
}

impl Tokens {
    /// No tokens.
    pub(crate) fn new() -> Self {
        // INVARIANT: Both parts are empty.
        Self {
            received: KVVec::new(),
            added: RBTree::new(),
        }
    }

    /// An entry of [`Tokens::received`]: the file at `index` has `token`.
    pub(crate) fn entry(token: u64, index: usize) -> u128 {
        (u128::from(token) << 64) | index as u128
    }

    fn token_of(entry: u128) -> u64 {
        (entry >> 64) as u64
    }

    /// The tokens of an incoming session: `entries` holds each file's [`Tokens::entry`].
    ///
    /// # Errors
    ///
    /// A token that appears twice.
    pub(crate) fn received(mut entries: KVVec<u128>) -> core::result::Result<Self, u64> {
        heapsort(&mut entries);
        let duplicate = entries.windows(2).find_map(|w| match w {
            [a, b] if Self::token_of(*a) == Self::token_of(*b) => Some(Self::token_of(*a)),
            _ => None,
        });
        if let Some(token) = duplicate {
            return Err(token);
        }
        // INVARIANT: Sorted, each token once, nothing added.
        Ok(Self {
            received: entries,
            added: RBTree::new(),
        })
    }

    /// The index of the file with `token`.
    pub(crate) fn get(&self, token: u64) -> Option<usize> {
        let received = self
            .received
            .binary_search_by_key(&token, |&e| Self::token_of(e))
            .ok()
            .and_then(|i| self.received.get(i))
            .map(|&e| e as u64 as usize);
        received.or_else(|| self.added.get(&token).copied())
    }

    /// Adds `token`, which [`Tokens::get`] does not know, for the file at `index`, in the
    /// room `node` reserved.
    pub(crate) fn insert(
        &mut self,
        node: RBTreeNodeReservation<u64, usize>,
        token: u64,
        index: usize,
    ) {
        // INVARIANT: The caller checked that the token is new.
        self.added.insert(node.into_node(token, index));
    }

    /// Forgets every token (the files are gone).
    pub(crate) fn clear(&mut self) {
        *self = Self::new();
    }
}

/// Sorts `v` in place, in O(n log n) without allocating.
///
/// Not `sort_unstable()`: for `u128` it brings in core's small-sort network, whose check for
/// an inconsistent order ends in a panic call that objtool does not know as final, and the
/// build warns that the function falls through.
fn heapsort(v: &mut [u128]) {
    for root in (0..v.len() / 2).rev() {
        sift_down(v, root);
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        if let Some(heap) = v.get_mut(..end) {
            sift_down(heap, 0);
        }
    }
}

/// Moves `heap[root]` down until no child is larger.
fn sift_down(heap: &mut [u128], mut root: usize) {
    loop {
        let left = 2 * root + 1;
        let mut child = left;
        match (heap.get(left), heap.get(left + 1)) {
            (None, _) => return,
            (Some(l), Some(r)) if l < r => child = left + 1,
            _ => {}
        }
        match (heap.get(root), heap.get(child)) {
            (Some(parent), Some(larger)) if parent < larger => heap.swap(root, child),
            _ => return,
        }
        root = child;
    }
}
