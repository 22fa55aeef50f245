//! systemd's fd store as the keeper of the agent's sessions.
//!
//! `/dev/liveupdate` can be open in one process at a time, and on a systemd machine systemd
//! needs it too: PID 1 opens it at boot to take back the fd stores of the previous kernel, and
//! systemd-shutdown opens it at `systemctl kexec` to preserve them. An agent that kept the
//! device open would lock systemd (and every service that makes its own sessions) out, and an
//! agent that did the kexec itself would bypass systemd's shutdown and lose the fd stores.
//!
//! So under systemd (`luo-agent --systemd`, as `luo-agent.service`) the agent opens the device
//! only for the call it makes, and keeps everything it holds in its own fd store, which
//! systemd carries across the update (`FileDescriptorStorePreserve=yes`):
//!
//! * each session's fd, named `s-` and the session name in hex: systemd keeps a LUO session
//!   fd across a kexec by its session name and gives the retrieved session back under the
//!   same fd name;
//! * each file handed to a client that did not confirm it yet (see `Request::Confirm`), named
//!   `f-`, its token, `-` and the session name in hex, so that a restart does not lose it;
//! * the manifest (which tokens each session holds, its owner, and whether it is outgoing or
//!   came from the previous kernel), a memfd rewritten after every change under two alternating names,
//!   `manifest-a` and `manifest-b`, so that one is always whole.
//!
//! The same store gives everything back when the agent restarts without an update (a crash,
//! `systemctl restart`), so a restart loses nothing either. A live update is `systemctl kexec`
//! (the agent's KEXEC request loads the kernel and asks systemd to do it).

use crate::agent::{format_tokens, parse_tokens, Agent, Device};
use crate::proto::Direction;
use std::collections::BTreeSet;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// The first line of a manifest in the fd store.
const MANIFEST_MAGIC: &str = "luo-agent fdstore 1";
/// The two names the manifest alternates between.
const MANIFEST_NAMES: [&str; 2] = ["manifest-a", "manifest-b"];
/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// The fd name of session `name` in the store.
pub fn fd_name(session: &str) -> String {
    let hex: String = session.bytes().map(|b| format!("{b:02x}")).collect();
    format!("s-{hex}")
}

/// The fd name of the handed-out file `token` of session `session`.
pub fn handed_fd_name(session: &str, token: u64) -> String {
    format!("f-{token}{}", &fd_name(session)[1..])
}

/// The session and token behind a handed-out file's fd name, if it is one.
pub fn handed_name(fd_name: &str) -> Option<(String, u64)> {
    let rest = fd_name.strip_prefix("f-")?;
    let (token, hex) = rest.split_once('-')?;
    Some((session_name(&format!("s-{hex}"))?, token.parse().ok()?))
}

/// The session name behind an fd name, if it is one.
pub fn session_name(fd_name: &str) -> Option<String> {
    let hex = fd_name.strip_prefix("s-")?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// The boot's identity: a manifest written in another boot crossed a kexec.
pub fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

/// One session of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// The uid that owns the session.
    pub owner: u32,
    pub direction: Direction,
    pub tokens: Vec<u64>,
    /// Delegated to its client (see `agent::format_tokens`).
    pub delegated: bool,
}

/// A manifest: when and in which boot it was written, and the sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub seq: u64,
    pub boot: String,
    pub sessions: Vec<Entry>,
}

impl Manifest {
    /// The text stored in the memfd.
    pub fn format(&self) -> String {
        let mut s = format!("{MANIFEST_MAGIC} {}\nboot {}\n", self.seq, self.boot);
        for e in &self.sessions {
            let dir = match e.direction {
                Direction::Outgoing => "out",
                Direction::Incoming => "in",
            };
            let tokens = format_tokens(&e.tokens, e.delegated);
            s.push_str(&format!(
                "{dir} {tokens} {} {}\n",
                fd_name(&e.name),
                e.owner
            ));
        }
        s
    }

