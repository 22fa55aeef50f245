//! The agent's socket: every client served from one poll loop, one request at a time.

use crate::agent::{Agent, Device, ROOT};
use crate::fdpass;
use crate::kexec::{Image, Kexec};
use crate::log::Priority;
use crate::proto::{Refusal, Request, Response};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Called with the agent after every request that may have changed what it holds.
pub type ChangedFn<D> = dyn Fn(&mut Agent<D>) -> io::Result<()> + Send + Sync;

/// Writes one line of the log at a priority (see [`crate::log`]).
pub type LogFn = dyn Fn(Priority, &str) + Send + Sync;

/// Has the system manager perform the live update of a loaded kernel.
pub type HandOverFn = dyn Fn() -> io::Result<()> + Send + Sync;

/// How a live update carries the agent's record of its sessions.
pub enum Manifest {
    /// In a session of its own ([`Agent::write_record`]), kept current by the `changed` hook
    /// and written again at the KEXEC request; the agent kexecs itself.
    Session,
    /// Kept by someone else all along (systemd's fd store, see [`crate::systemd`]), who also
    /// performs the update: `kexec` only loads the kernel, and once the client has its answer
    /// `hand_over` asks for the update.
    Kept { hand_over: Box<HandOverFn> },
}

/// At most this many clients are connected at once (fewer if the agent may open fewer than
/// twice as many descriptors); at the limit, a new client takes the place of the longest-idle
/// client of the user with the most connections.
pub const MAX_CLIENTS: usize = 4096;
/// A client that sends no request for this long is disconnected.
pub const IDLE: Duration = Duration::from_secs(300);

/// A connected client: its socket, who it is (from the socket, at connect time) and when it
/// last asked for something.
struct Conn {
    sock: OwnedFd,
    pid: i32,
    uid: u32,
    last: Instant,
}

/// The clients of [`Server::run`] and the limit on them.
struct Clients {
    conns: Vec<Conn>,
    max: usize,
    /// Clients disconnected at the limit since it was last logged, and when that was.
    evicted: usize,
    logged: Option<Instant>,
}

impl Clients {
    /// Disconnects the longest-idle client of the user holding the most connections, so that a
    /// flood of idle connections from one user costs that user, not everyone else.
    fn evict(&mut self, log: &LogFn) -> bool {
        let mut per_uid: BTreeMap<u32, usize> = BTreeMap::new();
        for c in &self.conns {
            *per_uid.entry(c.uid).or_default() += 1;
        }
        let Some((&uid, _)) = per_uid.iter().max_by_key(|(_, n)| **n) else {
            return false;
        };
        let Some(i) = (0..self.conns.len())
            .filter(|&i| self.conns[i].uid == uid)
            .min_by_key(|&i| self.conns[i].last)
        else {
            return false;
        };
        self.conns.swap_remove(i);
        self.evicted += 1;
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            log(
                Priority::Warning,
                &format!(
                    "{} clients connected (the limit): {} longest-idle client(s) of the busiest \
                 user (uid {uid}) disconnected",
                    self.conns.len() + 1,
                    self.evicted
                ),
            );
            self.evicted = 0;
            self.logged = Some(Instant::now());
        }
        true
    }
}

/// How many clients may be connected at once: [`MAX_CLIENTS`], or half the descriptors the
/// agent may open (the rest are for the sessions and files it holds).
fn client_capacity() -> usize {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let half = lim
        .current
        .map_or(usize::MAX, |n| usize::try_from(n / 2).unwrap_or(usize::MAX));
    half.clamp(1, MAX_CLIENTS)
}

/// The time since boot, suspend included (CLOCK_BOOTTIME): the agent's restarts do not move
/// the grace time for unclaimed sessions.
fn since_boot() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// What is left to do once a client has its answer.
enum After {
    Nothing,
    /// The system manager performs the live update.
    HandOver,
}

/// The agent and how it kexecs.
pub struct Server<D: Device> {
    pub agent: Mutex<Agent<D>>,
    pub kexec: Box<dyn Kexec>,
    pub log: Box<LogFn>,
    pub manifest: Manifest,
    pub changed: Option<Box<ChangedFn<D>>>,
    /// How long after boot the sessions of the previous kernel nobody asked for are kept
    /// ([`Agent::release_unclaimed`]); `None`: for good.
    pub unclaimed_grace: Option<Duration>,
}

