//! The store's error type: one variant per situation a caller acts on differently.
//!
//! Invariant: an out-of-space condition from the OS (`ENOSPC`, `EDQUOT`) always surfaces as
//! [`StoreError::NoSpace`], never as [`StoreError::Io`], so callers can tell "full" from
//! "broken" without inspecting errno.

use std::io;

/// Errors of [`crate::ChunkStore`] operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No replica of that chunk in this store.
    #[error("chunk {0:016x}: no replica")]
    NotFound(u64),
    /// The replica is at another version than the caller expects.
    #[error("chunk {chunk_id:016x}: replica at version {have}, expected {want}")]
    Stale {
        /// The chunk.
        chunk_id: u64,
        /// Version of the replica here.
        have: u64,
        /// Version the caller asked for.
        want: u64,
    },
    /// A mutation's serial is not the replica's serial + 1.
    #[error("chunk {chunk_id:016x}: mutation serial {got} out of order (last applied {have})")]
    OutOfOrder {
        /// The chunk.
        chunk_id: u64,
        /// Last serial applied at the current version.
        have: u64,
        /// Serial of the refused mutation.
        got: u64,
    },
    /// A checksum or header mismatch; the bytes concerned are never returned.
    #[error("chunk {chunk_id:016x}: corrupt: {detail}")]
    Corrupt {
        /// The chunk.
        chunk_id: u64,
        /// What failed, e.g. which block.
        detail: String,
    },
    /// The file system is full, or free space is below the configured reserve.
    #[error("no space: {0}")]
    NoSpace(String),
    /// A request outside what the replica can hold (offset or length beyond capacity, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Any other I/O failure.
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        if is_no_space(&e) {
            StoreError::NoSpace(e.to_string())
        } else {
            StoreError::Io(e)
        }
    }
}

/// Whether an I/O error means the file system (or a quota) is full.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
