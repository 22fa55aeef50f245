// SPDX-License-Identifier: GPL-2.0

//! Sessions: named groups of preserved files, each owned by a userspace file descriptor.
//!
//! A session lives exactly as long as its file: closing the last descriptor of an outgoing
//! session (one created in this kernel) drops everything it preserved, and closing an incoming
//! session (one handed over by the previous kernel and retrieved here) finishes it. This ties
//! every piece of preserved state to a process that can be seen and killed, so nothing is
//! preserved by accident. A userspace agent keeps the descriptors open across the kexec.
//!
//! Outgoing and incoming sessions are kept apart: names are unique within each list, and an
//! outgoing session may reuse the name of an incoming one.
//!
//! Locking, outermost first: the serialization semaphore (readers: every session operation; the
//! writer: the reboot path, which then keeps it for good), the list semaphores, a session's own
//! mutex.

use kernel::{
    fs::{
        anon_inode::{
            self,
            AnonInodeFile,
            AnonInodeFops, //
        },
        file::{
            flags::{
                O_CLOEXEC,
                O_RDWR, //
            },
            FileDescriptorReservation, //
        },
        File,
    },
    ioctl::_IOC_NR,
    new_mutex,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            AtomicFlag,
            Relaxed, //
        },
        rwsem::{
            new_rwsem,
            RwSemaphore, //
        },
        Arc,
        ArcBorrow,
        Mutex,
        SetOnce, //
    },
    uaccess::{
        versioned::{
            self,
            Versioned, //
        },
        UserPtr,
    }, //
};

use crate::{
    abi,
    chain::{
        self,
        InChain,
        OutChain, //
    },
    file::FileSet,
    flb,
    handler,
    handover::{
        self,
        Outgoing, //
    },
    uapi::{
        self,
        FdArg,
        FinishArg,
        GetNameArg,
        SessionArg,
        SESSION_NAME_LENGTH, //
    }, //
};

/// A session name: 1 to 63 bytes, stored NUL-padded like the uAPI and handover formats.
///
/// Names order by their bytes; sessions are looked up by name in a tree.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Name([u8; SESSION_NAME_LENGTH]);

impl Name {
    /// Validates a name passed to `CREATE_SESSION`.
    ///
    /// # Errors
    ///
    /// `EINVAL` if the name is empty or has no NUL within its 64 bytes.
    pub(crate) fn new(raw: &[u8; SESSION_NAME_LENGTH]) -> Result<Self> {
        let len = raw.iter().position(|&b| b == 0).ok_or(EINVAL)?;
        if len == 0 {
            return Err(EINVAL);
        }
        let mut name = [0u8; SESSION_NAME_LENGTH];
        name[..len].copy_from_slice(&raw[..len]);
        Ok(Self(name))
    }

    /// The name's bytes, without the NUL.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        let len = self
            .0
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(SESSION_NAME_LENGTH);
        &self.0[..len]
    }

    /// The name a lookup of `raw` means, read up to its first NUL as C's
    /// `strncmp(.., 64)` reads it; `None` if no session can have that name (no NUL within 64
    /// bytes, or an empty name).
    pub(crate) fn lookup(raw: &[u8; SESSION_NAME_LENGTH]) -> Option<Self> {
        Self::new(raw).ok()
    }

    /// The name, NUL-padded to 64 bytes.
    pub(crate) fn raw(&self) -> &[u8; SESSION_NAME_LENGTH] {
        &self.0
    }
}

/// What may change in a session after it was created.
struct SessionState {
    /// An incoming session that userspace has retrieved; only such a session can be finished.
    retrieved: bool,
    files: FileSet,
}

/// One session.
#[pin_data]
pub(crate) struct Session {
    name: Name,
    /// True for a session handed over by the previous kernel.
    incoming: bool,
    /// Outgoing sessions: the index of this session's entry in the handover chain. Changed
    /// only with the outgoing list held for writing.
    chain_index: Atomic<usize>,
    /// Outgoing sessions: set once a file was preserved in this session. Files leave an
    /// outgoing session only with the session itself, so the reboot path freezes exactly the
    /// sessions that have it, without taking the mutex of every other one.
    has_files: AtomicFlag,
    #[pin]
    state: Mutex<SessionState>,
}

