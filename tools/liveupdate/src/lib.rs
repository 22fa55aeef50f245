//! Safe Rust access to the Linux Live Update Orchestrator (LUO).
//!
//! LUO keeps chosen files (today: memfds) alive across a kexec into a new kernel. A program
//! opens `/dev/liveupdate`, creates a named *session*, and *preserves* files in it under tokens
//! it chooses. Sessions live exactly as long as their file descriptors, so something must hold
//! them until the kexec (the program itself, or an agent it hands them to). After the new kernel
//! boots, the program *retrieves* the session by name and each file by token, then *finishes*
//! the session.
//!
//! Every call maps to one ioctl of `include/uapi/linux/liveupdate.h`; errors keep the kernel's
//! errno and say what it means for that call ([`Error::meaning`]).
//!
//! # Example
//!
//! Preserve a memfd before the kexec, and get it back afterwards:
//!
//! ```no_run
//! use liveupdate::LiveUpdate;
//! use std::io::{Read, Seek, Write};
//! use std::os::fd::{AsFd, FromRawFd, OwnedFd};
//!
//! const TOKEN: u64 = 0x1234;
//!
//! fn before_kexec() -> Result<(), Box<dyn std::error::Error>> {
//!     let luo = LiveUpdate::open()?;
//!     // SAFETY of the FFI call: a valid NUL-terminated name and flags.
//!     let memfd = unsafe { libc::memfd_create(c"state".as_ptr(), 0) };
//!     let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(memfd) });
//!     file.write_all(b"state worth keeping")?;
//!     let session = luo.create_session("my-service")?;
//!     session.preserve_fd(file.as_fd(), TOKEN)?;
//!     // Keep `session` open until the kexec, e.g. by handing it to an agent.
//!     std::mem::forget(session);
//!     Ok(())
//! }
//!
//! fn after_kexec() -> Result<(), Box<dyn std::error::Error>> {
//!     let luo = LiveUpdate::open()?;
//!     let session = luo.retrieve_session("my-service")?;
//!     let mut file = std::fs::File::from(session.retrieve_fd(TOKEN)?);
//!     file.rewind()?;
//!     let mut state = String::new();
//!     file.read_to_string(&mut state)?;
//!     assert!(state.starts_with("state worth keeping"));
//!     session.finish()?;
//!     Ok(())
//! }
//! ```

mod error;
mod sys;

pub use error::{Error, Op, Result};

use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// The default path of the LUO device.
pub const DEVICE: &str = "/dev/liveupdate";

/// An open `/dev/liveupdate`. Only one may exist on a machine at a time.
#[derive(Debug)]
pub struct LiveUpdate {
    fd: OwnedFd,
}

/// A session created in this boot: the files preserved in it are handed to the next kernel.
/// It lives as long as its descriptor.
#[derive(Debug)]
pub struct OutgoingSession {
    fd: OwnedFd,
}

/// A session the previous kernel handed over: its files are retrieved, then it is finished.
#[derive(Debug)]
pub struct IncomingSession {
    fd: OwnedFd,
}

/// A session of either kind, for a program that holds both (an agent). The kernel decides
/// what may be done with a session by how it came to be; this type says it too, so that a
/// call the kernel would refuse is refused here first ([`Error::WrongDirection`]).
#[derive(Debug)]
pub enum Session {
    Outgoing(OutgoingSession),
    Incoming(IncomingSession),
}

/// Encodes a session name for the kernel, refusing names it would refuse.
fn encode_name(name: &str) -> Result<[u8; sys::SESSION_NAME_LENGTH]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= sys::SESSION_NAME_LENGTH || bytes.contains(&0) {
        return Err(Error::InvalidName(name.to_owned()));
    }
    let mut raw = [0u8; sys::SESSION_NAME_LENGTH];
    raw[..bytes.len()].copy_from_slice(bytes);
    Ok(raw)
}

use sys::owned;

impl LiveUpdate {
    /// Opens [`DEVICE`].
    pub fn open() -> Result<Self> {
        Self::open_path(DEVICE)
    }

