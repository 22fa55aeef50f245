//! What the agent does with each request, independent of sockets.
//!
//! The agent owns `/dev/liveupdate` and every session in it. Before a live update it holds
//! the files clients give it in *outgoing* sessions, and preserves its own record of those
//! sessions too (the *manifest*, a memfd in a session of its own, see [`Agent::write_record`]),
//! because the kernel cannot list sessions. After the kexec the new agent reads the manifest,
//! retrieves every session it names (*incoming*), hands each file back to the client that asks
//! for it, and finishes a session once every file of it was confirmed. The manifest is only a
//! hint: root may ask for a session it does not name, which is then taken from the kernel.
//!
//! Nothing is lost on ordinary failures: files stay with the agent when a client disconnects
//! (only [`Request::Release`] or the agent's exit lets go of them); a client may take a copy
//! of a file it preserved back before the update (an aborted update gives everything back);
//! and a file handed back after the update stays with the agent until its client confirms it
//! ([`Request::Confirm`]), so a client that dies first can ask again.

use crate::proto::{Direction, Refusal, Request, Response, SessionInfo};
use liveupdate::{Error, Op};
use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The agent's own session, holding the manifest (and the first of the two names it
/// alternates between, see [`Agent::write_record`]).
pub const MANIFEST_SESSION: &str = "luo-agent.manifest";
/// The two sessions the manifest alternates between, so that one is always whole.
pub const MANIFEST_SESSIONS: [&str; 2] = [MANIFEST_SESSION, "luo-agent.manifest-b"];
/// The first line of a manifest: its format, its sequence number and a checksum of the rest.
const RECORD_MAGIC: &str = "luo-agent manifest 2";
/// The manifest's token in [`MANIFEST_SESSION`].
pub const MANIFEST_TOKEN: u64 = 1;

/// The device the agent drives: `/dev/liveupdate`, or a model of it in tests.
pub trait Device {
    /// A session of this device.
    type Session: SessionOps;
    fn create_session(&self, name: &str) -> liveupdate::Result<Self::Session>;
    fn retrieve_session(&self, name: &str) -> liveupdate::Result<Self::Session>;
}

/// What the agent does with a session.
pub trait SessionOps {
    fn preserve_fd(&self, file: BorrowedFd<'_>, token: u64) -> liveupdate::Result<()>;
    fn retrieve_fd(&self, token: u64) -> liveupdate::Result<OwnedFd>;
    fn finish(&self) -> liveupdate::Result<()>;
    /// A new descriptor of the session, for a client it is delegated to.
    fn share(&self) -> std::io::Result<OwnedFd>;
}

impl Device for liveupdate::LiveUpdate {
    type Session = liveupdate::Session;
    fn create_session(&self, name: &str) -> liveupdate::Result<Self::Session> {
        liveupdate::LiveUpdate::create_session(self, name).map(Into::into)
    }
    fn retrieve_session(&self, name: &str) -> liveupdate::Result<Self::Session> {
        liveupdate::LiveUpdate::retrieve_session(self, name).map(Into::into)
    }
}

impl SessionOps for liveupdate::Session {
    fn preserve_fd(&self, file: BorrowedFd<'_>, token: u64) -> liveupdate::Result<()> {
        liveupdate::Session::preserve_fd(self, file, token)
    }
    fn retrieve_fd(&self, token: u64) -> liveupdate::Result<OwnedFd> {
        liveupdate::Session::retrieve_fd(self, token)
    }
    fn finish(&self) -> liveupdate::Result<()> {
        liveupdate::Session::finish(self)
    }
    fn share(&self) -> std::io::Result<OwnedFd> {
        self.as_fd().try_clone_to_owned()
    }
}

/// `/dev/liveupdate` (or the path given) opened for each call and closed after it, so that
/// others can open the device in between: systemd at boot and at `systemctl kexec`, and
/// services that make sessions of their own.
pub struct OnDemand(pub std::path::PathBuf);

impl Device for OnDemand {
    type Session = liveupdate::Session;
    fn create_session(&self, name: &str) -> liveupdate::Result<Self::Session> {
        liveupdate::LiveUpdate::open_path(&self.0)?
            .create_session(name)
            .map(Into::into)
    }
    fn retrieve_session(&self, name: &str) -> liveupdate::Result<Self::Session> {
        liveupdate::LiveUpdate::open_path(&self.0)?
            .retrieve_session(name)
            .map(Into::into)
    }
}

/// How many bytes of session descriptions one LIST answer carries at most (messages are read
/// up to 64 KiB; the rest is headroom).
pub const LIST_PAGE_BYTES: usize = 48 * 1024;

/// At most this many files of one session are held through the agent, so that a session's
/// listing fits in one message (21 bytes a token at most); a service with more delegates its
/// session ([`Request::Delegate`]) and preserves them itself.
pub const MAX_TOKENS_PER_SESSION: usize = 2048;

/// The uid of root, who may act on every session.
pub const ROOT: u32 = 0;

struct Held<S> {
    session: S,
    /// The uid that created the session (carried across the update); only it and root may
    /// see, add to, take from or release the session.
    owner: u32,
    direction: Direction,
    /// Outgoing: the tokens preserved. Incoming: the tokens not yet taken from the kernel.
    tokens: Vec<u64>,
    /// Incoming: a client asked for one of its files (see [`Agent::release_unclaimed`]).
    claimed: bool,
    /// The agent does not know every file of the session: it was delegated to its client
    /// ([`Request::Delegate`]), who preserves or retrieves files itself, or it is an incoming
    /// session no manifest named (taken from the kernel by name at root's request). Any token
    /// is asked of the kernel, and the session is finished only when released.
    delegated: bool,
    /// The files the agent keeps a descriptor of. Outgoing: every file preserved, so that its
    /// client can take it back before the update (after an aborted one, say). Incoming: the
    /// files taken from the kernel and handed to a client that has not confirmed it has them
    /// safe; a retrieve hands the same file again.
    copies: BTreeMap<u64, OwnedFd>,
}

impl<S> Held<S> {
    /// A session of `owner`'s the agent holds no file of yet.
    fn new(
        session: S,
        owner: u32,
        direction: Direction,
        tokens: Vec<u64>,
        delegated: bool,
    ) -> Self {
        Held {
            session,
            owner,
            direction,
            tokens,
            delegated,
            claimed: false,
            copies: BTreeMap::new(),
        }
    }

