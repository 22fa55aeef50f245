//! The KEXEC request checked and carried out: the image is opened and checked before the
//! agent's lock is taken, loaded, and only then does the machine go down.
//!
//! A live update that boots a kernel with live update off loses every session without a word,
//! so the next command line is checked first. Files are opened without blocking and must be
//! regular files: a FIFO or a device named as the kernel would otherwise wedge the agent while
//! it holds everything. A loaded image is unloaded when the update does not happen, so that a
//! later plain `kexec -e` or `reboot` does not boot it by surprise.

use crate::proto::{Refusal, Response};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

/// The kernel to live update into, opened and checked.
pub struct Image {
    pub kernel: File,
    /// `None` to boot without an initramfs.
    pub initrd: Option<File>,
    pub cmdline: String,
}

fn refuse(message: String) -> Response {
    Response::refused(Refusal::BadRequest, libc::EINVAL, message)
}

/// The value of a kernel boolean parameter as the kernel's `kstrtobool` reads it.
fn kernel_bool(v: &str) -> Option<bool> {
    match v.as_bytes() {
        [b'y' | b'Y' | b'1', ..] => Some(true),
        [b'n' | b'N' | b'0', ..] => Some(false),
        [b'o' | b'O', b'n' | b'N', ..] => Some(true),
        [b'o' | b'O', b'f' | b'F', ..] => Some(false),
        _ => None,
    }
}

/// The last value the kernel's part of `cmdline` gives parameter `name` (parameters after
/// `--` are init's).
fn parameter<'a>(cmdline: &'a str, name: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .take_while(|w| *w != "--")
        .filter_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .last()
}

/// Why `cmdline` would boot a kernel that drops every session, if it would.
pub fn check_cmdline(cmdline: &str) -> Result<(), String> {
    match parameter(cmdline, "liveupdate").map(kernel_bool) {
        Some(Some(true)) => {}
        Some(_) | None => {
            return Err(format!(
                "the next kernel's command line {cmdline:?} does not turn live update on \
                 (liveupdate=on): it would discard every session"
            ))
        }
    }
    if let Some(v) = parameter(cmdline, "kho") {
        if kernel_bool(v) != Some(true) {
            return Err(format!(
                "the next kernel's command line turns KHO off (kho={v}): live update needs it"
            ));
        }
    }
    Ok(())
}

/// Opens one file of the image without blocking; it must be a regular file.
fn open_regular(path: &str) -> Result<File, Response> {
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refuse(format!("{path}: {e}")))?;
    match f.metadata() {
        Ok(m) if m.is_file() => Ok(f),
        Ok(_) => Err(refuse(format!("{path} is not a regular file"))),
        Err(e) => Err(refuse(format!("{path}: {e}"))),
    }
}

impl Image {
    /// Opens and checks what a KEXEC request names. An empty `initrd` boots without one.
    pub fn open(kernel: &str, initrd: &str, cmdline: &str) -> Result<Image, Response> {
        check_cmdline(cmdline).map_err(refuse)?;
        Ok(Image {
            kernel: open_regular(kernel)?,
            initrd: match initrd {
                "" => None,
                path => Some(open_regular(path)?),
            },
            cmdline: cmdline.to_owned(),
        })
    }
}

/// How the machine is live updated: loading the next kernel, undoing that, and rebooting into
/// it. Tests use a model.
pub trait Kexec: Send + Sync {
    /// Loads `image` as the kernel the next kexec boots.
    fn load(&self, image: &Image) -> io::Result<()>;
    /// Unloads the kernel [`Kexec::load`] loaded.
    fn unload(&self) -> io::Result<()>;
    /// Reboots into the loaded kernel (after syncing filesystems); returns only on failure.
    fn reboot(&self) -> io::Error;
}

/// The running machine's kexec.
pub struct System;

impl Kexec for System {
    fn load(&self, image: &Image) -> io::Result<()> {
        crate::sys::kexec_file_load(
            image.kernel.as_fd(),
            image.initrd.as_ref().map(|f| f.as_fd()),
            &image.cmdline,
        )
        .map_err(|e| io::Error::new(e.kind(), format!("kexec_file_load: {e}")))
    }
    fn unload(&self) -> io::Result<()> {
        crate::sys::kexec_file_unload()
    }
    fn reboot(&self) -> io::Error {
        crate::sys::reboot_kexec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_command_line_must_keep_live_update_on() {
        for ok in [
            "liveupdate=on",
            "console=ttyS0 liveupdate=1 kho=on",
            "liveupdate=off liveupdate=Y",
            "liveupdate=on -- liveupdate=off",
        ] {
            assert_eq!(check_cmdline(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "console=ttyS0",
            "liveupdate=off",
            "liveupdate=on liveupdate=0",
            "liveupdate=maybe",
            "xliveupdate=on",
            "-- liveupdate=on",
            "liveupdate=on kho=off",
        ] {
            assert!(check_cmdline(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_regular_files_are_opened() {
        assert!(Image::open("/dev/null", "", "liveupdate=on").is_err());
        assert!(Image::open("/", "", "liveupdate=on").is_err());
        assert!(Image::open("/no/such/kernel", "", "liveupdate=on").is_err());
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap();
        let image = Image::open(exe, "", "liveupdate=on").unwrap();
        assert!(image.initrd.is_none());
        assert!(Image::open(exe, exe, "liveupdate=on")
            .unwrap()
            .initrd
            .is_some());
        assert!(Image::open(exe, "", "quiet").is_err());
    }

    #[test]
    fn a_fifo_does_not_block() {
        let dir = std::env::temp_dir().join(format!("luo-kexec-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("kernel");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        assert!(Image::open(fifo.to_str().unwrap(), "", "liveupdate=on").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
