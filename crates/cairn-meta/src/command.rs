//! Commands the state machine applies and the responses it gives.
//!
//! A command carries everything that varies between runs (time stamps, secrets), so that
//! applying the same command to the same state always has the same effect. Commands are
//! serializable: they are what the operation log stores.
//!
//! Commands that change file data or a file's names carry `session`: while a session holds
//! a mandatory lock on the file, only commands naming that session may change it (see
//! [`crate::MetaState::check_write`]); `None` is "no session". New variants are appended,
//! so the encodings of older ones keep their tags.

use serde::{Deserialize, Serialize};

use crate::{
    Attr, CairnPath, ChunkId, Grant, InodeId, LockKind, LockOutcome, SessionId, SpecialKind,
    XattrMode,
};

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
    /// freed, append reservation reset). `goal` 0 = the default goal. An existing symlink
    /// is never overwritten (`AlreadyExists`). Answers [`MetaResponse::Created`].
    Create {
        path: CairnPath,
        overwrite: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        goal: u8,
        now_ns: i64,
        session: Option<SessionId>,
    },
    /// Removes a file, symlink or directory (a non-empty one only when `recursive`).
    /// Answers [`MetaResponse::Freed`]. Locks and waiters of removed inodes are dropped;
    /// this response cannot list the waiters, so the master finds them with
    /// [`crate::MetaState::lock_status`] (`None`), or uses `UnlinkAt`/`RmdirAt`.
    Delete {
        path: CairnPath,
        recursive: bool,
        now_ns: i64,
        session: Option<SessionId>,
    },
    /// Moves `from` to `to` atomically, POSIX style. Answers [`MetaResponse::Freed`] with the
    /// chunks of a replaced file (its dropped waiters as for `Delete`).
    Rename {
        from: CairnPath,
        to: CairnPath,
        no_replace: bool,
        now_ns: i64,
        session: Option<SessionId>,
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
        session: Option<SessionId>,
    },
    /// Sets a file's length; chunk slots wholly past the new end are freed and the append
    /// reservation is reset. Answers [`MetaResponse::Truncated`].
    Truncate {
        inode: InodeId,
        size: u64,
        now_ns: i64,
        session: Option<SessionId>,
    },

    // ---- sessions and locks (issue 4)
    /// Opens a client session; `owner` (e.g. `host:pid`) is at most 256 bytes. Answers
    /// [`MetaResponse::Session`].
    OpenSession { owner: String, now_ns: i64 },
    /// Closes a session: releases all its locks and queued waits. Answers
    /// [`MetaResponse::Released`] with the waiters of other sessions granted as a result.
    CloseSession { session_id: SessionId },
    /// Same as `CloseSession`, logged when the master decided the session timed out.
    ExpireSession { session_id: SessionId },
    /// Takes a byte-range lock `[start, end)` for `(session_id, owner)` on any inode.
    /// Granted when it conflicts with no holder and no queued waiter (queued requests are
    /// never overtaken); otherwise queued with `wait` (as `waiter_id`, unique among the
    /// session's queued waits), or refused with `Locked` naming the holder. `mandatory`
    /// requires a file, `Exclusive` and `[0, u64::MAX)`. Answers
    /// [`MetaResponse::LockResult`]; a grant may convert the owner's own locks and so grant
    /// other waiters, listed there.
    Lock {
        session_id: SessionId,
        inode: InodeId,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
        mandatory: bool,
        wait: bool,
        waiter_id: u64,
    },
    /// Releases `(session_id, owner)`'s locks over `[start, end)` (a no-op where none is
    /// held). Answers [`MetaResponse::Released`].
    Unlock {
        session_id: SessionId,
        inode: InodeId,
        owner: u64,
        start: u64,
        end: u64,
    },
    /// Withdraws a queued wait. Answers [`MetaResponse::LockResult`]: `Cancelled` (and the
    /// waiters that its leaving unblocked), or `Granted` if the wait was granted already
    /// (the lock is held; the caller unlocks it if it no longer wants it).
    CancelWait {
        session_id: SessionId,
        waiter_id: u64,
    },
    /// Reserves `len` bytes at the end of a file for an append: answers
    /// [`MetaResponse::Offset`] with `max(length, reserved end)` and moves the reserved end
    /// past the reservation, so concurrent appenders get disjoint ranges.
    ReserveAppend {
        inode: InodeId,
        len: u64,
        session: Option<SessionId>,
    },

    // ---- inode-based POSIX namespace (issue 7)
    /// Creates directory `name` in directory `parent`. Answers [`MetaResponse::Attr`].
    MkdirAt {
        parent: InodeId,
        name: String,
        mode: u32,
        uid: u32,
        gid: u32,
        now_ns: i64,
    },
    /// Creates file `name` in `parent` with the default goal; if a file of that name exists,
    /// `exclusive` (O_EXCL) fails with `AlreadyExists`, otherwise it is answered unchanged.
    /// Answers [`MetaResponse::Created`] (nothing freed).
    CreateAt {
        parent: InodeId,
        name: String,
        mode: u32,
        uid: u32,
        gid: u32,
        exclusive: bool,
        now_ns: i64,
    },
    /// Creates symlink `name -> target` (1..=4096 bytes, no NUL). Answers
    /// [`MetaResponse::Attr`].
    SymlinkAt {
        parent: InodeId,
        name: String,
        target: String,
        uid: u32,
        gid: u32,
        now_ns: i64,
    },
    /// Adds name `new_name` in `new_parent` for file or symlink `inode` (a directory is
    /// `PermissionDenied`). Answers [`MetaResponse::Attr`] of the inode.
    LinkAt {
        inode: InodeId,
        new_parent: InodeId,
        new_name: String,
        now_ns: i64,
    },
    /// Removes non-directory entry `name`; the inode goes with its last name. Answers
    /// [`MetaResponse::Removed`].
    UnlinkAt {
        parent: InodeId,
        name: String,
        session: Option<SessionId>,
        now_ns: i64,
    },
    /// Removes empty directory `name`. Answers [`MetaResponse::Removed`].
    RmdirAt {
        parent: InodeId,
        name: String,
        now_ns: i64,
    },
    /// Renames `parent/name` to `new_parent/new_name` with POSIX semantics; `no_replace`
    /// (RENAME_NOREPLACE) refuses an existing target; `exchange` (RENAME_EXCHANGE) swaps
    /// two existing entries of any types. Answers [`MetaResponse::Removed`].
    RenameAt {
        parent: InodeId,
        name: String,
        new_parent: InodeId,
        new_name: String,
        no_replace: bool,
        exchange: bool,
        session: Option<SessionId>,
        now_ns: i64,
    },
    /// Changes attributes; `None` leaves one alone. `size` (files only) acts as
    /// `Truncate`; `mode` keeps permission bits only; any change sets ctime. Answers
    /// [`MetaResponse::Truncated`].
    SetAttr {
        inode: InodeId,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime_ns: Option<i64>,
        mtime_ns: Option<i64>,
        session: Option<SessionId>,
        now_ns: i64,
    },
    /// Sets extended attribute `name` (1..=255 bytes, no NUL) to `value` (at most 64 KiB).
    /// Answers [`MetaResponse::Unit`].
    SetXattr {
        inode: InodeId,
        name: String,
        value: Vec<u8>,
        mode: XattrMode,
        now_ns: i64,
    },
    /// Removes extended attribute `name` ([`crate::MetaError::NoAttribute`] if absent).
    /// Answers [`MetaResponse::Unit`].
    RemoveXattr {
        inode: InodeId,
        name: String,
        now_ns: i64,
    },
    /// Creates special node `name` (FIFO, socket or device; see `special.rs`) in `parent`.
    /// Answers [`MetaResponse::Attr`].
    MknodAt {
        parent: InodeId,
        name: String,
        kind: SpecialKind,
        rdev: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        now_ns: i64,
    },
    /// Sets aside `count` (1..=65536) chunk ids that no `AllocChunk` will hand out, for
    /// chunks the master places before any file references them (`CommitWriteNew` binds
    /// them). Answers [`MetaResponse::ChunkIds`].
    ReserveChunkIds { count: u64 },
    /// `CommitWrite` that first puts written chunks into empty slots of the file: each
    /// `(index, chunk)` names a reserved id no chunk uses yet, for a slot that is a hole
    /// (or already holds that chunk), at version 1. All or nothing: a slot another chunk
    /// took meanwhile, or an id not set aside, is [`crate::MetaError::Stale`] and changes
    /// nothing. Answers [`MetaResponse::Attr`].
    CommitWriteNew {
        inode: InodeId,
        end: u64,
        new_chunks: Vec<(u64, ChunkId)>,
        now_ns: i64,
        session: Option<SessionId>,
    },
}