impl Session {
    fn new(name: Name, incoming: bool, files: FileSet) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                name,
                incoming,
                chain_index: Atomic::new(0),
                has_files: AtomicFlag::new(false),
                state <- new_mutex!(SessionState {
                    retrieved: false,
                    files,
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// Creates the file that owns this session, named `[luo_session] <name>` like the C core.
    fn open_file(self: &Arc<Self>) -> Result<ARef<File>> {
        const PREFIX: &[u8] = b"[luo_session] ";
        let mut buf = [0u8; PREFIX.len() + SESSION_NAME_LENGTH];
        let name = self.name.as_bytes();
        let (prefix, rest) = buf.split_at_mut(PREFIX.len());
        prefix.copy_from_slice(PREFIX);
        // A name holds no NUL and at most 63 bytes, so the buffer ends in a NUL.
        for (dst, src) in rest.iter_mut().zip(name) {
            *dst = *src;
        }
        let name = CStr::from_bytes_until_nul(&buf).map_err(|_| EINVAL)?;
        anon_inode::create::<SessionFile>(name, self.clone(), O_RDWR)
    }
}

/// The sessions of one direction (outgoing or incoming), by name.
///
/// A tree keeps every lookup, insertion and removal logarithmic: the C core walks a list for
/// each, so creating or receiving n sessions costs it O(n²).
///
/// Outgoing sessions also have their entry in the handover chain from the moment they are
/// created: [`SessionList::add`] writes it, and closing a session moves the last entry into
/// its place. The reboot path then writes only the sessions that have files, and its cost
/// does not grow with the sessions that have none.
struct SessionList {
    sessions: RBTree<Name, Arc<Session>>,
    count: usize,
    /// Outgoing only: every session's entry in the handover data, grown on create.
    chain: OutChain,
    /// Outgoing only: the sessions in the order of their entries in `chain`.
    slots: KVVec<Arc<Session>>,
}

impl SessionList {
    fn find(&self, raw: &[u8; SESSION_NAME_LENGTH]) -> Option<&Arc<Session>> {
        self.sessions.get(&Name::lookup(raw)?)
    }

    fn contains(&self, name: &Name) -> bool {
        self.sessions.get(name).is_some()
    }

    /// Adds `session`, whose name the list does not hold, in the node reserved for it.
    fn insert(&mut self, session: Arc<Session>, node: RBTreeNodeReservation<Name, Arc<Session>>) {
        self.sessions.insert(node.into_node(session.name, session));
        self.count += 1;
    }

    /// Adds the outgoing `session`, whose name the list does not hold, and writes its entry
    /// into the handover chain.
    ///
    /// # Errors
    ///
    /// `ENOMEM`, or the chain's error when it cannot grow; the list is unchanged then.
    fn add(
        &mut self,
        session: Arc<Session>,
        node: RBTreeNodeReservation<Name, Arc<Session>>,
    ) -> Result {
        let slot = self.slots.len();
        self.slots.reserve(1, GFP_KERNEL)?;
        self.chain.grow(slot + 1)?;
        write_entry_without_files(&mut self.chain, slot, session.name.raw());
        session.chain_index.store(slot, Relaxed);
        self.slots
            .push_within_capacity(session.clone())
            .map_err(|_| ENOMEM)?;
        self.insert(session, node);
        Ok(())
    }

    fn remove(&mut self, session: &Session) {
        let ours = self
            .sessions
            .get(&session.name)
            .is_some_and(|s| core::ptr::eq(&**s, session));
        if !ours {
            return;
        }
        self.sessions.remove(&session.name);
        self.count -= 1;
        if !session.incoming {
            self.free_slot(session.chain_index.load(Relaxed));
        }
    }

    /// Moves the last outgoing session into `slot`, entry and all.
    fn free_slot(&mut self, slot: usize) {
        let last = self.slots.len().saturating_sub(1);
        if slot < last {
            self.slots.as_mut_slice().swap(slot, last);
        }
        drop(self.slots.pop());
        if let Some(moved) = self.slots.get(slot) {
            moved.chain_index.store(slot, Relaxed);
            write_entry_without_files(&mut self.chain, slot, moved.name.raw());
        }
        self.chain.shrink(self.slots.len());
    }

    fn new() -> Self {
        Self {
            sessions: RBTree::new(),
            count: 0,
            chain: OutChain::new(abi::session::SIZE),
            slots: KVVec::new(),
        }
    }
}

/// All sessions, and the lock that the reboot path takes to freeze them.
#[pin_data]
pub(crate) struct Registry {
    /// Held for reading by every session operation, for writing by the reboot path.
    #[pin]
    serialize: RwSemaphore<()>,
    #[pin]
    outgoing: RwSemaphore<SessionList>,
    #[pin]
    incoming: RwSemaphore<SessionList>,
    /// This kernel's root in the handover data.
    #[pin]
    handover: Mutex<Outgoing>,
    /// Turning the previous kernel's sessions into incoming sessions, at the first open of
    /// `/dev/liveupdate` that succeeds in it.
    #[pin]
    deserialized: Mutex<Deserialization>,
}

/// The registry, created at late init when live update is enabled (it holds the outgoing
/// handover root, which needs KHO up).
static REGISTRY: SetOnce<Pin<KBox<Registry>>> = SetOnce::new();

/// Creates the session registry; called once at late init.
pub(crate) fn init() -> Result {
    let handover = Outgoing::new()?;
    let registry = KBox::pin_init(
        pin_init!(Registry {
            serialize <- new_rwsem!(()),
            outgoing <- new_rwsem!(SessionList::new()),
            incoming <- new_rwsem!(SessionList::new()),
            handover <- new_mutex!(handover),
            deserialized <- new_mutex!(Deserialization::Pending(Progress {
                built: SessionList::new(),
                done: 0,
                chain: None,
                sessions: handover::take_incoming_sessions(),
            })),
        }),
        GFP_KERNEL,
    )?;
    if !REGISTRY.populate(registry) {
        return Err(EBUSY);
    }
    Ok(())
}

fn registry() -> Result<&'static Registry> {
    REGISTRY.as_ref().map(|r| &**r).ok_or(ENODEV)
}

/// Reads an ioctl argument whose layout is `T`, after checking the size userspace gave.
///
/// All 7.3 structures have their last field at their end, so the smallest accepted size is the
/// whole structure.
fn read_arg<T: kernel::transmute::FromBytes + kernel::transmute::AsBytes>(
    ptr: UserPtr,
    user_size: u32,
) -> Result<Versioned<T>> {
    if (user_size as usize) < core::mem::size_of::<T>() {
        return Err(EINVAL);
    }
    Versioned::read(ptr, user_size as usize)
}

/// `LIVEUPDATE_IOCTL_CREATE_SESSION`.
pub(crate) fn create(ptr: UserPtr, user_size: u32) -> Result<isize> {
    let mut arg = read_arg::<SessionArg>(ptr, user_size)?;
    // The C core reserves the descriptor first, so EMFILE wins over a bad name.
    let fd = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
    arg.fd = fd.reserved_fd() as i32;
    let name = Name::new(&arg.name)?;
    let session = Session::new(name, false, FileSet::new())?;
    let node = RBTreeNodeReservation::new(GFP_KERNEL)?;
    let reg = registry()?;
    let file = {
        let _serialize = reg.serialize.read();
        {
            let mut out = reg.outgoing.write();
            // Check for a duplicate before taking any room, so a refused create leaves nothing
            // behind (the C core grows its block chain first and can leave an empty block).
            if out.contains(&name) {
                return Err(EEXIST);
            }
            out.add(session.clone(), node)?;
        }
        match session.open_file() {
            Ok(file) => file,
            Err(e) => {
                reg.outgoing.write().remove(&session);
                return Err(e);
            }
        }
    };
    // On failure the file is dropped, and its release removes the session again.
    arg.respond()?;
    fd.fd_install(file);
    Ok(0)
}

/// `LIVEUPDATE_IOCTL_RETRIEVE_SESSION`.
pub(crate) fn retrieve(ptr: UserPtr, user_size: u32) -> Result<isize> {
    let mut arg = read_arg::<SessionArg>(ptr, user_size)?;
    let fd = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
    arg.fd = fd.reserved_fd() as i32;
    let reg = registry()?;
    let file = {
        let _serialize = reg.serialize.read();
        let incoming = reg.incoming.read();
        let session = incoming.find(&arg.name).ok_or(ENOENT)?;
        let mut state = session.state.lock();
        if state.retrieved {
            return Err(EINVAL);
        }
        let file = session.open_file()?;
        state.retrieved = true;
        file
    };
    arg.respond()?;
    fd.fd_install(file);
    Ok(0)
}

/// The file that owns a session.
struct SessionFile;

/// Which sessions a session command applies to.
#[derive(Clone, Copy)]
enum Applies {
    /// Retrieved incoming sessions only.
    Incoming,
    /// Outgoing sessions only.
    Outgoing,
    /// Any session.
    All,
}

/// The session commands, indexed by command number minus `LIVEUPDATE_CMD_SESSION_BASE`.
const SESSION_OPS: [(u32, Applies); 4] = [
    (uapi::SESSION_PRESERVE_FD, Applies::Outgoing),
    (uapi::SESSION_RETRIEVE_FD, Applies::Incoming),
    (uapi::SESSION_FINISH, Applies::Incoming),
    (uapi::SESSION_GET_NAME, Applies::All),
];

static SESSION_FOPS: AnonInodeFops<SessionFile> = AnonInodeFops::new();

#[vtable]
impl AnonInodeFile for SessionFile {
    type Ptr = Arc<Session>;

