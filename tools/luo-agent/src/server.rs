//! The agent's socket: one thread per client, one agent behind a lock.

use crate::agent::{Agent, Device, ROOT};
use crate::fdpass;
use crate::proto::{Refusal, Request, Response};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Loads a kernel and reboots into it, or has it done: returns `Ok` when the update is under
/// way and the caller may answer (systemd does it), and an error if it failed. A kexec done
/// here does not return.
pub type KexecFn = dyn Fn(&str, &str, &str) -> io::Result<()> + Send + Sync;

/// Called with the agent after every request that may have changed what it holds.
pub type ChangedFn<D> = dyn Fn(&Agent<D>) -> io::Result<()> + Send + Sync;

/// Has the system manager perform the live update of a loaded kernel.
pub type HandOverFn = dyn Fn() -> io::Result<()> + Send + Sync;

/// How a live update carries the agent's record of its sessions.
pub enum Manifest {
    /// In a session of its own, written at the KEXEC request ([`Agent::preserve_manifest`]);
    /// the agent kexecs itself.
    Session,
    /// Kept by someone else all along (systemd's fd store, see [`crate::systemd`]), who also
    /// performs the update: `kexec` only loads the kernel, and once the client has its answer
    /// `hand_over` asks for the update.
    Kept { hand_over: Box<HandOverFn> },
}

/// At most this many clients are served at once; more are turned away until one leaves.
pub const MAX_CLIENTS: usize = 256;
/// A client that sends no request for this long is disconnected, so idle connections cannot
/// hold every slot for good.
pub const IDLE: Duration = Duration::from_secs(300);

/// One of the [`MAX_CLIENTS`] places, given back when the client's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Self {
        active.fetch_add(1, Ordering::Relaxed);
        Slot(Arc::clone(active))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The agent and how it kexecs, shared by the client threads.
pub struct Server<D: Device> {
    pub agent: Mutex<Agent<D>>,
    pub kexec: Box<KexecFn>,
    pub log: Box<dyn Fn(&str) + Send + Sync>,
    pub manifest: Manifest,
    pub changed: Option<Box<ChangedFn<D>>>,
}

