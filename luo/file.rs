// SPDX-License-Identifier: GPL-2.0

//! The files of a session, from preservation to the next kernel's finish.
//!
//! Each preserved file is owned by the handler that accepted it; the core only keeps the
//! handler's serialized data, the user's token and a reference to the file, and calls the
//! handler at each step of the lifecycle in the order the C core uses: preserve, then either
//! unpreserve (the session was closed) or freeze at the kexec (undone by unfreeze if the kexec
//! is called off); in the next kernel retrieve, on demand, and finish.
//!
//! A file may be preserved in one session only: the registry of preserved files, keyed by the
//! handler's id for the file (memfd: the inode), refuses a second preservation with `EBUSY`
//! until the first is undone or, for a retrieved file, finished.

use kernel::{
    alloc::KVVec,
    fs::{
        File,
        LocalFile, //
    },
    new_mutex,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::{
        aref::ARef,
        Arc,
        Mutex,
        SetOnce, //
    }, //
};

use crate::{
    abi::{
        self,
        Malformed, //
    },
    chain::{
        InChain,
        OutChain, //
    },
    flb::Flb,
    handler::{
        self,
        Handler,
        ModuleRef,
        Private, //
    },
    tokens::Tokens, //
};

/// Ids of the files preserved (or retrieved and not yet finished) in any session.
static PRESERVED: SetOnce<Pin<KBox<PreservedIds>>> = SetOnce::new();

/// The ids of preserved files, as a set.
type PreservedIds = Mutex<RBTree<usize, ()>>;

/// Creates the registry of preserved files; called once at early init.
pub(crate) fn init() -> Result {
    let ids = KBox::pin_init(new_mutex!(RBTree::new()), GFP_KERNEL)?;
    if !PRESERVED.populate(ids) {
        return Err(EBUSY);
    }
    Ok(())
}

/// Records `id` as preserved.
///
/// # Errors
///
/// `EBUSY` if it already is; `ENOMEM`.
fn claim(id: usize) -> Result {
    claim_in(id, RBTreeNodeReservation::new(GFP_KERNEL)?)
}

/// Records `id` as preserved in `room`, made beforehand.
///
/// # Errors
///
/// `EBUSY` if it already is.
fn claim_in(id: usize, room: RBTreeNodeReservation<usize, ()>) -> Result {
    let ids = PRESERVED.as_ref().ok_or(EOPNOTSUPP)?;
    let mut ids = ids.lock();
    if ids.get(&id).is_some() {
        return Err(EBUSY);
    }
    ids.insert(room.into_node(id, ()));
    Ok(())
}

/// Forgets `id`.
fn release(id: usize) {
    if let Some(ids) = PRESERVED.as_ref() {
        ids.lock().remove(&id);
    }
}

/// One file of a session.
struct LuoFile {
    handler: Handler,
    token: u64,
    /// The handler's serialized data (`serialized_data`).
    data: u64,
    /// The handler's cookie; outgoing files only.
    private: Private,
    /// The file: always for an outgoing file, once retrieved for an incoming one.
    file: Option<ARef<File>>,
    /// The file's key in the registry of preserved files, while it holds one.
    id: Option<usize>,
    /// Incoming files: 0 before any retrieve, 1 once retrieved, or the cached error.
    status: i32,
    /// Outgoing files: the FLBs preserved for this file, in registration order.
    flbs: KVec<Arc<Flb>>,
    /// Keeps the handler's module loaded while the core holds this file.
    module: ModuleRef,
}

impl LuoFile {
    /// Releases what the core holds for the file, in the C core's order: registry id, module
    /// reference, then the file reference.
    fn release(self) {
        if let Some(id) = self.id {
            release(id);
        }
        drop(self.module);
        drop(self.file);
    }
}

/// A session's files.
pub(crate) struct FileSet {
    /// In a `KVVec`: a session may hold hundreds of thousands of files, more than one
    /// kmalloc'd array can (C's limit comes from the handover format, not from memory).
    files: KVVec<LuoFile>,
    /// Each file's token and its index in `files`: with hundreds of thousands of files, a
    /// linear search at each preserve and retrieve would grow with the square of their number
    /// (the C core searches its list).
    tokens: Tokens,
    /// Outgoing sets: room for every file in the handover data, grown on preserve.
    chain: OutChain,
}

