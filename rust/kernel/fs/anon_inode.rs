// SPDX-License-Identifier: GPL-2.0

//! Files on the anonymous inode.
//!
//! A subsystem hands userspace a handle to one of its objects (an eventfd, a session, a
//! container) as a file that has no name in any filesystem. All such files share one inode; each
//! file carries its own object as private data and the subsystem's file operations. The object
//! lives as long as the file: it is dropped in `release`, when the last reference to the file
//! goes away.
//!
//! C header: [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h)

use crate::{
    bindings,
    error::from_err_ptr,
    fs::File,
    module::this_module,
    prelude::*,
    str::CStr,
    sync::aref::ARef,
    types::ForeignOwnable, //
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

/// The operations of an anonymous-inode file whose private data is a `Self::Ptr`.
#[vtable]
pub trait AnonInodeFile: Sized + 'static {
    /// How the object behind the file is owned.
    type Ptr: ForeignOwnable + Send + Sync;

    /// The file operations of this kind of file: a `static` declared next to the
    /// implementation, whose address [`borrow`] compares to recognise the files [`create`]
    /// made for `Self`.
    fn fops() -> &'static AnonInodeFops<Self>;

    /// Called when the last reference to the file is dropped; consumes the object.
    fn release(data: Self::Ptr, _file: &File) {
        drop(data);
    }

    /// Handles an ioctl on the file.
    fn ioctl(
        _data: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _cmd: u32,
        _arg: usize,
    ) -> Result<isize> {
        build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }
}

/// Creates a new anonymous-inode file named `name` that owns `data`.
///
/// `flags` are the file's open flags (`O_RDWR`, ...). The returned file holds the only
/// reference; install it in a file descriptor table to hand it to userspace.
///
/// # Errors
///
/// Returns the error of `anon_inode_getfile()` (for example `ENOMEM`); `data` is dropped then.
pub fn create<T: AnonInodeFile>(name: &CStr, data: T::Ptr, flags: u32) -> Result<ARef<File>> {
    let private = data.into_foreign();
    // SAFETY: `name` is a valid NUL-terminated string, the operations are a static that lives
    // for ever, and `private` came from `into_foreign()`; on success the file owns it, and the
    // vtable's `release` gives it back with `from_foreign()`.
    let raw = unsafe {
        bindings::anon_inode_getfile(
            name.as_char_ptr(),
            &T::fops().ops,
            private.cast(),
            flags as c_int,
        )
    };
    // `anon_inode_getfile()` returns a file or an `ERR_PTR`, never NULL.
    let file = match from_err_ptr(raw).map(NonNull::new) {
        Ok(Some(file)) => file,
        Ok(None) | Err(_) => {
            // SAFETY: No file was created, so `private` still belongs to us, and it came from
            // `into_foreign()` above.
            drop(unsafe { T::Ptr::from_foreign(private) });
            return Err(from_err_ptr(raw).err().unwrap_or(ENOMEM));
        }
    };
    // SAFETY: The file was just created and we own its only reference; `File` has the layout of
    // `struct file` and is reference-counted by `get_file()`/`fput()`, which `ARef` uses.
    Ok(unsafe { ARef::from_raw(file.cast::<File>()) })
}

/// The object behind `file` if it is a file [`create`] made for `T`, or `None`.
///
/// This lets a subsystem recognise its own files among those userspace hands it (for
/// example a file handler deciding whether it can preserve a file).
pub fn borrow<T: AnonInodeFile>(file: &File) -> Option<<T::Ptr as ForeignOwnable>::Borrowed<'_>> {
    // SAFETY: `file` is a live file; `f_op` does not change after the file is opened.
    let fops = unsafe { (*file.as_ptr()).f_op };
    if !core::ptr::eq(fops, &T::fops().ops) {
        return None;
    }
    // SAFETY: The file was made by `create` for `T`, so until its release (which cannot
    // happen while `file` is borrowed) its private data is a `T::Ptr` from `into_foreign()`.
    Some(unsafe { T::Ptr::borrow((*file.as_ptr()).private_data) })
}

/// The `file_operations` of the files [`create`] makes for `T`.
///
/// Declare one `static` of it for each implementation of [`AnonInodeFile`] and return it from
/// [`AnonInodeFile::fops`]. A static has exactly one address; the address of a constant (as in
/// `&CONST`) may differ between uses, so it cannot identify a kind of file.
pub struct AnonInodeFops<T: AnonInodeFile> {
    ops: bindings::file_operations,
    _t: PhantomData<T>,
}

// SAFETY: The operations are never changed after construction; the C side only reads them,
// from any CPU.
unsafe impl<T: AnonInodeFile> Sync for AnonInodeFops<T> {}

impl<T: AnonInodeFile> AnonInodeFops<T> {
    /// The operations for `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self {
            ops: AnonInodeVTable::<T>::VTABLE,
            _t: PhantomData,
        }
    }
}

/// The operation callbacks of files created by [`create`] for `T`.
struct AnonInodeVTable<T: AnonInodeFile>(PhantomData<T>);

impl<T: AnonInodeFile> AnonInodeVTable<T> {
    /// # Safety
    ///
    /// `file` is a file created by [`create`] for `T` that is being released.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: The release call owns the private data, which `create` set from
        // `into_foreign()`.
        let data = unsafe { T::Ptr::from_foreign((*file).private_data) };
        // SAFETY: The file is valid for the duration of this call and no `fdget_pos` region is
        // active on it.
        T::release(data, unsafe { File::from_raw_file(file) });
        0
    }

    /// # Safety
    ///
    /// `file` is a valid file created by [`create`] for `T`.
    unsafe extern "C" fn ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
        // SAFETY: Between `create` and `release` the private data is a `T::Ptr` that an ioctl
        // may borrow.
        let data = unsafe { T::Ptr::borrow((*file).private_data) };
        // SAFETY: The file is valid for the duration of this call and no `fdget_pos` region is
        // active on it.
        let file = unsafe { File::from_raw_file(file) };
        match T::ioctl(data, file, cmd, arg) {
            Ok(ret) => ret as c_long,
            Err(err) => err.to_errno() as c_long,
        }
    }

    const VTABLE: bindings::file_operations = bindings::file_operations {
        release: Some(Self::release),
        unlocked_ioctl: if T::HAS_IOCTL {
            Some(Self::ioctl)
        } else {
            None
        },
        owner: this_module::<T::OwnerModule>().as_ptr(),
        ..pin_init::zeroed()
    };
}
