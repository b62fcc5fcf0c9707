//! Commands the state machine applies and the responses it gives.
//!
//! A command carries everything that varies between runs (time stamps, secrets), so that
//! applying the same command to the same state always has the same effect. Commands are
//! serializable: they are what the operation log stores.

use serde::{Deserialize, Serialize};

use crate::{Attr, CairnPath, ChunkId, InodeId};

/// One mutation of the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// First command of a new file system; refused (`AlreadyExists`) once formatted. Every
    /// other command on an unformatted state fails with [`crate::MetaError::NotFormatted`].
    /// `chunk_size` must be in `1..=2^60`, `default_goal` in `1..=16`.
    Format {
        chunk_size: u64,
        default_goal: u8,
        lease_key: [u8; 32],
        now_ns: i64,
    },
    /// Creates a directory (and with `parents` its missing ancestors; an existing directory
    /// is then fine). Answers [`MetaResponse::Attr`] of the directory.
    Mkdir {
        path: CairnPath,
        parents: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        now_ns: i64,
    },
    /// Creates a file, or with `overwrite` empties an existing one (same inode, chunks
    /// freed). `goal` 0 = the default goal. Answers [`MetaResponse::Created`].
    Create {
        path: CairnPath,
        overwrite: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        goal: u8,
        now_ns: i64,
    },
    /// Removes a file or directory (a non-empty one only when `recursive`). Answers
    /// [`MetaResponse::Freed`].
    Delete {
        path: CairnPath,
        recursive: bool,
        now_ns: i64,
    },
    /// Moves `from` to `to` atomically, POSIX style. Answers [`MetaResponse::Freed`] with the
    /// chunks of a replaced file.
    Rename {
        from: CairnPath,
        to: CairnPath,
        no_replace: bool,
        now_ns: i64,
    },
    /// Allocates chunk slot `index` of file `inode` if it is a hole. Answers
    /// [`MetaResponse::Chunk`].
    AllocChunk { inode: InodeId, index: u64 },
    /// Raises a chunk's version (never lowers it: a lower or equal version is an Ok no-op).
    /// Answers [`MetaResponse::Unit`].
    SetChunkVersion { chunk_id: ChunkId, version: u64 },
    /// Records that bytes up to `end` of a file are written: length = max(length, end);
    /// mtime = ctime = now. Answers [`MetaResponse::Attr`].
    CommitWrite {
        inode: InodeId,
        end: u64,
        now_ns: i64,
    },
    /// Sets a file's length; chunk slots wholly past the new end are freed. Answers
    /// [`MetaResponse::Truncated`].
    Truncate {
        inode: InodeId,
        size: u64,
        now_ns: i64,
    },
}

/// What a successful command answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    /// Format, SetChunkVersion.
    Unit,
    /// Mkdir, CommitWrite.
    Attr(Attr),
    /// AllocChunk: `fresh` is true when this call allocated it (version 1, no replica exists
    /// anywhere yet).
    Chunk {
        chunk_id: ChunkId,
        version: u64,
        fresh: bool,
    },
    /// Delete, Rename: chunks that no file references any more (the master tells chunk
    /// servers to delete their replicas), sorted by chunk id; often empty.
    Freed(Vec<(ChunkId, u64)>),
    /// Create: the file's attributes, and the chunks an overwrite freed (sorted by id).
    Created {
        attr: Attr,
        freed: Vec<(ChunkId, u64)>,
    },
    /// Truncate: the file's new attributes, and the chunks past the new end (sorted by id).
    Truncated {
        attr: Attr,
        freed: Vec<(ChunkId, u64)>,
    },
}