impl FileSet {
    /// An empty set.
    pub(crate) fn new() -> Self {
        Self {
            files: KVVec::new(),
            tokens: Tokens::new(),
            chain: OutChain::new(abi::file::SIZE),
        }
    }

    /// The file preserved under `token`.
    fn find_mut(&mut self, token: u64) -> Option<&mut LuoFile> {
        let i = self.tokens.get(token)?;
        self.files.get_mut(i)
    }

    /// Forgets every file's token (the files are gone).
    fn forget_tokens(&mut self) {
        self.tokens.clear();
    }

    /// Number of files.
    #[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
    pub(crate) fn count(&self) -> usize {
        self.files.len()
    }

    /// The outgoing chain, for the corruption tests.
    #[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
    pub(crate) fn chain_mut(&mut self) -> &mut OutChain {
        &mut self.chain
    }

    /// `PRESERVE_FD`: preserves the file behind `fd` under `token`.
    ///
    /// # Errors
    ///
    /// In the C core's order: `EEXIST` if the token is used in this session; `ENOMEM` or
    /// `ENOSPC` growing the handover data; `EBADF`; `ENOENT` if no handler accepts the file;
    /// `EBUSY` if it is preserved already; an FLB's or the handler's error. Nothing is kept
    /// on error.
    pub(crate) fn preserve(&mut self, token: u64, fd: u32) -> Result {
        if self.tokens.get(token).is_some() {
            return Err(EEXIST);
        }
        let count = self.files.len();
        self.chain.grow(count + 1)?;
        let result = self.preserve_grown(token, fd);
        if result.is_err() {
            self.chain.shrink(count);
        }
        result
    }

    fn preserve_grown(&mut self, token: u64, fd: u32) -> Result {
        self.files.reserve(1, GFP_KERNEL)?;
        let node = RBTreeNodeReservation::new(GFP_KERNEL)?;
        let file = LocalFile::fget(fd)?;
        // SAFETY: The ioctl path holds no `fdget_pos()` region, and the reference kept here is
        // only used for the handler's operations, never for file position updates.
        let file = unsafe { LocalFile::assume_no_fdget_pos(file) };
        let (handler, module, id, flbs) = {
            let registry = handler::registry()?.read();
            let entry = registry
                .handlers
                .iter()
                .find(|e| e.handler.can_preserve(&file))
                .ok_or(ENOENT)?;
            let module = entry.handler.get_module().ok_or(ENOENT)?;
            let id = entry.handler.id(&file);
            claim(id)?;
            match preserve_flbs(&entry.flbs) {
                Ok(flbs) => (entry.handler, module, id, flbs),
                Err(e) => {
                    release(id);
                    return Err(e);
                }
            }
        };
        let (data, private) = match handler.preserve(&file) {
            Ok(v) => v,
            Err(e) => {
                unpreserve_flbs(&flbs);
                release(id);
                return Err(e);
            }
        };
        let luo_file = LuoFile {
            handler,
            token,
            data,
            private,
            file: Some(file),
            id: Some(id),
            status: 0,
            flbs,
            module,
        };
        let index = self.files.len();
        if let Err(e) = self.files.push_within_capacity(luo_file) {
            // Cannot happen: room was reserved above.
            let f = e.0;
            if let Some(file) = f.file.as_deref() {
                f.handler.unpreserve(file, f.data, f.private);
            }
            unpreserve_flbs(&f.flbs);
            f.release();
            return Err(ENOMEM);
        }
        self.tokens.insert(node, token, index);
        Ok(())
    }

    /// Undoes the preservation of every file, last first (the session was closed before a
    /// kexec).
    pub(crate) fn unpreserve_all(&mut self) {
        while let Some(f) = self.files.pop() {
            if let Some(file) = f.file.as_deref() {
                f.handler.unpreserve(file, f.data, f.private);
            }
            unpreserve_flbs(&f.flbs);
            self.chain.shrink(self.files.len());
            f.release();
        }
        self.forget_tokens();
    }

