// SPDX-License-Identifier: GPL-2.0

//! The `/dev/liveupdate` character device.
//!
//! Userspace drives live update through this device. Only one open file may exist at a time, so
//! that a single agent owns the sessions; a second open fails with `EBUSY` as in the C core.

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
    }, //
};

/// Set while `/dev/liveupdate` is open.
static IN_USE: AtomicFlag = AtomicFlag::new(false);

/// Number of the first device ioctl (`LIVEUPDATE_CMD_BASE`).
const CMD_BASE: u32 = 0x00;

/// Number of device ioctls defined by the uAPI (create and retrieve session).
const CMD_COUNT: u32 = 2;

/// The device; it carries no per-open state because the open is exclusive.
struct LiveUpdateDevice;

#[vtable]
impl MiscDevice for LiveUpdateDevice {
    type Ptr = ();

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Self::Ptr> {
        IN_USE.cmpxchg(false, true, Full).map_err(|_| EBUSY)?;
        Ok(())
    }

    fn release(_device: Self::Ptr, _file: &File) {
        IN_USE.store(false, Release);
    }

    fn ioctl(_device: (), _file: &File, cmd: u32, _arg: usize) -> Result<isize> {
        // Unknown command numbers are EINVAL, as in the C core.
        if _IOC_NR(cmd).wrapping_sub(CMD_BASE) >= CMD_COUNT {
            return Err(EINVAL);
        }
        // Sessions are not implemented yet.
        Err(EOPNOTSUPP)
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