    /// The tokens whose files are not yet safe with their owner: still in the kernel, or
    /// handed out and not confirmed.
    fn unconfirmed(&self) -> Vec<u64> {
        let mut all = self.tokens.clone();
        if self.direction == Direction::Incoming {
            all.extend(self.copies.keys());
            all.sort_unstable();
        }
        all
    }
}

/// A session as [`Agent::held`] shows it.
pub struct HeldView<'a, S> {
    pub name: &'a str,
    pub session: &'a S,
    /// The uid that owns it.
    pub owner: u32,
    /// What [`Agent::list`] says of it.
    pub info: SessionInfo,
    /// Files handed out and not yet confirmed, which the agent keeps a copy of.
    pub handed: Vec<(u64, BorrowedFd<'a>)>,
}

/// How much the agent holds for one user other than root (0: no limit), so that one user
/// cannot pin the machine's memory for the next kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Files in the user's outgoing sessions.
    pub files_per_user: usize,
    /// The sizes of those files, added up.
    pub bytes_per_user: u64,
}

fn file_size(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    Ok(std::fs::File::from(fd.try_clone_to_owned()?)
        .metadata()?
        .len())
}

/// The agent's state.
pub struct Agent<D: Device> {
    /// What each user other than root may have held.
    pub limits: Limits,
    device: D,
    sessions: BTreeMap<String, Held<D::Session>>,
    /// The manifest preserved for the next kernel, and its sequence number.
    record: Option<(D::Session, u64)>,
    /// The sequence number of the manifest the previous kernel left (0 if none).
    record_base: u64,
}

/// A refusal for an error of the library, classified for clients.
fn refusal(e: &Error, what: &str) -> Response {
    let errno = e.errno().unwrap_or(0);
    let why = match (e, errno) {
        (Error::InvalidName(_), _) => Refusal::InvalidName,
        (
            Error::Kernel {
                op: Op::PreserveFd, ..
            },
            libc::EEXIST,
        ) => Refusal::DuplicateToken,
        (
            Error::Kernel {
                op: Op::PreserveFd, ..
            },
            libc::EBUSY,
        ) => Refusal::Busy,
        (
            Error::Kernel {
                op: Op::PreserveFd, ..
            },
            libc::ENOENT | libc::EOPNOTSUPP,
        ) => Refusal::Unsupported,
        (
            Error::Kernel {
                op: Op::RetrieveFd, ..
            },
            libc::ENOENT,
        ) => Refusal::UnknownToken,
        (Error::Kernel { op: Op::Finish, .. }, libc::EBUSY) => Refusal::Busy,
        _ => Refusal::Kernel,
    };
    Response::refused(why, errno, format!("{what}: {e}"))
}