impl<D> Server<D>
where
    D: Device + Send + 'static,
    D::Session: Send,
{
    /// Serves clients on `listener` (from [`fdpass::listen`]) in one thread, one request at a
    /// time, until the listener itself fails. Nothing a client does blocks the others for
    /// longer than its request takes: sockets are non-blocking, a client that does not read its
    /// answer is disconnected, idle ones are disconnected after [`IDLE`] or when the limit is
    /// reached. Running out of descriptors or memory costs a client its connection, never the
    /// agent (and with it everything it holds) its life.
    pub fn run(self: Arc<Self>, listener: OwnedFd) -> io::Error {
        if let Err(e) = fdpass::set_nonblocking(listener.as_fd()) {
            return e;
        }
        let mut clients = Clients {
            conns: Vec::new(),
            max: client_capacity(),
            evicted: 0,
            logged: None,
        };
        let mut starved = false;
        let mut grace = self.unclaimed_grace;
        loop {
            if let Some(left) = grace.map(|g| g.saturating_sub(since_boot())) {
                if left.is_zero() {
                    self.release_unclaimed();
                    grace = None;
                }
            }
            let now = Instant::now();
            clients.conns.retain(|c| {
                let idle = now.duration_since(c.last) >= IDLE;
                if idle {
                    (self.log)(
                        Priority::Info,
                        &format!(
                            "uid {} pid {}: idle for {} s, disconnected",
                            c.uid,
                            c.pid,
                            IDLE.as_secs()
                        ),
                    );
                }
                !idle
            });
            let wait = if starved {
                Duration::from_millis(50)
            } else {
                clients
                    .conns
                    .iter()
                    .map(|c| IDLE.saturating_sub(now.duration_since(c.last)))
                    .min()
                    .unwrap_or(IDLE)
                    .min(grace.map_or(IDLE, |g| g.saturating_sub(since_boot())))
            };
            let mut polled = Vec::with_capacity(clients.conns.len() + 1);
            // New clients are always taken (at the limit one makes room), unless descriptors
            // ran out with nobody to disconnect: then the listener waits a little.
            polled.push(fdpass::Polled::new(listener.as_fd(), !starved));
            polled.extend(
                clients
                    .conns
                    .iter()
                    .map(|c| fdpass::Polled::new(c.sock.as_fd(), true)),
            );
            match fdpass::poll(&mut polled, wait) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return e,
            }
            starved = false;
            let ready: Vec<bool> = polled.iter().map(|p| p.ready()).collect();
            drop(polled);
            // From the last, so that swap_remove moves only clients already served.
            for i in (0..clients.conns.len()).rev() {
                if ready[i + 1] && !self.serve_one(&mut clients.conns[i]) {
                    clients.conns.swap_remove(i);
                }
            }
            if ready[0] {
                match self.accept_all(listener.as_fd(), &mut clients) {
                    Ok(s) => starved = s,
                    Err(e) => return e,
                }
            }
        }
    }

    /// Lets go of the sessions of the previous kernel that nobody claimed in time.
    fn release_unclaimed(&self) {
        let Some(mut agent) = self.lock() else {
            return;
        };
        let released = agent.release_unclaimed();
        for name in &released {
            (self.log)(
                Priority::Notice,
                &format!(
                    "nobody asked for session {name:?} in time: released, its files discarded"
                ),
            );
        }
        if let (Some(changed), false) = (&self.changed, released.is_empty()) {
            if let Err(e) = changed(&mut agent) {
                (self.log)(Priority::Err, &format!("cannot record the change: {e}"));
            }
        }
    }

    /// Accepts every client waiting on `listener`. Returns whether it had to stop for want of
    /// descriptors with nobody left to disconnect.
    fn accept_all(&self, listener: BorrowedFd<'_>, clients: &mut Clients) -> io::Result<bool> {
        loop {
            let sock = match fdpass::accept(listener) {
                Ok(s) => s,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(false),
                    Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        if clients.evict(&*self.log) {
                            continue;
                        }
                        (self.log)(
                            Priority::Warning,
                            &format!("cannot accept clients for now: {e}"),
                        );
                        return Ok(true);
                    }
                    _ => return Err(e),
                },
            };
            let (pid, uid) = match fdpass::peer(sock.as_fd()) {
                Ok(p) => p,
                Err(e) => {
                    (self.log)(
                        Priority::Warning,
                        &format!("client dropped: cannot tell who it is: {e}"),
                    );
                    continue;
                }
            };
            if clients.conns.len() >= clients.max {
                clients.evict(&*self.log);
            }
            clients.conns.push(Conn {
                sock,
                pid,
                uid,
                last: Instant::now(),
            });
        }
    }

    /// Answers the request waiting on `conn`; `false` once the client is gone.
    fn serve_one(&self, conn: &mut Conn) -> bool {
        let (msg, fds) = match fdpass::recv(conn.sock.as_fd()) {
            Ok(Some(m)) => m,
            Ok(None) => return false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) => {
                (self.log)(
                    Priority::Warning,
                    &format!("uid {} pid {}: dropped: {e}", conn.uid, conn.pid),
                );
                return false;
            }
        };
        conn.last = Instant::now();
        let (resp, fd, after) = self.answer(conn.uid, conn.pid, &msg, fds);
        let sent = fdpass::send(
            conn.sock.as_fd(),
            &resp.encode(),
            fd.as_ref().map(|f| f.as_fd()),
        );
        self.after(after);
        if let Err(e) = sent {
            (self.log)(
                Priority::Warning,
                &format!(
                    "uid {} pid {}: gone before its answer ({e})",
                    conn.uid, conn.pid
                ),
            );
            return false;
        }
        true
    }

    /// Answers one client's requests on a blocking socket until it disconnects: the agent
    /// serving a single connection (tests, and a caller that accepts connections itself).
    pub fn client(&self, conn: OwnedFd) {
        let (pid, uid) = match fdpass::peer(conn.as_fd()) {
            Ok(p) => p,
            Err(e) => {
                (self.log)(
                    Priority::Warning,
                    &format!("client dropped: cannot tell who it is: {e}"),
                );
                return;
            }
        };
        while let Ok(Some((msg, fds))) = fdpass::recv(conn.as_fd()) {
            let (resp, fd, after) = self.answer(uid, pid, &msg, fds);
            let sent = fdpass::send(conn.as_fd(), &resp.encode(), fd.as_ref().map(|f| f.as_fd()));
            self.after(after);
            if sent.is_err() {
                return;
            }
        }
    }

    /// The answer to one message of a client, logged if it is a refusal.
    fn answer(
        &self,
        uid: u32,
        pid: i32,
        msg: &[u8],
        fds: Vec<OwnedFd>,
    ) -> (Response, Option<OwnedFd>, After) {
        let req = match Request::decode(msg) {
            Ok(req) => req,
            Err(e) => {
                let resp = Response::refused(Refusal::BadRequest, 0, e.to_string());
                return (resp, None, After::Nothing);
            }
        };
        let (resp, fd) = self.handle_from(uid, pid, &req, fds);
        if let Response::Refused { why, message, .. } = &resp {
            (self.log)(
                Priority::Warning,
                &format!(
                    "uid {uid} pid {pid}: {} refused ({why:?}): {message}",
                    req.verb()
                ),
            );
        }
        let after = match (&req, &resp, &self.manifest) {
            (Request::Kexec { .. }, Response::Ok, Manifest::Kept { .. }) => After::HandOver,
            _ => After::Nothing,
        };
        (resp, fd, after)
    }

    fn after(&self, after: After) {
        if let (After::HandOver, Manifest::Kept { hand_over }) = (after, &self.manifest) {
            // The machine goes down from here: the client has its answer first.
            if let Err(e) = hand_over() {
                (self.log)(
                    Priority::Err,
                    &format!("the system manager did not take the update: {e}"),
                );
                self.unload();
            }
        }
    }

    /// Answers one request of a client running as `uid`, with the descriptors that came with
    /// it ([`Server::client`] reads them from the socket).
    pub fn handle(
        &self,
        uid: u32,
        req: &Request,
        fds: Vec<OwnedFd>,
    ) -> (Response, Option<OwnedFd>) {
        self.handle_from(uid, 0, req, fds)
    }

    /// [`Server::handle`] for the client `pid` (for the log; 0 if not known).
    pub fn handle_from(
        &self,
        uid: u32,
        pid: i32,
        req: &Request,
        fds: Vec<OwnedFd>,
    ) -> (Response, Option<OwnedFd>) {
        if let Request::Kexec {
            kernel,
            initrd,
            cmdline,
        } = req
        {
            return self.live_update(uid, pid, kernel, initrd, cmdline, fds);
        }
        let Some(mut agent) = self.lock() else {
            return (lost(), None);
        };
        let (resp, fd) = agent.handle_as(uid, req, fds);
        if matches!(resp, Response::Refused { .. }) {
            // Logged by the caller, with the reason; nothing changed.
            return (resp, fd);
        }
        if let (Some(changed), false) = (&self.changed, matches!(req, Request::List { .. })) {
            if let Err(e) = changed(&mut agent) {
                (self.log)(
                    Priority::Err,
                    &format!("cannot record the change for the next boot: {e}"),
                );
            }
        }
        if let Some(what) = granted(req) {
            (self.log)(Priority::Info, &format!("uid {uid} pid {pid}: {what}"));
        }
        (resp, fd)
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Agent<D>>> {
        self.agent.lock().ok()
    }

    /// KEXEC: the image is opened and checked before anything else, then loaded; the machine
    /// goes down only once it is, and a failure unloads it again.
    fn live_update(
        &self,
        uid: u32,
        pid: i32,
        kernel: &str,
        initrd: &str,
        cmdline: &str,
        fds: Vec<OwnedFd>,
    ) -> (Response, Option<OwnedFd>) {
        if uid != ROOT {
            let why = "only root may live update the machine";
            return (
                Response::refused(Refusal::NotPermitted, libc::EPERM, why),
                None,
            );
        }
        if !fds.is_empty() {
            let why = "KEXEC takes no descriptor";
            return (Response::refused(Refusal::BadRequest, 0, why), None);
        }
        // Opened outside the lock: a slow file system stalls this client alone.
        let image = match Image::open(kernel, initrd, cmdline) {
            Ok(i) => i,
            Err(r) => return (r, None),
        };
        let failed = |what: &str, e: io::Error| {
            let errno = e.raw_os_error().unwrap_or(0);
            let resp = Response::refused(Refusal::Failed, errno, format!("{what}: {e}"));
            (resp, None)
        };
        // The lock stays held to the end: nothing may change once the record is written.
        let Some(mut agent) = self.lock() else {
            return (lost(), None);
        };
        if let Manifest::Session = self.manifest {
            if let Err(e) = agent.write_record() {
                return failed("writing the record of the sessions", e);
            }
        }
        let held: usize = agent.list().iter().map(|s| s.tokens.len()).sum();
        let sessions = agent.list().len();
        if let Err(e) = self.kexec.load(&image) {
            return failed(&format!("loading {kernel}"), e);
        }
        let how = match self.manifest {
            Manifest::Kept { .. } => ", handed to the system manager",
            Manifest::Session => "",
        };
        (self.log)(
            Priority::Notice,
            &format!(
                "uid {uid} pid {pid}: live update into {kernel}{how}: {sessions} session(s), \
             {held} file(s) held"
            ),
        );
        if let Manifest::Kept { .. } = self.manifest {
            // The system manager goes on once the client has its answer (`After::HandOver`).
            return (Response::Ok, None);
        }
        (self.log)(Priority::Notice, "rebooting into the new kernel");
        let e = self.kexec.reboot();
        self.unload();
        failed("reboot", e)
    }

    /// Unloads a kernel loaded for an update that did not happen.
    fn unload(&self) {
        if let Err(e) = self.kexec.unload() {
            (self.log)(
                Priority::Err,
                &format!("cannot unload the kernel of the failed update: {e}"),
            );
        }
    }
}

/// What a request the agent granted did, for the log (KEXEC logs itself).
fn granted(req: &Request) -> Option<String> {
    Some(match req {
        Request::Preserve { session, token } => {
            format!("holding token {token} of session {session:?}")
        }
        Request::Retrieve { session, token } => {
            format!("handed back token {token} of session {session:?}")
        }
        Request::Confirm { session, token } => {
            format!("confirmed token {token} of session {session:?}")
        }
        Request::Release { session } => format!("released session {session:?}"),
        Request::Delegate { session } => format!("delegated session {session:?}"),
        Request::List { after } if after.is_empty() => "listed its sessions".to_owned(),
        Request::List { after } => format!("listed its sessions after {after:?}"),
        Request::Kexec { .. } => return None,
    })
}

fn lost() -> Response {
    Response::refused(Refusal::Failed, 0, "agent state lost")
}
