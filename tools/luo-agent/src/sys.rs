//! The system calls of a live update that the C library does not wrap, and memfd_create.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `kexec_file_load(2)` flags.
const KEXEC_FILE_UNLOAD: u64 = 0x1;
const KEXEC_FILE_NO_INITRAMFS: u64 = 0x4;

/// Loads `kernel` and `initrd` (none: boot without an initramfs) with `cmdline` as the kernel
/// to kexec into.
pub fn kexec_file_load(
    kernel: BorrowedFd<'_>,
    initrd: Option<BorrowedFd<'_>>,
    cmdline: &str,
) -> io::Result<()> {
    let cmd = CString::new(cmdline).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let (initrd, flags) = match initrd {
        Some(fd) => (fd.as_raw_fd(), 0),
        None => (-1, KEXEC_FILE_NO_INITRAMFS),
    };
    // SAFETY: The descriptors are open (or -1 with NO_INITRAMFS, which ignores it); the
    // command line is NUL-terminated and its length includes the NUL, as kexec_file_load(2)
    // requires.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd(),
            initrd,
            cmd.as_bytes_with_nul().len(),
            cmd.as_ptr(),
            flags,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unloads the kernel [`kexec_file_load`] loaded (nothing happens if none is).
pub fn kexec_file_unload() -> io::Result<()> {
    // SAFETY: With KEXEC_FILE_UNLOAD the kernel reads neither descriptor nor the command line.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            -1,
            -1,
            0usize,
            std::ptr::null::<libc::c_char>(),
            KEXEC_FILE_UNLOAD,
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
