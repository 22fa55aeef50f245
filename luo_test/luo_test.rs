// SPDX-License-Identifier: GPL-2.0

//! A test file handler for live update, written on the kernel crate's `liveupdate` module.
//!
//! The upstream tests can only preserve memfds, whose handler never fails and never refuses to
//! finish. This handler preserves small test files that userspace creates through
//! `/dev/luo_test` and tells, per file, to fail `freeze`, to refuse `finish` or to fail
//! `retrieve` in the next kernel, so that the orchestrator's rollback, refusal and error paths
//! can be driven from a VM test. Every callback logs one line (`luo_test: <callback> <value>`)
//! for the tests to count. It also links a test FLB that nobody asks for in the next kernel,
//! which shows whether the FLB is still finished once its files are; on request its `preserve`
//! fails, or its `retrieve` in the next kernel. The handler can be unregistered and registered
//! again through `/dev/luo_test` while its files are preserved.
//!
//! It works with either orchestrator core; the numbers of the control interface are in
//! `uapi.h`.

use kernel::{
    fs::{
        anon_inode::{
            self,
            AnonInodeFile,
            AnonInodeFops, //
        },
        file::{
            flags::{
                O_CLOEXEC,
                O_RDWR, //
            },
            FileDescriptorReservation,
        },
        File,
    },
    ioctl::_IO,
    liveupdate::{
        self,
        FileHandler,
        Flb,
        FlbRef,
        FlbRegistration,
        Registered,
        Registration,
        RetrieveStatus, //
    },
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    new_mutex,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc, ArcBorrow, Mutex, SetOnce,
    }, //
};

/// Prefix of every message this crate prints.
const __LOG_PREFIX: &[u8] = b"luo_test\0";

/// The owner of this built-in code's operation tables (no module: C's `THIS_MODULE` is NULL).
struct LocalModule;

impl kernel::ModuleMetadata for LocalModule {
    const NAME: &'static kernel::str::CStr = c"luo_test";

    const THIS_MODULE: kernel::ThisModule = {
        // SAFETY: Built-in code is owned by no module, which C spells as a NULL `THIS_MODULE`;
        // `try_module_get()` and `module_put()` accept NULL.
        unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) }
    };
}

/// `uapi.h`: the control interface.
const IOC: u32 = 0xB7;
const NEW_FILE: u32 = _IO(IOC, 0);
const SET_FLAGS: u32 = _IO(IOC, 1);
const GET_VALUE: u32 = _IO(IOC, 2);
const SET_FLB_FLAGS: u32 = _IO(IOC, 3);
const REGISTER: u32 = _IO(IOC, 4);
const UNREGISTER: u32 = _IO(IOC, 5);
const HOLD_FLB: u32 = _IO(IOC, 6);
const PUT_FLB: u32 = _IO(IOC, 7);
const FAIL_FREEZE: u32 = 1 << 0;
const REFUSE_FINISH: u32 = 1 << 1;
const FAIL_RETRIEVE: u32 = 1 << 2;
const FLB_FAIL_PRESERVE: u32 = 1 << 0;
const FLB_FAIL_RETRIEVE: u32 = 1 << 1;

/// Set in a file's data by `freeze` for `FAIL_RETRIEVE`: the next kernel's `retrieve` fails.
const RETRIEVE_FAILS: u64 = 1 << 40;

/// Largest value a test file may hold (it is returned as an ioctl result).
const MAX_VALUE: u64 = i32::MAX as u64;

/// A test file: a value that crosses the kexec, and how the handler should behave for it.
struct TestFile {
    value: u64,
    flags: Atomic<u32>,
}

impl TestFile {
    fn new(value: u64) -> Result<Arc<Self>> {
        Ok(Arc::new(
            Self {
                value,
                flags: Atomic::new(0),
            },
            GFP_KERNEL,
        )?)
    }

    fn has(&self, flag: u32) -> bool {
        self.flags.load(Relaxed) & flag != 0
    }

