//! The two system calls of a live update that the C library does not wrap.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Loads `kernel` and `initrd` with `cmdline` as the kernel to kexec into.
pub fn kexec_file_load(
    kernel: BorrowedFd<'_>,
    initrd: BorrowedFd<'_>,
    cmdline: &str,
) -> io::Result<()> {
    let cmd = CString::new(cmdline).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: Both descriptors are open; the command line is NUL-terminated and its length
    // includes the NUL, as kexec_file_load(2) requires.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd(),
            initrd.as_raw_fd(),
            cmd.as_bytes_with_nul().len(),
            cmd.as_ptr(),
            0u64,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reboots into the loaded kernel; returns only on failure.
pub fn reboot_kexec() -> io::Error {
    // SAFETY: sync(2) and reboot(2) take no pointers.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC);
    }
    io::Error::last_os_error()
}

/// A new memfd.
pub fn memfd(name: &std::ffi::CStr) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: A valid NUL-terminated name and flags.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
