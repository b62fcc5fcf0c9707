//! [`ChunkStore`]: the public face of the crate. It validates each request against the
//! replica's version and serial, routes it to the right commit path (new replica file, or
//! journal record plus in-place apply), and serializes work per chunk.
//!
//! The mutating operations live in the `mutate` submodule; this file holds the state, the
//! read side, deletion and checkpoints.
//!
//! Locking (always taken in this order, never the reverse):
//! 1. `gate` (read) for journaled mutations, for their whole append→sync→apply span; a
//!    checkpoint takes it for writing, so it sees no record in flight. Never taken twice by
//!    one thread, never taken while holding a slot lock.
//! 2. A chunk's slot lock: written by mutations (which hold it across the journal sync, so
//!    a chunk's mutations are strictly ordered), read by reads and scrubbing.
//! 3. The `slots` map mutex and `touched`: short sections only, never held while waiting.
//!
//! Invariants:
//! - A slot's header is the replica file's header as of the last completed operation; the
//!   `slots` map publishes a copy ([`ReplicaInfo`]) for cheap listing.
//! - A replica whose in-place apply failed after its record was durable is *poisoned*: it
//!   refuses every operation (its file is in an unknown state; the journal holds the truth)
//!   and no checkpoint runs until the store is reopened, which replays it, or a re-replication
//!   [`ChunkStore::install`] replaces it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::faults::{Faults, lock};
use crate::format::{Layout, ReplicaHeader, chunk_path};
use crate::fsutil::{Wait, statvfs, will_need};
use crate::journal::Journal;
use crate::record::{Record, RecordKind};
use crate::recovery::{CHUNKS_DIR, STAGING_DIR, recover};
use crate::replica::{ReadFail, read_verified, read_verified_mode};
use crate::staging::{StagedWrite, StagingCtx};
use crate::{Capacity, RecoveryReport, ReplicaInfo, StoreConfig, StoreError, StoreStats};

mod mutate;

/// Bytes [`ChunkStore::verify`] checks per step (it re-takes the chunk lock between steps).
const VERIFY_WINDOW: u64 = 1 << 20;

/// Local storage of chunk replicas in one directory. See the crate docs for the model.
pub struct ChunkStore {
    root: PathBuf,
    chunks_dir: PathBuf,
    cfg: StoreConfig,
    faults: Arc<Faults>,
    staging: Arc<StagingCtx>,
    journal: Journal,
    slots: Mutex<HashMap<u64, Entry>>,
    gate: RwLock<()>,
    /// Chunks changed since the last checkpoint (to sync before the journal goes), and
    /// whether their directory entry changed too (a journaled create or delete).
    touched: Mutex<HashMap<u64, bool>>,
    poisoned: AtomicUsize,
    rotating: AtomicBool,
    rotations: AtomicU64,
    rotation_failures: AtomicU64,
    /// Holds the `flock` on `LOCK` for the store's lifetime.
    _lock_file: File,
}

/// A chunk's entry in the map: its lock, and the published state.
struct Entry {
    slot: Arc<Slot>,
    info: Option<ReplicaInfo>,
}

/// Per-chunk lock and state.
#[derive(Default)]
struct Slot {
    state: RwLock<SlotState>,
}

#[derive(Default)]
struct SlotState {
    header: Option<ReplicaHeader>,
    poisoned: bool,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChunkStore>();
    assert_send_sync::<StagedWrite>();
};

