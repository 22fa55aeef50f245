//! The system calls of a live update: `kexec_file_load(2)`, which neither the C library nor
//! `rustix` wraps, and reboot and memfd_create through `rustix`.

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

/// Reboots into the loaded kernel (after syncing filesystems); returns only on failure.
pub fn reboot_kexec() -> io::Error {
    rustix::fs::sync();
    match rustix::system::reboot(rustix::system::RebootCommand::Kexec) {
        Ok(()) => io::Error::other("reboot returned"),
        Err(e) => e.into(),
    }
}

/// A new memfd (close-on-exec).
pub fn memfd(name: &std::ffi::CStr) -> io::Result<std::os::fd::OwnedFd> {
    Ok(rustix::fs::memfd_create(
        name,
        rustix::fs::MemfdFlags::CLOEXEC,
    )?)
}
