//! The raw uAPI of `include/uapi/linux/liveupdate.h`: structures, command numbers, and the one
//! `ioctl(2)` call. This is the only module with `unsafe` code.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Takes ownership of a descriptor the kernel just installed for us; a negative number (a
/// kernel that reported success without one) is an error, not a descriptor.
pub fn owned(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    // SAFETY: The kernel installed `fd` in our table for this call's result; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::path::PathBuf;
    use std::process::Command;

    /// The kernel's uAPI headers: `LIVEUPDATE_UAPI_INCLUDE`, else the tree luo-rs's setup
    /// unpacks.
    fn uapi_include() -> PathBuf {
        if let Some(dir) = std::env::var_os("LIVEUPDATE_UAPI_INCLUDE") {
            return dir.into();
        }
        let cache = std::env::var_os("LUO_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/luo-rs")
            });
        cache.join("linux-7.3/include/uapi")
    }

    /// Compiles and runs a C program against the kernel's header that prints every size,
    /// offset and command number this module hard-codes, and compares.
    #[test]
    fn layouts_and_numbers_match_the_kernel_header() {
        let inc = uapi_include();
        assert!(
            inc.join("linux/liveupdate.h").exists(),
            "no linux/liveupdate.h under {} (set LIVEUPDATE_UAPI_INCLUDE or run scripts/setup.sh)",
            inc.display()
        );
        let dir = std::env::temp_dir().join(format!("liveupdate-uapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("layout.c");
        std::fs::write(
            &src,
            r#"#include <stdio.h>
#include <stddef.h>
#include <linux/liveupdate.h>
#define S(t) printf("%zu\n", sizeof(struct t))
#define O(t, f) printf("%zu\n", offsetof(struct t, f))
int main(void)
{
	S(liveupdate_ioctl_create_session); O(liveupdate_ioctl_create_session, fd);
	O(liveupdate_ioctl_create_session, name);
	S(liveupdate_ioctl_retrieve_session); O(liveupdate_ioctl_retrieve_session, fd);
	O(liveupdate_ioctl_retrieve_session, name);
	S(liveupdate_session_preserve_fd); O(liveupdate_session_preserve_fd, fd);
	O(liveupdate_session_preserve_fd, token);
	S(liveupdate_session_retrieve_fd); O(liveupdate_session_retrieve_fd, fd);
	O(liveupdate_session_retrieve_fd, token);
	S(liveupdate_session_finish); S(liveupdate_session_get_name);
	O(liveupdate_session_get_name, name);
	printf("%u\n%u\n%u\n%u\n%u\n%u\n%u\n", LIVEUPDATE_SESSION_NAME_LENGTH,
	       (unsigned)LIVEUPDATE_IOCTL_CREATE_SESSION, (unsigned)LIVEUPDATE_IOCTL_RETRIEVE_SESSION,
	       (unsigned)LIVEUPDATE_SESSION_PRESERVE_FD, (unsigned)LIVEUPDATE_SESSION_RETRIEVE_FD,
	       (unsigned)LIVEUPDATE_SESSION_FINISH, (unsigned)LIVEUPDATE_SESSION_GET_NAME);
	return 0;
}
"#,
        )
        .unwrap();
        let exe = dir.join("layout");
        let cc = Command::new("cc")
            .arg("-I")
            .arg(&inc)
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .output()
            .expect("cannot run cc");
        assert!(
            cc.status.success(),
            "{}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let out = Command::new(&exe).output().unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let got: Vec<usize> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        let want = [
            size_of::<SessionArg>(),
            offset_of!(SessionArg, fd),
            offset_of!(SessionArg, name),
            size_of::<SessionArg>(),
            offset_of!(SessionArg, fd),
            offset_of!(SessionArg, name),
            size_of::<FdArg>(),
            offset_of!(FdArg, fd),
            offset_of!(FdArg, token),
            size_of::<FdArg>(),
            offset_of!(FdArg, fd),
            offset_of!(FdArg, token),
            size_of::<FinishArg>(),
            size_of::<GetNameArg>(),
            offset_of!(GetNameArg, name),
            SESSION_NAME_LENGTH,
            IOCTL_CREATE_SESSION as usize,
            IOCTL_RETRIEVE_SESSION as usize,
            SESSION_PRESERVE_FD as usize,
            SESSION_RETRIEVE_FD as usize,
            SESSION_FINISH as usize,
            SESSION_GET_NAME as usize,
        ];
        assert_eq!(got, want);
    }
}
