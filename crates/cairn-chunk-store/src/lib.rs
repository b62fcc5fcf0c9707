//! Local replica storage for a Cairn chunk server.
//!
//! A [`ChunkStore`] keeps one file per chunk replica under a data directory, each block of
//! it (64 KiB by default) guarded by a CRC32C, and mutates replicas crash-safely:
//!
//! - A **new** replica (first write with `create`, a creating truncate, or a re-replication
//!   [`ChunkStore::install`]) is written to a temporary file in replica format, made durable,
//!   then renamed into place; it is never visible before its data and checksums are durable.
//! - A mutation of an **existing** replica (write, truncate, version change) is appended to a
//!   redo journal and made durable there (concurrent committers share one `fdatasync`), then
//!   applied in place without a sync. Recovery re-applies every journal record since the last
//!   checkpoint, in order, which rebuilds the correct bytes, checksums and header from any mix
//!   of old and new pages the crash left behind.
//! - Every read verifies the CRC of every block it touches and never hands out bytes that fail.
//!
//! The byte-level formats and the commit protocol are written down in `docs/formats.md`
//! ("Chunk server store"). The store is synchronous (`std` I/O, call it from
//! `spawn_blocking`), `Send + Sync`, and every method takes `&self`.

mod direct;
mod error;
mod faults;
mod format;
mod fsutil;
mod journal;
mod record;
mod recovery;
mod replica;
mod staging;
mod store;

pub use error::StoreError;
pub use faults::{CrashPoint, Faults};
pub use staging::StagedWrite;
pub use store::ChunkStore;

use serde::{Deserialize, Serialize};

/// Tuning of a [`ChunkStore`]; [`StoreConfig::default`] gives the production defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Bytes covered by one CRC32C (new replicas only; each replica records its own).
    /// A power of two from 512 B to 16 MiB. Default 64 KiB.
    pub block_size: u32,
    /// The journal is checkpointed (replicas synced, journal restarted) once it grows past
    /// this many bytes. Default 64 MiB.
    pub journal_rotate_bytes: u64,
    /// New replicas are refused with [`StoreError::NoSpace`] while the file system has less
    /// free space than this; mutations of existing replicas are still allowed. Default 0.
    pub reserve_bytes: u64,
    /// Staged writes up to this many bytes stay in memory; larger ones spill to a temporary
    /// file under `staging/`. Default 256 KiB.
    pub memory_stage_limit: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            block_size: 64 * 1024,
            journal_rotate_bytes: 64 * 1024 * 1024,
            reserve_bytes: 0,
            memory_stage_limit: 256 * 1024,
        }
    }
}

/// What the store knows about one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// The chunk this replica belongs to.
    pub chunk_id: u64,
    /// The chunk version the replica is at.
    pub version: u64,
    /// Bytes of data in the replica.
    pub length: u64,
    /// Serial of the last mutation applied at `version` (0 right after a version change).
    pub serial: u64,
}

/// Space on the file system holding the store, for heartbeats and placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Size of the file system.
    pub total_bytes: u64,
    /// Space available to the store (`f_bavail`).
    pub free_bytes: u64,
    /// Space used on the file system by anyone.
    pub used_bytes: u64,
    /// Sum of the lengths of the replicas in this store.
    pub replica_bytes: u64,
}

/// What [`ChunkStore::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// Replicas present after recovery.
    pub replicas: usize,
    /// Journal records re-applied to replicas.
    pub journal_records_replayed: usize,
    /// Whether a journal ended in a torn or invalid record that was cut off.
    pub torn_tail_cut: bool,
    /// Leftover staging files (writes that were never committed) removed.
    pub temp_files_removed: usize,
    /// Chunks whose replica file had an invalid header and was removed.
    pub bad_replicas_removed: Vec<u64>,
}

/// Counters for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Journal records appended since open.
    pub journal_records: u64,
    /// `fdatasync` calls on the journal since open (group commit makes this < records).
    pub journal_syncs: u64,
    /// Journal checkpoints completed since open.
    pub rotations: u64,
    /// Journal checkpoints that failed (the journal is kept and retried later).
    pub rotation_failures: u64,
}