/// What a successful command answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    /// Format, SetChunkVersion, SetXattr, RemoveXattr.
    Unit,
    /// Mkdir, CommitWrite, MkdirAt, SymlinkAt, LinkAt.
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
    /// Create, CreateAt: the file's attributes, and the chunks an overwrite freed (sorted
    /// by id).
    Created {
        attr: Attr,
        freed: Vec<(ChunkId, u64)>,
    },
    /// Truncate, SetAttr: the new attributes, and the chunks past the new end (sorted by
    /// id).
    Truncated {
        attr: Attr,
        freed: Vec<(ChunkId, u64)>,
    },
    /// OpenSession: the new session's id.
    Session { session_id: SessionId },
    /// CloseSession, ExpireSession, Unlock: queued waiters (of any session) that became
    /// holders, by inode and then grant order. The master wakes their waiting calls.
    Released { granted: Vec<Grant> },
    /// Lock, CancelWait: what became of the request, and other waiters it let through.
    LockResult {
        outcome: LockOutcome,
        granted: Vec<Grant>,
    },
    /// ReserveAppend: where the caller's append starts.
    Offset(u64),
    /// UnlinkAt, RmdirAt, RenameAt: chunks no file references any more (sorted by id), and
    /// the waiters dropped because their inode is gone (the master answers them
    /// `NotFound`), in queue order.
    Removed {
        freed: Vec<(ChunkId, u64)>,
        dropped: Vec<Grant>,
    },
    /// ReserveChunkIds: the first id set aside (the range is `first..first + count`).
    ChunkIds { first: ChunkId, count: u64 },
}
