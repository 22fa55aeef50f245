//! The raw uAPI of `include/uapi/linux/liveupdate.h`: structures, command numbers, and the one
//! `ioctl(2)` call. This is the only module with `unsafe` code.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Longest session name, including its terminating NUL (`LIVEUPDATE_SESSION_NAME_LENGTH`).
pub const SESSION_NAME_LENGTH: usize = 64;

const IOCTL_TYPE: u32 = 0xBA;
const CMD_BASE: u32 = 0x00;
const CMD_SESSION_BASE: u32 = 0x40;

/// `_IO(type, nr)`: LUO commands carry no size or direction bits.
const fn io(nr: u32) -> u32 {
    (IOCTL_TYPE << 8) | nr
}

pub const IOCTL_CREATE_SESSION: u32 = io(CMD_BASE);
pub const IOCTL_RETRIEVE_SESSION: u32 = io(CMD_BASE + 1);
pub const SESSION_PRESERVE_FD: u32 = io(CMD_SESSION_BASE);
pub const SESSION_RETRIEVE_FD: u32 = io(CMD_SESSION_BASE + 1);
pub const SESSION_FINISH: u32 = io(CMD_SESSION_BASE + 2);
pub const SESSION_GET_NAME: u32 = io(CMD_SESSION_BASE + 3);

/// `struct liveupdate_ioctl_create_session` / `..._retrieve_session`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SessionArg {
    pub size: u32,
    pub fd: i32,
    pub name: [u8; SESSION_NAME_LENGTH],
}

/// `struct liveupdate_session_preserve_fd` / `..._retrieve_fd`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FdArg {
    pub size: u32,
    pub fd: i32,
    pub token: u64,
}

/// `struct liveupdate_session_finish`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FinishArg {
    pub size: u32,
    pub reserved: u32,
}

/// `struct liveupdate_session_get_name`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct GetNameArg {
    pub size: u32,
    pub reserved: u32,
    pub name: [u8; SESSION_NAME_LENGTH],
}

/// A structure whose first field is its own size, as every LUO ioctl argument is.
///
/// # Safety
///
/// The type is `repr(C)`, begins with a `u32` size field, and every bit pattern the kernel may
/// write into it is valid.
pub unsafe trait Arg: Copy {}
// SAFETY: All four are repr(C), start with `size: u32` and hold only integers and byte arrays.
unsafe impl Arg for SessionArg {}
// SAFETY: As above.
unsafe impl Arg for FdArg {}
// SAFETY: As above.
unsafe impl Arg for FinishArg {}
// SAFETY: As above.
unsafe impl Arg for GetNameArg {}

/// Issues `cmd` on `fd` with `arg`, which the kernel reads and writes back.
pub fn ioctl<T: Arg>(fd: BorrowedFd<'_>, cmd: u32, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a valid, exclusively borrowed `T` of the layout the command expects
    // (guaranteed by `Arg`), and the kernel writes at most `size_of::<T>()` bytes back.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), cmd as _, arg as *mut T) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

const _: () = assert!(std::mem::size_of::<SessionArg>() == 72);
const _: () = assert!(std::mem::size_of::<FdArg>() == 16);
const _: () = assert!(std::mem::size_of::<FinishArg>() == 8);
const _: () = assert!(std::mem::size_of::<GetNameArg>() == 72);
const _: () = assert!(std::mem::offset_of!(SessionArg, name) == 8);
const _: () = assert!(std::mem::offset_of!(FdArg, token) == 8);
const _: () = assert!(std::mem::offset_of!(GetNameArg, name) == 8);
