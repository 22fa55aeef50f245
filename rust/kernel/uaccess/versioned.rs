// SPDX-License-Identifier: GPL-2.0

//! Extensible ioctl argument structures.
//!
//! Many ioctls take a structure whose first field is its size as userspace knows it, so that
//! the structure can grow: an older program passes a shorter one, a newer program a longer one.
//! The kernel reads what both sides know, treats fields userspace did not pass as zero, and
//! refuses non-zero bytes it does not understand with `E2BIG`. This module implements those rules
//! (C's `copy_struct_from_user()`) and the matching reply.
//!
//! C header: [`include/linux/uaccess.h`](srctree/include/linux/uaccess.h)

use crate::{
    bindings,
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    }, //
};
use core::mem::{
    size_of,
    MaybeUninit, //
};

/// An extensible structure read from userspace, remembering the size userspace gave.
///
/// # Examples
///
/// ```no_run
/// use kernel::uaccess::{versioned::Versioned, UserPtr};
///
/// #[repr(C)]
/// #[derive(Clone, Copy)]
/// struct Arg {
///     size: u32,
///     value: u32,
/// }
/// // SAFETY: `Arg` holds only integers, so every bit pattern is valid.
/// unsafe impl kernel::transmute::FromBytes for Arg {}
/// // SAFETY: `Arg` has no padding.
/// unsafe impl kernel::transmute::AsBytes for Arg {}
///
/// fn handle(ptr: UserPtr, user_size: usize) -> Result {
///     let mut arg = Versioned::<Arg>::read(ptr, user_size)?;
///     arg.value += 1;
///     arg.respond()
/// }
/// ```
pub struct Versioned<T> {
    value: T,
    ptr: UserPtr,
    user_size: usize,
}

impl<T: FromBytes + AsBytes> Versioned<T> {
    /// Reads `T` from `ptr`, where userspace says the structure is `user_size` bytes long.
    ///
    /// Bytes `T` has and userspace did not pass read as zero.
    ///
    /// # Errors
    ///
    /// `E2BIG` if userspace passed more bytes than `T` has and any extra byte is non-zero;
    /// `EFAULT` if the memory cannot be read.
    pub fn read(ptr: UserPtr, user_size: usize) -> Result<Self> {
        let ksize = size_of::<T>();
        let known = ksize.min(user_size);
        if user_size > ksize {
            // SAFETY: `check_zeroed_user()` only reads user memory through the user copy
            // routines, which handle faults.
            let ret = unsafe {
                bindings::check_zeroed_user(
                    ptr.wrapping_byte_add(ksize).as_const_ptr(),
                    user_size - ksize,
                )
            };
            match ret {
                0 => return Err(E2BIG),
                r if r < 0 => return Err(Error::from_errno(r)),
                _ => {}
            }
        }
        let mut out = MaybeUninit::<T>::zeroed();
        let mut reader = UserSlice::new(ptr, known).reader();
        // SAFETY: `out` is valid for writing `ksize >= known` bytes, and every byte of it is
        // initialised (zeroed) already, so viewing it as bytes is sound.
        let bytes =
            unsafe { core::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), known) };
        reader.read_slice(bytes)?;
        Ok(Self {
            // SAFETY: All bytes of `out` are initialised (zeroed, then partly overwritten), and
            // `T: FromBytes` makes every bit pattern a valid `T`.
            value: unsafe { out.assume_init() },
            ptr,
            user_size,
        })
    }

    /// The size userspace said the structure has.
    pub fn user_size(&self) -> usize {
        self.user_size
    }

    /// Copies the structure back, as much of it as userspace passed (C's `luo_ucmd_respond()`,
    /// `iommufd_ucmd_respond()`).
    ///
    /// # Errors
    ///
    /// `EFAULT` if the memory cannot be written.
    pub fn respond(&self) -> Result {
        let n = size_of::<T>().min(self.user_size);
        UserSlice::new(self.ptr, n)
            .writer()
            .write_slice(&self.value.as_bytes()[..n])
    }
}

impl<T> core::ops::Deref for Versioned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> core::ops::DerefMut for Versioned<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

/// Reads the leading `u32` size field of an extensible structure at `ptr`.
///
/// # Errors
///
/// `EFAULT` if the memory cannot be read.
pub fn read_size(ptr: UserPtr) -> Result<u32> {
    UserSlice::new(ptr, size_of::<u32>()).reader().read::<u32>()
}
