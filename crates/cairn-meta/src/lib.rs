//! Cairn's namespace state machine: the master's durable metadata as a pure, deterministic
//! `apply(command) -> result` with read-only queries beside it.
//!
//! Every mutation is a [`MetaCommand`]; the master logs it durably and then calls
//! [`MetaState::apply`]. Everything that varies between runs (time stamps, the lease key)
//! arrives inside the command, so replaying the same log into [`MetaState::new`] always
//! yields the same state, down to its serialized bytes.
//!
//! Invariants the crate keeps (checked by [`MetaState::check_invariants`]):
//! - no I/O, clocks, randomness or threads; all maps are ordered, so nothing observable
//!   depends on hash order;
//! - `apply` is atomic: an `Err` leaves the namespace exactly as it was (only the request
//!   de-duplication table may remember the error, see [`MetaState::apply`]);
//! - inode and chunk ids come from counters in the state and are never reused;
//! - every live inode is reachable from [`ROOT_INODE`], and every live chunk is referenced
//!   by exactly one slot of one file.

mod chunks;
mod command;
mod dedup;
mod error;
mod invariants;
mod namespace;
mod node;
mod state;

use serde::{Deserialize, Serialize};

pub use cairn_proto::{CairnPath, ErrorKind};
pub use command::{MetaCommand, MetaResponse};
pub use dedup::{DEDUP_MAX_CLIENTS, DEDUP_SEQS_PER_CLIENT};
pub use error::MetaError;
pub use state::MetaState;

/// Identifies an inode; allocated from a counter starting at 2, never reused.
pub type InodeId = u64;
/// Identifies a chunk; allocated from a counter starting at 1, never reused. 0 marks a hole.
pub type ChunkId = u64;

/// The root directory's inode.
pub const ROOT_INODE: InodeId = 1;
/// Largest file length (and largest chunk offset, exclusive): 2^60 bytes.
pub const MAX_FILE_SIZE: u64 = 1 << 60;
/// Largest replication goal a file may ask for.
pub const MAX_GOAL: u8 = 16;
/// Listing page size used when the caller passes a limit of 0.
pub const DEFAULT_LIST_LIMIT: usize = 1000;
/// Most chunk slots one [`MetaState::file_chunks`] call returns. Slots are stored sparsely,
/// so a file with one chunk far out has a huge slot count; this bound keeps a single query
/// from building a giant vector of holes. Callers page with `first`.
pub const MAX_CHUNK_REFS: u64 = 1 << 16;
/// Bits of `mode` that are kept; the rest are dropped on create.
pub const MODE_MASK: u32 = 0o7777;

/// Identifies a client request for de-duplication. `client_id` 0 = no de-duplication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// Random per client session, chosen by the client.
    pub client_id: u64,
    /// Increases with every mutating request of the session.
    pub seq: u64,
}

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileType {
    File,
    Directory,
    /// Reserved: no command creates symlinks yet.
    Symlink,
}

/// Attributes as returned to callers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    pub inode: InodeId,
    pub file_type: FileType,
    /// Bytes for files, entry count for directories.
    pub size: u64,
    /// Permission bits only, e.g. `0o644`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Files: number of names; directories: 2 + number of subdirectories.
    pub nlink: u32,
    /// Replication goal; 0 for non-files.
    pub goal: u8,
    /// Number of chunk slots (last allocated index + 1, holes included); 0 for non-files.
    pub chunk_count: u64,
}

/// Chunk slot of a file as read paths see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub index: u64,
    /// 0 = hole (reads as zeros).
    pub chunk_id: ChunkId,
    /// 0 for a hole.
    pub version: u64,
}

/// Durable per-chunk record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// The file that owns the chunk.
    pub inode: InodeId,
    /// The slot of that file the chunk fills.
    pub index: u64,
    /// Raised by the master before every write that may diverge replicas.
    pub version: u64,
}

/// Namespace-wide counts, for status pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    /// Sum of file lengths.
    pub bytes: u64,
    /// Live chunks.
    pub chunks: u64,
}