    /// Reads a manifest; `None` if any line is not one this version writes.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let seq = lines
            .next()?
            .strip_prefix(MANIFEST_MAGIC)?
            .strip_prefix(' ')?
            .parse()
            .ok()?;
        let boot = lines.next()?.strip_prefix("boot ")?.to_owned();
        let mut sessions = Vec::new();
        for line in lines {
            let mut f = line.split(' ');
            let direction = match f.next()? {
                "out" => Direction::Outgoing,
                "in" => Direction::Incoming,
                _ => return None,
            };
            let (tokens, delegated) = parse_tokens(f.next()?)?;
            let name = session_name(f.next()?)?;
            let owner = f.next()?.parse().ok()?;
            if f.next().is_some() {
                return None;
            }
            sessions.push(Entry {
                name,
                owner,
                direction,
                tokens,
                delegated,
            });
        }
        Some(Manifest {
            seq,
            boot,
            sessions,
        })
    }

    /// What an entry is in boot `now`: unchanged in the boot that wrote it; an outgoing
    /// session written in another boot crossed a kexec and is incoming; an incoming one
    /// cannot have crossed again (`None`).
    pub fn direction_now(&self, entry: &Entry, now: &str) -> Option<Direction> {
        match (self.boot == now, entry.direction) {
            (true, d) => Some(d),
            (false, Direction::Outgoing) => Some(Direction::Incoming),
            (false, Direction::Incoming) => None,
        }
    }
}

/// The fds systemd passed to this process (`LISTEN_FDS`), with their names; the variables
/// are removed so that children do not see them. Each fd gets close-on-exec.
pub fn listen_fds() -> Vec<(String, OwnedFd)> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<RawFd>().ok())
        .unwrap_or(0);
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    if !pid_ok || n <= 0 {
        return Vec::new();
    }
    let mut names = names.split(':');
    (LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(n))
        .map(|fd| {
            // SAFETY: systemd passed fds LISTEN_FDS_START.. (LISTEN_FDS of them) to this
            // process, which has not used them; each is taken here once.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
            (names.next().unwrap_or("unknown").to_owned(), owned)
        })
        .collect()
}

/// systemd's notification socket (`NOTIFY_SOCKET`).
pub struct Notifier {
    addr: rustix::net::SocketAddrUnix,
    sock: OwnedFd,
}

impl Notifier {
    /// The socket named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace);
    /// `None` if the variable is not set.
    pub fn from_env() -> Option<io::Result<Self>> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        Some(Self::new(path.as_bytes()))
    }

    fn new(path: &[u8]) -> io::Result<Self> {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let addr = match path {
            [] => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
            [b'@', name @ ..] => SocketAddrUnix::new_abstract_name(name)?,
            _ => SocketAddrUnix::new(std::ffi::OsStr::from_bytes(path))?,
        };
        let sock = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok(Notifier { addr, sock })
    }

    /// Sends `msg`, with `fd` attached if given.
    pub fn send(&self, msg: &str, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        crate::fdpass::send_to(self.sock.as_fd(), Some(&self.addr), msg.as_bytes(), fd)
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={status}"), None)
    }

    /// Puts `fd` in the fd store under `name`.
    pub fn store(&self, name: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.send(&format!("FDSTORE=1\nFDNAME={name}"), Some(fd))
    }

    /// Removes every fd named `name` from the fd store.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        self.send(&format!("FDSTOREREMOVE=1\nFDNAME={name}"), None)
    }
}

/// Keeps the fd store in step with what the agent holds.
pub struct Keeper {
    notifier: Notifier,
    boot: String,
    seq: u64,
    /// The session fd names this process put in (or found in) the store.
    stored: BTreeSet<String>,
}

/// What [`Keeper::adopt`] did, line by line, for the log.
pub type Log = Vec<String>;

fn read_all(fd: OwnedFd) -> io::Result<String> {
    let mut f = std::fs::File::from(fd);
    let mut s = String::new();
    f.rewind()?;
    f.read_to_string(&mut s)?;
    Ok(s)
}

impl Keeper {
    /// A keeper writing through `notifier`.
    pub fn new(notifier: Notifier) -> io::Result<Self> {
        Ok(Keeper {
            notifier,
            boot: boot_id()?,
            seq: 0,
            stored: BTreeSet::new(),
        })
    }