    /// Freezes every file, first to last, and writes the set into its handover blocks.
    ///
    /// Returns the first block's physical address and the number of files (`(0, 0)` for an
    /// empty set).
    ///
    /// # Errors
    ///
    /// The error of the first file that refused to freeze; the files before it are unfrozen,
    /// so the set is as it was.
    pub(crate) fn freeze(&mut self) -> Result<(u64, u64)> {
        if self.files.is_empty() {
            return Ok((0, 0));
        }
        for i in 0..self.files.len() {
            let Some(f) = self.files.get_mut(i) else {
                break;
            };
            let Some(file) = f.file.as_deref() else {
                continue;
            };
            if let Err(e) = f.handler.freeze(file, &mut f.data, f.private) {
                pr_warn!(
                    "Freeze failed for token[{:#x}] handler[{}] err[{:?}]\n",
                    f.token,
                    f.handler.name(),
                    e
                );
                self.unfreeze_first(i);
                return Err(e);
            }
        }
        let files = &self.files;
        match self.chain.write(files.len(), |i, e| {
            if let Some(f) = files.get(i) {
                abi::encode_file(e, f.handler.compatible(), f.data, f.token);
            }
        }) {
            Ok(head) => Ok((head, files.len() as u64)),
            Err(e) => {
                self.unfreeze();
                Err(e)
            }
        }
    }

    /// Unfreezes every file (the kexec was called off after this set was frozen).
    pub(crate) fn unfreeze(&mut self) {
        self.unfreeze_first(self.files.len());
    }

    fn unfreeze_first(&mut self, n: usize) {
        for f in self.files.iter().take(n) {
            if let Some(file) = f.file.as_deref() {
                f.handler.unfreeze(file, f.data, f.private);
            }
        }
    }

    /// `RETRIEVE_FD`: the file with `token`, rebuilt by its handler on first use.
    ///
    /// Every call for the same token returns the same open file; a failed retrieve is not
    /// tried again, its error is returned instead.
    ///
    /// # Errors
    ///
    /// `ENOENT` for an unknown token, or the handler's error.
    pub(crate) fn retrieve(&mut self, token: u64) -> Result<ARef<File>> {
        let f = self.find_mut(token).ok_or(ENOENT)?;
        if f.status < 0 {
            return Err(Error::from_errno(f.status));
        }
        if let Some(file) = &f.file {
            return Ok(file.clone());
        }
        // The room to record the file as preserved comes first: out of memory, the handler is
        // not asked, no error is kept, and the call can be made again. (Without it, a retrieved
        // file could go unrecorded and then into an outgoing session; the C core warns there.)
        let room = RBTreeNodeReservation::new(GFP_KERNEL)?;
        let file = match f.handler.retrieve(f.data) {
            Ok(file) => file,
            Err(e) => {
                f.status = e.to_errno();
                return Err(e);
            }
        };
        let id = f.handler.id(&file);
        match claim_in(id, room) {
            Ok(()) => f.id = Some(id),
            Err(e) => pr_warn!(
                "Retrieved file of token {:#x} is preserved elsewhere: {:?}\n",
                token,
                e
            ),
        }
        f.status = 1;
        f.file = Some(file.clone());
        Ok(file)
    }

    /// `FINISH`: hands every file back to its handler for good, last first, once every
    /// handler agrees; files never retrieved are discarded by their handler.
    ///
    /// # Errors
    ///
    /// `EBUSY` if a handler's `can_finish` refused; nothing is changed then.
    pub(crate) fn finish(&mut self) -> Result {
        let ready = self
            .files
            .iter()
            .all(|f| f.handler.can_finish(f.file.as_deref(), f.data, f.status));
        if !ready {
            return Err(EBUSY);
        }
        while let Some(f) = self.files.pop() {
            f.handler.finish(f.file.as_deref(), f.data, f.status);
            if let Ok(registry) = handler::registry() {
                let registry = registry.read();
                for flb in registry.flbs_of(&f.handler).iter().rev() {
                    flb.file_finished();
                }
            }
            f.release();
        }
        self.forget_tokens();
        Ok(())
    }