    /// Opens a file for it.
    fn open(self: Arc<Self>) -> Result<ARef<File>> {
        anon_inode::create::<TestFileOps>(c"[luo_test]", self, O_RDWR)
    }
}

/// The operations of test files.
struct TestFileOps;

static TEST_FILE_FOPS: AnonInodeFops<TestFileOps> = AnonInodeFops::new();

#[vtable]
impl AnonInodeFile for TestFileOps {
    type Ptr = Arc<TestFile>;

    fn fops() -> &'static AnonInodeFops<Self> {
        &TEST_FILE_FOPS
    }

    fn ioctl(this: ArcBorrow<'_, TestFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            SET_FLAGS => {
                let flags = u32::try_from(arg).map_err(|_| EINVAL)?;
                if flags & !(FAIL_FREEZE | REFUSE_FINISH | FAIL_RETRIEVE) != 0 {
                    return Err(EINVAL);
                }
                this.flags.store(flags, Relaxed);
                Ok(0)
            }
            GET_VALUE => Ok(this.value as isize),
            _ => Err(ENOTTY),
        }
    }
}

/// `/dev/luo_test`: makes test files.
struct TestDevice;

#[vtable]
impl MiscDevice for TestDevice {
    type Ptr = ();

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result {
        Ok(())
    }

    fn ioctl(_device: (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            REGISTER => return register().map(|()| 0),
            UNREGISTER => return unregister().map(|()| 0),
            HOLD_FLB => return hold_flb().map(|()| 0),
            PUT_FLB => return put_flb().map(|()| 0),
            _ => {}
        }
        if cmd == SET_FLB_FLAGS {
            let flags = u32::try_from(arg).map_err(|_| EINVAL)?;
            if flags & !(FLB_FAIL_PRESERVE | FLB_FAIL_RETRIEVE) != 0 {
                return Err(EINVAL);
            }
            FLB_FLAGS.store(flags, Relaxed);
            return Ok(0);
        }
        if cmd != NEW_FILE {
            return Err(ENOTTY);
        }
        let value = arg as u64;
        if value > MAX_VALUE {
            return Err(EINVAL);
        }
        let fd = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
        let file = TestFile::new(value)?.open()?;
        let n = fd.reserved_fd();
        fd.fd_install(file);
        Ok(n as isize)
    }
}

/// The handler of test files.
struct TestHandler;

/// The test file a handler callback is about.
fn test_file(file: &File) -> Option<ArcBorrow<'_, TestFile>> {
    anon_inode::borrow::<TestFileOps>(file)
}

#[vtable]
impl FileHandler for TestHandler {
    type Data = u64;
    type Private = Arc<TestFile>;

    fn can_preserve(&self, file: &File) -> bool {
        test_file(file).is_some()
    }

    fn preserve(&self, file: &File) -> Result<(u64, Arc<TestFile>)> {
        let this: Arc<TestFile> = test_file(file).ok_or(EINVAL)?.into();
        pr_info!("preserve {}\n", this.value);
        Ok((this.value, this))
    }

    fn unpreserve(&self, _file: &File, data: u64, _private: Arc<TestFile>) {
        pr_info!("unpreserve {}\n", data);
    }

    fn freeze(&self, _file: &File, data: &mut u64, private: ArcBorrow<'_, TestFile>) -> Result {
        if private.has(FAIL_FREEZE) {
            pr_info!("freeze {} fails on request\n", *data);
            return Err(EAGAIN);
        }
        pr_info!("freeze {}\n", *data);
        if private.has(FAIL_RETRIEVE) {
            *data |= RETRIEVE_FAILS;
        }
        Ok(())
    }

    fn unfreeze(&self, _file: &File, data: u64, _private: ArcBorrow<'_, TestFile>) {
        pr_info!("unfreeze {}\n", data & !RETRIEVE_FAILS);
    }

