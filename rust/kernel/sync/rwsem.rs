// SPDX-License-Identifier: GPL-2.0

//! A kernel read-write semaphore.
//!
//! This module allows Rust code to use the kernel's `struct rw_semaphore`: many readers or one
//! writer, sleeping while they wait. Unlike [`Mutex`](super::Mutex), readers share access to the
//! protected data, which suits data that is read on hot paths and changed rarely.
//!
//! C header: [`include/linux/rwsem.h`](srctree/include/linux/rwsem.h)

use crate::{
    bindings,
    prelude::*,
    str::CStr,
    sync::LockClassKey,
    types::{
        NotThreadSafe,
        Opaque, //
    }, //
};
use core::{
    cell::UnsafeCell,
    marker::PhantomPinned,
    ops::{
        Deref,
        DerefMut, //
    }, //
};

/// Creates a [`RwSemaphore`] initialiser with the given name and a newly-created lock class.
///
/// It uses the name if one is given, otherwise it generates one based on the file name and line
/// number.
#[macro_export]
macro_rules! new_rwsem {
    ($inner:expr $(, $name:literal)? $(,)?) => {
        $crate::sync::rwsem::RwSemaphore::new(
            $inner, $crate::optional_name!($($name)?), $crate::static_lock_class!())
    };
}
pub use new_rwsem;

/// A read-write semaphore protecting data of type `T`.
///
/// Any number of [`ReadGuard`]s, or exactly one [`WriteGuard`], may exist at a time; the others
/// sleep until they can proceed, so neither may be taken in atomic context.
///
/// # Examples
///
/// ```
/// use kernel::sync::rwsem::{new_rwsem, RwSemaphore};
///
/// let sem = KBox::pin_init(new_rwsem!(0u32), GFP_KERNEL)?;
/// *sem.write() += 1;
/// let a = sem.read();
/// let b = sem.read();
/// assert_eq!(*a + *b, 2);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `sem` is an initialised `struct rw_semaphore` for as long as `self` exists.
#[pin_data]
pub struct RwSemaphore<T: ?Sized> {
    #[pin]
    sem: Opaque<bindings::rw_semaphore>,
    /// `struct rw_semaphore` may contain a list head that points to itself.
    #[pin]
    _pin: PhantomPinned,
    data: UnsafeCell<T>,
}

// SAFETY: The semaphore can be moved to another thread together with the data it protects.
unsafe impl<T: ?Sized + Send> Send for RwSemaphore<T> {}

// SAFETY: Shared references to the data are handed out only to readers, which may run on several
// threads at once, so `T` must be `Sync`; a writer gets exclusive access, which is like moving
// the data to its thread, so `T` must be `Send`.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwSemaphore<T> {}

impl<T> RwSemaphore<T> {
    /// Constructs a new read-write semaphore initialiser.
    pub fn new(t: T, name: &'static CStr, key: Pin<&'static LockClassKey>) -> impl PinInit<Self> {
        pin_init!(Self {
            data: UnsafeCell::new(t),
            _pin: PhantomPinned,
            // SAFETY: `slot` is valid while the closure is called, and `name` and `key` have
            // static lifetimes so they outlive the semaphore.
            sem <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_rwsem(slot, name.as_char_ptr(), key.as_ptr())
            }),
        })
    }
}

impl<T: ?Sized> RwSemaphore<T> {
    /// Acquires the semaphore for reading, sleeping while a writer holds it.
    pub fn read(&self) -> ReadGuard<'_, T> {
        // SAFETY: By the type invariant `sem` is initialised.
        unsafe { bindings::down_read(self.sem.get()) };
        // INVARIANT: The semaphore was just acquired for reading.
        ReadGuard {
            sem: self,
            _not_send: NotThreadSafe,
        }
    }

    /// Acquires the semaphore for writing, sleeping while readers or a writer hold it.
    pub fn write(&self) -> WriteGuard<'_, T> {
        // SAFETY: By the type invariant `sem` is initialised.
        unsafe { bindings::down_write(self.sem.get()) };
        // INVARIANT: The semaphore was just acquired for writing.
        WriteGuard {
            sem: self,
            _not_send: NotThreadSafe,
        }
    }
}

/// Shared access to the data of a [`RwSemaphore`]; releases the read lock when dropped.
///
/// # Invariants
///
/// The semaphore `sem` is held for reading by the current task.
#[must_use = "the semaphore is released immediately when the guard is unused"]
pub struct ReadGuard<'a, T: ?Sized> {
    sem: &'a RwSemaphore<T>,
    _not_send: NotThreadSafe,
}

impl<T: ?Sized> Deref for ReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariant the read lock is held, so no writer can have a mutable
        // reference to the data.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the current task holds the read lock.
        unsafe { bindings::up_read(self.sem.sem.get()) };
    }
}

/// Exclusive access to the data of a [`RwSemaphore`]; releases the write lock when dropped.
///
/// # Invariants
///
/// The semaphore `sem` is held for writing by the current task.
#[must_use = "the semaphore is released immediately when the guard is unused"]
pub struct WriteGuard<'a, T: ?Sized> {
    sem: &'a RwSemaphore<T>,
    _not_send: NotThreadSafe,
}

impl<'a, T: ?Sized> WriteGuard<'a, T> {
    /// Keeps the semaphore write-locked for the rest of the system's life.
    ///
    /// For a subsystem that must stop every later reader and writer once it has reached a final
    /// state (for example: serialized for a kexec), and whose callers then sleep forever in
    /// [`RwSemaphore::read`] or [`RwSemaphore::write`]. Returns the data for a last update.
    pub fn hold_forever(self) -> &'a mut T {
        let data = self.sem.data.get();
        core::mem::forget(self);
        // SAFETY: The write lock is never released, so this is the only reference to the data
        // from now on.
        unsafe { &mut *data }
    }
}

impl<T: ?Sized> Deref for WriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariant the write lock is held, so no other reference exists.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: By the type invariant the write lock is held, so no other reference exists.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T: ?Sized> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the current task holds the write lock.
        unsafe { bindings::up_write(self.sem.sem.get()) };
    }
}