    /// Builds the set of incoming files of a session from its restored handover blocks; the
    /// blocks are only read, so a failed attempt can be made again.
    ///
    /// # Errors
    ///
    /// `EINVAL` for malformed entries, `ENOENT` if no registered handler has an entry's
    /// compatible string, `ENOMEM`.
    pub(crate) fn deserialize(chain: &InChain, count: u64) -> Result<Self> {
        let mut set = Self::new();
        set.read_chain(chain, count)?;
        Ok(set)
    }

    fn read_chain(&mut self, chain: &InChain, count: u64) -> Result {
        let found = chain.len();
        if found as u64 != count {
            let m = Malformed::FileCount {
                expected: count,
                found,
            };
            pr_warn!("{}\n", m);
            return Err(m.into());
        }
        self.tokens = check_entries(chain, found)?;
        self.files.reserve(found, GFP_KERNEL)?;
        let files = &mut self.files;
        let registry = handler::registry()?.read();
        chain.for_each(|e| {
            let record = abi::decode_file(e)?;
            let name = record.compatible.as_bytes();
            let (handler, module) = registry
                .find(name)
                .and_then(|e| Some((e.handler, e.handler.get_module()?)))
                .ok_or_else(|| {
                    pr_warn!(
                        "No registered handler for compatible '{}'\n",
                        kernel::str::BStr::from_bytes(name)
                    );
                    ENOENT
                })?;
            files.push(
                LuoFile {
                    handler,
                    token: record.token,
                    data: record.data,
                    private: Private::none(),
                    file: None,
                    id: None,
                    status: 0,
                    flbs: KVec::new(),
                    module,
                },
                GFP_KERNEL,
            )?;
            Ok(())
        })
    }
}

/// Checks every file entry of a chain of `count` entries, and that no token appears twice;
/// returns the tokens, each with its entry's position in the chain.
///
/// Sorting the tokens keeps this O(n log n): a session may carry hundreds of thousands of
/// files, and comparing each with all before it grows with the square of their number.
fn check_entries(chain: &InChain, count: usize) -> Result<Tokens> {
    let mut tokens = KVVec::with_capacity(count, GFP_KERNEL)?;
    chain.for_each(|e| {
        let record = abi::decode_file(e).inspect_err(|m| {
            pr_warn!("Malformed file entry in the handover data: {}\n", m);
        })?;
        tokens.push(Tokens::entry(record.token, tokens.len()), GFP_KERNEL)?;
        Ok(())
    })?;
    Tokens::received(tokens).map_err(|token| {
        let m = Malformed::DuplicateToken(token);
        pr_warn!("{}\n", m);
        m.into()
    })
}

/// Preserves, for a new file, every FLB its handler depends on, in order.
///
/// On error the FLBs preserved so far are unpreserved again.
fn preserve_flbs(flbs: &[Arc<Flb>]) -> Result<KVec<Arc<Flb>>> {
    let mut done = KVec::with_capacity(flbs.len(), GFP_KERNEL)?;
    for flb in flbs {
        if let Err(e) = flb.file_preserved() {
            unpreserve_flbs(&done);
            return Err(e);
        }
        if done.push_within_capacity(flb.clone()).is_err() {
            // Cannot happen: room for every FLB was reserved above.
            flb.file_unpreserved();
            unpreserve_flbs(&done);
            return Err(ENOMEM);
        }
    }
    Ok(done)
}

/// Undoes [`preserve_flbs`], last FLB first.
fn unpreserve_flbs(flbs: &[Arc<Flb>]) {
    for flb in flbs.iter().rev() {
        flb.file_unpreserved();
    }
}

impl Drop for FileSet {
    fn drop(&mut self) {
        // Files are only dropped here on the error paths of deserialization, before any was
        // retrieved: what they hold is their module reference.
        while let Some(f) = self.files.pop() {
            f.release();
        }
    }
}