    fn retrieve(&self, data: u64) -> Result<ARef<File>> {
        if data & RETRIEVE_FAILS != 0 {
            pr_info!("retrieve {} fails on request\n", data & !RETRIEVE_FAILS);
            return Err(EIO);
        }
        // The value comes from the previous kernel: check it as the control interface does.
        if data > MAX_VALUE {
            pr_err!("retrieve: bad value {:#x} from the previous kernel\n", data);
            return Err(EINVAL);
        }
        pr_info!("retrieve {}\n", data);
        TestFile::new(data)?.open()
    }

    fn can_finish(&self, file: Option<&File>, data: u64, _status: RetrieveStatus) -> bool {
        let busy = file
            .and_then(test_file)
            .is_some_and(|f| f.has(REFUSE_FINISH));
        if busy {
            pr_info!("can_finish {}: not yet\n", data);
        }
        !busy
    }

    fn finish(&self, _file: Option<&File>, data: u64, status: RetrieveStatus) {
        let data = data & !RETRIEVE_FAILS;
        let how = match status {
            RetrieveStatus::Retrieved => "retrieved",
            RetrieveStatus::NotRetrieved => "discarded",
            RetrieveStatus::Failed(_) => "failed",
        };
        pr_info!("finish {} {}\n", data, how);
    }
}

/// The test FLB's data, checked in the next kernel.
const FLB_DATA: u64 = 0x1c0ffee5;
/// The test FLB's data for `FLB_FAIL_RETRIEVE`: the next kernel's `retrieve` fails.
const FLB_DATA_RETRIEVE_FAILS: u64 = 0x1badf1b;

/// `FLB_FAIL_*` flags set through `/dev/luo_test`.
static FLB_FLAGS: Atomic<u32> = Atomic::new(0);

/// An FLB the test files depend on; nothing in the next kernel asks for its object, so only
/// the files' finish can finish it.
struct TestFlb;

impl Flb for TestFlb {
    type Object = ();

    fn preserve(&self) -> Result<(u64, ())> {
        let flags = FLB_FLAGS.load(Relaxed);
        if flags & FLB_FAIL_PRESERVE != 0 {
            pr_info!("flb preserve fails on request\n");
            return Err(ENOSPC);
        }
        pr_info!("flb preserve\n");
        if flags & FLB_FAIL_RETRIEVE != 0 {
            return Ok((FLB_DATA_RETRIEVE_FAILS, ()));
        }
        Ok((FLB_DATA, ()))
    }

    fn unpreserve(&self, _data: u64, _obj: ()) {
        pr_info!("flb unpreserve\n");
    }

    fn retrieve(&self, data: u64) -> Result<()> {
        if data == FLB_DATA_RETRIEVE_FAILS {
            pr_info!("flb retrieve fails on request\n");
            return Err(EIO);
        }
        if data != FLB_DATA {
            pr_err!("flb retrieve: bad data {:#x}\n", data);
            return Err(EINVAL);
        }
        pr_info!("flb retrieve\n");
        Ok(())
    }

    fn finish(&self, _obj: ()) {
        pr_info!("flb finish\n");
    }
}

static HANDLER: liveupdate::Slot<Registration<TestHandler>> = SetOnce::new();
static FLB: liveupdate::Slot<FlbRegistration<TestFlb>> = SetOnce::new();
/// The handler's registration while it is registered: `/dev/luo_test` undoes and redoes it, to
/// show that files preserved with a handler outlive its registration.
static REGISTERED: liveupdate::Slot<Mutex<Option<Registered<TestHandler>>>> = SetOnce::new();
/// A reference to the test FLB's outgoing object kept through `/dev/luo_test`, to show what a
/// kexec does with an FLB that only such a reference keeps preserved.
static HELD: liveupdate::Slot<Mutex<Option<FlbRef<'static, TestFlb>>>> = SetOnce::new();
/// Whether the handler is registered with the test FLB linked (`luo_test_flb`).
static WITH_FLB: Atomic<u32> = Atomic::new(1);

