//! Open files of one mount: per-inode state shared by the inode's handles (its write-back
//! buffer, the size this mount sees, its chunk layout, lock owners) and the handles.
//!
//! Invariants:
//! - `size` is what this mount's readers and `stat` see: the master's length
//!   (`remote_size`) grown by buffered writes, or set by a truncate;
//! - reads see, in increasing priority, the chunk servers' bytes below `remote_size`,
//!   zeros up to `size`, the extents being flushed (`frozen`), then the unflushed ones
//!   (`dirty`); a flush moves `dirty` to `frozen`, and `frozen` is cleared only after the
//!   master has committed the new length, so no byte is ever invisible;
//! - one flush per inode runs at a time (its `flush` lock), so flushes of overlapping
//!   writes land in write order;
//! - an inode's state lives while a handle is open or it holds unflushed data;
//! - `dirty_total` is the sum of `dirty.bytes()` over all inodes; writers wait when it is
//!   past the mount's limit, which bounds the memory buffered writes take.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_client::{Error, Layout};

use crate::extents::{Extents, Frozen};
use crate::read::ReadAhead;

/// What one mount holds for one open (or not yet flushed) inode.
#[derive(Debug, Default)]
pub struct InodeState {
    /// Open handles.
    pub open: usize,
    /// The length this mount sees.
    pub size: u64,
    /// The length the master has committed, as far as this mount knows.
    pub remote_size: u64,
    pub dirty: Extents,
    pub frozen: Frozen,
    /// Modification time of the newest buffered write (until it is committed).
    pub mtime_local: Option<i64>,
    /// Chunk locations, fetched at open and again after this mount changed the file.
    pub layout: Option<Arc<Layout>>,
    /// Bumped whenever `layout` is dropped, so read-ahead streams on the old one stop.
    pub layout_gen: u64,
    /// The first error of a background flush, reported by the next write, flush or fsync.
    pub error: Option<Error>,
    /// A background flush is running.
    pub flushing: bool,
    /// The name the file was hidden under when it was unlinked while open.
    pub hidden: Option<(u64, String)>,
    /// Lock owners that took locks on this inode through this mount.
    pub lock_owners: HashSet<u64>,
}

impl InodeState {
    /// Whether buffered writes make this mount's view differ from the master's.
    pub fn has_local_data(&self) -> bool {
        !self.dirty.is_empty() || !self.frozen.0.is_empty() || self.mtime_local.is_some()
    }
}

/// An open file.
pub struct Handle {
    pub ino: u64,
    pub read_ahead: tokio::sync::Mutex<ReadAhead>,
}

/// The open files of a mount.
#[derive(Default)]
pub struct Files {
    inodes: Mutex<HashMap<u64, InodeState>>,
    flush_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    /// Bytes buffered over all inodes.
    pub dirty_total: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Files {
    /// Runs `f` on the state of `ino` (created empty if missing).
    pub fn with<R>(&self, ino: u64, f: impl FnOnce(&mut InodeState) -> R) -> R {
        f(lock(&self.inodes).entry(ino).or_default())
    }

    /// Runs `f` on the state of `ino` if there is one.
    pub fn with_existing<R>(&self, ino: u64, f: impl FnOnce(&mut InodeState) -> R) -> Option<R> {
        lock(&self.inodes).get_mut(&ino).map(f)
    }

    /// Drops the state of `ino` when nothing needs it any more.
    pub fn drop_if_idle(&self, ino: u64) {
        let mut inodes = lock(&self.inodes);
        let idle = inodes.get(&ino).is_some_and(|s| {
            s.open == 0 && !s.has_local_data() && !s.flushing && s.error.is_none()
        });
        if idle {
            inodes.remove(&ino);
            lock(&self.flush_locks).remove(&ino);
        }
    }

    /// Whether a handle of `ino` is open in this mount.
    pub fn is_open(&self, ino: u64) -> bool {
        lock(&self.inodes).get(&ino).is_some_and(|s| s.open > 0)
    }

    /// Whether any file is open (unlink must then check whether it removes one).
    pub fn any_open(&self) -> bool {
        lock(&self.inodes).values().any(|s| s.open > 0)
    }

    /// Inodes that hold unflushed data.
    pub fn with_local_data(&self) -> Vec<u64> {
        lock(&self.inodes)
            .iter()
            .filter(|(_, s)| s.has_local_data())
            .map(|(&i, _)| i)
            .collect()
    }

    /// The lock that serializes flushes of `ino`.
    pub fn flush_lock(&self, ino: u64) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.flush_locks).entry(ino).or_default().clone()
    }

    /// Registers a new handle of `ino` and counts it open.
    pub fn open(&self, ino: u64) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed) + 1;
        let h = Arc::new(Handle {
            ino,
            read_ahead: tokio::sync::Mutex::new(ReadAhead::default()),
        });
        lock(&self.handles).insert(fh, h);
        self.with(ino, |s| s.open += 1);
        fh
    }

    pub fn handle(&self, fh: u64) -> Option<Arc<Handle>> {
        lock(&self.handles).get(&fh).cloned()
    }

    /// Forgets handle `fh`; answers its inode and how many handles of it remain open.
    pub fn close(&self, fh: u64) -> Option<(u64, usize)> {
        let h = lock(&self.handles).remove(&fh)?;
        let left = self.with(h.ino, |s| {
            s.open = s.open.saturating_sub(1);
            s.open
        });
        Some((h.ino, left))
    }

    /// Adds `delta` (which may be negative) to the buffered byte count.
    pub fn add_dirty(&self, delta: i64) {
        if delta >= 0 {
            self.dirty_total.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.dirty_total
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    pub fn dirty_total(&self) -> u64 {
        self.dirty_total.load(Ordering::Relaxed)
    }
}