    /// Opens the LUO device at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::from_io(Op::Open, e))?;
        Ok(Self { fd: file.into() })
    }

    fn session_ioctl(&self, cmd: u32, op: Op, name: &str) -> Result<OwnedFd> {
        let mut arg = sys::SessionArg {
            size: std::mem::size_of::<sys::SessionArg>() as u32,
            fd: -1,
            name: encode_name(name)?,
        };
        sys::ioctl(self.fd.as_fd(), cmd, &mut arg).map_err(|e| Error::from_io(op, e))?;
        owned(arg.fd).map_err(|e| Error::from_io(op, e))
    }

    /// Creates a session that will be handed to the next kernel.
    pub fn create_session(&self, name: &str) -> Result<OutgoingSession> {
        let fd = self.session_ioctl(sys::IOCTL_CREATE_SESSION, Op::CreateSession, name)?;
        Ok(OutgoingSession { fd })
    }

    /// Retrieves a session the previous kernel handed over; possible once per boot.
    pub fn retrieve_session(&self, name: &str) -> Result<IncomingSession> {
        let fd = self.session_ioctl(sys::IOCTL_RETRIEVE_SESSION, Op::RetrieveSession, name)?;
        Ok(IncomingSession { fd })
    }
}

/// The session's name (`LIVEUPDATE_SESSION_GET_NAME`), for either kind.
fn session_name(fd: BorrowedFd<'_>) -> Result<String> {
    let mut arg = sys::GetNameArg {
        size: std::mem::size_of::<sys::GetNameArg>() as u32,
        reserved: 0,
        name: [0; sys::SESSION_NAME_LENGTH],
    };
    sys::ioctl(fd, sys::SESSION_GET_NAME, &mut arg).map_err(|e| Error::from_io(Op::GetName, e))?;
    let len = arg
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(arg.name.len());
    Ok(String::from_utf8_lossy(&arg.name[..len]).into_owned())
}

impl OutgoingSession {
    /// Wraps the descriptor of an outgoing session received from elsewhere (over a Unix
    /// socket, say).
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// Gives up the wrapper and returns the descriptor (to pass it to another process).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Preserves `file` in this session under `token`; the caller may close `file` afterwards.
    pub fn preserve_fd(&self, file: BorrowedFd<'_>, token: u64) -> Result<()> {
        let mut arg = sys::FdArg {
            size: std::mem::size_of::<sys::FdArg>() as u32,
            fd: file.as_raw_fd(),
            token,
        };
        sys::ioctl(self.fd.as_fd(), sys::SESSION_PRESERVE_FD, &mut arg)
            .map_err(|e| Error::from_io(Op::PreserveFd, e))
    }

    /// The session's name.
    pub fn name(&self) -> Result<String> {
        session_name(self.fd.as_fd())
    }
}

impl IncomingSession {
    /// Wraps the descriptor of an incoming session received from elsewhere.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// Gives up the wrapper and returns the descriptor (to pass it to another process).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Retrieves the file preserved under `token` by the previous kernel.
    ///
    /// Retrieving the same token again gives another descriptor for the same open file.
    pub fn retrieve_fd(&self, token: u64) -> Result<OwnedFd> {
        let mut arg = sys::FdArg {
            size: std::mem::size_of::<sys::FdArg>() as u32,
            fd: -1,
            token,
        };
        sys::ioctl(self.fd.as_fd(), sys::SESSION_RETRIEVE_FD, &mut arg)
            .map_err(|e| Error::from_io(Op::RetrieveFd, e))?;
        owned(arg.fd).map_err(|e| Error::from_io(Op::RetrieveFd, e))
    }

    /// Finishes the session: files not retrieved by now are discarded.
    pub fn finish(&self) -> Result<()> {
        let mut arg = sys::FinishArg {
            size: std::mem::size_of::<sys::FinishArg>() as u32,
            reserved: 0,
        };
        sys::ioctl(self.fd.as_fd(), sys::SESSION_FINISH, &mut arg)
            .map_err(|e| Error::from_io(Op::Finish, e))
    }

    /// The session's name.
    pub fn name(&self) -> Result<String> {
        session_name(self.fd.as_fd())
    }
}

impl Session {
    /// [`OutgoingSession::preserve_fd`]; an incoming session refuses.
    pub fn preserve_fd(&self, file: BorrowedFd<'_>, token: u64) -> Result<()> {
        match self {
            Session::Outgoing(s) => s.preserve_fd(file, token),
            Session::Incoming(_) => Err(Error::WrongDirection(Op::PreserveFd)),
        }
    }

    /// [`IncomingSession::retrieve_fd`]; an outgoing session refuses.
    pub fn retrieve_fd(&self, token: u64) -> Result<OwnedFd> {
        match self {
            Session::Incoming(s) => s.retrieve_fd(token),
            Session::Outgoing(_) => Err(Error::WrongDirection(Op::RetrieveFd)),
        }
    }

    /// [`IncomingSession::finish`]; an outgoing session refuses.
    pub fn finish(&self) -> Result<()> {
        match self {
            Session::Incoming(s) => s.finish(),
            Session::Outgoing(_) => Err(Error::WrongDirection(Op::Finish)),
        }
    }

