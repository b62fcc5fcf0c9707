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
//! - inode, chunk and session ids come from counters in the state and are never reused;
//! - every live inode is reachable from [`ROOT_INODE`], and every live chunk is referenced
//!   by exactly one slot of one file;
//! - side tables (locks, extended attributes, append reservations, hard-link parents) are
//!   keyed by inode and hold entries only for live inodes, so an inode that has none of
//!   them pays nothing for them;
//! - every lock and lock waiter belongs to a live session, and no queued waiter could be
//!   granted (the queue is settled after every command).
//!

mod chunk_ids;
mod chunks;
mod command;
mod dedup;
mod dir_entries;
mod dispatch;
mod entries;
mod error;
mod invariants;
mod lock_commands;
mod locks;
mod namespace;
mod node;
mod paged_table;
mod posix;
mod queries;
mod rename_at;
mod sessions;
mod slots;
mod special;
mod state;
mod xattr;

use serde::{Deserialize, Serialize};

pub use cairn_proto::{CairnPath, ErrorKind};
pub use command::{MetaCommand, MetaResponse};
pub use dedup::{DEDUP_MAX_CLIENTS, DEDUP_SEQS_PER_CLIENT};
pub use error::MetaError;
pub use sessions::GRANTED_MEMORY;
pub use special::{SPECIAL_XATTR, SpecialKind};
pub use state::MetaState;

/// Identifies an inode; allocated from a counter starting at 2, never reused.
pub type InodeId = u64;
/// Identifies a chunk; allocated from a counter starting at 1, never reused. 0 marks a hole.
pub type ChunkId = u64;
/// Identifies a client session; allocated from a counter starting at 1, never reused.
pub type SessionId = u64;

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
/// Bits of `mode` that are kept; the rest (the file type bits) are dropped.
pub const MODE_MASK: u32 = 0o7777;
/// Longest session owner string, in bytes.
pub const MAX_SESSION_OWNER: usize = 256;
/// Longest symlink target, in bytes.
pub const MAX_SYMLINK_TARGET: usize = 4096;
/// Most names one inode may have (hard links), as ext4's limit.
pub const MAX_LINKS: u32 = 65_000;
/// Longest extended attribute name, in bytes.
pub const MAX_XATTR_NAME: usize = 255;
/// Largest extended attribute value, in bytes.
pub const MAX_XATTR_VALUE: usize = 64 << 10;
/// Most bytes (names plus values) of extended attributes one inode may carry.
pub const MAX_XATTR_TOTAL: usize = 256 << 10;
/// Most locks held on one inode; a request that could exceed it fails.
pub const MAX_LOCKS_PER_INODE: usize = 10_000;
/// Most waiters queued on one inode; a waiting request beyond it fails.
pub const MAX_WAITERS_PER_INODE: usize = 1_000;

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
    /// A symbolic link; the state never follows one (a path through it is not a directory).
    Symlink,
}

/// Attributes as returned to callers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    pub inode: InodeId,
    pub file_type: FileType,
    /// Bytes for files, entry count for directories, target length for symlinks.
    pub size: u64,
    /// Permission bits only, e.g. `0o644`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Files and symlinks: number of names; directories: 2 + number of subdirectories.
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

/// Kind of a byte-range lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LockKind {
    /// Read lock: any number of owners may share a range.
    Shared,
    /// Write lock: no other owner may hold any lock over the range.
    Exclusive,
}

/// A lock as held (or requested) by one owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockInfo {
    pub session_id: SessionId,
    /// Chosen by the client (a process or open file description); with the session it
    /// names the lock owner. One owner never conflicts with itself.
    pub owner: u64,
    pub kind: LockKind,
    /// First byte covered.
    pub start: u64,
    /// First byte past the range; `u64::MAX` means "to infinity".
    pub end: u64,
    /// An exclusive-writer lock: always exclusive over `[0, u64::MAX)`, and while it is
    /// held, data and namespace changes to the file from other sessions fail with
    /// `Locked` (see [`MetaState::check_write`]).
    pub mandatory: bool,
}

/// A queued lock request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WaiterInfo {
    /// Chosen by the caller, unique among the session's queued waits.
    pub waiter_id: u64,
    pub lock: LockInfo,
}

/// A queued waiter that a command granted (or dropped, where a response says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub session_id: SessionId,
    pub waiter_id: u64,
    pub inode: InodeId,
}

/// Where a lock request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockOutcome {
    /// The lock is held (granted at once or, for a wait, granted since).
    Granted,
    /// Queued behind conflicting locks; `position` is 1-based in the inode's queue.
    Queued { position: u64 },
    /// The wait was removed from the queue before it was granted.
    Cancelled,
}

/// A client session as status pages show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: SessionId,
    /// Who opened it, e.g. `host:pid`.
    pub owner: String,
    pub opened_ns: i64,
    /// Lock ranges held (a split range counts as two).
    pub locks_held: u64,
}

/// Lock counts for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockCounts {
    pub sessions: u64,
    /// Lock ranges held.
    pub locks_held: u64,
    /// Queued waiters.
    pub waiters: u64,
    /// Inodes with a lock or a waiter.
    pub locked_inodes: u64,
}

/// How `SetXattr` treats an existing attribute (`XATTR_CREATE` / `XATTR_REPLACE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum XattrMode {
    /// Creates or replaces.
    Any,
    /// Fails with `AlreadyExists` if the attribute exists.
    CreateOnly,
    /// Fails with [`MetaError::NoAttribute`] if the attribute does not exist.
    ReplaceOnly,
}