/// Registers the handler, and links the test FLB unless `luo_test_flb=off`.
///
/// # Errors
///
/// `EEXIST` if it is registered already, or the orchestrator's error.
fn register() -> Result {
    let (Some(handler), Some(flb), Some(slot)) =
        (HANDLER.as_ref(), FLB.as_ref(), REGISTERED.as_ref())
    else {
        return Err(ENODEV);
    };
    let mut registered = slot.lock();
    if registered.is_some() {
        return Err(EEXIST);
    }
    let guard = handler.as_ref().register()?;
    if WITH_FLB.load(Relaxed) != 0 {
        // The link lasts as long as the registration, whose end undoes it.
        core::mem::forget(guard.link_flb(flb.as_ref())?);
    }
    *registered = Some(guard);
    Ok(())
}

/// Unregisters the handler; its preserved files stay preserved.
///
/// # Errors
///
/// `ENOENT` if it is not registered.
fn unregister() -> Result {
    let slot = REGISTERED.as_ref().ok_or(ENODEV)?;
    let guard = slot.lock().take().ok_or(ENOENT)?;
    drop(guard);
    pr_info!("test file handler unregistered\n");
    Ok(())
}

/// Takes a reference to the test FLB's outgoing object and keeps it.
///
/// # Errors
///
/// `ENOENT` if the FLB is not preserved, `EBUSY` if a reference is kept already.
fn hold_flb() -> Result {
    let (Some(flb), Some(held)) = (FLB.as_ref(), HELD.as_ref()) else {
        return Err(ENODEV);
    };
    let mut held = held.lock();
    if held.is_some() {
        return Err(EBUSY);
    }
    *held = Some(Pin::get_ref(flb.as_ref()).outgoing()?);
    pr_info!("flb outgoing reference taken\n");
    Ok(())
}

/// Puts the kept reference back.
///
/// # Errors
///
/// `ENOENT` if none is kept.
fn put_flb() -> Result {
    let held = HELD.as_ref().ok_or(ENODEV)?;
    let reference = held.lock().take().ok_or(ENOENT)?;
    drop(reference);
    pr_info!("flb outgoing reference put\n");
    Ok(())
}

/// Registers the handler, its FLB (unless `link_flb` is false) and `/dev/luo_test`; called at
/// device init.
#[export]
pub extern "C" fn luo_test_init(link_flb: bool) -> c_int {
    match init(link_flb) {
        Ok(()) => {
            pr_info!("test file handler registered\n");
            0
        }
        // Live update is off in this boot: nothing to test.
        Err(e) if e == EOPNOTSUPP => 0,
        Err(e) => {
            pr_err!("cannot register the test file handler: {:?}\n", e);
            e.to_errno()
        }
    }
}

fn init(link_flb: bool) -> Result {
    liveupdate::keep_in(&HANDLER, Registration::new(c"luo-rs-test-v1", TestHandler))?;
    liveupdate::keep_in(&FLB, FlbRegistration::new(c"luo-rs-test-flb-v1", TestFlb))?;
    liveupdate::keep_in(&REGISTERED, new_mutex!(None))?;
    liveupdate::keep_in(&HELD, new_mutex!(None))?;
    WITH_FLB.store(u32::from(link_flb), Relaxed);
    register()?;
    if !link_flb {
        pr_info!("test FLB not linked (luo_test_flb=off)\n");
    }
    let device = KBox::pin_init(
        MiscDeviceRegistration::<TestDevice>::register(MiscDeviceOptions { name: c"luo_test" }),
        GFP_KERNEL,
    )?;
    // Built in and never unloaded: the device stays registered for the whole boot.
    core::mem::forget(device);
    Ok(())
}

#[kunit_tests(luo_rs_handler_api)]
mod tests {
    use super::*;
    use kernel::liveupdate::Slot;

    /// A handler with only the required operations.
    struct Minimal;