    /// The session's name.
    pub fn name(&self) -> Result<String> {
        session_name(self.as_fd())
    }

    /// The outgoing session, or this session back if it is incoming.
    pub fn outgoing(self) -> std::result::Result<OutgoingSession, Session> {
        match self {
            Session::Outgoing(s) => Ok(s),
            other => Err(other),
        }
    }

    /// The incoming session, or this session back if it is outgoing.
    pub fn incoming(self) -> std::result::Result<IncomingSession, Session> {
        match self {
            Session::Incoming(s) => Ok(s),
            other => Err(other),
        }
    }

    /// Gives up the wrapper and returns the descriptor.
    pub fn into_fd(self) -> OwnedFd {
        match self {
            Session::Outgoing(s) => s.into_fd(),
            Session::Incoming(s) => s.into_fd(),
        }
    }
}

impl AsFd for OutgoingSession {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsFd for IncomingSession {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsFd for Session {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Session::Outgoing(s) => s.as_fd(),
            Session::Incoming(s) => s.as_fd(),
        }
    }
}

impl From<OutgoingSession> for Session {
    fn from(s: OutgoingSession) -> Self {
        Session::Outgoing(s)
    }
}

impl From<IncomingSession> for Session {
    fn from(s: IncomingSession) -> Self {
        Session::Incoming(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_numbers_match_the_uapi() {
        assert_eq!(sys::IOCTL_CREATE_SESSION, 0xBA00);
        assert_eq!(sys::IOCTL_RETRIEVE_SESSION, 0xBA01);
        assert_eq!(sys::SESSION_PRESERVE_FD, 0xBA40);
        assert_eq!(sys::SESSION_RETRIEVE_FD, 0xBA41);
        assert_eq!(sys::SESSION_FINISH, 0xBA42);
        assert_eq!(sys::SESSION_GET_NAME, 0xBA43);
    }

    #[test]
    fn names_are_checked_before_any_syscall() {
        assert!(matches!(encode_name(""), Err(Error::InvalidName(_))));
        assert!(matches!(
            encode_name(&"n".repeat(64)),
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(encode_name("a\0b"), Err(Error::InvalidName(_))));
        let raw = encode_name(&"n".repeat(63)).unwrap();
        assert_eq!(raw[62], b'n');
        assert_eq!(raw[63], 0);
    }

    #[test]
    fn errors_keep_the_errno_and_explain_it() {
        let e = Error::Kernel {
            op: Op::PreserveFd,
            errno: libc::EBUSY,
        };
        assert_eq!(e.errno(), Some(libc::EBUSY));
        assert_eq!(
            e.meaning(),
            "this file is already preserved in some session"
        );
        let shown = e.to_string();
        assert!(
            shown.starts_with("PreserveFd failed: this file is already preserved"),
            "{shown}"
        );
        let e = Error::Kernel {
            op: Op::RetrieveSession,
            errno: libc::ENOENT,
        };
        assert_eq!(
            e.meaning(),
            "the previous kernel handed over no session of this name"
        );
        let e = Error::Kernel {
            op: Op::Open,
            errno: libc::EBUSY,
        };
        assert_eq!(e.meaning(), "another process has /dev/liveupdate open");
    }

    #[test]
    fn opening_a_missing_device_says_why() {
        let e = LiveUpdate::open_path("/nonexistent/liveupdate").unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(e.to_string().contains("no /dev/liveupdate"), "{e}");
    }

    #[test]
    fn session_ioctls_on_a_non_luo_fd_are_refused() {
        let s = IncomingSession::from_fd(std::fs::File::open("/dev/null").unwrap().into());
        let e = s.name().unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOTTY));
    }

    #[test]
    fn a_session_refuses_what_its_direction_does_not_allow() {
        let null = || -> OwnedFd { std::fs::File::open("/dev/null").unwrap().into() };
        let out = Session::from(OutgoingSession::from_fd(null()));
        assert!(matches!(
            out.retrieve_fd(1),
            Err(Error::WrongDirection(Op::RetrieveFd))
        ));
        assert!(matches!(
            out.finish(),
            Err(Error::WrongDirection(Op::Finish))
        ));
        let e = out.finish().unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL));
        assert!(
            e.to_string().contains("handed over by the previous kernel"),
            "{e}"
        );
        let inc = Session::from(IncomingSession::from_fd(null()));
        assert!(matches!(
            inc.preserve_fd(null().as_fd(), 1),
            Err(Error::WrongDirection(Op::PreserveFd))
        ));
        assert!(inc.outgoing().is_err());
    }

    #[test]
    fn a_descriptor_the_kernel_did_not_give_is_an_error() {
        assert!(sys::owned(-1).is_err());
    }
}
