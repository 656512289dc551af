//! One way to take a mutex in this crate.

use std::sync::{Mutex, MutexGuard};

/// Locks, ignoring poisoning: every critical section here is a short update
/// that a panic elsewhere cannot leave half done, so the data stays usable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