impl<D> Server<D>
where
    D: Device + Send + 'static,
    D::Session: Send,
{
    /// Serves clients on `listener` (from [`fdpass::listen`]), one thread each, at most
    /// [`MAX_CLIENTS`] at a time, until the listener itself fails. Running out of descriptors,
    /// memory or threads costs the client that came at the wrong moment its connection, never
    /// the agent (and with it everything it holds) its life.
    pub fn run(self: Arc<Self>, listener: OwnedFd) -> io::Error {
        let active = Arc::new(AtomicUsize::new(0));
        let mut starved = false;
        loop {
            let conn = match fdpass::accept(listener.as_fd()) {
                Ok(c) => c,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        if !starved {
                            (self.log)(&format!("cannot accept clients for now: {e}"));
                            starved = true;
                        }
                        // Wait for clients to leave rather than spin.
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    _ => return e,
                },
            };
            if std::mem::take(&mut starved) {
                (self.log)("accepting clients again");
            }
            if active.load(Ordering::Relaxed) >= MAX_CLIENTS {
                (self.log)(&format!(
                    "{MAX_CLIENTS} clients connected already: one more turned away"
                ));
                continue;
            }
            if let Err(e) = fdpass::set_receive_timeout(conn.as_fd(), IDLE) {
                (self.log)(&format!("client dropped: {e}"));
                continue;
            }
            let slot = Slot::take(&active);
            let server = Arc::clone(&self);
            let spawned = std::thread::Builder::new()
                .name("luo-agent-client".into())
                .spawn(move || {
                    let _slot = slot;
                    server.client(conn)
                });
            if let Err(e) = spawned {
                // The closure, its connection and its slot are dropped with the error.
                (self.log)(&format!("cannot start a thread for a client, dropped: {e}"));
            }
        }
    }

    /// Answers one client's requests until it disconnects. What a client may do depends on
    /// who it is (its uid, from the socket): root anything, others only their own sessions.
    pub fn client(&self, conn: OwnedFd) {
        let (pid, uid) = match fdpass::peer(conn.as_fd()) {
            Ok(p) => p,
            Err(e) => {
                (self.log)(&format!("client dropped: cannot tell who it is: {e}"));
                return;
            }
        };
        loop {
            let (msg, fds) = match fdpass::recv(conn.as_fd()) {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    (self.log)(&format!(
                        "uid {uid} pid {pid}: idle for {} s, disconnected",
                        IDLE.as_secs()
                    ));
                    return;
                }
                Err(e) => {
                    (self.log)(&format!("client dropped: {e}"));
                    return;
                }
            };
            let (resp, fd) = match Request::decode(&msg) {
                Ok(req) => {
                    let (resp, fd) = self.handle(uid, &req, fds);
                    if let Response::Refused { why, message, .. } = &resp {
                        (self.log)(&format!(
                            "uid {uid} pid {pid}: {} refused ({why:?}): {message}",
                            req.verb()
                        ));
                    }
                    (resp, fd)
                }
                Err(e) => (
                    Response::Refused {
                        why: Refusal::BadRequest,
                        errno: 0,
                        message: e.to_string(),
                    },
                    None,
                ),
            };
            let sent = fdpass::send(conn.as_fd(), &resp.encode(), fd.as_ref().map(|f| f.as_fd()));
            if let (Ok(Request::Kexec { .. }), Response::Ok, Manifest::Kept { hand_over }) =
                (Request::decode(&msg), &resp, &self.manifest)
            {
                // The machine goes down from here: the client has its answer first.
                if let Err(e) = hand_over() {
                    (self.log)(&format!("the system manager did not take the update: {e}"));
                }
            }
            if sent.is_err() {
                return;
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
        let Ok(mut agent) = self.agent.lock() else {
            return (
                Response::Refused {
                    why: Refusal::Failed,
                    errno: 0,
                    message: "agent state lost".into(),
                },
                None,
            );
        };
        let Request::Kexec {
            kernel,
            initrd,
            cmdline,
        } = req
        else {
            let (resp, fd) = agent.handle_as(uid, req, fds);
            if let (Some(changed), false) = (&self.changed, matches!(req, Request::List { .. })) {
                if let Err(e) = changed(&agent) {
                    (self.log)(&format!("cannot record the change for the next boot: {e}"));
                }
            }
            if let (
                Request::Preserve { session, token } | Request::Retrieve { session, token },
                Response::Ok,
            ) = (req, &resp)
            {
                let verb = if matches!(req, Request::Preserve { .. }) {
                    "holding"
                } else {
                    "handed back"
                };
                (self.log)(&format!(
                    "uid {uid}: {verb} token {token} of session {session:?}"
                ));
            }
            return (resp, fd);
        };
        if uid != ROOT {
            return (
                Response::Refused {
                    why: Refusal::NotPermitted,
                    errno: libc::EPERM,
                    message: "only root may live update the machine".into(),
                },
                None,
            );
        }
        if !fds.is_empty() {
            return (
                Response::Refused {
                    why: Refusal::BadRequest,
                    errno: 0,
                    message: "KEXEC takes no descriptor".into(),
                },
                None,
            );
        }
        if let Manifest::Kept { .. } = self.manifest {
            (self.log)(&format!(
                "live update into {kernel}, handed to the system manager"
            ));
            return match (self.kexec)(kernel, initrd, cmdline) {
                Ok(()) => (Response::Ok, None),
                Err(e) => (
                    Response::Refused {
                        why: Refusal::Failed,
                        errno: e.raw_os_error().unwrap_or(0),
                        message: format!("kexec: {e}"),
                    },
                    None,
                ),
            };
        }
        let memfd = match crate::sys::memfd(c"luo-agent-manifest") {
            Ok(m) => m,
            Err(e) => {
                return (
                    Response::Refused {
                        why: Refusal::Failed,
                        errno: e.raw_os_error().unwrap_or(0),
                        message: format!("manifest: {e}"),
                    },
                    None,
                )
            }
        };
        let manifest = match agent.preserve_manifest(memfd) {
            Ok(m) => m,
            Err(r) => return (r, None),
        };
        let held: usize = agent.list().iter().map(|s| s.tokens.len()).sum();
        (self.log)(&format!(
            "live update: {} session(s), {held} file(s) preserved; loading {kernel}",
            agent.list().len()
        ));
        // The lock stays held: nothing may change once the manifest is written.
        let e = match (self.kexec)(kernel, initrd, cmdline) {
            Ok(()) => io::Error::other("the kexec returned"),
            Err(e) => e,
        };
        drop(manifest);
        (
            Response::Refused {
                why: Refusal::Failed,
                errno: e.raw_os_error().unwrap_or(0),
                message: format!("kexec: {e}"),
            },
            None,
        )
    }
}