/// A refusal if clients may not name a session `name`: the agent's own record sessions, and
/// names with a newline (the record is one line per session).
fn check_new_name(name: &str) -> Result<(), Response> {
    if name.starts_with(MANIFEST_SESSION) || name.contains('\n') {
        return Err(Response::refused(
            Refusal::InvalidName,
            libc::EINVAL,
            format!("session name {name:?} is reserved or has a newline"),
        ));
    }
    Ok(())
}

/// One session of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub name: String,
    /// The uid that owns the session.
    pub owner: u32,
    pub tokens: Vec<u64>,
    /// Delegated to its client: it may hold files the agent does not know of.
    pub delegated: bool,
}

/// A manifest's token list: `-` for none, `1,2,3`, and a leading `?` for a delegated session
/// (`?`, `?1,2`), which may hold other files too.
pub fn format_tokens(tokens: &[u64], delegated: bool) -> String {
    let list: Vec<String> = tokens.iter().map(u64::to_string).collect();
    match (delegated, list.is_empty()) {
        (false, true) => "-".to_owned(),
        (false, false) => list.join(","),
        (true, _) => format!("?{}", list.join(",")),
    }
}

/// Reads a token list of [`format_tokens`]: the tokens, and whether the session is delegated.
pub fn parse_tokens(field: &str) -> Option<(Vec<u64>, bool)> {
    let (list, delegated) = match field.strip_prefix('?') {
        Some(rest) => (rest, true),
        None if field == "-" => return Some((Vec::new(), false)),
        None => (field, false),
    };
    if list.is_empty() {
        return delegated.then_some((Vec::new(), true));
    }
    let tokens = list
        .split(',')
        .map(|t| t.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    Some((tokens, delegated))
}

/// Reads one line of a manifest. A line without an owner (written by an agent before owners
/// were recorded) is root's.
fn parse_manifest_line(line: &str) -> Option<Recorded> {
    let (owner, line) = match line.strip_prefix("uid=") {
        Some(rest) => {
            let (uid, rest) = rest.split_once(' ')?;
            (uid.parse().ok()?, rest)
        }
        None => (ROOT, line),
    };
    let (tokens, name) = line.split_once(' ')?;
    let (tokens, delegated) = parse_tokens(tokens)?;
    Some(Recorded {
        name: name.to_owned(),
        owner,
        tokens,
        delegated,
    })
}

/// Reads what a manifest records: session names, owners and tokens; `None` if any line is
/// malformed.
pub fn parse_manifest(text: &str) -> Option<Vec<Recorded>> {
    text.lines().map(parse_manifest_line).collect()
}

/// Reads what it can of a manifest: the sessions of the lines that parse, and the numbers
/// (from 1) of those that do not. One damaged line costs its own session only.
pub fn parse_manifest_lines(text: &str) -> (Vec<Recorded>, Vec<usize>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_manifest_line(line) {
            Some(r) => good.push(r),
            None => bad.push(i + 1),
        }
    }
    (good, bad)
}

/// Writes a manifest: one line per session, `uid=OWNER TOKENS NAME` (see [`format_tokens`]); names cannot contain a newline (the agent refuses such names).
pub fn format_manifest(sessions: &[Recorded]) -> String {
    let mut s = String::new();
    for r in sessions {
        s.push_str(&format!("uid={} ", r.owner));
        s.push_str(&format_tokens(&r.tokens, r.delegated));
        s.push(' ');
        s.push_str(&r.name);
        s.push('\n');
    }
    s
}