    fn fops() -> &'static AnonInodeFops<Self> {
        &SESSION_FOPS
    }

    fn release(session: Arc<Session>, _file: &File) {
        let Ok(reg) = registry() else { return };
        let _serialize = reg.serialize.read();
        let retrieved = {
            let mut state = session.state.lock();
            if state.retrieved {
                if let Err(e) = state.files.finish() {
                    // As in the C core, the session stays, with its files, for the rest of the
                    // boot: a handler still uses them.
                    pr_warn!(
                        "Unable to finish session [{}] on release: {:?}\n",
                        kernel::str::BStr::from_bytes(session.name.as_bytes()),
                        e
                    );
                    return;
                }
            } else {
                state.files.unpreserve_all();
            }
            state.retrieved
        };
        if retrieved {
            reg.incoming.write().remove(&session);
        } else if !session.incoming {
            reg.outgoing.write().remove(&session);
        }
    }

    fn ioctl(session: ArcBorrow<'_, Session>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // The order of the checks decides which error userspace sees; it follows the C core.
        let idx = _IOC_NR(cmd).wrapping_sub(uapi::CMD_SESSION_BASE) as usize;
        let Some(&(expected, applies)) = SESSION_OPS.get(idx) else {
            return Err(EINVAL);
        };
        let ptr = UserPtr::from_addr(arg);
        let user_size = versioned::read_size(ptr)?;
        if cmd != expected {
            return Err(ENOTTY);
        }
        // A session file exists only for an outgoing session or for an incoming one that was
        // retrieved (the flag is set before its file is installed), so the immutable
        // `incoming` tells them apart without the session mutex: GET_NAME does not wait
        // behind a long PRESERVE_FD.
        let allowed = match applies {
            Applies::Incoming => session.incoming,
            Applies::Outgoing => !session.incoming,
            Applies::All => true,
        };
        if !allowed {
            return Err(EINVAL);
        }
        match idx {
            0 => preserve_fd(&session, read_arg::<FdArg>(ptr, user_size)?),
            1 => retrieve_fd(&session, read_arg::<FdArg>(ptr, user_size)?),
            2 => finish(&session, read_arg::<FinishArg>(ptr, user_size)?),
            _ => get_name(&session, read_arg::<GetNameArg>(ptr, user_size)?),
        }
    }
}

