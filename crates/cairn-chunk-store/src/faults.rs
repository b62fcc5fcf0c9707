//! Fault injection: the I/O choke points the store routes its writes and syncs through, so
//! tests can make them fail (`ENOSPC`, `EIO`), slow them down, or "crash" the process at a
//! named point of the commit protocol.
//!
//! Invariants:
//! - With nothing armed, every hook is a couple of relaxed atomic loads and changes nothing.
//! - Once a crash point fires the store is *halted*: every public operation fails with an
//!   I/O error and nothing is cleaned up any more (temporary files stay, as after a real
//!   `kill -9`), until the store is dropped and reopened.
//!
//! What is hooked: appends to the journal, writes to staging and new-replica files, and
//! space reservations for in-place writes (the points before a mutation is durable), plus
//! the `fdatasync` of the journal, of new replicas and of replicas at a checkpoint.

use std::fs::File;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A named point in the commit protocol where a test can simulate a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// A journal record is durable, nothing of it is applied to the replica yet.
    AfterJournalSync,
    /// A journal record is durable and its data bytes are written in place, but the
    /// replica's checksums and header are not updated yet.
    MidApply,
    /// A new replica's temporary file is complete and durable but not renamed into place.
    BeforeRename,
}

/// Fault injection switches of one store; see [`crate::ChunkStore::faults`].
#[derive(Debug, Default)]
pub struct Faults {
    /// Number of upcoming hooked writes to fail with `ENOSPC` (`u64::MAX`: all of them).
    enospc_writes: AtomicU64,
    /// Number of upcoming hooked syncs to fail with `EIO`.
    eio_syncs: AtomicU64,
    /// Extra latency of every hooked sync, in microseconds.
    sync_delay_us: AtomicU64,
    /// The armed crash point, if any.
    crash_at: Mutex<Option<CrashPoint>>,
    /// Set once a crash point fired.
    halted: AtomicBool,
}

impl Faults {
    /// Makes the next `n` hooked writes fail with `ENOSPC` (`u64::MAX`: until cleared).
    pub fn fail_writes(&self, n: u64) {
        self.enospc_writes.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` hooked syncs fail with `EIO`.
    pub fn fail_syncs(&self, n: u64) {
        self.eio_syncs.store(n, Ordering::SeqCst);
    }

    /// Adds `delay` to every hooked sync (to make group commit observable in tests).
    pub fn set_sync_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.sync_delay_us.store(us, Ordering::SeqCst);
    }

    /// Arms a crash at `point`: the next time the store reaches it, the operation fails and
    /// the store halts, leaving the disk exactly as a crashed process would.
    pub fn crash_at(&self, point: CrashPoint) {
        *lock(&self.crash_at) = Some(point);
    }

    /// Disarms every write, sync and crash fault (a halted store stays halted).
    pub fn clear(&self) {
        self.enospc_writes.store(0, Ordering::SeqCst);
        self.eio_syncs.store(0, Ordering::SeqCst);
        self.sync_delay_us.store(0, Ordering::SeqCst);
        *lock(&self.crash_at) = None;
    }

    /// Whether a crash point fired; a halted store refuses every operation.
    pub fn halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    /// Fails with an I/O error if the store is halted.
    pub(crate) fn check_alive(&self) -> io::Result<()> {
        if self.halted() {
            Err(io::Error::other(
                "store halted by an injected crash; reopen it",
            ))
        } else {
            Ok(())
        }
    }

    /// Hook before a write that needs new space; fails with `ENOSPC` when armed.
    pub(crate) fn before_write(&self) -> io::Result<()> {
        if take_one(&self.enospc_writes) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    /// `fdatasync` through the hook: may be delayed or fail with `EIO` when armed.
    pub(crate) fn sync_data(&self, file: &File) -> io::Result<()> {
        let delay = self.sync_delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        if take_one(&self.eio_syncs) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        file.sync_data()
    }

    /// Fires the crash point `point` if it is armed: halts the store and returns an error.
    pub(crate) fn crash_point(&self, point: CrashPoint) -> io::Result<()> {
        let mut armed = lock(&self.crash_at);
        if *armed == Some(point) {
            *armed = None;
            self.halted.store(true, Ordering::SeqCst);
            return Err(io::Error::other(format!("injected crash at {point:?}")));
        }
        Ok(())
    }
}

/// Decrements a fault counter if it is non-zero (`u64::MAX` never runs out).
fn take_one(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
            0 => None,
            u64::MAX => Some(u64::MAX),
            n => Some(n - 1),
        })
        .is_ok()
}

/// Locks a mutex, ignoring poisoning: the guarded data stays consistent under panics.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
