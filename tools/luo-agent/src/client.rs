//! The client side: what a service calls to hand its files to the agent and get them back.

use crate::fdpass;
use crate::proto::{Direction, ParseError, Refusal, Request, Response, SessionInfo};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;

/// The default socket of the agent.
pub const SOCKET: &str = "/run/luo-agent.sock";

/// Why a request failed.
#[derive(Debug)]
pub enum ClientError {
    /// Talking to the agent failed.
    Io(io::Error),
    /// The agent answered something this client does not understand.
    Protocol(String),
    /// The agent refused: why, the kernel's errno (0 if none) and its explanation.
    Refused {
        why: Refusal,
        errno: i32,
        message: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "cannot talk to the agent: {e}"),
            ClientError::Protocol(m) => write!(f, "unexpected answer from the agent: {m}"),
            ClientError::Refused { why, message, .. } => write!(f, "refused ({why:?}): {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<ParseError> for ClientError {
    fn from(e: ParseError) -> Self {
        ClientError::Protocol(e.0)
    }
}

/// A connection to the agent. It may be shared between threads: each request and its answer
/// hold the connection, so no thread reads another's answer.
pub struct Client {
    sock: Mutex<OwnedFd>,
}

impl Client {
    /// Connects to the agent at `path` ([`SOCKET`] by default).
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        let sock = fdpass::connect(path.as_ref())?;
        Ok(Client::from_fd(sock))
    }

    /// A client over an already connected socket (for tests and socket activation).
    pub fn from_fd(sock: OwnedFd) -> Self {
        Client {
            sock: Mutex::new(sock),
        }
    }

    fn call(
        &self,
        req: &Request,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(Response, Option<OwnedFd>), ClientError> {
        // A thread that panicked mid-call left the connection as it was; the lock only orders
        // calls, so its poison is no reason to fail this one.
        let sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        fdpass::send(sock.as_fd(), &req.encode(), fd)?;
        let (msg, mut fds) = fdpass::recv(sock.as_fd())?.ok_or_else(|| {
            ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the agent closed the connection",
            ))
        })?;
        let resp = Response::decode(&msg)?;
        if let Response::Refused {
            why,
            errno,
            message,
        } = resp
        {
            return Err(ClientError::Refused {
                why,
                errno,
                message,
            });
        }
        Ok((resp, fds.pop()))
    }

    /// Gives `file` to the agent under `token` in session `session`, to be carried across the
    /// next live update.
    pub fn preserve(
        &self,
        session: &str,
        token: u64,
        file: BorrowedFd<'_>,
    ) -> Result<(), ClientError> {
        self.call(
            &Request::Preserve {
                session: session.into(),
                token,
            },
            Some(file),
        )
        .map(|_| ())
    }

    /// Tells the agent the file `token` of `session` (from [`Client::retrieve`]) is safe with
    /// this client: the agent lets go of its copy, and finishes the session once every file
    /// of it was confirmed.
    pub fn confirm(&self, session: &str, token: u64) -> Result<(), ClientError> {
        self.call(
            &Request::Confirm {
                session: session.into(),
                token,
            },
            None,
        )
        .map(|_| ())
    }

    /// Gets back the file `token` of session `session` after a live update. The agent keeps
    /// a copy until [`Client::confirm`], so a client that fails before it has what it needs
    /// can retrieve the file again.
    pub fn retrieve(&self, session: &str, token: u64) -> Result<OwnedFd, ClientError> {
        match self.call(
            &Request::Retrieve {
                session: session.into(),
                token,
            },
            None,
        )? {
            (Response::Ok, Some(fd)) => Ok(fd),
            _ => Err(ClientError::Protocol("no file with the answer".into())),
        }
    }

    /// The session itself, delegated to this client: before the update an outgoing one, to
    /// preserve files into directly (several at once, with any tokens); after it an incoming
    /// one, to retrieve them from and finish, then [`Client::release`] it. The agent keeps a reference, so an outgoing session lives
    /// on until the kexec even if this client exits.
    pub fn delegate(&self, session: &str) -> Result<liveupdate::Session, ClientError> {
        match self.call(
            &Request::Delegate {
                session: session.into(),
            },
            None,
        )? {
            (Response::Delegated(Direction::Outgoing), Some(fd)) => {
                Ok(liveupdate::OutgoingSession::from_fd(fd).into())
            }
            (Response::Delegated(Direction::Incoming), Some(fd)) => {
                Ok(liveupdate::IncomingSession::from_fd(fd).into())
            }
            _ => Err(ClientError::Protocol("no session with the answer".into())),
        }
    }

    /// The sessions the agent holds.
    pub fn list(&self) -> Result<Vec<SessionInfo>, ClientError> {
        let mut all = Vec::new();
        loop {
            let after = all
                .last()
                .map_or_else(String::new, |s: &SessionInfo| s.name.clone());
            match self.call(&Request::List { after }, None)? {
                (Response::Page(list), _) if !list.is_empty() => all.extend(list),
                (Response::Sessions(list), _) => {
                    all.extend(list);
                    return Ok(all);
                }
                _ => return Err(ClientError::Protocol("expected a session list".into())),
            }
        }
    }

    /// Lets go of a session now.
    pub fn release(&self, session: &str) -> Result<(), ClientError> {
        self.call(
            &Request::Release {
                session: session.into(),
            },
            None,
        )
        .map(|_| ())
    }

    /// Asks the agent to live update into `kernel`. An agent that kexecs itself answers only
    /// if that failed; one under systemd answers `Ok` once systemd performs the update.
    pub fn kexec(&self, kernel: &str, initrd: &str, cmdline: &str) -> Result<(), ClientError> {
        self.call(
            &Request::Kexec {
                kernel: kernel.into(),
                initrd: initrd.into(),
                cmdline: cmdline.into(),
            },
            None,
        )
        .map(|_| ())
    }
}