    #[vtable]
    impl FileHandler for Minimal {
        type Data = u64;
        type Private = ();

        fn can_preserve(&self, _file: &File) -> bool {
            false
        }
        fn preserve(&self, _file: &File) -> Result<(u64, ())> {
            Err(EINVAL)
        }
        fn unpreserve(&self, _file: &File, _data: u64, _private: ()) {}
        fn retrieve(&self, _data: u64) -> Result<ARef<File>> {
            Err(EINVAL)
        }
        fn finish(&self, _file: Option<&File>, _data: u64, _status: RetrieveStatus) {}
    }

    fn minimal(
        slot: &'static Slot<Registration<Minimal>>,
        name: &'static CStr,
    ) -> Result<Pin<&'static Registration<Minimal>>> {
        liveupdate::keep_in(slot, Registration::new(name, Minimal))
    }

    #[test]
    fn registration_is_undone_on_drop() -> Result {
        static FIRST: Slot<Registration<Minimal>> = SetOnce::new();
        static SECOND: Slot<Registration<Minimal>> = SetOnce::new();
        let first = minimal(&FIRST, c"luo-rs-kunit-v1")?;
        let second = minimal(&SECOND, c"luo-rs-kunit-v1")?;
        let registered = first.register()?;
        // Taken, also by the very same handler.
        assert_eq!(second.register().err(), Some(EEXIST));
        assert_eq!(first.register().err(), Some(EEXIST));
        drop(registered);
        drop(second.register()?);
        // Unregistered for good: registered again.
        drop(first.register()?);
        Ok(())
    }

    #[test]
    fn compatible_strings_must_fit() -> Result {
        static LONGEST: Slot<Registration<Minimal>> = SetOnce::new();
        static REFUSED: Slot<Registration<Minimal>> = SetOnce::new();
        let longest = c"luo-rs-kunit-0123456789012345678901234567890123";
        assert_eq!(longest.to_bytes_with_nul().len(), 48);
        drop(minimal(&LONGEST, longest)?.register()?);
        let too_long = c"luo-rs-kunit-01234567890123456789012345678901234";
        assert_eq!(minimal(&REFUSED, too_long).err(), Some(EINVAL));
        // An empty string would be written, and no next kernel could match it.
        assert_eq!(minimal(&REFUSED, c"").err(), Some(EINVAL));
        let unnamed = KBox::pin_init(FlbRegistration::new(c"", TestFlb), GFP_KERNEL);
        assert_eq!(unnamed.err(), Some(EINVAL));
        // A slot is filled once.
        assert_eq!(minimal(&LONGEST, longest).err(), Some(EBUSY));
        Ok(())
    }

    #[test]
    fn flb_links_and_references() -> Result {
        static HANDLER: Slot<Registration<Minimal>> = SetOnce::new();
        static FLB: Slot<FlbRegistration<TestFlb>> = SetOnce::new();
        let handler = minimal(&HANDLER, c"luo-rs-kunit-v2")?.register()?;
        let flb = liveupdate::keep_in(&FLB, FlbRegistration::new(c"luo-rs-kunit-flb-v1", TestFlb))?;
        let link = handler.link_flb(flb)?;
        assert_eq!(handler.link_flb(flb).err(), Some(EEXIST));
        // No file is preserved, so there is no outgoing object.
        assert_eq!(flb.outgoing().err(), Some(ENOENT));
        // The previous kernel (if any) handed over no FLB of this name.
        let incoming = flb.incoming().err();
        assert!(incoming == Some(ENODATA) || incoming == Some(ENOENT));
        drop(link);
        // Unlinked: it can be linked again.
        core::mem::forget(handler.link_flb(flb)?);
        // Unregistering the handler undoes its links: registered again, it links again.
        drop(handler);
        let handler = HANDLER.as_ref().ok_or(EINVAL)?.as_ref().register()?;
        drop(handler.link_flb(flb)?);
        drop(handler);
        Ok(())
    }
}