impl std::fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStore")
            .field("root", &self.root)
            .field("replicas", &lock(&self.slots).len())
            .finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl ChunkStore {
    /// Opens (creating if needed) a store rooted at `dir`: takes an exclusive `flock` on
    /// `dir/LOCK`, removes leftover staging files, validates every replica header (removing
    /// bad replicas), replays the journal (cutting a torn tail) and checkpoints.
    pub fn open(dir: &Path, cfg: StoreConfig) -> Result<(ChunkStore, RecoveryReport), StoreError> {
        let faults = Arc::new(Faults::default());
        let rec = recover(dir, &cfg, &faults)?;
        let slots = rec
            .headers
            .into_iter()
            .map(|(id, h)| {
                let state = SlotState {
                    header: Some(h),
                    poisoned: false,
                };
                let slot = Arc::new(Slot {
                    state: RwLock::new(state),
                });
                (
                    id,
                    Entry {
                        slot,
                        info: Some(h.info()),
                    },
                )
            })
            .collect();
        let staging = StagingCtx::new(
            dir.join(STAGING_DIR),
            faults.clone(),
            cfg.memory_stage_limit,
        );
        let store = ChunkStore {
            root: dir.to_path_buf(),
            chunks_dir: dir.join(CHUNKS_DIR),
            cfg,
            faults,
            staging: Arc::new(staging),
            journal: rec.journal,
            slots: Mutex::new(slots),
            gate: RwLock::new(()),
            touched: Mutex::new(HashMap::new()),
            poisoned: AtomicUsize::new(0),
            rotating: AtomicBool::new(false),
            rotations: AtomicU64::new(0),
            rotation_failures: AtomicU64::new(0),
            _lock_file: rec.lock_file,
        };
        Ok((store, rec.report))
    }

    /// All replicas, ordered by chunk id.
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        let mut v: Vec<_> = lock(&self.slots).values().filter_map(|e| e.info).collect();
        v.sort_unstable_by_key(|i| i.chunk_id);
        v
    }

    /// The replica of `chunk_id`, if this store has one.
    pub fn info(&self, chunk_id: u64) -> Option<ReplicaInfo> {
        lock(&self.slots).get(&chunk_id).and_then(|e| e.info)
    }

    /// Starts staging a write at `offset` of `chunk_id`. `capacity` is the chunk size (the
    /// maximum replica length); staging past it is [`StoreError::InvalidArgument`]. For a
    /// chunk without a replica here, fails early with [`StoreError::NoSpace`] when free space
    /// is below the reserve.
    pub fn stage(
        &self,
        chunk_id: u64,
        offset: u64,
        capacity: u64,
    ) -> Result<StagedWrite, StoreError> {
        self.faults.check_alive()?;
        let layout =
            Layout::new(self.cfg.block_size, capacity).map_err(StoreError::InvalidArgument)?;
        if offset > capacity {
            return Err(StoreError::InvalidArgument(format!(
                "chunk {chunk_id:016x}: offset {offset} beyond capacity {capacity}"
            )));
        }
        let new_replica = self.info(chunk_id).is_none();
        if new_replica {
            self.check_reserve()?;
        }
        Ok(StagedWrite::new(
            self.staging.clone(),
            chunk_id,
            offset,
            layout,
            new_replica,
        ))
    }

    /// Reads up to `buf.len()` bytes at `offset`, verifying the CRC of every block touched.
    /// Returns the count, short only at the end of the replica. [`StoreError::Stale`] if the
    /// replica is at another version; [`StoreError::Corrupt`] (and nothing in `buf`) if any
    /// touched block fails its checksum.
    pub fn read(
        &self,
        chunk_id: u64,
        version: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StoreError> {
        self.with_live_header(chunk_id, |h| {
            if h.version != version {
                return Err(StoreError::Stale {
                    chunk_id,
                    have: h.version,
                    want: version,
                });
            }
            let file = File::open(chunk_path(&self.chunks_dir, chunk_id))?;
            read_verified(&file, h, offset, buf).map_err(|e| read_fail(chunk_id, e))
        })
    }

    /// Starts reading `[offset, offset + len)` of a replica's data from disk in the
    /// background, for a stream about to read it piece by piece. A hint only.
    pub fn prefetch(&self, chunk_id: u64, offset: u64, len: u64) {
        let _ = self.with_live_header(chunk_id, |h| {
            let file = File::open(chunk_path(&self.chunks_dir, chunk_id))?;
            let end = offset.saturating_add(len).min(h.length);
            if end > offset {
                will_need(&file, h.layout.data_offset() + offset, end - offset);
            }
            Ok(())
        });
    }

    /// [`ChunkStore::read`] that never waits: `Ok(None)` when a byte it needs is not in the
    /// page cache or a mutation of the replica holds its lock (the caller then reads with
    /// [`ChunkStore::read`] on a thread that may block). Answered reads are as verified as
    /// [`ChunkStore::read`]'s, and cheap enough for an async task: the point is to spare a
    /// small read of a warm replica the thread hand-offs that cost more than the read.
    pub fn read_cached(
        &self,
        chunk_id: u64,
        version: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, StoreError> {
        self.faults.check_alive()?;
        let slot = self
            .slot(chunk_id, false)
            .ok_or(StoreError::NotFound(chunk_id))?;
        let st = match slot.state.try_read() {
            Ok(st) => st,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
        };
        let h = st.header.ok_or(StoreError::NotFound(chunk_id))?;
        check_poisoned(chunk_id, &st)?;
        if h.version != version {
            return Err(StoreError::Stale {
                chunk_id,
                have: h.version,
                want: version,
            });
        }
        let file = File::open(chunk_path(&self.chunks_dir, chunk_id))?;
        match read_verified_mode(&file, &h, offset, buf, Wait::No) {
            Ok(n) => Ok(Some(n)),
            Err(ReadFail::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(read_fail(chunk_id, e)),
        }
    }

    /// Runs `f` with the header of a live, unpoisoned replica, under its slot's read lock
    /// (no mutation of the replica runs meanwhile).
    fn with_live_header<R>(
        &self,
        chunk_id: u64,
        f: impl FnOnce(&ReplicaHeader) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.faults.check_alive()?;
        let slot = self
            .slot(chunk_id, false)
            .ok_or(StoreError::NotFound(chunk_id))?;
        let st = read(&slot.state);
        let h = st.header.ok_or(StoreError::NotFound(chunk_id))?;
        check_poisoned(chunk_id, &st)?;
        f(&h)
    }

    /// Checks that the replica's header on disk is intact and matches the store's (reads
    /// use the one in memory, so only this, `verify` and a restart look at it).
    pub fn check_header(&self, chunk_id: u64) -> Result<(), StoreError> {
        self.with_live_header(chunk_id, |h| self.header_on_disk_matches(chunk_id, h))
    }

    /// Call under the slot's read lock, from [`ChunkStore::with_live_header`] (see
    /// [`check_header_on_disk`]).
    fn header_on_disk_matches(&self, chunk_id: u64, h: &ReplicaHeader) -> Result<(), StoreError> {
        let file = File::open(chunk_path(&self.chunks_dir, chunk_id))?;
        check_header_on_disk(&file, h).map_err(|e| read_fail(chunk_id, e))
    }

    /// Re-verifies every block of a replica (for the scrubber, which paces the calls).
    /// Returns the bytes verified. The chunk lock is re-taken per 1 MiB, so writers are not
    /// held up for the whole replica.
    pub fn verify(&self, chunk_id: u64) -> Result<u64, StoreError> {
        let mut buf = Vec::new();
        let mut pos = 0;
        loop {
            let step = self.with_live_header(chunk_id, |h| {
                if pos == 0 {
                    self.header_on_disk_matches(chunk_id, h)?;
                }
                if pos >= h.length {
                    return Ok(None);
                }
                let bs = h.layout.block_size();
                let window = VERIFY_WINDOW.div_ceil(bs) * bs;
                buf.resize(window.min(h.length - pos) as usize, 0);
                let file = File::open(chunk_path(&self.chunks_dir, chunk_id))?;
                let n =
                    read_verified(&file, h, pos, &mut buf).map_err(|e| read_fail(chunk_id, e))?;
                Ok(Some(n as u64))
            })?;
            match step {
                Some(n) => pos += n,
                None => return Ok(pos),
            }
        }
    }

    /// Removes a replica durably (its file is gone and stays gone after a crash).
    pub fn delete(&self, chunk_id: u64) -> Result<(), StoreError> {
        self.faults.check_alive()?;
        let _gate = read(&self.gate);
        self.with_slot(chunk_id, false, |st| {
            let h = st.header.ok_or(StoreError::NotFound(chunk_id))?;
            // The record, not a directory sync, makes the delete durable: replay must not
            // re-create the replica from a `Create` record still in the journal. The
            // checkpoint syncs the directory before the journal goes.
            let mut rec = Record {
                kind: RecordKind::Delete,
                lsn: 0,
                chunk_id,
                incarnation: h.incarnation,
                version: h.version,
                serial: h.serial,
                prev_length: h.length,
                new_length: 0,
                offset: 0,
                payload_len: 0,
            };
            let ticket = self.journal.append(&mut rec, None)?;
            self.journal.wait_durable(ticket)?;
            lock(&self.touched).insert(chunk_id, true);
            let path = chunk_path(&self.chunks_dir, chunk_id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            st.header = None;
            self.unpoison(st);
            Ok(())
        })
    }

    /// Space on the file system holding the store, and the bytes replicas hold.
    pub fn capacity(&self) -> Result<Capacity, StoreError> {
        let (total_bytes, free_bytes, used_bytes) = statvfs(&self.root)?;
        let replica_bytes = lock(&self.slots)
            .values()
            .filter_map(|e| e.info)
            .map(|i| i.length)
            .sum();
        Ok(Capacity {
            total_bytes,
            free_bytes,
            used_bytes,
            replica_bytes,
        })
    }

    /// Checkpoints now: syncs every replica changed in place since the last checkpoint and
    /// starts a fresh journal (normally done when the journal passes `journal_rotate_bytes`).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.faults.check_alive()?;
        let _gate = write(&self.gate);
        if self.poisoned.load(Ordering::SeqCst) > 0 {
            return Err(StoreError::Io(io::Error::other(
                "a replica awaits recovery; reopen the store",
            )));
        }
        self.checkpoint_locked()?;
        Ok(())
    }

    /// Counters for metrics and tests.
    pub fn stats(&self) -> StoreStats {
        let (journal_records, journal_syncs) = self.journal.counters();
        StoreStats {
            journal_records,
            journal_syncs,
            rotations: self.rotations.load(Ordering::Relaxed),
            rotation_failures: self.rotation_failures.load(Ordering::Relaxed),
        }
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Fault injection switches (tests): fail writes with `ENOSPC`, syncs with `EIO`, or
    /// crash at a point of the commit protocol.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The slot of `id`, inserting an empty one if `create`.
    fn slot(&self, id: u64, create: bool) -> Option<Arc<Slot>> {
        let mut m = lock(&self.slots);
        if let Some(e) = m.get(&id) {
            return Some(e.slot.clone());
        }
        if !create {
            return None;
        }
        let slot = Arc::new(Slot::default());
        m.insert(
            id,
            Entry {
                slot: slot.clone(),
                info: None,
            },
        );
        Some(slot)
    }

    /// Runs `f` under the write lock of chunk `id`'s slot, then publishes the slot's state
    /// (dropping the map entry of a chunk without replica that no one else holds).
    fn with_slot<R>(
        &self,
        id: u64,
        create: bool,
        f: impl FnOnce(&mut SlotState) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let slot = self.slot(id, create).ok_or(StoreError::NotFound(id))?;
        let mut st = write(&slot.state);
        let res = f(&mut st);
        let info = st.header.map(|h| h.info());
        let mut m = lock(&self.slots);
        if let Some(e) = m.get_mut(&id) {
            e.info = info;
            // The map and `slot` hold the only references: no one else waits for this lock.
            if info.is_none() && Arc::strong_count(&e.slot) == 2 {
                m.remove(&id);
            }
        }
        res
    }

    /// Marks a replica whose apply failed after its record became durable: it awaits
    /// replay at the next open, and the journal is kept until then.
    fn poison(&self, st: &mut SlotState) {
        if !self.faults.halted() && !st.poisoned {
            st.poisoned = true;
            self.poisoned.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn unpoison(&self, st: &mut SlotState) {
        if st.poisoned {
            st.poisoned = false;
            self.poisoned.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Checkpoints if the journal has grown past `journal_rotate_bytes`. A failure is
    /// counted and retried at the next commit; the journal keeps everything meanwhile.
    fn maybe_rotate(&self) {
        let due = || {
            self.journal.len() >= self.cfg.journal_rotate_bytes
                && self.poisoned.load(Ordering::SeqCst) == 0
        };
        if self.faults.halted() || !due() || self.rotating.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let _gate = write(&self.gate);
            if due() && self.checkpoint_locked().is_err() {
                self.rotation_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.rotating.store(false, Ordering::SeqCst);
    }

    /// Syncs the touched replicas and rotates the journal; the caller holds `gate` for
    /// writing, so no record is in flight.
    fn checkpoint_locked(&self) -> io::Result<()> {
        let ids: Vec<(u64, bool)> = lock(&self.touched).drain().collect();
        let res = (|| {
            let mut dirs = Vec::new();
            for &(id, entry_changed) in &ids {
                let path = chunk_path(&self.chunks_dir, id);
                match File::open(&path) {
                    Ok(f) => self.faults.sync_data(&f)?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                if entry_changed {
                    dirs.extend(path.parent().map(Path::to_path_buf));
                }
            }
            // Journaled creates and deletes have directory entries to make durable.
            dirs.sort();
            dirs.dedup();
            for d in dirs {
                crate::fsutil::fsync_dir(&d)?;
            }
            self.journal.rotate()
        })();
        match &res {
            Ok(()) => {
                self.rotations.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                let mut t = lock(&self.touched);
                for (id, entry_changed) in ids {
                    *t.entry(id).or_insert(false) |= entry_changed;
                }
            }
        }
        res
    }
}

fn check_poisoned(chunk_id: u64, st: &SlotState) -> Result<(), StoreError> {
    if st.poisoned {
        Err(StoreError::Io(io::Error::other(format!(
            "chunk {chunk_id:016x}: replica awaits recovery after a failed apply; reopen the store"
        ))))
    } else {
        Ok(())
    }
}

/// Reads a replica's header back from disk and checks it against the one in memory. Reads
/// never look at the on-disk header (the store keeps it in memory), so without this a
/// damaged header would go unnoticed until the next restart drops the replica. Called
/// under the slot's read lock: every header write happens under its write lock, and a
/// replica whose apply failed midway is poisoned (and refused) before this is reached.
fn check_header_on_disk(file: &File, h: &ReplicaHeader) -> Result<(), ReadFail> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; crate::format::HEADER_LEN as usize];
    file.read_exact_at(&mut b, 0).map_err(ReadFail::Io)?;
    match ReplicaHeader::decode(&b) {
        Ok(disk) if disk == *h => Ok(()),
        Ok(disk) => Err(ReadFail::Corrupt(format!(
            "header on disk {disk:?} differs from the replica's {h:?}"
        ))),
        Err(e) => Err(ReadFail::Corrupt(format!("header: {e}"))),
    }
}

fn read_fail(chunk_id: u64, e: ReadFail) -> StoreError {
    match e {
        ReadFail::Io(e) => e.into(),
        ReadFail::Corrupt(detail) => StoreError::Corrupt { chunk_id, detail },
    }
}
