// SPDX-License-Identifier: GPL-2.0

//! The userspace ABI of `/dev/liveupdate` and of session files.
//!
//! Userspace programs are compiled against `include/uapi/linux/liveupdate.h`; every layout,
//! number and limit here must match it byte for byte, which the assertions below check at
//! compile time. Every structure starts with its size as userspace knows it, so that it can grow
//! (see [`kernel::uaccess::versioned`]).

use kernel::{
    ioctl::_IO,
    transmute::{
        AsBytes,
        FromBytes, //
    }, //
};

/// The ioctl type byte of LUO.
pub(crate) const IOCTL_TYPE: u32 = 0xBA;

/// Longest session name, including its terminating NUL.
pub(crate) const SESSION_NAME_LENGTH: usize = 64;

/// Number of the first `/dev/liveupdate` command.
pub(crate) const CMD_BASE: u32 = 0x00;
/// Number of the first session file command.
pub(crate) const CMD_SESSION_BASE: u32 = 0x40;

/// `LIVEUPDATE_IOCTL_CREATE_SESSION`.
pub(crate) const IOCTL_CREATE_SESSION: u32 = _IO(IOCTL_TYPE, CMD_BASE);
/// `LIVEUPDATE_IOCTL_RETRIEVE_SESSION`.
pub(crate) const IOCTL_RETRIEVE_SESSION: u32 = _IO(IOCTL_TYPE, CMD_BASE + 1);
/// `LIVEUPDATE_SESSION_PRESERVE_FD`.
pub(crate) const SESSION_PRESERVE_FD: u32 = _IO(IOCTL_TYPE, CMD_SESSION_BASE);
/// `LIVEUPDATE_SESSION_RETRIEVE_FD`.
pub(crate) const SESSION_RETRIEVE_FD: u32 = _IO(IOCTL_TYPE, CMD_SESSION_BASE + 1);
/// `LIVEUPDATE_SESSION_FINISH`.
pub(crate) const SESSION_FINISH: u32 = _IO(IOCTL_TYPE, CMD_SESSION_BASE + 2);
/// `LIVEUPDATE_SESSION_GET_NAME`.
pub(crate) const SESSION_GET_NAME: u32 = _IO(IOCTL_TYPE, CMD_SESSION_BASE + 3);

/// `struct liveupdate_ioctl_create_session` and `struct liveupdate_ioctl_retrieve_session`,
/// which share one layout: a session name in, a new session file descriptor out.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct SessionArg {
    /// Size of the structure as userspace knows it.
    pub(crate) size: u32,
    /// Out: the new session file descriptor.
    pub(crate) fd: i32,
    /// In: the session name, NUL-terminated.
    pub(crate) name: [u8; SESSION_NAME_LENGTH],
}

/// `struct liveupdate_session_preserve_fd` and `struct liveupdate_session_retrieve_fd`, which
/// share one layout: a file descriptor (in for preserve, out for retrieve) and a token.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct FdArg {
    /// Size of the structure as userspace knows it.
    pub(crate) size: u32,
    /// The file descriptor to preserve, or the retrieved one.
    pub(crate) fd: i32,
    /// The caller's key for the file within its session.
    pub(crate) token: u64,
}

/// `struct liveupdate_session_finish`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct FinishArg {
    /// Size of the structure as userspace knows it.
    pub(crate) size: u32,
    /// Must be zero.
    pub(crate) reserved: u32,
}

/// `struct liveupdate_session_get_name`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct GetNameArg {
    /// Size of the structure as userspace knows it.
    pub(crate) size: u32,
    /// Must be zero.
    pub(crate) reserved: u32,
    /// Out: the session name, NUL-terminated.
    pub(crate) name: [u8; SESSION_NAME_LENGTH],
}

// SAFETY: These structures hold only integers and byte arrays, so every bit pattern is valid.
unsafe impl FromBytes for SessionArg {}
// SAFETY: As above.
unsafe impl FromBytes for FdArg {}
// SAFETY: As above.
unsafe impl FromBytes for FinishArg {}
// SAFETY: As above.
unsafe impl FromBytes for GetNameArg {}
// SAFETY: The assertions below show that these structures have no padding.
unsafe impl AsBytes for SessionArg {}
// SAFETY: As above.
unsafe impl AsBytes for FdArg {}
// SAFETY: As above.
unsafe impl AsBytes for FinishArg {}
// SAFETY: As above.
unsafe impl AsBytes for GetNameArg {}

/// Checks a uAPI layout: total size, and the offset of each field.
macro_rules! assert_layout {
    ($t:ty, $size:expr, $($field:ident @ $off:expr),* $(,)?) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $size);
        $(const _: () = assert!(core::mem::offset_of!($t, $field) == $off);)*
    };
}

assert_layout!(SessionArg, 72, size @ 0, fd @ 4, name @ 8);
assert_layout!(FdArg, 16, size @ 0, fd @ 4, token @ 8);
assert_layout!(FinishArg, 8, size @ 0, reserved @ 4);
assert_layout!(GetNameArg, 72, size @ 0, reserved @ 4, name @ 8);
const _: () = assert!(core::mem::align_of::<FdArg>() == 8);

// The command numbers userspace was compiled with.
const _: () = assert!(IOCTL_CREATE_SESSION == 0xBA00);
const _: () = assert!(IOCTL_RETRIEVE_SESSION == 0xBA01);
const _: () = assert!(SESSION_PRESERVE_FD == 0xBA40);
const _: () = assert!(SESSION_RETRIEVE_FD == 0xBA41);
const _: () = assert!(SESSION_FINISH == 0xBA42);
const _: () = assert!(SESSION_GET_NAME == 0xBA43);