/// `LIVEUPDATE_SESSION_PRESERVE_FD`.
fn preserve_fd(session: &Session, arg: Versioned<FdArg>) -> Result<isize> {
    let _serialize = registry()?.serialize.read();
    session
        .state
        .lock()
        .files
        .preserve(arg.token, arg.fd as u32)?;
    session.has_files.store(true, Relaxed);
    // As in the C core, the file stays preserved if userspace cannot be told.
    arg.respond().inspect_err(|_| {
        pr_warn!("The file was successfully preserved, but response to user failed\n");
    })?;
    Ok(0)
}

/// `LIVEUPDATE_SESSION_RETRIEVE_FD`.
fn retrieve_fd(session: &Session, mut arg: Versioned<FdArg>) -> Result<isize> {
    let fd = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
    arg.fd = fd.reserved_fd() as i32;
    let file = {
        let _serialize = registry()?.serialize.read();
        session.state.lock().files.retrieve(arg.token)?
    };
    // On failure the file reference and the descriptor are dropped; the session keeps its own.
    arg.respond()?;
    fd.fd_install(file);
    Ok(0)
}

/// `LIVEUPDATE_SESSION_FINISH`.
fn finish(session: &Session, arg: Versioned<FinishArg>) -> Result<isize> {
    if arg.reserved != 0 {
        return Err(EINVAL);
    }
    let _serialize = registry()?.serialize.read();
    session.state.lock().files.finish()?;
    arg.respond()?;
    Ok(0)
}