/// A 64-bit FNV-1a hash: the manifest's checksum.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A manifest as read: what parsed of it and what did not.
#[derive(Debug, Default)]
pub struct ReadRecord {
    /// Its sequence number (0 for a manifest of an agent before they were numbered).
    pub seq: u64,
    pub sessions: Vec<Recorded>,
    /// The numbers (from 1, after the first line) of lines that did not parse.
    pub bad: Vec<usize>,
    /// Whether the checksum matched (always for a manifest without one).
    pub intact: bool,
}

/// Writes a manifest with its first line: format, sequence number `seq` and checksum.
pub fn format_record(seq: u64, sessions: &[Recorded]) -> String {
    let body = format_manifest(sessions);
    format!(
        "{RECORD_MAGIC} seq={seq} sum={:016x}\n{body}",
        fnv1a(body.as_bytes())
    )
}

/// Reads a manifest of [`format_record`] (or of an earlier agent, which had no first line).
/// It is only a hint: a damaged line costs its own session only, and a bad checksum is
/// reported but what parses is still used (the kernel checks each session named).
pub fn parse_record(text: &str) -> ReadRecord {
    let header = text
        .split_once('\n')
        .and_then(|(first, body)| Some((first.strip_prefix(RECORD_MAGIC)?, body)));
    let Some((fields, body)) = header else {
        let (sessions, bad) = parse_manifest_lines(text);
        return ReadRecord {
            seq: 0,
            sessions,
            bad,
            intact: true,
        };
    };
    let field = |name: &str| {
        fields
            .split_ascii_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    let seq = field("seq").and_then(|v| v.parse().ok()).unwrap_or(0);
    let sum = field("sum").and_then(|v| u64::from_str_radix(v, 16).ok());
    let (sessions, bad) = parse_manifest_lines(body);
    ReadRecord {
        seq,
        sessions,
        bad,
        intact: sum == Some(fnv1a(body.as_bytes())),
    }
}

/// What a kernel's record session holds: the manifest's text.
fn read_record_session<S: SessionOps>(session: &S) -> Result<String, String> {
    let fd = session
        .retrieve_fd(MANIFEST_TOKEN)
        .map_err(|e| e.to_string())?;
    let mut f = std::fs::File::from(fd);
    let mut s = String::new();
    f.rewind()
        .and_then(|_| f.read_to_string(&mut s))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

fn io_error(e: Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl<D: Device> Agent<D> {
    /// An agent on `device`; picks up the sessions of the previous kernel, if it left a
    /// manifest. Returns the agent and what it found, for the log.
    pub fn start(device: D) -> (Self, Vec<String>) {
        let mut agent = Agent {
            limits: Limits::default(),
            device,
            sessions: BTreeMap::new(),
            record: None,
            record_base: 0,
        };
        let log = agent.adopt_previous();
        (agent, log)
    }

    /// Reads the manifests the previous kernel carried (the newest whole one wins) and takes
    /// back every session it names.
    fn adopt_previous(&mut self) -> Vec<String> {
        let mut log = Vec::new();
        let mut newest: Option<ReadRecord> = None;
        for name in MANIFEST_SESSIONS {
            let session = match self.device.retrieve_session(name) {
                Ok(s) => s,
                Err(e) if e.errno() == Some(libc::ENOENT) => continue,
                Err(e) => {
                    log.push(format!("cannot retrieve the manifest {name:?}: {e}"));
                    continue;
                }
            };
            let text = read_record_session(&session);
            if let Err(e) = session.finish() {
                log.push(format!("cannot finish the manifest session {name:?}: {e}"));
            }
            let record = match text {
                Ok(t) => parse_record(&t),
                Err(e) => {
                    log.push(format!("cannot read the manifest {name:?}: {e}"));
                    continue;
                }
            };
            let better = match &newest {
                None => true,
                Some(n) => (record.intact, record.seq) > (n.intact, n.seq),
            };
            if better {
                newest = Some(record);
            }
        }
        let Some(record) = newest else {
            if log.is_empty() {
                log.push("no sessions from a previous kernel".to_owned());
            }
            return log;
        };
        self.record_base = record.seq;
        if !record.intact {
            log.push(
                "the manifest's checksum does not match: adopting what of it parses".to_owned(),
            );
        }
        for n in record.bad {
            log.push(format!("line {n} of the manifest is malformed; skipped"));
        }
        for Recorded {
            name,
            owner,
            tokens,
            delegated,
        } in record.sessions
        {
            match self.device.retrieve_session(&name) {
                Ok(session) => {
                    log.push(format!(
                        "adopted session {name:?} with {} file(s)",
                        tokens.len()
                    ));
                    self.sessions.insert(
                        name,
                        Held::new(session, owner, Direction::Incoming, tokens, delegated),
                    );
                }
                Err(e) => log.push(format!("cannot retrieve session {name:?}: {e}")),
            }
        }
        log
    }

    /// Handles one request; `fds` are the descriptors that came with it. A response to a
    /// successful retrieve carries the file.
    pub fn handle(&mut self, req: &Request, fds: Vec<OwnedFd>) -> (Response, Option<OwnedFd>) {
        self.handle_as(ROOT, req, fds)
    }

    /// [`Agent::handle`] for a client running as `uid`: it sees and acts on its own sessions
    /// only, unless it is root.
    pub fn handle_as(
        &mut self,
        uid: u32,
        req: &Request,
        mut fds: Vec<OwnedFd>,
    ) -> (Response, Option<OwnedFd>) {
        let want = usize::from(req.carries_fd());
        if fds.len() != want {
            return (
                Response::refused(
                    Refusal::BadRequest,
                    0,
                    format!("expected {want} file descriptor(s), got {}", fds.len()),
                ),
                None,
            );
        }
        let session = match req {
            Request::Preserve { session, .. }
            | Request::Retrieve { session, .. }
            | Request::Confirm { session, .. }
            | Request::Release { session }
            | Request::Delegate { session } => Some(session),
            Request::List { .. } | Request::Kexec { .. } => None,
        };
        if let Some(name) = session {
            if let Some(refused) = self.not_permitted(uid, name) {
                return (refused, None);
            }
        }
        match req {
            Request::Preserve { session, token } => {
                (self.preserve(uid, session, *token, fds.remove(0)), None)
            }
            Request::List { after } => (self.page(uid, after), None),
            Request::Retrieve { session, token } => match self.retrieve(uid, session, *token) {
                Ok(fd) => (Response::Ok, Some(fd)),
                Err(r) => (r, None),
            },
            Request::Confirm { session, token } => (self.confirm(session, *token), None),
            Request::Release { session } => (self.release(session), None),
            Request::Delegate { session } => match self.delegate(uid, session) {
                Ok((direction, fd)) => (Response::Delegated(direction), Some(fd)),
                Err(r) => (r, None),
            },
            Request::Kexec { .. } => (
                Response::refused(Refusal::Failed, 0, "kexec is done by the server loop"),
                None,
            ),
        }
    }

    /// A refusal if session `name` exists and belongs to another user than `uid`.
    fn not_permitted(&self, uid: u32, name: &str) -> Option<Response> {
        let held = self.sessions.get(name)?;
        if uid == ROOT || held.owner == uid {
            return None;
        }
        Some(Response::refused(
            Refusal::NotPermitted,
            libc::EPERM,
            format!("session {name:?} belongs to another user"),
        ))
    }

    fn preserve(&mut self, uid: u32, name: &str, token: u64, file: OwnedFd) -> Response {
        if let Err(refused) = check_new_name(name) {
            return refused;
        }
        if let Some(refused) = self.over_quota(uid, Some(file.as_fd())) {
            return refused;
        }
        if let Some(held) = self.sessions.get(name) {
            if held.direction == Direction::Incoming {
                return Response::refused(
                    Refusal::Busy,
                    libc::EINVAL,
                    format!("session {name:?} came from the previous kernel; take its files back or release it first"),
                );
            }
        } else if let Err(refused) = self.create_outgoing(uid, name, false) {
            return refused;
        }
        let Some(held) = self.sessions.get_mut(name) else {
            return Response::refused(Refusal::Failed, 0, "session vanished");
        };
        if held.tokens.len() >= MAX_TOKENS_PER_SESSION {
            return Response::refused(
                Refusal::OverQuota,
                libc::EDQUOT,
                format!(
                    "session {name:?} holds {MAX_TOKENS_PER_SESSION} files, the most the agent \
                     holds in one session; delegate the session to preserve more"
                ),
            );
        }
        match held.session.preserve_fd(file.as_fd(), token) {
            Ok(()) => {
                held.tokens.push(token);
                held.copies.insert(token, file);
                Response::Ok
            }
            Err(e) => {
                let r = refusal(&e, &format!("preserving token {token} in session {name:?}"));
                // A session created for this file alone would be empty: drop it.
                if held.tokens.is_empty() {
                    self.sessions.remove(name);
                }
                r
            }
        }
    }

    /// A refusal if holding `file` too would take `uid` past its [`Limits`].
    fn over_quota(&self, uid: u32, file: Option<BorrowedFd<'_>>) -> Option<Response> {
        if uid == ROOT || (self.limits.files_per_user == 0 && self.limits.bytes_per_user == 0) {
            return None;
        }
        let mine = || {
            self.sessions
                .values()
                .filter(move |h| h.owner == uid && h.direction == Direction::Outgoing)
        };
        // A delegated session counts as one file (its client's own files are not known).
        let files: usize = mine()
            .map(|h| h.tokens.len() + usize::from(h.delegated))
            .sum();
        if self.limits.files_per_user > 0 && files >= self.limits.files_per_user {
            return Some(Response::refused(
                Refusal::OverQuota,
                libc::EDQUOT,
                format!(
                    "uid {uid} has {files} file(s) held, the most the agent holds for one user"
                ),
            ));
        }
        if self.limits.bytes_per_user == 0 {
            return None;
        }
        let sizes = file
            .into_iter()
            .chain(mine().flat_map(|h| h.copies.values().map(|f| f.as_fd())))
            .map(file_size)
            .sum::<std::io::Result<u64>>();
        match sizes {
            Ok(bytes) if bytes <= self.limits.bytes_per_user => None,
            Ok(bytes) => Some(Response::refused(
                Refusal::OverQuota,
                libc::EDQUOT,
                format!(
                    "uid {uid} would have {bytes} bytes held, more than the {} the agent holds \
                     for one user",
                    self.limits.bytes_per_user
                ),
            )),
            Err(e) => Some(Response::refused(
                Refusal::Failed,
                e.raw_os_error().unwrap_or(0),
                format!("cannot tell the file's size: {e}"),
            )),
        }
    }

    /// Releases the sessions of the previous kernel that no client asked for (their files are
    /// discarded): the grace time for them is over. Returns their names.
    pub fn release_unclaimed(&mut self) -> Vec<String> {
        let names: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, h)| h.direction == Direction::Incoming && !h.claimed)
            .map(|(n, _)| n.clone())
            .collect();
        names
            .into_iter()
            .filter(|n| self.release(n) == Response::Ok)
            .collect()
    }

    /// Creates the outgoing session `name` of `uid`'s.
    fn create_outgoing(&mut self, uid: u32, name: &str, delegated: bool) -> Result<(), Response> {
        let session = self
            .device
            .create_session(name)
            .map_err(|e| refusal(&e, &format!("creating session {name:?}")))?;
        let held = Held::new(session, uid, Direction::Outgoing, Vec::new(), delegated);
        self.sessions.insert(name.to_owned(), held);
        Ok(())
    }

    /// DELEGATE: the session's own descriptor for its client, who then preserves files into
    /// it (outgoing: a new session is created for it) or retrieves and finishes them itself
    /// (incoming). The agent keeps its reference: an outgoing session lives on until the kexec
    /// even if the client exits, and an incoming one until it is released.
    fn delegate(&mut self, uid: u32, name: &str) -> Result<(Direction, OwnedFd), Response> {
        check_new_name(name)?;
        if !self.sessions.contains_key(name) {
            let found = uid == ROOT && self.retrieve_unlisted(uid, name).is_ok();
            if !found {
                if let Some(refused) = self.over_quota(uid, None) {
                    return Err(refused);
                }
                self.create_outgoing(uid, name, true)?;
            }
        }
        let Some(held) = self.sessions.get_mut(name) else {
            return Err(Response::refused(Refusal::Failed, 0, "session vanished"));
        };
        held.delegated = true;
        held.claimed = true;
        let fd = held.session.share().map_err(|e| {
            Response::refused(
                Refusal::Failed,
                e.raw_os_error().unwrap_or(0),
                format!("duplicating session {name:?}: {e}"),
            )
        })?;
        Ok((held.direction, fd))
    }

    /// Takes from the kernel an incoming session no manifest named (the manifest is only a
    /// hint): root's, since nothing says whose it was.
    fn retrieve_unlisted(&mut self, uid: u32, name: &str) -> Result<(), Response> {
        let unknown = || {
            Response::refused(
                Refusal::UnknownSession,
                libc::ENOENT,
                format!("no session {name:?}"),
            )
        };
        if uid != ROOT || name.starts_with(MANIFEST_SESSION) {
            return Err(unknown());
        }
        let session = match self.device.retrieve_session(name) {
            Ok(s) => s,
            Err(e) if e.errno() == Some(libc::ENOENT) => return Err(unknown()),
            Err(e) => return Err(refusal(&e, &format!("retrieving session {name:?}"))),
        };
        self.sessions.insert(
            name.to_owned(),
            Held::new(session, ROOT, Direction::Incoming, Vec::new(), true),
        );
        Ok(())
    }

    fn retrieve(&mut self, uid: u32, name: &str, token: u64) -> Result<OwnedFd, Response> {
        if !self.sessions.contains_key(name) {
            self.retrieve_unlisted(uid, name)?;
        }
        let Some(held) = self.sessions.get_mut(name) else {
            return Err(Response::refused(
                Refusal::UnknownSession,
                libc::ENOENT,
                format!("no session {name:?}"),
            ));
        };
        if held.direction == Direction::Outgoing && !held.copies.contains_key(&token) {
            return Err(Response::refused(
                Refusal::UnknownToken,
                libc::ENOENT,
                format!("session {name:?} holds no file {token} for the next kernel"),
            ));
        }
        held.claimed = true;
        if !held.copies.contains_key(&token) {
            let pos = held.tokens.iter().position(|&t| t == token);
            if pos.is_none() && !held.delegated {
                return Err(Response::refused(
                    Refusal::UnknownToken,
                    libc::ENOENT,
                    format!("session {name:?} has no file {token} to hand back"),
                ));
            }
            let fd = held
                .session
                .retrieve_fd(token)
                .map_err(|e| refusal(&e, &format!("retrieving token {token} of {name:?}")))?;
            if let Some(pos) = pos {
                held.tokens.remove(pos);
            }
            held.copies.insert(token, fd);
        }
        // The client gets its own descriptor of the file; the agent's stays (outgoing: still
        // preserved; incoming: until CONFIRM).
        held.copies
            .get(&token)
            .map(|fd| fd.try_clone())
            .transpose()
            .map_err(|e| {
                Response::refused(
                    Refusal::Failed,
                    e.raw_os_error().unwrap_or(0),
                    format!("duplicating token {token} of {name:?}: {e}"),
                )
            })?
            .ok_or_else(|| Response::refused(Refusal::Failed, 0, "handed file vanished"))
    }

    fn confirm(&mut self, name: &str, token: u64) -> Response {
        let Some(held) = self.sessions.get_mut(name) else {
            return Response::refused(
                Refusal::UnknownSession,
                libc::ENOENT,
                format!("no session {name:?}"),
            );
        };
        if held.direction == Direction::Outgoing && held.copies.contains_key(&token) {
            // A copy of a file that stays preserved: nothing to let go of.
            return Response::Ok;
        }
        if held.direction == Direction::Outgoing || held.copies.remove(&token).is_none() {
            return Response::refused(
                Refusal::UnknownToken,
                libc::ENOENT,
                format!("session {name:?} handed out no file {token} to confirm"),
            );
        }
        if held.tokens.is_empty() && held.copies.is_empty() && !held.delegated {
            // Every file is safe with its owner: the session is done.
            if held.session.finish().is_ok() {
                self.sessions.remove(name);
            }
        }
        Response::Ok
    }

    fn release(&mut self, name: &str) -> Response {
        let Some(held) = self.sessions.get(name) else {
            return Response::refused(
                Refusal::UnknownSession,
                libc::ENOENT,
                format!("no session {name:?}"),
            );
        };
        if held.direction == Direction::Incoming {
            // The client a session was delegated to may have finished it already.
            if let (Err(e), false) = (held.session.finish(), held.delegated) {
                return refusal(&e, &format!("finishing session {name:?}"));
            }
        }
        self.sessions.remove(name);
        Response::Ok
    }

    /// Takes on a session someone kept for the agent (systemd's fd store, see
    /// [`crate::systemd`]), with the tokens it holds.
    pub fn adopt(
        &mut self,
        name: String,
        session: D::Session,
        owner: u32,
        direction: Direction,
        tokens: Vec<u64>,
        delegated: bool,
    ) {
        self.sessions.insert(
            name,
            Held::new(session, owner, direction, tokens, delegated),
        );
    }

    /// Every session held, as the fd store keeps it (see [`crate::systemd`]).
    pub fn held(&self) -> Vec<HeldView<'_, D::Session>> {
        self.sessions
            .iter()
            .map(|(name, h)| HeldView {
                name,
                session: &h.session,
                owner: h.owner,
                info: SessionInfo {
                    name: name.clone(),
                    direction: h.direction,
                    tokens: h.unconfirmed(),
                    delegated: h.delegated,
                },
                handed: match h.direction {
                    Direction::Incoming => {
                        h.copies.iter().map(|(t, fd)| (*t, fd.as_fd())).collect()
                    }
                    // Preserved files stay out of the fd store: systemd would try to preserve
                    // them a second time at the kexec.
                    Direction::Outgoing => Vec::new(),
                },
            })
            .collect()
    }

    /// Gives session `name` back the file of `token` it had handed out unconfirmed before the
    /// agent restarted (kept in the fd store meanwhile).
    pub fn adopt_handed(&mut self, name: &str, token: u64, file: OwnedFd) -> bool {
        let Some(held) = self.sessions.get_mut(name) else {
            return false;
        };
        let Some(pos) = held.tokens.iter().position(|&t| t == token) else {
            return false;
        };
        held.tokens.remove(pos);
        held.copies.insert(token, file);
        held.claimed = true;
        true
    }

    /// The sessions held.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.list_where(|_| true)
    }

    /// The sessions of `uid` (every session for root) after `after`, as many as fit in one
    /// message ([`LIST_PAGE_BYTES`]).
    fn page(&self, uid: u32, after: &str) -> Response {
        let mut page = Vec::new();
        let mut bytes = 0;
        let mine = self
            .sessions
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .filter(|(_, h)| uid == ROOT || h.owner == uid);
        for (name, h) in mine {
            // Its encoded size: the name and a few words, at most 21 bytes per token.
            let size = name.len() + 32 + 21 * (h.tokens.len() + h.copies.len());
            if !page.is_empty() && bytes + size > LIST_PAGE_BYTES {
                return Response::Page(page);
            }
            bytes += size;
            page.push(SessionInfo {
                name: name.clone(),
                direction: h.direction,
                tokens: h.unconfirmed(),
                delegated: h.delegated,
            });
        }
        Response::Sessions(page)
    }

    /// The sessions held whose owner passes `mine`.
    fn list_where(&self, mine: impl Fn(u32) -> bool) -> Vec<SessionInfo> {
        self.sessions
            .iter()
            .filter(|(_, h)| mine(h.owner))
            .map(|(name, h)| SessionInfo {
                name: name.clone(),
                direction: h.direction,
                tokens: h.unconfirmed(),
                delegated: h.delegated,
            })
            .collect()
    }

    /// Preserves a new manifest of the outgoing sessions for the next kernel, then lets the
    /// previous one go: the two alternate between [`MANIFEST_SESSIONS`], so a kexec at any
    /// moment (the agent's, a plain `kexec -e`) carries at least one whole manifest, and the
    /// next agent takes the newest.
    pub fn write_record(&mut self) -> std::io::Result<()> {
        let entries: Vec<Recorded> = self
            .sessions
            .iter()
            .filter(|(_, h)| h.direction == Direction::Outgoing)
            .map(|(n, h)| Recorded {
                name: n.clone(),
                owner: h.owner,
                tokens: h.tokens.clone(),
                delegated: h.delegated,
            })
            .collect();
        let seq = self.record.as_ref().map_or(self.record_base, |r| r.1) + 1;
        let mut f = std::fs::File::from(crate::sys::memfd(c"luo-agent-manifest")?);
        f.write_all(format_record(seq, &entries).as_bytes())?;
        let name = MANIFEST_SESSIONS[usize::from(seq.is_multiple_of(2))];
        let session = self.device.create_session(name).map_err(io_error)?;
        session
            .preserve_fd(f.as_fd(), MANIFEST_TOKEN)
            .map_err(io_error)?;
        self.record = Some((session, seq));
        Ok(())
    }
}