    /// Takes back what the fd store held (`fds`, from [`listen_fds`]): after a live update,
    /// the sessions of the previous kernel (incoming); after a restart, the sessions as they
    /// were. Sessions the manifest does not name stay in the store, untouched.
    pub fn adopt<D: Device<Session = liveupdate::Session>>(
        &mut self,
        agent: &mut Agent<D>,
        fds: Vec<(String, OwnedFd)>,
    ) -> Log {
        let mut log = Vec::new();
        let mut manifest: Option<Manifest> = None;
        let mut sessions = Vec::new();
        let mut handed = Vec::new();
        for (name, fd) in fds {
            if MANIFEST_NAMES.contains(&name.as_str()) {
                match read_all(fd).map(|t| Manifest::parse(&t)) {
                    Ok(Some(m)) if manifest.as_ref().is_none_or(|old| m.seq > old.seq) => {
                        manifest = Some(m)
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => log.push(format!("the fd store's {name} is malformed; ignored")),
                    Err(e) => log.push(format!("cannot read the fd store's {name}: {e}")),
                }
            } else if let Some(session) = session_name(&name) {
                self.stored.insert(name);
                sessions.push((session, fd));
            } else if let Some((session, token)) = handed_name(&name) {
                self.stored.insert(name);
                handed.push((session, token, fd));
            } else {
                log.push(format!("the fd store holds an fd named {name:?}; ignored"));
            }
        }
        let Some(manifest) = manifest else {
            if !sessions.is_empty() {
                log.push(format!(
                    "no manifest in the fd store: {} session fd(s) left there, not adopted",
                    sessions.len()
                ));
            }
            return log;
        };
        self.seq = manifest.seq;
        for (name, fd) in sessions {
            let Some(entry) = manifest.sessions.iter().find(|e| e.name == name) else {
                log.push(format!(
                    "session {name:?} is not in the manifest; left in the fd store"
                ));
                continue;
            };
            let Some(direction) = manifest.direction_now(entry, &self.boot) else {
                log.push(format!(
                    "session {name:?} came from a kernel before the last one; dropped"
                ));
                self.stored.remove(&fd_name(&name));
                let _ = self.notifier.remove(&fd_name(&name));
                continue;
            };
            let what = match direction {
                Direction::Incoming => "from the previous kernel",
                Direction::Outgoing => "kept across the agent's restart",
            };
            log.push(format!(
                "adopted session {name:?} with {} file(s) {what}",
                entry.tokens.len()
            ));
            let session = match direction {
                Direction::Incoming => liveupdate::IncomingSession::from_fd(fd).into(),
                Direction::Outgoing => liveupdate::OutgoingSession::from_fd(fd).into(),
            };
            agent.adopt(
                name,
                session,
                entry.owner,
                direction,
                entry.tokens.clone(),
                entry.delegated,
            );
        }
        for (session, token, fd) in handed {
            if agent.adopt_handed(&session, token, fd) {
                log.push(format!(
                    "file {token} of session {session:?} was handed out unconfirmed; kept for \
                     its client"
                ));
            }
        }
        log
    }

    /// Brings the fd store in step with `agent`: stores the fds of new sessions, removes
    /// those of sessions let go, and writes the manifest anew.
    pub fn sync<D: Device<Session = liveupdate::Session>>(
        &mut self,
        agent: &Agent<D>,
    ) -> io::Result<()> {
        let held = agent.held();
        let mut names = BTreeSet::new();
        for view in &held {
            let mut wanted = vec![(fd_name(view.name), view.session.as_fd())];
            wanted.extend(
                view.handed
                    .iter()
                    .map(|(token, fd)| (handed_fd_name(view.name, *token), *fd)),
            );
            for (fd_name, fd) in wanted {
                if !self.stored.contains(&fd_name) {
                    self.notifier.store(&fd_name, fd)?;
                    self.stored.insert(fd_name.clone());
                }
                names.insert(fd_name);
            }
        }
        for gone in self.stored.difference(&names).cloned().collect::<Vec<_>>() {
            self.notifier.remove(&gone)?;
            self.stored.remove(&gone);
        }
        self.seq += 1;
        let manifest = Manifest {
            seq: self.seq,
            boot: self.boot.clone(),
            sessions: held
                .iter()
                .map(|view| Entry {
                    name: view.name.to_string(),
                    owner: view.owner,
                    direction: view.info.direction,
                    tokens: view.info.tokens.clone(),
                    delegated: view.info.delegated,
                })
                .collect(),
        };
        let memfd = crate::sys::memfd(c"luo-agent-manifest")?;
        let mut f = std::fs::File::from(memfd);
        f.write_all(manifest.format().as_bytes())?;
        // The new one in, then the old one out: one is whole at every moment.
        let name = MANIFEST_NAMES[(self.seq % 2) as usize];
        let old = MANIFEST_NAMES[((self.seq + 1) % 2) as usize];
        self.notifier.remove(name)?;
        self.notifier.store(name, f.as_fd())?;
        self.notifier.remove(old)
    }

    /// The notification socket, for readiness and status.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }
}
