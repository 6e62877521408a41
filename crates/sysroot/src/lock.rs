//! The sysroot lock: one writer at a time for the boot configuration and
//! the deployments, interlocked with `ostree admin` and rpm-ostree.
//!
//! OSTree serializes every change of a sysroot with an exclusive lock on
//! `ostree/lock` (an open-file-description `fcntl` write lock over the
//! whole file, taken by `ostree_sysroot_lock`). Traditional POSIX record
//! locks and OFD locks conflict with each other, so the POSIX write lock
//! taken here excludes `ostree` and rpm-ostree as they exclude each other.
//!
//! POSIX locks belong to the process, not the thread, so threads of one
//! process are serialized by an in-process table as well; and a thread
//! that holds the lock may take it again (a command locks once, then calls
//! library functions that lock too).

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use rustix::fs::FlockOperation;

use crate::{Result, io_err};

/// The lock file, relative to the sysroot (OSTree's `OSTREE_SYSROOT_LOCKFILE`).
pub(crate) const LOCK_FILE: &str = "ostree/lock";

/// A sysroot is named by the device and inode of its directory.
type Key = (u64, u64);

/// Sysroots some thread of this process holds.
static HELD: Mutex<Vec<Key>> = Mutex::new(Vec::new());
static RELEASED: Condvar = Condvar::new();

thread_local! {
    /// Sysroots this thread holds (for re-entry).
    static MINE: RefCell<HashSet<Key>> = RefCell::new(HashSet::new());
}

fn held() -> MutexGuard<'static, Vec<Key>> {
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Held while a change is made; released when dropped.
#[derive(Debug)]
pub struct SysrootLock {
    key: Key,
    /// `None` for a re-entry by the thread that already holds it.
    file: Option<File>,
}

impl Drop for SysrootLock {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        // Closing the descriptor releases the record lock.
        drop(file);
        // try_with: a guard may be dropped while the thread ends.
        let _ = MINE.try_with(|m| m.borrow_mut().remove(&self.key));
        held().retain(|k| *k != self.key);
        RELEASED.notify_all();
    }
}

/// Takes the lock of the sysroot at `root`, waiting for other holders;
/// `on_wait` runs once if it has to wait (`ostree` prints "Waiting for
/// sysroot lock...").
pub(crate) fn lock(root: &Path, on_wait: &mut dyn FnMut()) -> Result<SysrootLock> {
    let mut told = false;
    let mut on_wait = || {
        if !std::mem::replace(&mut told, true) {
            on_wait();
        }
    };
    let key = key_of(root)?;
    if MINE.with(|m| m.borrow().contains(&key)) {
        return Ok(SysrootLock { key, file: None });
    }
    {
        let mut h = held();
        while h.contains(&key) {
            on_wait();
            h = RELEASED.wait(h).unwrap_or_else(PoisonError::into_inner);
        }
        h.push(key);
    }
    let taken = take_file_lock(root, &mut on_wait);
    match taken {
        Ok(file) => {
            MINE.with(|m| m.borrow_mut().insert(key));
            Ok(SysrootLock {
                key,
                file: Some(file),
            })
        }
        Err(e) => {
            held().retain(|k| *k != key);
            RELEASED.notify_all();
            Err(e)
        }
    }
}

fn key_of(root: &Path) -> Result<Key> {
    let m = std::fs::metadata(root).map_err(|e| io_err(root, e))?;
    Ok((m.dev(), m.ino()))
}

fn take_file_lock(root: &Path, on_wait: &mut dyn FnMut()) -> Result<File> {
    use rustix::fs::{Mode, OFlags};
    let path = root.join(LOCK_FILE);
    let fd = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| io_err(&path, e.into()))?;
    let file = File::from(fd);
    match rustix::fs::fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => return Ok(file),
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::ACCESS) => on_wait(),
        Err(e) => return Err(io_err(&path, e.into())),
    }
    rustix::fs::fcntl_lock(&file, FlockOperation::LockExclusive)
        .map_err(|e| io_err(&path, e.into()))?;
    Ok(file)
}