/// `LIVEUPDATE_SESSION_GET_NAME`.
fn get_name(session: &Session, mut arg: Versioned<GetNameArg>) -> Result<isize> {
    if arg.reserved != 0 {
        return Err(EINVAL);
    }
    let _serialize = registry()?.serialize.read();
    arg.name = *session.name.raw();
    arg.respond()?;
    Ok(0)
}

/// Completes the handover data for the kexec (`liveupdate_reboot()`): the files of each
/// outgoing session that has some are frozen and its entry completed, in the order of the
/// entries, the session chain is sealed, and the preserved FLBs are written last.
///
/// On success the registry stays frozen for good: every later session operation, even closing
/// a session file, waits for the kexec to take the machine away.
///
/// # Errors
///
/// `EBUSY` if an FLB cannot be handed over ([`flb::check_handover`]), or the error of the
/// first session that could not be frozen; everything is rolled back then and userspace may
/// fix the cause and try again.
pub(crate) fn serialize() -> Result {
    let reg = registry()?;
    let handlers = handler::registry()?;
    let serialize = reg.serialize.write();
    flb::check_handover(&handlers.read().flbs)?;
    {
        let mut out = reg.outgoing.write();
        let SessionList { chain, slots, .. } = &mut *out;
        // Every entry was written when its session was created. Only the sessions with files
        // are visited, with no allocation: their files are frozen and their entries completed.
        let mut frozen = 0usize;
        let mut failed = None;
        for (slot, s) in slots.iter().enumerate() {
            if !s.has_files.load(Relaxed) {
                continue;
            }
            match s.state.lock().files.freeze() {
                Ok((files_pa, files)) => {
                    if let Some(entry) = chain.entry_mut(slot) {
                        abi::encode_session(entry, s.name.raw(), files_pa, files);
                    }
                    frozen += 1;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let head = match failed {
            None => chain.seal(slots.len()),
            Some(e) => Err(e),
        };
        let head = match head {
            Ok(head) => head,
            Err(e) => {
                unfreeze(chain, slots, frozen);
                return Err(e);
            }
        };
        let mut handover = reg.handover.lock();
        handover.set_sessions(head);
        flb::serialize(&handlers.read().flbs, handover.flbs_mut());
        #[cfg(CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST)]
        if crate::corrupt::requested() {
            let count = slots.len();
            match slots
                .iter()
                .enumerate()
                .find(|(_, s)| s.has_files.load(Relaxed))
            {
                Some((i, s)) => {
                    let mut st = s.state.lock();
                    crate::corrupt::apply(&mut handover, chain, count, Some((i, &mut st.files)))
                }
                None => crate::corrupt::apply(&mut handover, chain, count, None),
            }
        }
    }
    serialize.hold_forever();
    Ok(())
}

/// Writes the handover entry at `slot` for a session named `name` with no files: what every
/// outgoing entry holds until the reboot path freezes the session's files.
fn write_entry_without_files(chain: &mut OutChain, slot: usize, name: &[u8; SESSION_NAME_LENGTH]) {
    if let Some(entry) = chain.entry_mut(slot) {
        abi::encode_session(entry, name, 0, 0);
    }
}

/// Unfreezes the files of the first `frozen` sessions with files, and clears their entries'
/// file sets again (the kexec is called off).
fn unfreeze(chain: &mut OutChain, slots: &[Arc<Session>], frozen: usize) {
    let with_files = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.has_files.load(Relaxed));
    for (slot, s) in with_files.take(frozen) {
        s.state.lock().files.unfreeze();
        write_entry_without_files(chain, slot, s.name.raw());
    }
}

/// Where the first open's deserialization stands.
enum Deserialization {
    /// Not done yet, or left for lack of memory (see [`Progress`]).
    Pending(Progress),
    /// Done, with this result for the rest of the boot.
    Done(Result),
}

/// What attempts at deserialization that ran out of memory built, kept for the next attempt:
/// KHO hands each page over once, so nothing restored may be dropped before it is used.
struct Progress {
    /// The sessions built so far, not visible to userspace yet.
    built: SessionList,
    /// How many of the incoming sessions are in `built`.
    done: usize,
    /// The file chain of the next session, as far as it was restored.
    chain: Option<InChain>,
    /// The previous kernel's session chain, until every entry is read.
    sessions: Option<InChain>,
}

/// Turns the previous kernel's sessions into incoming sessions; once that succeeded or found
/// the data unusable, later calls return the same result.
///
/// # Errors
///
/// `ENOMEM` if memory ran out: nothing is visible yet and nothing is lost; the next call goes
/// on from where this one stopped (the C core latches this as `EIO` for the boot, and every
/// incoming session is lost). `EIO` if the data is unusable (malformed, or a handler missing):
/// that is kept for the rest of the boot, and the sessions stay unreachable.
pub(crate) fn deserialize_once() -> Result {
    let reg = registry()?;
    let mut state = reg.deserialized.lock();
    let progress = match &mut *state {
        Deserialization::Done(result) => return (*result).map_err(|_| EIO),
        Deserialization::Pending(progress) => progress,
    };
    let result = deserialize(progress);
    if result == Err(ENOMEM) {
        pr_warn!("Out of memory reading the incoming sessions; the next open goes on\n");
        return Err(ENOMEM);
    }
    if result.is_ok() {
        core::mem::swap(&mut *reg.incoming.write(), &mut progress.built);
    }
    // What was built but not published (the data was refused) is dropped here; so are the
    // restored pages of a chain still held, unless it was found malformed and kept.
    *state = Deserialization::Done(result);
    result.map_err(|_| EIO)
}

/// Builds the incoming sessions from the one `progress` reached on; each session's file chain
/// is restored, read, and released once the session holding its files is built.
///
/// The session chain is restored first; its pages go back to the allocator once every entry is
/// read. A malformed chain, a malformed entry or two sessions of one name keep the pages
/// restored so far from the allocator for good.
fn deserialize(progress: &mut Progress) -> Result {
    let Progress {
        built,
        done,
        chain,
        sessions,
    } = progress;
    let Some(entries) = sessions.as_mut() else {
        return Ok(());
    };
    // `ENOMEM` leaves the blocks restored so far with the chain for the next attempt.
    let mut malformed = false;
    let result = match entries.restore_rest() {
        Ok(()) => read_entries(entries, built, done, chain, &mut malformed),
        Err(e) => {
            malformed = e == EINVAL;
            Err(e)
        }
    };
    if malformed {
        entries.keep_all();
        pr_err!(
            "{} page(s) of the previous kernel kept from the allocator so far\n",
            chain::kept()
        );
    }
    result?;
    // Every entry is read: the chain's pages go back to the allocator.
    *sessions = None;
    Ok(())
}

/// Builds a session for each entry of the restored chain `entries` not in `built` yet (the
/// first `done`); sets `malformed` if an entry is malformed or repeats a name.
fn read_entries(
    entries: &InChain,
    built: &mut SessionList,
    done: &mut usize,
    chain: &mut Option<InChain>,
    malformed: &mut bool,
) -> Result {
    let mut index = 0usize;
    entries.for_each(|e| {
        // The entries an attempt that ran out of memory read are in `built` already.
        index += 1;
        if index <= *done {
            return Ok(());
        }
        let name = abi::decode_session(e)
            .map_err(|m| {
                pr_err!("Malformed session entry in the handover data: {}\n", m);
                *malformed = true;
                Error::from(m)
            })
            .and_then(|record| Ok((Name::new(&record.name)?, record)));
        let (name, record) = name?;
        if built.contains(&name) {
            pr_err!(
                "Duplicate session name in the handover data: [{}]\n",
                kernel::str::BStr::from_bytes(name.as_bytes())
            );
            *malformed = true;
            return Err(EINVAL);
        }
        let files = chain.get_or_insert_with(|| InChain::new(record.files_pa, abi::file::SIZE));
        // No chain: no files, whatever the count says (the C core warns and does the same).
        let set = if record.files_pa == 0 {
            Ok(FileSet::new())
        } else {
            files
                .restore_rest()
                .and_then(|()| FileSet::deserialize(files, record.file_count))
        };
        let set = set.inspect_err(|&e| {
            if e == ENOMEM {
                return;
            }
            pr_warn!(
                "Failed to deserialize files for session [{}] {:?}\n",
                kernel::str::BStr::from_bytes(name.as_bytes()),
                e
            );
            if e == EINVAL {
                files.keep_all();
                pr_warn!(
                    "{} page(s) of the previous kernel kept from the allocator so far\n",
                    chain::kept()
                );
            }
        })?;
        // Until the session is in `built`, a failure drops the files but keeps the chain.
        let session = Session::new(name, true, set)?;
        let node = RBTreeNodeReservation::new(GFP_KERNEL)?;
        built.insert(session, node);
        *chain = None;
        *done += 1;
        Ok(())
    })
}

/// The handover entries of outgoing sessions, kept in place as sessions come and go.
#[cfg(CONFIG_LIVEUPDATE_RUST_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(luo_rs_session_entries)]
mod entry_tests {
    use super::*;

    fn add(list: &mut SessionList, name: &[u8]) -> Result<Arc<Session>> {
        let mut raw = [0u8; SESSION_NAME_LENGTH];
        raw.iter_mut().zip(name).for_each(|(d, s)| *d = *s);
        let session = Session::new(Name::new(&raw)?, false, FileSet::new())?;
        list.add(session.clone(), RBTreeNodeReservation::new(GFP_KERNEL)?)?;
        Ok(session)
    }

    fn entry_name(list: &mut SessionList, index: usize) -> Result<[u8; SESSION_NAME_LENGTH]> {
        let entry = list.chain.entry_mut(index).ok_or(EINVAL)?;
        Ok(abi::decode_session(entry)?.name)
    }

    #[test]
    fn closing_a_session_moves_the_last_entry() -> Result {
        let mut list = SessionList::new();
        let a = add(&mut list, b"a")?;
        let b = add(&mut list, b"b")?;
        let c = add(&mut list, b"c")?;
        assert_eq!(entry_name(&mut list, 0)?, *a.name.raw());
        list.remove(&a);
        // The last session takes the closed one's entry; the one between stays.
        assert_eq!(c.chain_index.load(Relaxed), 0);
        assert_eq!(b.chain_index.load(Relaxed), 1);
        assert_eq!(entry_name(&mut list, 0)?, *c.name.raw());
        assert_eq!(entry_name(&mut list, 1)?, *b.name.raw());
        let head = list.chain.seal(list.slots.len())?;
        assert_eq!(head, list.chain.phys(0));
        let block = list.chain.page(0);
        assert_eq!(abi::decode_block(block, abi::session::SIZE)?, (0, 2));
        // Nothing of the third entry, the closed session's old place, is handed over.
        let used = abi::block::HEADER + 2 * abi::session::SIZE;
        assert!(block
            .get(used..)
            .is_some_and(|rest| rest.iter().all(|&byte| byte == 0)));
        // Closing the last session moves nothing.
        list.remove(&b);
        assert_eq!(c.chain_index.load(Relaxed), 0);
        list.remove(&c);
        assert_eq!(list.chain.seal(list.slots.len())?, 0);
        assert_eq!(list.chain.blocks(), 0);
        Ok(())
    }
}
