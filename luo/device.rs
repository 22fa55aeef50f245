// SPDX-License-Identifier: GPL-2.0

//! The `/dev/liveupdate` character device.
//!
//! Userspace drives live update through this device. Only one open file may exist at a time, so
//! that a single agent owns the sessions; a second open fails with `EBUSY` as in the C core.
//! Closing the device does not touch any session: sessions live as long as their own files.

use kernel::{
    fs::File,
    ioctl::_IOC_NR,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*,
    sync::atomic::{
        AtomicFlag,
        Full,
        Release, //
    },
    uaccess::{
        versioned,
        UserPtr, //
    }, //
};

use crate::{
    session,
    uapi, //
};

/// Set while `/dev/liveupdate` is open.
static IN_USE: AtomicFlag = AtomicFlag::new(false);

/// The device commands, indexed by command number minus `LIVEUPDATE_CMD_BASE`.
const DEVICE_OPS: [u32; 2] = [uapi::IOCTL_CREATE_SESSION, uapi::IOCTL_RETRIEVE_SESSION];

/// The device; it carries no per-open state because the open is exclusive.
struct LiveUpdateDevice;

#[vtable]
impl MiscDevice for LiveUpdateDevice {
    type Ptr = ();

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Self::Ptr> {
        IN_USE.cmpxchg(false, true, Full).map_err(|_| EBUSY)?;
        // The previous kernel's sessions become visible at the first open that succeeds in
        // reading them: out of memory, the open fails with ENOMEM and the next one goes on;
        // unusable data fails this and every later open with EIO.
        if let Err(e) = session::deserialize_once() {
            IN_USE.store(false, Release);
            return Err(e);
        }
        Ok(())
    }

    fn release(_device: Self::Ptr, _file: &File) {
        IN_USE.store(false, Release);
    }

    fn ioctl(_device: (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // The order of the checks decides which error userspace sees; it follows the C core,
        // which answers unknown command numbers with EINVAL.
        let idx = _IOC_NR(cmd).wrapping_sub(uapi::CMD_BASE) as usize;
        let Some(&expected) = DEVICE_OPS.get(idx) else {
            return Err(EINVAL);
        };
        let ptr = UserPtr::from_addr(arg);
        let user_size = versioned::read_size(ptr)?;
        if cmd != expected {
            return Err(ENOTTY);
        }
        match idx {
            0 => session::create(ptr, user_size),
            _ => session::retrieve(ptr, user_size),
        }
    }
}

/// Registers `/dev/liveupdate` for the rest of the boot.
pub(crate) fn register() -> Result {
    let reg = KBox::pin_init(
        MiscDeviceRegistration::<LiveUpdateDevice>::register(MiscDeviceOptions {
            name: c"liveupdate",
        }),
        GFP_KERNEL,
    )?;
    // The core is built in and never unloaded: the registration lives until the machine goes
    // down, so the box is deliberately never freed.
    core::mem::forget(reg);
    Ok(())
}
