//! Errors that keep the kernel's errno and say what it means for the call that failed.

use std::fmt;
use std::io;

/// The operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Opening `/dev/liveupdate`.
    Open,
    /// `LIVEUPDATE_IOCTL_CREATE_SESSION`.
    CreateSession,
    /// `LIVEUPDATE_IOCTL_RETRIEVE_SESSION`.
    RetrieveSession,
    /// `LIVEUPDATE_SESSION_PRESERVE_FD`.
    PreserveFd,
    /// `LIVEUPDATE_SESSION_RETRIEVE_FD`.
    RetrieveFd,
    /// `LIVEUPDATE_SESSION_FINISH`.
    Finish,
    /// `LIVEUPDATE_SESSION_GET_NAME`.
    GetName,
}

/// A failed live update operation.
#[derive(Debug)]
pub enum Error {
    /// A session name that the kernel would refuse: empty, longer than 63 bytes, or with a NUL.
    InvalidName(String),
    /// The operation is not one a session of this direction allows (preserving into an
    /// incoming session, retrieving from or finishing an outgoing one); the kernel would
    /// refuse it with `EINVAL`.
    WrongDirection(Op),
    /// The kernel refused the operation.
    Kernel {
        /// What was attempted.
        op: Op,
        /// The errno the kernel returned.
        errno: i32,
    },
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn from_io(op: Op, e: io::Error) -> Self {
        Error::Kernel {
            op,
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// The errno, if the kernel returned one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::WrongDirection(_) => Some(libc::EINVAL),
            Error::InvalidName(_) => None,
        }
    }

    /// What the errno means for this operation, following the 7.3 kernel's behaviour.
    pub fn meaning(&self) -> &'static str {
        let (op, errno) = match self {
            Error::InvalidName(_) => {
                return "session names are 1 to 63 bytes without NUL";
            }
            Error::Kernel { op, errno } => (*op, *errno),
            Error::WrongDirection(op) => (*op, libc::EINVAL),
        };
        match (op, errno) {
            (Op::Open, libc::ENOENT) => {
                "no /dev/liveupdate: the kernel lacks LUO, or booted without liveupdate=on or KHO"
            }
            (Op::Open, libc::EBUSY) => "another process has /dev/liveupdate open",
            (Op::Open, libc::EIO) => {
                "the sessions of the previous kernel could not be restored; reboot to recover"
            }
            (Op::CreateSession, libc::EEXIST) => "a session with this name already exists",
            (Op::CreateSession, libc::EINVAL) => "the session name is empty or too long",
            (Op::CreateSession, libc::ENOSPC) => "the kernel's session table is full",
            (Op::CreateSession | Op::RetrieveSession | Op::RetrieveFd, libc::EMFILE) => {
                "this process has no free file descriptor"
            }
            (Op::RetrieveSession, libc::ENOENT) => {
                "the previous kernel handed over no session of this name"
            }
            (Op::RetrieveSession, libc::EINVAL) => "this session was already retrieved",
            (Op::PreserveFd, libc::EINVAL) => {
                "files can only be preserved in sessions created in this kernel"
            }
            (Op::PreserveFd, libc::EEXIST) => "this token is already used in the session",
            (Op::PreserveFd, libc::EBADF) => "the file descriptor is not open",
            (Op::PreserveFd, libc::ENOENT) => "no handler can preserve this kind of file",
            (Op::PreserveFd, libc::EBUSY) => "this file is already preserved in some session",
            (Op::PreserveFd, libc::EOPNOTSUPP) => {
                "the file has a property the handler cannot preserve (for a memfd: a seal)"
            }
            (Op::PreserveFd, libc::EFBIG) => "the file is too large to preserve",
            (Op::RetrieveFd, libc::EINVAL) => {
                "files can only be retrieved from sessions handed over by the previous kernel"
            }
            (Op::RetrieveFd, libc::ENOENT) => "the session holds no file with this token",
            (Op::Finish, libc::EINVAL) => {
                "only sessions handed over by the previous kernel can be finished"
            }
            (Op::Finish, libc::EBUSY) => "a file of the session cannot be finished yet",
            (_, libc::ENOMEM) => "the kernel is out of memory",
            (_, libc::EFAULT) => "the kernel could not access the argument",
            (_, libc::ENOTTY) => "not a LUO file descriptor",
            _ => "unexpected error",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName(name) => {
                write!(f, "invalid session name {name:?}: {}", self.meaning())
            }
            Error::Kernel { op, errno } => write!(
                f,
                "{op:?} failed: {} ({})",
                self.meaning(),
                io::Error::from_raw_os_error(*errno)
            ),
            Error::WrongDirection(op) => write!(f, "{op:?} refused: {}", self.meaning()),
        }
    }
}

impl std::error::Error for Error {}
